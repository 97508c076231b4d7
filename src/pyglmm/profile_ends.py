"""The ends of profile-likelihood intervals, re-centred where the fit's sample is thin.

An end ``v*`` of a ``1 - alpha`` profile interval solves ``D(v) = cut`` (the chi-square(1)
quantile), with ``D(v) = 2 (l(theta_hat) - l_p(v))`` (:mod:`pyglmm.profiles`). The fit's
own sample is centred at the estimate, so at ``v*`` its draws are off-centre: their
weights are uneven and the MCLA there is noisy. As the log of a mean it is biased low
(``D`` too large, the interval too short), and maximising a noisy function over the
other parameters biases it high (the interval too long). On Booth and Hobert's data
at m = 2,000 the variance's upper end was 8.91 against an exact 10.07. On simulated
salamander data it was off by up to 0.8 SE either way.

So each end is found in rounds, as the fit itself is. Round 0 solves on the fit's
sample. Each later round draws a fresh sample of the same size, centred (with the
fit's sampler) at the previous end's constrained maximiser ``theta*``. It solves
again near the previous end, with ``l_p`` on the new sample and ``l(theta_hat)`` kept
from the fit's, so each value is estimated by draws centred where it is taken. A new
sample is trusted only within :data:`RECENTRE_WINDOW` SEs of its centre; a root
beyond that is found by the next round, centred at the window's edge. The rounds stop
when the end moves by less than :data:`RECENTRE_TOL` SEs or :data:`RECENTRE_SETTLE`
times the combined MCSE of the two ends (further rounds would only redraw), or after
``recentre`` of them, with a warning if the end was still moving.

The MCSE of a re-centred end is ``2 sqrt(Var l(theta_hat) + Var l_p(v*)) / |D'(v*)|``:
the two values come from independent samples, and each variance is the one
:func:`pyglmm.criteria.loglik_mcse` reports for a fit. The MCSE of an end on the fit's
own sample counts the correlation between the two values instead
(:meth:`pyglmm.profiles._Profiler.mcse_of_deviance`). Neither counts the bias that
re-centring removes.

Re-centring needs a sample that informs the likelihood in a neighbourhood of its centre,
as importance and randomised QMC samples of small blocks do. A fresh sample of Markov
chains in a large crossed block informs it only at its centre. The constrained
maximiser moves the other parameters off that centre, and there the ratio weights
degenerate again. On a simulated crossed design with one block of 450 effects, 1 and 3
re-centred rounds moved var(a)'s interval from (0.183, 0.342) to (0.112, 0.457) and
then (0.063, 0.748). The smallest block ESS at the ends stayed at 1-12 of 1,000. So
:meth:`pyglmm.GLMMResults.confint` does not re-centre a chain fit's ends by default.

The seed stream of a re-centred sample is ``(rounds key, end key, chunk)`` under the
fit's root seed. The end key depends only on the parameter and the side, so an end
comes out the same whichever parameters are asked for, and on any backend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from .criteria import value_variance
from .diagnostics import BOUNDARY_NU
from .errors import ArgumentError, ImportanceSamplingWarning
from .profiles import (
    CORRELATION_MARGIN,
    PROFILE_ESS_FRACTION,
    ROOT_TOL,
    ProfilePoint,
    Target,
    _Profiler,
    _scale,
    targets,
)
from .ranef import require_sample

FloatArray = NDArray[np.float64]

#: Re-centred rounds per end at most (``confint(method="profile", recentre=...)``).
RECENTRE_ROUNDS = 3
#: A round's end has settled when it moved less than this many of the parameter's SEs
#: from the previous round's ...
RECENTRE_TOL = 0.02
#: ... or less than this many times the combined MCSE of the two rounds' ends (further
#: rounds would only redraw).
RECENTRE_SETTLE = 2.0
#: A re-centred round searches within this many SEs of its centre; an end beyond that
#: is found by the next round, centred at the edge.
RECENTRE_WINDOW = 1.0
#: First entry of a re-centred round's spawn key; fits number their rounds from 0, so
#: no fit round has this stream.
PROFILE_ROUND_KEY = 0x9F0F1E

_ROOT, _BOUND, _EDGE = "root", "bound", "edge"


def end_point(
    fit: Any, target: Target, estimate: float, se: float, direction: float, cut: float,
    recentre: int = 0,
) -> tuple[float, float, float, bool]:
    """One end of the profile interval, its MCSE, the smallest block ESS at it, and
    whether it settled.

    Parameters
    ----------
    fit : GLMMResults or namespace
        Has ``beta``, ``nu``, ``sample`` (the fit's final MCLA) and, to re-centre,
        ``settings``.
    target : Target
        What the profile holds fixed.
    estimate, se : float
        The target's estimate and a standard error to size steps by.
    direction : float
        -1 for the lower end, 1 for the upper.
    cut : float
        The cut-off of ``D``.
    recentre : int
        Re-centred rounds at most (0: the end on the fit's own sample).

    Returns
    -------
    (end, mcse, ess, settled) : tuple
        At the bound of the target's range (a variance's 0, a correlation's -1 or 1)
        with ``D`` still below the cut-off, the bound itself with MCSE 0. ``ess`` is
        the smallest block ESS of the sample the end was found on, at the end's
        maximising ``theta`` (NaN at a bound). A fixed effect or covariance whose
        profile never crosses the cut-off gets NaN. ``settled`` is False when the
        last round still moved the end by more than :data:`RECENTRE_TOL` SEs and
        :data:`RECENTRE_SETTLE` times the combined MCSE of the two ends, or stopped
        at the edge of its window.
    """
    profiler = _Profiler(fit, target)
    found, point = _solve(profiler, target, estimate, se, direction, cut)
    mcse = math.nan
    if recentre > 0 and point is not None and found == _ROOT:
        mcse = _end_mcse(profiler, point, False)
    recentred = False
    settled = True
    for r in range(1, recentre + 1):
        if point is None:
            break
        sample = _recentred_sample(fit, target, direction, r, point.theta)
        profiler = _Profiler(fit, target, objective=sample,
                             value_hat=(profiler.value_hat, profiler.hat_variance),
                             start=point.theta)
        before, was = point.value, found
        found, point = _solve_near(profiler, target, estimate, before, se, direction, cut)
        recentred = True
        if point is None:
            break
        if found == _EDGE:
            settled, mcse = False, math.nan
            continue
        if found == _BOUND:
            settled = was == _BOUND
        else:
            previous, mcse = mcse, _end_mcse(profiler, point, True)
            # both ends carry Monte Carlo error: the move is judged by both
            both = math.hypot(previous, mcse) if math.isfinite(previous) else mcse
            moved = abs(point.value - before)
            settled = moved < max(RECENTRE_TOL * se, RECENTRE_SETTLE * both)
        if settled:
            break
    if point is None:
        return math.nan, math.nan, math.nan, True
    if found == _BOUND:
        low, high = target.bounds()
        bound = low if direction < 0 else high
        return (0.0 if target.kind == "variance" else bound), 0.0, math.nan, settled
    ess = float(point.evaluation.block_ess.min())
    if not recentred or found == _EDGE:
        mcse = _end_mcse(profiler, point, recentred)
    return point.value, mcse, ess, settled


def _end_mcse(profiler: _Profiler, point: ProfilePoint, recentred: bool) -> float:
    """MCSE of the end at ``point``: that of ``D`` over ``|D'|`` (see the module doc)."""
    if not (math.isfinite(point.slope) and abs(point.slope) > 0):
        return math.nan
    deviance = (_recentred_mcse(profiler, point) if recentred
                else profiler.mcse_of_deviance(point.theta))
    return deviance / abs(point.slope)


def _limit(target: Target, estimate: float, direction: float) -> float:
    """The farthest value an end search tries: a variance stops just above 0, a
    correlation just inside -1 or 1."""
    if target.kind == "variance":
        return 1e-6 * estimate if direction < 0 else math.inf
    if target.kind == "correlation":
        return direction * (1.0 - CORRELATION_MARGIN)
    return direction * math.inf


def _solve_near(
    profiler: _Profiler, target: Target, estimate: float, centre: float, se: float,
    direction: float, cut: float,
) -> tuple[str, ProfilePoint | None]:
    """Solve ``sqrt(D(v)) = sqrt(cut)`` within :data:`RECENTRE_WINDOW` SEs of ``centre``.

    On a sample centred at ``centre`` the profile is reliable near it only, so no
    point far from it (the estimate included) is trusted as a bracket: Newton steps on
    the signed root, bisection once the root is bracketed, each step kept in the
    window (and on the end's side of the estimate, inside the target's range).
    Returns ``("root", point)``, ``("bound", point)`` at the limit of the range with
    ``D`` below the cut-off, ``("edge", point)`` when the root lies beyond the window
    (the next round re-centres there), or ``("root", None)`` if nothing was found.
    """
    return _search(profiler, target, estimate, se, direction, cut, centre)


def _solve(
    profiler: _Profiler, target: Target, estimate: float, se: float, direction: float,
    cut: float,
) -> tuple[str, ProfilePoint | None]:
    """Solve ``sqrt(D(v)) = sqrt(cut)`` on the fit's own sample.

    Newton steps on the signed root from the Wald end, kept inside the bracket once a
    point beyond the cut-off is known, and expanding outwards until then (the estimate,
    where ``D = 0``, is inside). Returns ``("root", point)``, ``("bound", point)`` when
    ``D`` is still below the cut-off at the limit of the target's range, or
    ``("root", None)`` when no end was found.
    """
    return _search(profiler, target, estimate, se, direction, cut, None)


def _search(
    profiler: _Profiler, target: Target, estimate: float, se: float, direction: float,
    cut: float, centre: float | None,
) -> tuple[str, ProfilePoint | None]:
    """:func:`_solve` (``centre`` None) and :func:`_solve_near` (a window at ``centre``)."""
    limit = _limit(target, estimate, direction)
    root = math.sqrt(cut)
    width = RECENTRE_WINDOW * se
    if centre is None:
        low, high = -math.inf, math.inf
        inside, outside = estimate, math.nan
        v = estimate + direction * root * se
        if (v - limit) * direction > 0:
            v = 0.5 * (estimate + limit)
    else:
        low, high = _window(target, estimate, centre, width, direction, limit)
        inside, outside = math.nan, math.nan
        v = min(max(centre, low), high)
    for _ in range(60 if centre is None else 40):
        pt, gap, step = _newton(profiler, v, root, direction)
        if abs(gap) < ROOT_TOL:
            return _ROOT, pt
        if gap > 0:
            outside = v
        else:
            inside = v
            if v == limit:
                return _BOUND, pt
        candidate = v + step
        if math.isnan(inside) or math.isnan(outside):
            if centre is None:  # expand outwards from the last point inside
                if not (math.isfinite(candidate) and (candidate - inside) * direction > 0):
                    candidate = inside + 1.6 * (inside - estimate) if inside != estimate \
                        else estimate + direction * se
                if (candidate - limit) * direction >= 0:
                    candidate = limit
                if not math.isfinite(candidate):
                    return _ROOT, None
            elif not math.isfinite(candidate):
                # no Newton step: towards the estimate when beyond the end, else outwards
                candidate = v - direction * 0.5 * width if gap > 0 \
                    else v + direction * 0.5 * width
        else:
            lo_b, hi_b = sorted((inside, outside))
            if hi_b - lo_b < 1e-10 * se:
                return _ROOT, pt
            if not (math.isfinite(candidate) and lo_b < candidate < hi_b):
                candidate = 0.5 * (inside + outside)
        if centre is not None:
            candidate = min(max(candidate, low), high)
            if candidate == v:
                return _EDGE, pt
        v = float(candidate)
    return _ROOT, None


def _window(
    target: Target, estimate: float, centre: float, width: float, direction: float,
    limit: float,
) -> tuple[float, float]:
    """The range a re-centred round searches: ``centre`` +- ``width``, on the end's side
    of the estimate and inside the target's range."""
    near, far = centre - direction * width, centre + direction * width
    if (near - estimate) * direction < 0:  # not past the estimate
        near = estimate
    if (far - limit) * direction > 0:
        far = limit
    if target.kind == "variance" and direction > 0:
        near = max(near, 1e-6 * estimate)
    low, high = sorted((near, far))
    return low, high


def _newton(
    profiler: _Profiler, v: float, root: float, direction: float
) -> tuple[ProfilePoint, float, float]:
    """The profile point at ``v``, the gap ``sqrt(D) - sqrt(cut)`` (inf where ``D`` is
    not finite) and the Newton step on ``sqrt(D)`` (NaN where there is none)."""
    pt = profiler.point(v)
    if not math.isfinite(pt.deviance):
        return pt, math.inf, math.nan
    gap = math.sqrt(max(pt.deviance, 0.0)) - root
    step = math.nan
    if pt.deviance > 0 and pt.slope * direction > 0:
        # d sqrt(D) / dv = D' / (2 sqrt(D))
        step = -gap * 2.0 * math.sqrt(pt.deviance) / pt.slope
    return pt, gap, step


def _recentred_sample(
    fit: Any, target: Target, direction: float, round_number: int, theta: FloatArray
) -> Any:
    """A fresh sample of the fit's size and sampler, centred at ``theta`` (its MCLA)."""
    from .rounds import build_round

    own = require_sample(fit)
    side = 0 if direction < 0 else 1
    end_key = ((2 * target.j + (target.kind == "correlation")) * 2 + side) * 16 + round_number
    index = (PROFILE_ROUND_KEY << 32) + end_key
    built = build_round(own.problem, fit.settings, index, np.asarray(theta, np.float64),
                        int(own.n_draws))
    return built.objective


def _recentred_mcse(profiler: _Profiler, point: ProfilePoint) -> float:
    """MCSE of ``D`` with ``l(theta_hat)`` from the fit's sample, ``l_p`` from another:
    the two values' variances (:func:`pyglmm.criteria.value_variance`) add."""
    ev = point.evaluation
    return 2.0 * math.sqrt(profiler.hat_variance
                           + value_variance(ev.block_value_variance, ev.block_ess,
                                            ev.n_draws))


def profile_intervals(
    fit: Any, level: float = 0.95, params: Sequence[Any] | Any = None,
    n_jobs: int | None = None, client: Any = None, recentre: int | None = None,
) -> pd.DataFrame:
    """Profile-likelihood intervals with the Monte Carlo SE of each end point.

    ``params``: parameters by name or 0-based position and correlations by name, as
    :func:`targets` reads them; None: every parameter, then every correlation (one row
    each, named as :func:`correlation_targets` names them).

    Columns: the two quantiles (as :meth:`GLMMResults.confint` names them) and
    ``mcse_lower``, ``mcse_upper``. A variance whose profile stays below the cut-off as
    it goes to 0 gets lower end 0 (MCSE 0); a correlation whose profile stays below it
    up to -1 or 1 gets that end (MCSE 0); a correlation of a term with a variance at 0
    gets NaN.

    With ``n_jobs`` or ``client`` (:func:`pyglmm.backends.get_backend`) the ends are
    computed on that backend, one task each; every task draws the fit's final sample
    again from its seed streams, so the table is the same as the serial one.

    ``recentre``: re-centred rounds per end at most (see the module doc); 0 solves on
    the fit's own sample alone (quicker, but noisy and biased at the ends). None:
    :data:`RECENTRE_ROUNDS`, or 0 for a fit whose final round drew Markov chains.
    """
    if recentre is None:
        rounds = getattr(fit, "rounds", ())
        recentre = 0 if rounds and rounds[-1].sampler == "mcmc" else RECENTRE_ROUNDS
    elif isinstance(recentre, bool) or not isinstance(recentre, int | np.integer) \
            or recentre < 0:
        raise ArgumentError(f"recentre must be 0 or more, not {recentre!r}")
    recentre = int(recentre)
    cut = float(stats.chi2.ppf(level, 1))
    chosen = targets(fit, params)
    known: dict[tuple[int, int], tuple[float, float, float, bool]] = {}
    jobs: list[tuple[Target, float, float, float]] = []
    keys: list[tuple[int, int]] = []
    for t, target in enumerate(chosen):
        estimate, se = _scale(fit, target)
        for d, direction in enumerate((-1.0, 1.0)):
            if not np.isfinite(estimate):
                known[t, d] = (math.nan, math.nan, math.nan, True)
            elif (direction < 0 and target.kind == "variance"
                  and estimate < BOUNDARY_NU):
                known[t, d] = (0.0, 0.0, math.nan, True)  # on the boundary: so is the end
            else:
                jobs.append((target, estimate, se, direction))
                keys.append((t, d))
    if n_jobs is None and client is None:
        found = [end_point(fit, target, estimate, se, direction, cut, recentre)
                 for target, estimate, se, direction in jobs]
    else:
        from .backends import get_backend
        from .profile_tasks import end_task, end_tasks

        found = get_backend(n_jobs, client).map(end_task, end_tasks(fit, jobs, cut, recentre))
    known.update(zip(keys, found, strict=True))
    rows, thin, moving = [], [], []
    floor = PROFILE_ESS_FRACTION * float(require_sample(fit).n_draws)
    for t, target in enumerate(chosen):
        low, low_error, low_ess, low_settled = known[t, 0]
        high, high_error, high_ess, high_settled = known[t, 1]
        rows.append((target.name, low, high, low_error, high_error))
        thin += [f"{target.name} {side} ({ess:.0f})" for side, ess
                 in (("lower", low_ess), ("upper", high_ess)) if ess < floor]
        moving += [f"{target.name} {side}" for side, done
                   in (("lower", low_settled), ("upper", high_settled)) if not done]
    if moving:
        ends = "end" if len(moving) == 1 else "ends"
        were = "was" if len(moving) == 1 else "were"
        warnings.warn(
            f"the profile {ends} {', '.join(moving)} {were} still moving after "
            f"{recentre} re-centred {'round' if recentre == 1 else 'rounds'} (by more "
            "than the Monte Carlo error); treat it as approximate, or allow more rounds "
            f"(confint(method='profile', recentre={recentre + 2}))",
            ImportanceSamplingWarning, stacklevel=3)
    if thin:
        warnings.warn(
            f"the sample is degenerate at profile ends {', '.join(thin)}: the "
            f"smallest block ESS there is below {100 * PROFILE_ESS_FRACTION:g}% of m, so "
            "those ends (and their MCSEs) are unreliable, usually too close to the "
            "estimate. In large blocks (Markov chains) the draws inform the likelihood only "
            "near the estimate, whatever m; use Wald or log-scale intervals for those "
            "parameters.", ImportanceSamplingWarning, stacklevel=3)
    alpha = 1.0 - level
    columns = [f"{alpha / 2.0:.12g}", f"{1.0 - alpha / 2.0:.12g}"]
    table = pd.DataFrame(rows, columns=["term", *columns, "mcse_lower", "mcse_upper"])
    return table.set_index("term").rename_axis(None)
