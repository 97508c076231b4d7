"""Refits at other seeds (seed_check): reproducible, backend-independent, honest."""

from __future__ import annotations

import numpy as np
import pytest

import pyglmm as pg
from pyglmm.errors import ArgumentError, ArgumentTypeError
from pyglmm.replicates import replicate_seeds


@pytest.fixture(scope="module")
def fit(booth_hobert_module):
    return pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert_module, m=1_000, rng=4)


@pytest.fixture(scope="module")
def booth_hobert_module():
    return pg.datasets.load_booth_hobert()


def test_each_replicate_is_the_fit_at_its_seed(fit, booth_hobert_module):
    check = pg.seed_check(fit, n_seeds=3)
    seeds = replicate_seeds(fit, 3)
    again = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert_module, m=1_000, rng=seeds[1])
    theta = np.concatenate([again.beta, again.nu])
    np.testing.assert_array_equal(check["replicate_2"].to_numpy(), theta)
    assert list(check.index) == list(fit.mcse().index)
    # the replicates' seeds differ from each other and from the fit's chunk streams
    assert len({s.spawn_key for s in seeds}) == 3
    assert not np.array_equal(check["replicate_1"], check["replicate_2"])
    np.testing.assert_array_equal(check["estimate"], np.concatenate([fit.beta, fit.nu]))


def test_the_spread_over_seeds_matches_the_reported_mcse(fit):
    check = pg.seed_check(fit, n_seeds=8)
    # With 8 seeds the sample SD scatters around the true spread by about
    # 1/sqrt(2 * 7) = 27% (one SD), so an honest MCSE gives a ratio in [0.35, 2.2]
    # with probability well above 99%; R glmm's MCSEs give ratios of 58-121.
    assert ((check["ratio"] > 0.35) & (check["ratio"] < 2.2)).all(), check


def test_seed_check_gives_the_same_numbers_on_processes(fit):
    serial = pg.seed_check(fit, n_seeds=2, seed=99)
    parallel = pg.seed_check(fit, n_seeds=2, seed=99, n_jobs=2)
    np.testing.assert_array_equal(serial.to_numpy(), parallel.to_numpy())


def test_seed_check_arguments_are_checked(fit):
    with pytest.raises(ArgumentError, match="at least 2"):
        pg.seed_check(fit, n_seeds=1)
    with pytest.raises(ArgumentTypeError, match="integer"):
        pg.seed_check(fit, n_seeds=2.5)
