"""Profile likelihood and profile intervals on the fit's own sample (``recentre=0``;
the re-centred ends are tested in test_profile_ends.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import pyglmm as pg
from pyglmm.profiles import _Profiler, correlation_targets, targets
from pyglmm.simulate import simulate_glmm


@pytest.fixture(scope="module")
def fit():
    return pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), m=2000, rng=2)


def test_profile_intervals_are_where_the_deviance_crosses_the_cut(fit):
    ci = fit.confint(method="profile", recentre=0)  # on the fit's own sample
    cut = stats.chi2.ppf(0.95, 1)
    theta = np.concatenate([fit.beta, fit.nu])
    for j, name in enumerate(fit.param_names):
        lower, upper = ci.loc[name, "0.025"], ci.loc[name, "0.975"]
        assert lower < theta[j] < upper
        for end in (lower, upper):
            if end > 0 or j < fit.beta.size:
                # the end point solves D(v) = cut to the root finder's tolerance
                assert _Profiler(fit, j).point(end).deviance == pytest.approx(cut, abs=1e-3)
    assert (ci[["mcse_lower", "mcse_upper"]].to_numpy() >= 0).all()
    # the Monte Carlo error of the end points is small against the interval's width
    width = (ci["0.975"] - ci["0.025"]).to_numpy()
    assert (ci[["mcse_lower", "mcse_upper"]].max(axis=1).to_numpy() < 0.1 * width).all()
    # Booth-Hobert's likelihood is skewed in x1: the profile interval is not Wald's
    wald = fit.confint()
    assert ci.loc["x1", "0.025"] > wald.loc["x1", "0.025"]


def test_profile_intervals_on_two_processes_are_the_serial_ones(slope_fit):
    """Each end on its own worker, the sample drawn again there: the same table."""
    serial = slope_fit.confint(method="profile")
    two = slope_fit.confint(method="profile", n_jobs=2)
    pd.testing.assert_frame_equal(two, serial, check_exact=True)


def test_profile_curve(fit):
    curve = fit.profile("x1", n=7)
    assert curve["deviance"].min() == pytest.approx(0.0, abs=1e-8)
    assert curve["deviance"].iloc[0] > 1 and curve["deviance"].iloc[-1] > 1
    assert np.all(np.diff(curve["signed_root"]) > 0)


def test_variance_at_zero_gets_lower_end_zero():
    data = simulate_glmm("poisson", 200, {"g": 10}, beta=(0.5, 0.3), nu=[0.02], rng=7)
    small = pg.glmm("y ~ x", "~ 0 + g", data, family="poisson", m=1000, rng=1)
    ci = small.confint(method="profile", parm=["g"])
    assert ci.loc["g", "0.025"] == 0.0 and ci.loc["g", "mcse_lower"] == 0.0
    assert ci.loc["g", "0.975"] > small.nu[0]


def test_profile_needs_the_sample(fit):
    restored = pg.GLMMResults.from_json(fit.to_json())
    with pytest.raises(pg.errors.ArgumentError, match="importance sample"):
        restored.confint(method="profile")


# -- correlations of an unstructured term ----------------------------------------------
CORRELATION = "cor (Intercept),x|g"


@pytest.fixture(scope="module")
def slope_fit():
    sigma = np.array([[0.5, 0.2], [0.2, 0.3]])  # true correlation 0.52
    data = simulate_glmm("poisson", 400, {"g": 30}, beta=(0.5, 0.3), nu=[sigma], rng=3)
    return pg.glmm("y ~ x + (1 + x | g)", data=data, family="poisson", m=1000, rng=1)


def _correlation_target(fit):
    (target,) = [t for t in correlation_targets(fit) if t.name == CORRELATION]
    return target


def _brute_force_deviance(fit, rho):
    """D(rho) by an independent route: BFGS over (beta, log v1, log v2) with the
    covariance rho sqrt(v1 v2), the gradient by the chain rule in that parametrisation."""
    objective = fit.sample
    theta_hat = np.concatenate([fit.beta, fit.nu])
    top = objective.evaluate(theta_hat).value

    def negative(x):
        v1, v2 = np.exp(x[2]), np.exp(x[3])
        c = rho * np.sqrt(v1 * v2)
        ev = objective.evaluate(np.array([x[0], x[1], v1, c, v2]))
        if not np.isfinite(ev.value):
            return 1e10, np.zeros(4)
        g = ev.gradient
        return -ev.value, -np.array([g[0], g[1], g[2] * v1 + g[3] * c / 2,
                                     g[4] * v2 + g[3] * c / 2])

    start = np.array([fit.beta[0], fit.beta[1], np.log(fit.nu[0]), np.log(fit.nu[2])])
    result = optimize.minimize(negative, start, jac=True, method="BFGS",
                               options={"gtol": 1e-7})
    return 2.0 * (top + result.fun)


def test_correlation_is_named_as_varcorr_names_it(slope_fit):
    row = slope_fit.varcorr().iloc[2]
    assert CORRELATION == f"cor {row['var1']},{row['var2']}|{row['grp']}"
    names = [t.name for t in targets(slope_fit)]
    assert names == [*slope_fit.param_names, CORRELATION]  # confint's default rows
    target = _correlation_target(slope_fit)
    theta = np.concatenate([slope_fit.beta, slope_fit.nu])
    assert target.value_of(theta) == pytest.approx(row["sdcor"], rel=1e-12)


def test_correlation_profile_interval(slope_fit):
    ci = slope_fit.confint(method="profile", parm=[CORRELATION], recentre=0)
    assert ci.index.tolist() == [CORRELATION]
    lower, upper = ci.loc[CORRELATION, "0.025"], ci.loc[CORRELATION, "0.975"]
    estimate = slope_fit.varcorr().iloc[2]["sdcor"]
    assert -1.0 <= lower < estimate < upper <= 1.0
    cut = stats.chi2.ppf(0.95, 1)
    target = _correlation_target(slope_fit)
    for end in (lower, upper):
        pt = _Profiler(slope_fit, target).point(end)  # a fresh profiler: no warm start
        # the end solves D = cut to the root finder's tolerance (|sqrt D - sqrt cut| <
        # 1e-7, i.e. |D - cut| < 4e-7) plus the inner maximisation's (fterm 1.5e-8)
        assert pt.deviance == pytest.approx(cut, abs=1e-5)
        # the brute-force profile on the same sample: only optimiser error separates
        # them (BFGS with gtol 1e-7 leaves an error in D far below 1e-3); no MC noise
        assert _brute_force_deviance(slope_fit, end) == pytest.approx(cut, abs=1e-3)
    # D'(v) from the envelope theorem against a central difference of the profile
    h = 1e-4
    profiler = _Profiler(slope_fit, target)
    numeric = (profiler.point(upper + h).deviance - profiler.point(upper - h).deviance) / (2 * h)
    assert pt.slope == pytest.approx(numeric, rel=1e-3)
    # and at a point inside the interval
    inner = 0.5 * (estimate + upper)
    assert _Profiler(slope_fit, target).point(inner).deviance == pytest.approx(
        _brute_force_deviance(slope_fit, inner), abs=1e-3)
    # end points' Monte Carlo SEs: positive, small against the width
    errors = ci.loc[CORRELATION, ["mcse_lower", "mcse_upper"]].to_numpy()
    assert np.all(errors > 0) and np.all(errors < 0.1 * (upper - lower))


def test_recentred_correlation_interval(slope_fit):
    """Re-centred ends of a correlation: inside (-1, 1), each solving D = cut on its own
    fresh sample, and within Monte Carlo error (plus the own sample's bias, which is
    small here: Poisson, 30 groups) of the ends on the fit's own sample."""
    own = slope_fit.confint(method="profile", parm=[CORRELATION], recentre=0)
    ci = slope_fit.confint(method="profile", parm=[CORRELATION])
    lower, upper = ci.loc[CORRELATION, "0.025"], ci.loc[CORRELATION, "0.975"]
    assert -1.0 < lower < slope_fit.varcorr().iloc[2]["sdcor"] < upper < 1.0
    for column, mcse in (("0.025", "mcse_lower"), ("0.975", "mcse_upper")):
        assert 0 < ci.loc[CORRELATION, mcse] < 0.05
        gap = abs(ci.loc[CORRELATION, column] - own.loc[CORRELATION, column])
        assert gap < 0.05 * (upper - lower)


def test_correlation_profile_curve_and_names(slope_fit):
    curve = slope_fit.profile(CORRELATION, n=5, width=2.0)
    assert curve["value"].between(-1, 1).all()
    assert curve["deviance"].min() == pytest.approx(0.0, abs=1e-8)
    assert np.all(np.diff(curve["signed_root"]) > 0)
    with pytest.raises(pg.errors.ArgumentError, match="correlations"):
        slope_fit.confint(method="profile", parm="cor x,z|g")
    with pytest.raises(pg.errors.ArgumentError, match="unknown parameter"):
        slope_fit.confint(parm=CORRELATION)  # Wald: varcorr() has the correlations'


def test_correlation_end_at_the_bound():
    """A correlation whose profile stays below the cut-off up to 1 gets the end 1."""
    sigma = np.array([[0.6, 0.48], [0.48, 0.6]])  # correlation 0.8, only 8 groups
    data = simulate_glmm("poisson", 120, {"g": 8}, beta=(0.5, 0.3), nu=[sigma], rng=7)
    fit = pg.glmm("y ~ x + (1 + x | g)", data=data, family="poisson", m=500, rng=1)
    ci = fit.confint(method="profile", parm=CORRELATION)
    estimate = fit.varcorr().iloc[2]["sdcor"]  # 0.66
    assert -1.0 < ci.loc[CORRELATION, "0.025"] < estimate < 0.9
    assert ci.loc[CORRELATION, "0.975"] == 1.0 and ci.loc[CORRELATION, "mcse_upper"] == 0.0


def test_ends_where_the_sample_is_degenerate_are_flagged():
    """A block of 450 crossed effects with 3 binary responses per level of ``a``: the
    chains' likelihood ratios degenerate within the variances' profile intervals."""
    from pyglmm.errors import ImportanceSamplingWarning

    rng = np.random.default_rng(1006)
    a = np.repeat(np.arange(400), 3)
    b = np.concatenate([rng.choice(50, 3, replace=False) for _ in range(400)])
    x = rng.uniform(-1, 1, a.size)
    eta = -0.5 + 0.5 * x + rng.normal(0, 1.0, 400)[a] + rng.normal(0, 0.7, 50)[b]
    data = pd.DataFrame({"y": (rng.random(a.size) < 1 / (1 + np.exp(-eta))).astype(int),
                         "x": x, "a": a.astype(str), "b": b.astype(str)})
    fit = pg.glmm("y ~ x", ["~ 0 + a", "~ 0 + b"], data, m=1_000, rng=7)
    assert fit.rounds[-1].sampler == "mcmc"
    with pytest.warns(ImportanceSamplingWarning, match="degenerate at profile ends a lower"):
        default = fit.confint(method="profile", parm=["x", "a"])
    # a chain fit's ends are not re-centred by default (pyglmm.profile_ends explains why)
    with pytest.warns(ImportanceSamplingWarning):
        own = fit.confint(method="profile", parm=["x", "a"], recentre=0)
    pd.testing.assert_frame_equal(default, own, check_exact=True)
