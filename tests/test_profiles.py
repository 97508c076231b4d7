"""Profile likelihood and profile intervals on the fit's own sample."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import pyglmm as pg
from pyglmm.profiles import _Profiler
from pyglmm.simulate import simulate_glmm


@pytest.fixture(scope="module")
def fit():
    return pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), m=2000, rng=2)


def test_profile_intervals_are_where_the_deviance_crosses_the_cut(fit):
    ci = fit.confint(method="profile")
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
