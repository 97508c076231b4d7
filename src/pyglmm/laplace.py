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
        # the parameters, as L-BFGS-B's finite differences need
        start, factor = warm.get("last", (None, None))
        value, mode, chol = laplace_loglik(
            problem, layout.beta(x), layout.from_unconstrained(layout.psi(x)), start=start,
            factor=factor
        )
        if not np.isfinite(value):
            return np.inf
        warm["last"] = (mode, chol)
        return -value

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
    res = minimize(negative, start, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-7})
    beta, nu = layout.beta(res.x), layout.from_unconstrained(layout.psi(res.x))
    last_mode, last_factor = warm.get("last", (None, None))
    value, mode, _ = laplace_loglik(problem, beta, nu, start=last_mode, factor=last_factor)
    return LaplaceFit(beta=beta, nu=nu, loglik=value, mode=mode, converged=bool(res.success))
