"""The Laplace approximation of the log-likelihood and its maximiser.

At ``theta = (beta, nu)`` with conditional mode ``u_hat`` and negative Hessian
``H = Z^T diag(c''(eta)) Z + D^{-1} = L L^T`` (block-diagonal over the blocks),

.. math:: l_{LA}(\\theta) = \\sum_i [y_i\\hat\\eta_i - c(\\hat\\eta_i)]
          - \\tfrac12 \\hat u^\\top D^{-1}\\hat u - \\tfrac12 \\sum_j \\log \\nu_{t(j)}
          - \\sum_j \\log L_{jj} + \\text{const},

which is what ``lme4::glmer`` maximises (docs/method.md). Its maximiser is biased
for binary data, but it is an excellent centre for the importance distribution and
starting point for the Monte Carlo maximisation: the proposal is then built close to
the MLE from the first round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from .blocklinalg import BlockCholesky
from .importance import conditional_mode
from .problem import Problem

FloatArray = NDArray[np.float64]

#: Smallest variance component considered by the Laplace fit (log scale bound).
LOG_NU_MIN = float(np.log(1e-8))


@dataclass(frozen=True)
class LaplaceFit:
    """Maximiser of the Laplace approximation.

    Attributes
    ----------
    beta, nu : ndarray
        The Laplace estimates.
    loglik : float
        The maximised Laplace log-likelihood (family constant included).
    mode : ndarray
        Block-ordered conditional mode at the estimate.
    converged : bool
    """

    beta: FloatArray
    nu: FloatArray
    loglik: float
    mode: FloatArray
    converged: bool


def laplace_loglik(
    problem: Problem,
    beta: FloatArray,
    nu: FloatArray,
    start: FloatArray | None = None,
    tol: float = 1e-10,
    factor: BlockCholesky | None = None,
) -> tuple[float, FloatArray, BlockCholesky]:
    """Laplace log-likelihood at ``(beta, nu)``, the conditional mode and its curvature.

    ``start`` and ``factor`` warm-start the mode (:func:`conditional_mode`).
    """
    mode, chol = conditional_mode(problem, beta, nu, start=start, tol=tol, factor=factor)
    prior = problem.prior_at(nu)
    if problem.prior.off_a.size:
        quadratic, log_det = prior.quadratic(problem.prior, mode), prior.log_det
    else:  # D diagonal: effect by effect
        quadratic = float(np.sum(mode**2 / prior.variances))
        log_det = float(np.sum(np.log(prior.variances)))
    value = (
        problem.data_loglik(problem.eta(beta, mode))
        - 0.5 * quadratic
        - 0.5 * log_det
        - float(chol.half_log_det.sum())
        + problem.loglik_constant
    )
    return value, mode, chol


def laplace_gradient(
    problem: Problem, beta: FloatArray, nu: FloatArray, mode: FloatArray,
    chol: BlockCholesky,
) -> FloatArray:
    """Gradient of :func:`laplace_loglik` in ``(beta, psi)``, from its mode and curvature.

    With ``h(u)`` the log joint density and ``H = Z^T W Z + D^{-1}`` (``W`` the
    variances ``c''(eta)``) at the mode ``u_hat``, the value is
    ``h(u_hat) - 1/2 log det H``. The mode is stationary, so ``h`` contributes its
    partial derivatives only; ``log det H`` moves with ``D`` and, through the
    variance's slope ``c3 = dc''/d eta``, with the linear predictor, which moves with
    ``beta`` and with the mode (``d u_hat = -H^{-1} (Z^T W X d beta + dD^{-1} u_hat)``).
    With ``t_i = c3(eta_i) z_i^T H^{-1} z_i`` and ``v = H^{-1} Z^T t``:

    * ``d/d beta = X^T (y - c'(eta) - t / 2 + W Z v / 2)``;
    * ``d/d psi_j = d log f_psi(u_hat) / d psi_j - 1/2 tr(H^{-1} dD^{-1}/d psi_j)
      + 1/2 u_hat^T (dD^{-1}/d psi_j) v``,

    the last two as the prior's score at the statistics of ``H^{-1}`` and of the
    symmetrised ``u_hat v^T`` (:meth:`pyglmm.prior.PriorLayout.pair_statistics`).
    The entries of ``H^{-1}`` it needs are those at the pairs of effects of one
    observation and of the prior (:meth:`pyglmm.blocklinalg.BlockCholesky.inverse_entries`;
    a large crossed block gives them from the inverse of its Schur complement).
    """
    columns, values = problem.z_columns, problem.z_values
    layout = problem.prior
    n_obs, n_cols = columns.shape
    a, b = layout.pair_a, layout.pair_b
    # every (column, column) pair of every observation, then the prior's pairs
    rows = np.concatenate([np.repeat(columns, n_cols, axis=1).T.ravel(), a])
    cols = np.concatenate([np.tile(columns, n_cols).T.ravel(), b])
    entries = chol.inverse_entries(rows, cols)
    products = entries[:n_obs * n_cols * n_cols].reshape(n_cols * n_cols, n_obs)
    if values is not None:
        products = products * np.repeat(values, n_cols, axis=1).T * np.tile(values, n_cols).T
    leverage = products.sum(axis=0)  # z_i^T H^{-1} z_i
    pair_cov = entries[n_obs * n_cols * n_cols:]
    eta = problem.eta(beta, mode)
    resid, variance = problem.residual_variance(eta)
    slope = problem.family.variance_derivative(eta, problem.trials)
    if problem.weights is not None:
        slope = slope * problem.weights
    t = leverage * slope
    v = chol.solve(problem.zt_times(t))
    grad_beta = problem.x.T @ (resid - 0.5 * t + 0.5 * variance * problem.z_times(v))
    prior = problem.prior_at(nu)
    pair_products = mode[a] * mode[b] + pair_cov - 0.5 * (mode[a] * v[b] + mode[b] * v[a])
    stats = layout.pair_statistics(pair_products[None])[0]  # (B, S)
    grad_psi = (stats @ prior.score_stat).sum(axis=0) + prior.score_const.sum(axis=0)
    return np.asarray(np.concatenate([grad_beta, grad_psi]), dtype=np.float64)


def laplace_fit(problem: Problem, beta0: FloatArray, nu0: FloatArray) -> LaplaceFit:
    """Maximise the Laplace approximation over ``beta`` and unconstrained ``psi``.

    The random-effect parameters are optimised in the layout's unconstrained
    coordinates (:meth:`pyglmm.layout.ParameterLayout.to_unconstrained`: log variances,
    log-Cholesky factors of unstructured terms), with bounds on the logs.

    Parameters
    ----------
    problem : Problem
    beta0, nu0 : ndarray
        Starting point (e.g. the PQL centre).

    Returns
    -------
    LaplaceFit
    """
    p = problem.n_fixed
    params = problem.params
    warm: dict[str, tuple[FloatArray, BlockCholesky]] = {}

    layout = params

    def negative(x: FloatArray) -> float:
        # warm-started: the mode is solved to rounding error (a final full Newton step,
        # or chord steps to a decrement of 1e-20), so the value is a pure function of
        # the parameters, as L-BFGS-B's line search and the gradient need
        start, factor = warm.get("last", (None, None))
        value, mode, chol = laplace_loglik(
            problem, layout.beta(x), layout.from_unconstrained(layout.psi(x)), start=start,
            factor=factor
        )
        if not np.isfinite(value):
            return np.inf
        warm["last"] = (mode, chol)
        return -value

    def negative_and_gradient(x: FloatArray) -> tuple[float, FloatArray]:
        value = negative(x)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(x)
        mode, chol = warm["last"]
        z = layout.psi(x)
        gradient = laplace_gradient(problem, layout.beta(x), layout.from_unconstrained(z),
                                    mode, chol)
        gradient[p:] = layout.unconstrained_jacobian(z).T @ gradient[p:]
        return value, -gradient

    start = np.concatenate([beta0, layout.to_unconstrained(layout.floor_variances(nu0, 1e-4))])
    logs = layout.unconstrained_is_log_variance()
    scale = np.ones(layout.n_random)  # a Cholesky diagonal's log is half a variance's
    for structure, index in zip(layout.structures, layout.term_index, strict=True):
        if not structure.is_diagonal:
            scale[index] = 0.5
    bounds = [(None, None)] * p + [
        (LOG_NU_MIN * sc, np.log(1e6) * sc) if is_log else (None, None)
        for is_log, sc in zip(logs, scale, strict=True)
    ]
    options = {"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7}
    res = minimize(negative_and_gradient, start, method="L-BFGS-B", jac=True, bounds=bounds,
                   options=options)
    beta, nu = layout.beta(res.x), layout.from_unconstrained(layout.psi(res.x))
    last_mode, last_factor = warm.get("last", (None, None))
    value, mode, _ = laplace_loglik(problem, beta, nu, start=last_mode, factor=last_factor)
    return LaplaceFit(beta=beta, nu=nu, loglik=value, mode=mode, converged=bool(res.success))
