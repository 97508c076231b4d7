"""The PQL centre of the importance distribution, with the fixes of ALGORITHM.md 2.

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

Departures from R's glmm (each a [fix] of ALGORITHM.md 2.4-2.5): ``Q`` uses the new
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


@dataclass(frozen=True)
class PQLResult:
    """The PQL centre.

    Attributes
    ----------
    beta : ndarray, shape (p,)
        ``beta*``.
    nu : ndarray, shape (T,)
        ``nu* = sigma_hat^2`` before clamping (R's ``nu.pql``).
    variances : ndarray, shape (T,)
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

    def penalised(self, beta: FloatArray, s: FloatArray, a: FloatArray) -> float:
        problem = self.problem
        eta = problem.x @ beta + problem.z_times(a * s)
        terms = problem.family.loglik_terms(eta, problem.y, problem.trials)
        return float(terms.sum() - 0.5 * np.dot(s, s))

    def curvature(
        self, beta: FloatArray, s: FloatArray, a: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, BlockCholesky, FloatArray]:
        """Gradient parts, the coupling ``X^T V Z A`` and the factor of ``A Z'VZ A + I``."""
        problem = self.problem
        eta = problem.x @ beta + problem.z_times(a * s)
        mean, variance = problem.family.mean_variance(eta, problem.trials)
        resid = problem.y - mean
        grad_beta = problem.x.T @ resid
        grad_s = a * problem.zt_times(resid) - s
        blocks = problem.precision(variance, np.zeros(problem.n_effects))
        scaled = []
        for group, block in zip(problem.groups, blocks, strict=True):
            ag = a[group.index]
            d = ag.shape[1]
            scaled.append(ag[:, :, None] * block * ag[:, None, :] + np.eye(d))
        chol = BlockCholesky.from_blocks(problem.groups, tuple(scaled), problem.blocks.n_blocks)
        vx = variance[:, None] * problem.x
        coupling = np.stack([problem.zt_times(vx[:, j]) for j in range(vx.shape[1])], 1)
        coupling *= a[:, None]  # (q, p) = (X^T V Z A)^T
        xtvx = problem.x.T @ vx
        return np.concatenate([grad_beta, grad_s]), coupling, xtvx, chol, variance

    def solve(self, a: FloatArray, tol: float = 1e-10, max_iter: int = 100) -> BlockCholesky:
        """Maximise the penalised likelihood at scales ``a`` (per effect), warm-started."""
        p = self.problem.n_fixed
        beta, s = self.beta, self.s
        value = self.penalised(beta, s, a)
        for _ in range(max_iter):
            grad, coupling, xtvx, chol, _ = self.curvature(beta, s, a)
            g_beta, g_s = grad[:p], grad[p:]
            c_inv_coupling = solve_columns(chol, coupling)
            schur = xtvx - coupling.T @ c_inv_coupling
            c_inv_gs = chol.solve(g_s)
            d_beta = np.linalg.solve(schur, g_beta - coupling.T @ c_inv_gs)
            d_s = c_inv_gs - c_inv_coupling @ d_beta
            decrement = float(np.dot(d_beta, g_beta) + np.dot(d_s, g_s))
            if decrement < tol:
                break
            step = 1.0
            while step > 1e-12:
                trial_beta, trial_s = beta + step * d_beta, s + step * d_s
                trial_value = self.penalised(trial_beta, trial_s, a)
                if trial_value >= value:
                    break
                step *= 0.5
            else:
                break
            beta, s, value = trial_beta, trial_s, trial_value
        self.beta, self.s = beta, s
        _, _, _, chol, _ = self.curvature(beta, s, a)
        return chol

    def criterion(self, sigma: FloatArray) -> float:
        """``Q(sigma)``, a pure function of ``sigma`` (inner problem re-solved)."""
        a = self.problem.effect_variances(sigma)  # signed sd per effect
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
    n_comp = problem.n_components
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
        res = minimize(
            q_of,
            np.ones(n_comp),
            method="Nelder-Mead",
            options={"xatol": 1e-5, "fatol": 1e-8, "maxfev": 400 * n_comp},
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
    inner.s = inner.s * np.sign(problem.effect_variances(np.where(sigma_hat < 0, -1.0, 1.0)))
    a_abs = problem.effect_variances(sigma_abs)
    inner.solve(a_abs)
    criterion = q_of(sigma_abs)
    sigma_clamped = np.maximum(sigma_abs, SIGMA_FLOOR)
    u_star = problem.effect_variances(sigma_clamped) * inner.s
    return PQLResult(
        beta=inner.beta.copy(),
        nu=sigma_abs**2,
        variances=sigma_clamped**2,
        u=u_star,
        criterion=criterion,
        converged=converged,
        n_evaluations=n_eval,
    )
