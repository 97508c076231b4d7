"""Profile likelihood of one parameter and profile confidence intervals.

On the fit's own importance sample (``fit.sample``) the MCLA is a smooth function of
``theta``. The profile of parameter ``j`` at a value ``v`` maximises it over the other
parameters with ``theta_j = v`` (the same trust region as the fit, warm-started from
the neighbouring point), and ``D(v) = 2 (l(theta_hat) - l_p(v))`` is the likelihood-
ratio statistic. The profile interval of level ``1 - alpha`` is where ``D(v)`` is at
most the ``1 - alpha`` quantile of chi-square(1); a variance's lower end is 0 when
``D`` stays below that as the variance goes to 0, or when the estimate itself is on
the boundary. Far from the estimate the sample carries little information (the
importance weights degenerate), so the profile is reliable near the interval, not in
the tails of a wide grid.

Monte Carlo error of an end point ``v*``: both likelihood values come from the same
sample, so per block the variance of ``log mean w(theta_hat) - log mean w(theta*)`` is
estimated by ``Var(a_k - b_k) / m`` with ``a_k``, ``b_k`` the draws' weights at the two
points divided by their means (delta method); summed over blocks, its square root is
the MCSE of ``D(v*)`` (times 2), and the end point's MCSE is that over ``|D'(v*)|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize as sciopt
from scipy import stats

from .diagnostics import BOUNDARY_NU
from .intervals import parameter_positions
from .optimize import trust_maximize
from .ranef import require_sample

FloatArray = np.ndarray


@dataclass(frozen=True)
class ProfilePoint:
    """One point of a profile: the value, ``D(v)`` and the maximising ``theta``."""

    value: float
    deviance: float
    theta: FloatArray


class _Profiler:
    """Maximise the fit's MCLA with one parameter held at a value (warm-started)."""

    def __init__(self, fit: Any, j: int) -> None:
        self.fit = fit
        self.objective = require_sample(fit)
        self.j = j
        self.theta_hat = np.concatenate([fit.beta, fit.nu]).astype(np.float64)
        self.value_hat = float(self.objective.evaluate(self.theta_hat).value)
        self.free = np.array([k for k in range(self.theta_hat.size) if k != j])
        self.last = self.theta_hat.copy()

    def point(self, v: float) -> ProfilePoint:
        theta = self.last.copy()
        theta[self.j] = v

        def reduced(x: FloatArray) -> tuple[float, FloatArray, FloatArray]:
            full = theta.copy()
            full[self.free] = x
            ev = self.objective.evaluate(full)
            return ev.value, ev.gradient[self.free], ev.hessian[np.ix_(self.free, self.free)]

        start = theta[self.free]
        if not np.isfinite(reduced(start)[0]):  # e.g. a covariance no longer definite
            start = self.theta_hat[self.free]
        try:
            result = trust_maximize(reduced, start, rinit=1.0, rmax=100.0, iterlim=200)
        except ValueError:
            return ProfilePoint(v, np.inf, theta)
        theta[self.free] = result.argument
        self.last = theta
        return ProfilePoint(v, 2.0 * (self.value_hat - float(result.value)), theta)

    def mcse_of_deviance(self, theta: FloatArray) -> float:
        """MCSE of ``D`` between ``theta_hat`` and ``theta`` (see the module doc)."""
        at_hat = self.objective.weighted_draws(self.theta_hat)
        at_point = self.objective.weighted_draws(theta)
        lw_hat = np.concatenate([lw for _, lw in at_hat])
        lw_pt = np.concatenate([lw for _, lw in at_point])
        a = np.exp(lw_hat - lw_hat.max(axis=0))
        b = np.exp(lw_pt - lw_pt.max(axis=0))
        a /= a.mean(axis=0)
        b /= b.mean(axis=0)
        variance = float(np.sum(np.var(a - b, axis=0) / a.shape[0]))
        return 2.0 * float(np.sqrt(variance))


def _position(fit: Any, param: str | int) -> int:
    return parameter_positions(fit.param_names, param)[0]


def _is_variance(fit: Any, j: int) -> bool:
    p = len(fit.beta)
    return j >= p and bool(fit.is_variance[j - p])


def profile(fit: Any, param: str | int, n: int = 21, width: float = 4.0) -> pd.DataFrame:
    """The profile of one parameter on a grid of ``n`` values, estimate +- ``width`` SE.

    Returns a DataFrame with columns ``value``, ``deviance`` (``D(v)``, 0 at the
    estimate) and ``signed_root`` (``sign(v - v_hat) sqrt(D)``, close to a straight
    line when the likelihood is nearly quadratic). A variance's grid stops above 0.
    """
    j = _position(fit, param)
    estimate = float(np.concatenate([fit.beta, fit.nu])[j])
    se = float(fit.se().iloc[j])
    if not np.isfinite(se) or se <= 0:
        se = max(abs(estimate), 1.0) * 0.1
    lo, hi = estimate - width * se, estimate + width * se
    if _is_variance(fit, j):
        lo = max(lo, 1e-3 * estimate)
    grid = np.linspace(lo, hi, n)
    rows = []
    for side in (grid[grid < estimate][::-1], grid[grid >= estimate]):
        profiler = _Profiler(fit, j)  # warm-started outwards from the estimate
        for v in side:
            pt = profiler.point(float(v))
            rows.append((pt.value, pt.deviance))
    table = pd.DataFrame(sorted(rows), columns=["value", "deviance"])
    dev = np.maximum(table["deviance"].to_numpy(), 0.0)
    table["signed_root"] = np.sign(table["value"].to_numpy() - estimate) * np.sqrt(dev)
    return table


def profile_intervals(
    fit: Any, level: float = 0.95, params: list[int] | None = None
) -> pd.DataFrame:
    """Profile-likelihood intervals with the Monte Carlo SE of each end point.

    Columns: the two quantiles (as :meth:`GLMMResults.confint` names them) and
    ``mcse_lower``, ``mcse_upper``. A variance whose profile stays below the cut-off as
    it goes to 0 gets lower end 0 (MCSE 0).
    """
    cut = float(stats.chi2.ppf(level, 1))
    positions = list(range(len(fit.param_names))) if params is None else params
    theta_hat = np.concatenate([fit.beta, fit.nu])
    rows = []
    for j in positions:
        estimate = float(theta_hat[j])
        se = float(fit.se().iloc[j])
        if not np.isfinite(se) or se <= 0:
            se = max(abs(estimate), 1.0) * 0.1
        ends, errors = [], []
        for direction in (-1.0, 1.0):
            if direction < 0 and _is_variance(fit, j) and estimate < BOUNDARY_NU:
                ends.append(0.0)  # the estimate is on the boundary: so is the lower end
                errors.append(0.0)
                continue
            profiler = _Profiler(fit, j)
            floor = 1e-6 * estimate if _is_variance(fit, j) else -np.inf
            step, inside = se, estimate
            end = None
            for _ in range(40):  # walk out until D exceeds the cut-off
                v = estimate + direction * step
                if v <= floor:
                    v = floor
                pt = profiler.point(v)
                if pt.deviance > cut:
                    end = v
                    break
                if v == floor:
                    break
                inside, step = v, step * 1.6
            if end is None:  # a variance whose profile never crosses: the boundary
                ends.append(0.0 if direction < 0 and _is_variance(fit, j) else np.nan)
                errors.append(0.0 if direction < 0 and _is_variance(fit, j) else np.nan)
                continue
            root_profiler = _Profiler(fit, j)

            def excess(v: float, prof: _Profiler = root_profiler) -> float:
                return prof.point(v).deviance - cut

            low, high = sorted((inside, end))
            v_star = float(sciopt.brentq(excess, low, high, xtol=1e-6 * se))
            pt = root_profiler.point(v_star)
            h = 1e-3 * se
            slope = (root_profiler.point(v_star + h).deviance
                     - root_profiler.point(v_star - h).deviance) / (2 * h)
            ends.append(v_star)
            errors.append(root_profiler.mcse_of_deviance(pt.theta) / max(abs(slope), 1e-12))
        rows.append((fit.param_names[j], *ends, *errors))
    alpha = 1.0 - level
    columns = [f"{alpha / 2.0:.12g}", f"{1.0 - alpha / 2.0:.12g}"]
    table = pd.DataFrame(rows, columns=["term", *columns, "mcse_lower", "mcse_upper"])
    return table.set_index("term").rename_axis(None)
