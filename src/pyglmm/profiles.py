"""Profile likelihood of one parameter or correlation, and profile confidence intervals.

On the fit's own importance sample (``fit.sample``) the MCLA is a smooth function of
``theta``. The profile of a quantity ``t(theta)`` at a value ``v`` maximises it over
``{theta : t(theta) = v}`` (the same trust region as the fit, warm-started from the
neighbouring point), and ``D(v) = 2 (l(theta_hat) - l_p(v))`` is the likelihood-ratio
statistic. ``t`` is one of the parameters ``theta_j`` (a fixed effect, a variance or a
covariance; the others are maximised over), or the correlation
``rho = c / sqrt(v_1 v_2)`` of two columns of an unstructured term: holding ``rho``
fixed, the covariance is ``c = rho sqrt(v_1 v_2)`` and the maximisation runs over every
other parameter, with the chain rule giving the reduced gradient and Hessian
(:class:`Target`). Correlations are named as :meth:`GLMMResults.varcorr` names them,
``"cor <var1>,<var2>|<grp>"`` (e.g. ``"cor (Intercept),x|g"``, beside the covariance
``"cov (Intercept),x|g"``).

The profile interval of level ``1 - alpha`` is where ``D(v)`` is at most the
``1 - alpha`` quantile of chi-square(1). Its ends solve ``sqrt(D(v)) = sqrt(cut)`` by a
safeguarded Newton iteration on the signed root, which is nearly linear in ``v``;
``D'(v) = -2 dl/dv`` at the constrained maximum (the envelope theorem), so each step
needs one profile point. A variance's lower end is 0 when ``D`` stays below the
cut-off as the variance goes to 0, or when the estimate itself is on the boundary; a
correlation's end is -1 or 1 when ``D`` stays below it up to there. Far from the
estimate the sample carries little information (the importance weights degenerate),
so the profile is reliable near the interval, not in the tails of a wide grid.

The interval ends are found in :mod:`pyglmm.profile_ends`, by default on fresh samples
re-centred at each end; the rest of this note is about the fit's own sample.

Monte Carlo error of an end point ``v*``: both likelihood values come from the same
sample, so per block the variance of ``log mean w(theta_hat) - log mean w(theta*)`` is
estimated by ``Var(a_k - b_k) / m`` with ``a_k``, ``b_k`` the draws' weights at the two
points divided by their means (delta method); summed over blocks, its square root is
the MCSE of ``D(v*)`` (times 2), and the end point's MCSE is that over ``|D'(v*)|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .criteria import value_variance
from .errors import ArgumentError
from .intervals import parameter_positions
from .optimize import trust_maximize
from .ranef import require_sample

FloatArray = NDArray[np.float64]

#: How close to -1 or 1 an interval's search for a correlation's end goes before it
#: takes the bound itself as the end.
CORRELATION_MARGIN = 1e-6

#: Convergence of an end point: ``|sqrt(D) - sqrt(cut)|`` below this (``|D - cut|``
#: below about 4e-7 at the 95% level).
ROOT_TOL = 1e-7


@dataclass(frozen=True)
class ProfilePoint:
    """One point of a profile: the value, ``D(v)``, the maximising ``theta``, ``D'(v)``,
    and the MCLA's evaluation at ``theta`` (None where the maximisation failed)."""

    value: float
    deviance: float
    theta: FloatArray
    slope: float = math.nan
    evaluation: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Target:
    """What a profile holds fixed: parameter ``theta_j``, or a correlation of a term.

    Attributes
    ----------
    name : str
        The parameter's name, or the correlation's (``"cor x,z|g"``).
    j : int
        The position in ``theta`` that the constraint removes: the parameter, or the
        correlation's covariance.
    pair : tuple of int, optional
        For a correlation: the positions in ``theta`` of the two variances.
    kind : str
        ``"fixed"``, ``"variance"``, ``"covariance"`` or ``"correlation"``.
    """

    name: str
    j: int
    pair: tuple[int, int] | None = None
    kind: str = "fixed"

    def value_of(self, theta: FloatArray) -> float:
        """``t(theta)``: the parameter, or ``c / sqrt(v_1 v_2)``."""
        if self.pair is None:
            return float(theta[self.j])
        a, b = self.pair
        scale = float(theta[a] * theta[b])
        return float(theta[self.j] / math.sqrt(scale)) if scale > 0 else math.nan

    def bounds(self) -> tuple[float, float]:
        """The open range of ``t``: a variance is positive, a correlation in (-1, 1)."""
        if self.kind == "variance":
            return 0.0, math.inf
        if self.kind == "correlation":
            return -1.0, 1.0
        return -math.inf, math.inf

    def full(self, x: FloatArray, v: float, free: NDArray[np.intp], n: int) -> FloatArray:
        """``theta`` with ``theta[free] = x`` and ``t(theta) = v`` (NaN if impossible)."""
        theta = np.empty(n)
        theta[free] = x
        if self.pair is None:
            theta[self.j] = v
        else:
            a, b = self.pair
            scale = theta[a] * theta[b]
            theta[self.j] = v * math.sqrt(scale) if scale > 0 else math.nan
        return theta

    def reduce(
        self, gradient: FloatArray, hessian: FloatArray, theta: FloatArray,
        free: NDArray[np.intp],
    ) -> tuple[FloatArray, FloatArray]:
        """Gradient and Hessian in ``x = theta[free]`` of ``l(full(x, v))``.

        For a correlation, ``c(x) = rho sqrt(v_1 v_2)`` has ``dc/dv_1 = c / (2 v_1)``,
        ``d2c/dv_1^2 = -c / (4 v_1^2)`` and ``d2c/dv_1 dv_2 = c / (4 v_1 v_2)``; with
        ``d = dc/dx``, the gradient is ``g_x + g_c d`` and the Hessian
        ``H_xx + H_xc d^T + d H_cx + H_cc d d^T + g_c d2c/dx2``.
        """
        g = gradient[free]
        h = hessian[np.ix_(free, free)]
        if self.pair is None:
            return g, h
        a, b = self.pair
        c = float(theta[self.j])
        d_full = np.zeros(theta.size)
        d_full[a] += c / (2.0 * theta[a])
        d_full[b] += c / (2.0 * theta[b])
        second = np.zeros((theta.size, theta.size))
        second[a, a] += -c / (4.0 * theta[a] ** 2)
        second[b, b] += -c / (4.0 * theta[b] ** 2)
        second[a, b] += c / (4.0 * theta[a] * theta[b])
        second[b, a] += c / (4.0 * theta[a] * theta[b])
        d = d_full[free]
        h_xc = hessian[free, self.j]
        g_c = float(gradient[self.j])
        g_x = g + g_c * d
        h_x = (h + np.outer(h_xc, d) + np.outer(d, h_xc)
               + float(hessian[self.j, self.j]) * np.outer(d, d)
               + g_c * second[np.ix_(free, free)])
        return g_x, 0.5 * (h_x + h_x.T)

    def derivative(self, gradient: FloatArray, theta: FloatArray) -> float:
        """``dl/dv`` along the constraint at ``theta``: ``g_j``, or ``g_c sqrt(v_1 v_2)``."""
        if self.pair is None:
            return float(gradient[self.j])
        a, b = self.pair
        return float(gradient[self.j] * math.sqrt(theta[a] * theta[b]))


#: A profile end where the smallest block ESS of the fit's sample is below this fraction
#: of m gets a warning: the fit's own optimiser treats such points as uninformative
#: (``pyglmm.fitting.AUTO_ESS_GATE``).
PROFILE_ESS_FRACTION = 0.02


def correlation_targets(fit: Any) -> list[Target]:
    """One :class:`Target` per correlation of the fit's unstructured terms.

    Names are ``"cor <var1>,<var2>|<grp>"`` from the columns and grouping factor as
    :meth:`GLMMResults.varcorr` gives them (``grp``, ``var1``, ``var2``).
    """
    p = len(fit.beta)
    out = []
    for info in fit.terms:
        structure = info.covariance_structure()
        if structure.is_diagonal:
            continue
        basis = structure.basis()
        variance = structure.variance_index()
        params = np.asarray(info.params, dtype=np.intp)
        for i in range(len(info.columns)):
            for k in range(i):
                owners = np.flatnonzero(basis[:, i, k] != 0.0)
                a, b = int(params[variance[k]]), int(params[variance[i]])
                if owners.size != 1 or a == b:
                    continue
                out.append(Target(f"cor {info.columns[k]},{info.columns[i]}|{info.name}",
                                  p + int(params[owners[0]]), (p + a, p + b), "correlation"))
    return out


def parameter_target(fit: Any, j: int) -> Target:
    """The :class:`Target` of parameter ``j`` (0-based position in ``param_names``)."""
    p = len(fit.beta)
    if j < p:
        kind = "fixed"
    else:
        kind = "variance" if bool(fit.is_variance[j - p]) else "covariance"
    return Target(fit.param_names[j], j, None, kind)


def targets(fit: Any, parm: Any = None) -> list[Target]:
    """The targets ``parm`` names: parameters by name or 0-based position, correlations
    by name; None: every parameter, then every correlation."""
    correlations = {t.name: t for t in correlation_targets(fit)}
    if parm is None:
        return ([parameter_target(fit, j) for j in range(len(fit.param_names))]
                + list(correlations.values()))
    items = [parm] if isinstance(parm, str | int | np.integer) else list(parm)
    out = []
    for item in items:
        if isinstance(item, str) and item in correlations and item not in fit.param_names:
            out.append(correlations[item])
            continue
        try:
            (j,) = parameter_positions(fit.param_names, item)
        except ArgumentError as exc:
            if isinstance(item, str) and correlations:
                raise ArgumentError(
                    f"{exc} or the correlations {list(correlations)}"
                ) from None
            raise
        out.append(parameter_target(fit, j))
    return out


class _Profiler:
    """Maximise the fit's MCLA with one target held at a value (warm-started)."""

    def __init__(
        self, fit: Any, target: Target | int, objective: Any = None,
        value_hat: tuple[float, float] | None = None, start: FloatArray | None = None,
    ) -> None:
        self.fit = fit
        self.objective = require_sample(fit) if objective is None else objective
        self.target = target if isinstance(target, Target) else parameter_target(fit, target)
        self.theta_hat = np.concatenate([fit.beta, fit.nu]).astype(np.float64)
        # D(v) = 2 (l(theta_hat) - l_p(v)): l(theta_hat) on the fit's own sample, l_p on
        # ``objective`` (another sample, re-centred at a profile end, may be given, with
        # the fit's (value, Monte Carlo variance) at theta_hat as ``value_hat``)
        if value_hat is None:
            at_hat = self.objective.evaluate(self.theta_hat)
            value_hat = (float(at_hat.value), value_variance(
                at_hat.block_value_variance, at_hat.block_ess, at_hat.n_draws))
        self.value_hat, self.hat_variance = float(value_hat[0]), float(value_hat[1])
        self.free = np.array([k for k in range(self.theta_hat.size) if k != self.target.j],
                             dtype=np.intp)
        self.last = (self.theta_hat if start is None else np.asarray(start)).copy()
        self._hat_weights: FloatArray | None = None

    def point(self, v: float) -> ProfilePoint:
        """The profile at ``v``: ``D(v)``, the maximising ``theta`` and ``D'(v)``."""
        target, free, n = self.target, self.free, self.theta_hat.size
        seen: dict[bytes, tuple[FloatArray, Any]] = {}

        def reduced(x: FloatArray) -> tuple[float, FloatArray, FloatArray]:
            theta = target.full(x, v, free, n)
            ev = self.objective.evaluate(theta)
            seen[x.tobytes()] = (theta, ev)
            if not np.isfinite(ev.value):
                return -math.inf, np.zeros(free.size), np.zeros((free.size, free.size))
            g, h = target.reduce(ev.gradient, ev.hessian, theta, free)
            return float(ev.value), g, h

        start = self.last[free]
        if not np.isfinite(reduced(start)[0]):  # e.g. a covariance no longer definite
            start = self.theta_hat[free]
        try:
            result = trust_maximize(reduced, start, rinit=1.0, rmax=100.0, iterlim=200)
        except ValueError:
            return ProfilePoint(v, math.inf, target.full(start, v, free, n))
        key = np.asarray(result.argument, dtype=np.float64).tobytes()
        if key not in seen:
            reduced(np.asarray(result.argument, dtype=np.float64))
        theta, ev = seen[key]
        self.last = theta
        slope = -2.0 * target.derivative(ev.gradient, theta)
        return ProfilePoint(v, 2.0 * (self.value_hat - float(result.value)), theta, slope,
                            ev)

    def mcse_of_deviance(self, theta: FloatArray) -> float:
        """MCSE of ``D`` between ``theta_hat`` and ``theta`` (see the module doc)."""
        if self._hat_weights is None:
            self._hat_weights = _normalised_weights(self.objective, self.theta_hat)
        a = self._hat_weights
        b = _normalised_weights(self.objective, theta)
        variance = float(np.sum(np.var(a - b, axis=0) / a.shape[0]))
        return 2.0 * float(np.sqrt(variance))


def _normalised_weights(objective: Any, theta: FloatArray) -> FloatArray:
    """Every draw's importance weight at ``theta`` over its block's mean: (m, B)."""
    lw = np.concatenate([w for _, w in objective.weighted_draws(theta)])
    out = np.exp(lw - lw.max(axis=0))
    out /= out.mean(axis=0)
    return np.asarray(out, dtype=np.float64)


def _scale(fit: Any, target: Target) -> tuple[float, float]:
    """The target's estimate and a standard error to size steps by (a guess if none)."""
    theta_hat = np.concatenate([fit.beta, fit.nu]).astype(np.float64)
    estimate = target.value_of(theta_hat)
    if target.pair is None:
        se = float(fit.se().iloc[target.j])
    else:
        se = _correlation_se(fit, target)
    if not np.isfinite(se) or se <= 0:
        se = max(abs(estimate), 1.0) * 0.1
    return estimate, se


def _correlation_se(fit: Any, target: Target) -> float:
    """Delta-method SE of a correlation, as in :mod:`pyglmm.varcorr`."""
    theta = np.concatenate([fit.beta, fit.nu]).astype(np.float64)
    assert target.pair is not None
    a, b = target.pair
    j = target.j
    scale = math.sqrt(theta[a] * theta[b])
    rho = theta[j] / scale
    gradient = np.zeros(theta.size)
    gradient[j] = 1.0 / scale
    gradient[a] = -rho / (2.0 * theta[a])
    gradient[b] = -rho / (2.0 * theta[b])
    value = float(gradient @ fit.vcov().to_numpy() @ gradient)
    return math.sqrt(value) if value > 0 else math.nan


def profile(fit: Any, param: str | int, n: int = 21, width: float = 4.0) -> pd.DataFrame:
    """The profile of one parameter or correlation on a grid of ``n`` values.

    The grid spans the estimate +- ``width`` SE (delta-method SE for a correlation),
    stopping short of the bounds (above 0 for a variance, inside (-1, 1) for a
    correlation). ``param`` is a parameter's name or 0-based position, or a
    correlation's name (``"cor (Intercept),x|g"``; see :func:`correlation_targets`).

    Returns a DataFrame with columns ``value``, ``deviance`` (``D(v)``, 0 at the
    estimate) and ``signed_root`` (``sign(v - v_hat) sqrt(D)``, close to a straight
    line when the likelihood is nearly quadratic).
    """
    (target,) = targets(fit, param)
    estimate, se = _scale(fit, target)
    if not np.isfinite(estimate):
        raise ArgumentError(f"{target.name} is not defined at the estimate (a variance "
                            "of its term is 0)")
    low, high = target.bounds()
    lo = max(estimate - width * se, low + 1e-3 * (estimate - low)) if np.isfinite(low) \
        else estimate - width * se
    hi = min(estimate + width * se, high - 1e-3 * (high - estimate)) if np.isfinite(high) \
        else estimate + width * se
    grid = np.linspace(lo, hi, n)
    rows = []
    for side in (grid[grid < estimate][::-1], grid[grid >= estimate]):
        profiler = _Profiler(fit, target)  # warm-started outwards from the estimate
        for v in side:
            pt = profiler.point(float(v))
            rows.append((pt.value, pt.deviance))
    table = pd.DataFrame(sorted(rows), columns=["value", "deviance"])
    dev = np.maximum(table["deviance"].to_numpy(), 0.0)
    table["signed_root"] = np.sign(table["value"].to_numpy() - estimate) * np.sqrt(dev)
    return table
