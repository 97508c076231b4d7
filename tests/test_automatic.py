"""glmm(m="auto"): grow m by the square-root law until MCSE/SE reaches the target."""

from __future__ import annotations

import pytest

import pyglmm as pg
from pyglmm.automatic import next_m
from pyglmm.errors import ArgumentError, ArgumentTypeError, ImportanceSamplingWarning

FIXED, RANDOM = "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"]


@pytest.fixture(scope="module")
def salamander():
    return pg.datasets.load_salamander()


def test_salamander_reaches_the_default_target_and_records_its_path(salamander):
    fit = pg.glmm(FIXED, RANDOM, salamander, m="auto", rng=1234)
    assert fit.diagnostics().max_mcse_se_ratio <= 0.1
    assert fit.m_path[-1][0] == fit.m and fit.m_path[-1][2] <= 0.1
    again = pg.GLMMResults.from_json(fit.to_json())
    assert again.m_path == fit.m_path


def test_a_tighter_target_grows_m_from_the_previous_estimate(salamander):
    fit = pg.glmm(FIXED, RANDOM, salamander, m="auto", rng=1234, mcse_target=0.03)
    ms = [step[0] for step in fit.m_path]
    assert len(ms) >= 2 and ms == sorted(ms) and ms[0] == 1000
    assert fit.m_path[-1][2] <= 0.03
    # the last step started from the previous estimate and repeats from its settings
    assert fit.settings.par_init is not None
    repeat = pg.glmm(FIXED, RANDOM, salamander, **fit.settings.glmm_arguments())
    assert (repeat.params() == fit.params()).all()


def test_the_cap_warns(salamander):
    with pytest.warns(ImportanceSamplingWarning, match="max_m = 2000"):
        fit = pg.glmm(FIXED, RANDOM, salamander, m="auto", rng=1, mcse_target=0.001,
                      max_m=2000)
    assert fit.m == 2000


def test_square_root_law():
    # MCSE/SE 0.2 at m = 1000 for a target of 0.1: four times the draws, plus 20%
    assert next_m(1000, 0.2, 0.1, 10**6) == 4800
    assert next_m(1000, 0.11, 0.1, 10**6) == 1500  # at least 1.5 m
    assert next_m(1000, 0.5, 0.1, 5000) == 5000  # capped


@pytest.mark.parametrize(("kw", "error"), [
    ({"mcse_target": 0.0}, ArgumentError), ({"mcse_target": "x"}, ArgumentTypeError),
    ({"max_m": 10}, ArgumentError), ({"max_m": 1.5}, ArgumentTypeError),
])
def test_bad_auto_arguments(salamander, kw, error):
    with pytest.raises(error):
        pg.glmm(FIXED, RANDOM, salamander, m="auto", **kw)
