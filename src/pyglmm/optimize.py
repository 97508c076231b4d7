"""Trust-region maximisation following the semantics of Geyer's R package ``trust``.

The objective returns its value, gradient and Hessian; the value may be ``-inf`` (or NaN)
to mark an infeasible point, in which case the derivatives are ignored.  Internally the
problem is solved in minimisation form (value, gradient and Hessian negated); everything
reported back is on the maximisation scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

__all__ = ["TrustResult", "TrustStep", "trust_maximize"]

Objective = Callable[[np.ndarray], tuple[Any, Any, Any]]

_EPS_SQRT = float(np.sqrt(np.finfo(float).eps))
_TIE_TOL = 1e-12  # relative tolerance for eigenvalues tied with the smallest one
_RTOL = 4 * float(np.finfo(float).eps)  # tightest relative tolerance brentq accepts


@dataclass(frozen=True)
class TrustStep:
    """One iteration of the trust-region algorithm (maximisation scale).

    Attributes
    ----------
    iteration : int
        Iteration number, starting at 1.
    argument : numpy.ndarray
        Current point at the start of the iteration.
    trial : numpy.ndarray
        Trial point ``argument + step``.
    value : float
        Objective value at ``argument``.
    trial_value : float
        Objective value at ``trial``; ``-inf`` when the trial point is infeasible.
    radius : float
        Trust-region radius used in this iteration.
    step_type : str
        One of ``"Newton"``, ``"easy-easy"``, ``"hard-easy"``, ``"hard-hard"``.
    predicted_change : float
        Increase of the objective predicted by the quadratic model.
    rho : float
        Ratio of actual to predicted change (``-inf`` for an infeasible trial).
    step_norm : float
        Euclidean norm of the step.
    accepted : bool
        Whether the trial point became the new current point.
    """

    iteration: int
    argument: np.ndarray
    trial: np.ndarray
    value: float
    trial_value: float
    radius: float
    step_type: str
    predicted_change: float
    rho: float
    step_norm: float
    accepted: bool


@dataclass(frozen=True)
class TrustResult:
    """Outcome of :func:`trust_maximize`.

    Attributes
    ----------
    argument : numpy.ndarray
        Final (last accepted) point.
    value, gradient, hessian
        Objective value, gradient and Hessian at ``argument``.
    converged : bool
        Whether the termination test was satisfied before ``iterlim`` was reached.
    iterations : int
        Number of iterations performed.
    trace : tuple of TrustStep
        Per-iteration record, of length ``iterations``.
    at_feasible_edge : bool
        Whether it stopped for ``max_infeasible`` (at the edge of the feasible region).
    """

    argument: np.ndarray
    value: float
    gradient: np.ndarray
    hessian: np.ndarray
    converged: bool
    iterations: int
    trace: tuple[TrustStep, ...]
    at_feasible_edge: bool = False


def _evaluate(
    objective: Objective, x: np.ndarray
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Evaluate ``objective`` at ``x`` in minimisation form.

    Returns ``(inf, None, None)`` when the point is infeasible, i.e. the value is not
    finite or (for a finite value) the derivatives contain non-finite entries.
    """
    value, grad, hess = objective(x.copy())
    f = float(value)
    if not math.isfinite(f):
        return math.inf, None, None
    d = x.size
    g = np.asarray(grad, dtype=float).reshape(-1)
    h = np.asarray(hess, dtype=float)
    if g.shape != (d,) or h.shape != (d, d):
        raise ValueError(
            f"objective returned gradient of shape {g.shape} and hessian of shape {h.shape}; "
            f"expected ({d},) and ({d}, {d})"
        )
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(h))):
        return math.inf, None, None
    return -f, -g, -0.5 * (h + h.T)


def _subproblem(
    lam: np.ndarray, vecs: np.ndarray, gamma: np.ndarray, r: float
) -> tuple[np.ndarray, str]:
    """Solve ``min g'p + p'Bp/2`` subject to ``||p|| <= r`` in the eigenbasis of ``B``."""
    if np.all(lam > 0):
        p_newton = -vecs @ (gamma / lam)
        if np.linalg.norm(p_newton) <= r:
            return p_newton, "Newton"
    lam_min = float(lam.min())
    delta = lam - lam_min
    tied = delta <= _TIE_TOL * float(np.max(np.abs(lam)))
    delta[tied] = 0.0
    free = ~tied
    c1 = float(np.sum((gamma[free] / delta[free]) ** 2))
    c2 = float(np.sum(gamma[tied] ** 2))
    c3 = float(np.sum(gamma**2))
    if c2 > 0 or c1 > r * r:

        def weights(mu: float) -> np.ndarray:
            w = np.zeros_like(gamma)
            w[free] = gamma[free] / (delta[free] + mu)
            if mu > 0:
                w[tied] = gamma[tied] / mu
            return w

        def gap(mu: float) -> float:
            return 1.0 / float(np.linalg.norm(weights(mu))) - 1.0 / r

        lo, hi = math.sqrt(c2) / r, math.sqrt(c3) / r
        if gap(hi) <= 0:
            mu = hi
        elif gap(lo) >= 0:
            mu = lo
        else:
            mu = float(brentq(gap, lo, hi, xtol=1e-15 * hi, rtol=_RTOL))
        kind = "easy-easy" if c2 > 0 else "hard-easy"
        return -vecs @ weights(mu), kind
    w = np.zeros_like(gamma)
    w[free] = gamma[free] / delta[free]
    p = -vecs @ w
    extra = math.sqrt(max(r * r - float(p @ p), 0.0))
    if extra > 0:
        p = p + extra * vecs[:, int(np.flatnonzero(tied)[0])]
    return p, "hard-hard"


def _check_positive(name: str, value: float) -> float:
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return x


def trust_maximize(
    objective: Objective,
    theta0: np.ndarray,
    *,
    rinit: float = 10.0,
    rmax: float = 1000.0,
    iterlim: int = 1000,
    fterm: float = _EPS_SQRT,
    mterm: float = _EPS_SQRT,
    callback: Callable[[TrustStep], None] | None = None,
    max_infeasible: int | None = None,
    stop_before_small_step: bool = False,
) -> TrustResult:
    """Maximise a smooth function by a trust-region Newton method.

    Reproduces the algorithm of the R package ``trust`` (Geyer), in maximisation form.

    Parameters
    ----------
    objective : callable
        ``objective(theta) -> (value, gradient, hessian)``.  The value may be ``-inf``
        (or NaN) at an infeasible point; the derivatives are then not used.
    theta0 : array_like
        Finite one-dimensional starting point, which must be feasible.
    rinit : float, optional
        Initial trust-region radius.
    rmax : float, optional
        Maximal trust-region radius.
    iterlim : int, optional
        Maximal number of iterations.
    fterm : float, optional
        Stop when the absolute change of the objective is below ``fterm``.
    mterm : float, optional
        Stop when the absolute predicted change is below ``mterm``.
    callback : callable, optional
        Called with the :class:`TrustStep` of each iteration after it is done.
    max_infeasible : int, optional
        Stop after this many infeasible trial points in all: the maximum over the
        feasible region is then at its edge, and the iterations approaching that edge
        (each rejection shrinks the radius fourfold) have brought the current point
        next to it. The result counts as converged. None (the default, as R's
        ``trust``) never stops for this.
    stop_before_small_step : bool, optional
        Stop, converged, without evaluating a trial point whose predicted change is
        already below ``mterm``; the result is then the current point (the last one
        accepted). R's ``trust`` (the default, False) evaluates that trial point and
        stops after it: one more evaluation to move by a step whose predicted gain is
        below ``mterm``.

    Returns
    -------
    TrustResult
        The final point with value, gradient and Hessian there, and the iteration trace.

    Raises
    ------
    ValueError
        On invalid arguments or when the objective is not finite at ``theta0``.
    """
    x = np.array(theta0, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("theta0 must be a non-empty one-dimensional array of finite numbers")
    r = _check_positive("rinit", rinit)
    r_max = _check_positive("rmax", rmax)
    if isinstance(iterlim, bool) or not isinstance(iterlim, int | np.integer) or iterlim < 1:
        raise ValueError(f"iterlim must be an integer >= 1, got {iterlim!r}")
    for name, tol in (("fterm", fterm), ("mterm", mterm)):
        if not float(tol) >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {tol!r}")

    f, g, b = _evaluate(objective, x)
    if g is None or b is None:
        raise ValueError(
            "start not feasible: objective is not finite at the starting point "
            "(or its derivatives are not finite there)"
        )
    trace: list[TrustStep] = []
    converged = False
    accepted = True
    lam = vecs = gamma = np.empty(0)
    n_infeasible = 0
    at_edge = False
    for iteration in range(1, int(iterlim) + 1):
        if accepted:
            lam, vecs = np.linalg.eigh(b)
            gamma = vecs.T @ g
        p, kind = _subproblem(lam, vecs, gamma, r)
        pred = float(p @ g + 0.5 * (p @ (b @ p)))
        if stop_before_small_step and abs(pred) < mterm:
            converged = True
            break
        x_try = x + p
        f_try, g_try, b_try = _evaluate(objective, x_try)
        if math.isfinite(f_try):
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = (f_try - f) / pred if pred != 0 else math.nan
            stop = abs(f_try - f) < fterm or abs(pred) < mterm
        else:
            rho = -math.inf
            n_infeasible += 1
            stop = False
        radius = r
        if stop:
            accepted = f_try < f
        elif rho < 0.25 or math.isnan(rho):
            accepted = False
            r /= 4.0
        else:
            accepted = True
            if rho > 0.75 and kind != "Newton":
                r = min(2.0 * r, r_max)
        step = TrustStep(
            iteration=iteration,
            argument=x.copy(),
            trial=x_try.copy(),
            value=-f,
            trial_value=-f_try,
            radius=radius,
            step_type=kind,
            predicted_change=-pred,
            rho=float(rho),
            step_norm=float(np.linalg.norm(p)),
            accepted=accepted,
        )
        trace.append(step)
        if accepted and g_try is not None and b_try is not None:
            x, f, g, b = x_try, f_try, g_try, b_try
        if callback is not None:
            callback(step)
        at_edge = max_infeasible is not None and n_infeasible >= max_infeasible
        if stop or at_edge:
            converged = True
            break
    return TrustResult(
        argument=x.copy(),
        value=-f,
        gradient=-g,
        hessian=-b,
        converged=converged,
        iterations=len(trace),
        trace=tuple(trace),
        at_feasible_edge=at_edge,
    )
