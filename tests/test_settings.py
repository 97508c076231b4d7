"""The settings of a fit: checked once, kept whole, written in the record, refit exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import pyglmm as pg
from pyglmm.errors import ArgumentError
from pyglmm.settings import SETTINGS_KEYS, FitSettings
from pyglmm.validation import check_settings

MODEL = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
             family="bernoulli", varcomps_names=["F", "M"])


@pytest.fixture(scope="module")
def small_fit(salamander) -> pg.GLMMResults:
    return pg.glmm(**MODEL, data=salamander, m=500, rng=2024)


def _refit(record: dict, data) -> pg.GLMMResults:
    """The fit of ``record`` again, from its model section and its settings alone."""
    model = record["model"]
    arguments = FitSettings.from_dict(record["settings"]).glmm_arguments()
    return pg.glmm(model["fixed_formula"], list(model["random_formulas"]), data,
                   model["family"], varcomps_names=model["varcomps_names"],
                   varcomps_equal=model["varcomps_equal"], **arguments)


def test_the_record_holds_every_setting(small_fit):
    record = json.loads(small_fit.to_json())
    stored = record["settings"]
    assert tuple(stored) == SETTINGS_KEYS
    names = {f.name for f in dataclasses.fields(FitSettings)} - {"p"} | {"p1", "p2", "p3"}
    assert set(stored) == names
    assert stored == {
        "m": 500, "blocks": "independent", "importance": "laplace", "recentre": "auto",
        "pilot_m": 2000, "shift": True, "do_pql": True, "p1": 1 / 3, "p2": 1 / 3,
        "p3": 1 / 3, "zeta": 20.0, "zeta_per_block": True, "rmax": 1000.0,
        "iterlim": 1000, "chunk_size": None, "na_action": "raise", "par_init": None,
        "rng_entropy": 2024, "rng_spawn_key": [], "sampler": "auto",
    }
    assert record["format_version"] == 2


def test_the_results_keep_the_settings_and_read_them(small_fit):
    settings = small_fit.settings
    assert isinstance(settings, FitSettings)
    assert small_fit.recentre == "auto" and settings.auto_recentre
    assert (small_fit.m, small_fit.blocks, small_fit.importance) == (500, "independent",
                                                                     "laplace")
    assert (small_fit.p1, small_fit.p2, small_fit.p3) == settings.p
    assert small_fit.zeta == 20.0 and small_fit.zeta_per_block
    assert small_fit.rng_entropy == 2024 and small_fit.rng_spawn_key == ()
    assert pg.GLMMResults.from_json(small_fit.to_json()).settings == settings


def test_refit_from_the_record_reproduces_the_fit_exactly(small_fit, salamander):
    again = _refit(json.loads(small_fit.to_json()), salamander)
    assert np.array_equal(again.params().to_numpy(), small_fit.params().to_numpy())
    assert again.loglike_value == small_fit.loglike_value
    assert np.array_equal(again.loglike_hessian, small_fit.loglike_hessian)
    assert again.settings == small_fit.settings


@pytest.mark.filterwarnings("ignore::pyglmm.errors.ImportanceSamplingWarning")
def test_refit_reproduces_a_fit_with_every_setting_changed(salamander):
    fit = pg.glmm(
        **MODEL, data=salamander, m=400, rng=np.random.default_rng(11), importance="glmm",
        blocks="joint", recentre=1, pilot_m=300, shift=True, p1=0.5, p2=0.3, p3=0.2,
        zeta=6.0, rmax=50.0, iterlim=40, chunk_size=97, na_action="drop",
        par_init=[0.9, 0.3, -1.8, 0.9, 1.3, 1.2],
    )
    settings = fit.settings
    assert not settings.shift  # the mixture proposal has no shift: the effective value
    assert settings.recentre == 1 and settings.chunk_size == 97 and settings.pilot_m == 300
    assert settings.par_init == (0.9, 0.3, -1.8, 0.9, 1.3, 1.2)
    assert isinstance(settings.rng_entropy, tuple) and len(settings.rng_entropy) == 4
    record = json.loads(fit.to_json())
    assert record["settings"]["recentre"] == 1
    assert record["settings"]["rng_entropy"] == list(settings.rng_entropy)
    again = _refit(record, salamander)
    assert np.array_equal(again.params().to_numpy(), fit.params().to_numpy())
    assert [r.estimate.tolist() for r in again.rounds] == [r.estimate.tolist()
                                                           for r in fit.rounds]


def test_check_settings_returns_the_effective_settings():
    settings = check_settings(
        m=100, blocks="independent", importance="glmm", recentre="auto", pilot_m=50,
        p=(0.5, 0.25, 0.25), zeta=5, rmax=10, iterlim=20, chunk_size=None, shift=True,
        do_pql=0, rng=np.random.SeedSequence(3, spawn_key=(1, 2)),
    )
    assert settings.recentre == "auto" and settings.zeta == 5.0
    assert settings.shift is False and settings.do_pql is False
    assert (settings.rng_entropy, settings.rng_spawn_key) == (3, (1, 2))
    seed = settings.seed_sequence()
    assert (seed.entropy, seed.spawn_key) == (3, (1, 2))
    assert FitSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_a_version_1_record_is_refused_with_the_reason(small_fit):
    record = small_fit.to_dict() | {"format_version": 1}
    with pytest.raises(ArgumentError, match="does not hold every setting"):
        pg.GLMMResults.from_dict(record)
