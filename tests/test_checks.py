"""One list of post-fit checks behind glmm()'s warnings, the summary and diagnostics()."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm as pg
from pyglmm.diagnostics import LARGE_BLOCK
from pyglmm.errors import DataWarning, PyGLMMWarning


def _fit_recording(**arguments):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit = pg.glmm(**arguments)
    return fit, [w for w in record if issubclass(w.category, PyGLMMWarning)]


def _crossed_bernoulli(levels: int = 170, per_level: int = 6) -> pd.DataFrame:
    """Two crossed factors of ``levels`` levels each: one block of 2 x levels effects."""
    rng = np.random.default_rng(5)
    a = np.repeat(np.arange(levels), per_level)
    b = (7 * a + 29 * np.tile(np.arange(per_level), levels)) % levels
    eta = 0.2 + rng.normal(size=levels)[a] + rng.normal(size=levels)[b]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "a": a, "b": b})


@pytest.fixture(scope="module")
def degenerate():
    """R glmm's mixture proposal on a 340-effect crossed block at m = 200: degenerate."""
    return _fit_recording(fixed="y ~ 1", random=["~ 0 + a", "~ 0 + b"],
                          data=_crossed_bernoulli(), m=200, pilot_m=100, rng=1,
                          importance="glmm")


def test_warnings_summary_and_diagnostics_say_the_same(degenerate):
    fit, record = degenerate
    assert fit.block_sizes.max() >= LARGE_BLOCK
    diagnostics = fit.diagnostics()
    assert diagnostics.min_ess < 0.1 * fit.m or diagnostics.max_pareto_k > 0.7
    raised = [f"WARNING: {w.message}" for w in record]
    assert raised  # the fit is degenerate, and says so
    assert raised == list(diagnostics.messages) == list(fit.summary().warnings)
    assert [c.category for c in diagnostics.checks] == [w.category for w in record]
    text = " ".join(str(fit.summary()).split())
    assert all(" ".join(message.split()) in text for message in raised)
    # computed once: the fit keeps its checks
    assert fit.diagnostics() is diagnostics


def test_no_message_says_to_raise_m_when_that_would_not_help(degenerate):
    fit, _ = degenerate
    diagnostics = fit.diagnostics()
    assert not diagnostics.larger_m_helps
    assert diagnostics.recommended_m == fit.m
    for message in diagnostics.messages:
        lowered = message.lower()
        assert "raise m" not in lowered and "refit with m =" not in lowered, message
        assert "a larger m." not in lowered and "tenfold" not in lowered, message
    assert any(f"has {fit.block_sizes.max()} random effects" in m for m in diagnostics.messages)


def test_a_small_degenerate_block_still_advises_a_larger_m(salamander):
    fit, record = _fit_recording(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
                                 data=salamander, m=500, rng=1, importance="glmm",
                                 blocks="joint", recentre=0)
    assert fit.diagnostics().larger_m_helps
    assert any("raise m" in str(w.message).lower() for w in record)
    assert [f"WARNING: {w.message}" for w in record] == list(fit.summary().warnings)


def _overdispersed_poisson(n_groups: int = 40, per_group: int = 10) -> pd.DataFrame:
    """Poisson counts with a group effect (variance 0.5) and an observation-level effect
    (variance 0.3): 440 random effects for 400 observations."""
    rng = np.random.default_rng(11)
    n = n_groups * per_group
    group = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=n)
    eta = 1.0 + 0.4 * x + rng.normal(0, np.sqrt(0.5), n_groups)[group] + rng.normal(
        0, np.sqrt(0.3), n)
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "group": group,
                         "obs": np.arange(n)})


@pytest.fixture(scope="module")
def overdispersed():
    return _fit_recording(fixed="y ~ x", random=["~ 0 + group", "~ 0 + obs"],
                          data=_overdispersed_poisson(), family="poisson", m=500, rng=2,
                          varcomps_names=["group", "obs"])


def test_a_well_determined_observation_level_effect_is_not_weakly_identified(overdispersed):
    fit, record = overdispersed
    assert int(fit.block_sizes.sum()) > len(fit.y)  # more effects than observations
    assert 0.1 < fit.varcomps()["obs"] < 0.6  # simulated at 0.3
    assert fit.se()["obs"] < 0.5 * fit.varcomps()["obs"]
    assert not [w for w in record if issubclass(w.category, DataWarning)]
    assert not any("weakly identified" in m for m in fit.diagnostics().messages)


def test_a_poorly_determined_variance_is_weakly_identified(overdispersed):
    fit, _ = overdispersed
    vague = dataclasses.replace(fit, loglike_hessian=fit.loglike_hessian * 1e-3)  # SE x 30
    messages = [c for c in vague.diagnostics().checks if c.name == "weakly_identified"]
    assert len(messages) == 1 and messages[0].category is DataWarning
    assert f"{int(fit.block_sizes.sum())} random effects" in messages[0].message
    assert "for 400 observations" in messages[0].message
    assert any("weakly identified" in w for w in vague.summary().warnings)


def test_tiny_mcses_print_in_scientific_notation(booth_hobert):
    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=500, rng=1)
    tiny = dataclasses.replace(fit, score_mc_covariance=fit.score_mc_covariance * 1e-12)
    assert tiny.mcse().max() < 1e-4
    table = str(tiny.summary()).split("Fixed Effects:")[1].split("---")[0]
    assert "0.0000" not in table
    assert table.count("e-0") >= 2  # one MCSE per parameter, e.g. 3.1e-07
