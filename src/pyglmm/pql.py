"""The PQL centre of the importance distribution, with the fixes of docs/method.md.

In the signed-standard-deviation parametrisation ``u = A(sigma) s``, the inner
problem maximises the penalised likelihood

.. math:: P(\\beta, s; \\sigma) = \\sum_i [y_i\\eta_i - c(\\eta_i)] - \\tfrac12 s^\\top s,
          \\quad \\eta = X\\beta + Z A s,

by Newton's method (the Hessian's random-effect block is block-diagonal, so each
step is a Schur-complement solve over the blocks), and the outer problem minimises the
Laplace-type criterion

.. math:: Q(\\sigma) = -\\sum_i [y_i\\tilde\\eta_i - c(\\tilde\\eta_i)]
          + \\tfrac12 \\tilde s^\\top\\tilde s
          + \\tfrac12\\log\\det(A Z^\\top \\tilde V Z A + I).

Departures from R's glmm (docs/method.md lists them): ``Q`` uses the new
inner solution ``s~`` (a pure function of ``sigma``), the optimiser's convergence is
checked, the inner problem is re-solved at the returned ``sigma``, and ``|sigma|`` is
taken before clamping at ``1e-3``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar

from .blocklinalg import BlockCholesky, solve_columns
from .errors import ConvergenceWarning
from .problem import Problem

FloatArray = NDArray[np.float64]

#: Smallest standard deviation used for the importance distribution (R glmm's clamp).
SIGMA_FLOOR = 1e-3
#: Where no block holds more random effects than this (and none is crossed), the inner
#: problem takes Newton steps from the start: its factorisations cost about what the
#: chord steps' solves do (salamander's PQL: 68 ms with chord steps, 44 ms without).
NEWTON_MAX_BLOCK = 64


@dataclass(frozen=True)
class PQLResult:
    """The PQL centre.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        ``beta*``.
    nu : ndarray, shape (R,)
        ``nu* = sigma_hat^2`` before clamping (R's ``nu.pql``), as random-effect
        parameters ``psi`` (covariances 0: PQL fits each column's variance on its own,
        a centre for the proposal and a start for the Laplace fit).
    variances : ndarray, shape (R,)
        The clamped variances ``D*`` used by the importance distribution.
    u : ndarray, shape (q,)
        ``u* = A(sigma_clamped) s*``, block order.
    criterion : float
        ``Q(sigma_hat)``.
    converged : bool
        Whether the outer optimiser reported convergence.
    n_evaluations : int
        Number of evaluations of ``Q``.
    """

    beta: FloatArray
    nu: FloatArray
    variances: FloatArray
    u: FloatArray
    criterion: float
    converged: bool
    n_evaluations: int


class _InnerSolver:
    """Newton's method for the inner penalised likelihood, warm-started."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.beta = np.zeros(problem.n_fixed)
        self.s = np.zeros(problem.n_effects)
        self.last_factor: BlockCholesky | None = None
        # blocks small enough that a factorisation costs about what a solve does: Newton
        # steps (quadratic convergence) beat chord steps with the previous factor
        self.cheap_factor = bool(problem.blocks.block_sizes.max() <= NEWTON_MAX_BLOCK
                                 ) and not problem.has_crossed_blocks

    def penalised(self, beta: FloatArray, s: FloatArray, a: FloatArray) -> float:
        problem = self.problem
        eta = problem.eta(beta, a * s)
        return float(problem.data_loglik(eta) - 0.5 * np.dot(s, s))

    def mean_variance(
        self, beta: FloatArray, s: FloatArray, a: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Weighted residuals ``w (y - c'(eta))`` and variances ``w c''(eta)`` at ``(beta, s)``."""
        problem = self.problem
        return problem.residual_variance(problem.eta(beta, a * s))

    def curvature(
        self, beta: FloatArray, s: FloatArray, a: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Gradient, the coupling ``(X^T V Z A)^T``, ``X^T V X`` and the variances ``V``."""
        problem = self.problem
        resid, variance = self.mean_variance(beta, s, a)
        grad_beta = problem.x.T @ resid
        grad_s = a * problem.zt_times(resid) - s
        vx = variance[:, None] * problem.x
        coupling = problem.zt_times(vx) * a[:, None]  # (q, p) = (X^T V Z A)^T
        xtvx = problem.x.T @ vx
        return np.concatenate([grad_beta, grad_s]), coupling, xtvx, variance

    def factor(self, variance: FloatArray, a: FloatArray) -> BlockCholesky:
        """The Cholesky factor of ``A Z^T V Z A + I`` (block-diagonal)."""
        problem = self.problem
        scaled = problem.precision(variance, np.ones(problem.n_effects), scale=a)
        return BlockCholesky.from_blocks(problem.groups, scaled, problem.blocks.n_blocks)

    def step(
        self, beta: FloatArray, s: FloatArray, a: FloatArray, chol: BlockCholesky | None
    ) -> tuple[FloatArray, FloatArray, float, BlockCholesky]:
        """A Newton step (``chol`` None: factor here) or chord step (``chol`` given).

        Returns the steps in ``beta`` and ``s``, the decrement and the factor used.
        """
        p = self.problem.n_fixed
        grad, coupling, xtvx, variance = self.curvature(beta, s, a)
        if chol is None:
            chol = self.factor(variance, a)
        g_beta, g_s = grad[:p], grad[p:]
        c_inv_coupling = solve_columns(chol, coupling)
        schur = xtvx - coupling.T @ c_inv_coupling
        c_inv_gs = chol.solve(g_s)
        d_beta = np.asarray(np.linalg.solve(schur, g_beta - coupling.T @ c_inv_gs),
                            dtype=np.float64)
        d_s = c_inv_gs - c_inv_coupling @ d_beta
        return d_beta, d_s, float(np.dot(d_beta, g_beta) + np.dot(d_s, g_s)), chol

    def solve(self, a: FloatArray, tol: float = 1e-10, max_iter: int = 100) -> BlockCholesky:
        """Maximise the penalised likelihood at scales ``a`` (per effect), warm-started.

        The factor of the previous call (at other scales) first drives chord steps,
        while they converge fast, to a decrement of ``tol**2``; Newton's method takes
        over otherwise (and at once where factorisations are cheap), with a last full
        step once the decrement is below ``tol``. Returns the factor at the solution.
        """
        beta, s = self.beta, self.s
        value = self.penalised(beta, s, a)
        stale, previous = self.last_factor, np.inf
        converged = False
        for _ in range(max_iter if stale is not None and not self.cheap_factor else 0):
            d_beta, d_s, decrement, _ = self.step(beta, s, a, stale)
            if not decrement <= 0.1 * previous:
                break  # slow (or no) convergence: Newton's method takes over
            trial_value = self.penalised(beta + d_beta, s + d_s, a)
            if not trial_value >= value:
                break
            beta, s, value, previous = beta + d_beta, s + d_s, trial_value, decrement
            if decrement <= tol * tol:
                converged = True
                break
        chol: BlockCholesky | None = None  # factor at the current (beta, s)
        for _ in range(0 if converged else max_iter):
            d_beta, d_s, decrement, chol = self.step(beta, s, a, None)
            if decrement < tol:
                # inside the region of quadratic convergence: one more full step makes
                # the solution exact to rounding (the factor is then taken there)
                beta, s, chol = beta + d_beta, s + d_s, None
                break
            size = 1.0
            while size > 1e-12:
                trial_beta, trial_s = beta + size * d_beta, s + size * d_s
                trial_value = self.penalised(trial_beta, trial_s, a)
                if trial_value >= value:
                    break
                size *= 0.5
            else:
                break
            beta, s, value = trial_beta, trial_s, trial_value
            chol = None
        self.beta, self.s = beta, s
        if chol is None:  # moved after the last factorisation (or never factored)
            chol = self.factor(self.mean_variance(beta, s, a)[1], a)
        self.last_factor = chol
        return chol

    def full(self, sigma: FloatArray) -> FloatArray:
        """``psi`` with variances ``sigma`` (in the layout's variance order), covariances 0."""
        params = self.problem.params
        out = np.zeros(params.n_random)
        out[params.is_variance] = sigma
        return out

    def criterion(self, sigma: FloatArray) -> float:
        """``Q(sigma)``, a pure function of ``sigma`` (inner problem re-solved)."""
        a = self.problem.effect_variances(self.full(sigma))  # signed sd per effect
        chol = self.solve(a)
        value = self.penalised(self.beta, self.s, a)
        return float(-value + float(chol.half_log_det.sum()))


def pql_centre(problem: Problem) -> PQLResult:
    """Compute the PQL centre ``(beta*, nu*, u*)`` of the importance distribution.

    Parameters
    ----------
    problem : Problem

    Returns
    -------
    PQLResult
    """
    inner = _InnerSolver(problem)
    n_comp = int(problem.params.is_variance.sum())
    n_eval = 0

    def q_of(sigma: FloatArray) -> float:
        nonlocal n_eval
        n_eval += 1
        value = inner.criterion(np.asarray(sigma, dtype=np.float64))
        return value if np.isfinite(value) else np.inf

    if n_comp == 1:
        res = minimize_scalar(
            lambda s: q_of(np.array([s])), bracket=(0.5, 1.5), options={"xtol": 1e-8}
        )
        sigma_hat = np.array([float(res.x)])
        converged = bool(res.success)
    else:
        # R's optim stops Nelder-Mead at a relative spread of 1e-8 in Q; here also
        # the simplex must be within 1e-4 in sigma (R has no such test)
        start = np.ones(n_comp)
        scale = max(1.0, abs(q_of(start)))
        res = minimize(
            q_of,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-8 * scale, "maxfev": 400 * n_comp},
        )
        sigma_hat = np.asarray(res.x, dtype=np.float64)
        converged = bool(res.success)
    if not converged:
        warnings.warn(
            "the PQL centre's optimiser did not converge; the importance distribution may "
            "be poor (the estimates still maximise the Monte Carlo likelihood)",
            ConvergenceWarning,
            stacklevel=3,
        )
    sigma_abs = np.abs(sigma_hat)
    # re-solve at |sigma| (flip s where sigma was negative: Q is symmetric)
    inner.s = inner.s * np.sign(
        problem.effect_variances(inner.full(np.where(sigma_hat < 0, -1.0, 1.0))))
    a_abs = problem.effect_variances(inner.full(sigma_abs))
    inner.solve(a_abs)
    criterion = q_of(sigma_abs)
    sigma_clamped = np.maximum(sigma_abs, SIGMA_FLOOR)
    u_star = problem.effect_variances(inner.full(sigma_clamped)) * inner.s
    return PQLResult(
        beta=inner.beta.copy(),
        nu=inner.full(sigma_abs**2),
        variances=inner.full(sigma_clamped**2),
        u=u_star,
        criterion=criterion,
        converged=converged,
        n_evaluations=n_eval,
    )
