"""Conditional means and SDs of the random effects (pyglmm.ranef)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit

import pyglmm as pg
from pyglmm.errors import ArgumentError, ImportanceSamplingWarning
from pyglmm.ranef import conditional_summary, ranef, resample_conditional
from pyglmm.simulate import simulate_glmm


def _grouped(family, n_obs, n_groups, variance, seed, beta=(0.3, 0.5)):
    """Data with one random intercept per group and the true effects."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, np.sqrt(variance), n_groups)
    level = np.arange(n_obs) % n_groups
    x = rng.uniform(-1.0, 1.0, n_obs)
    eta = beta[0] + beta[1] * x + effects[level]
    y = (rng.poisson(np.exp(eta)) if family == "poisson"
         else rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))))
    names = [f"g{j:02d}" for j in range(n_groups)]
    frame = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([names[j] for j in level],
                                                               categories=names)})
    return frame, effects


@pytest.fixture(scope="module")
def poisson_fit():
    frame, effects = _grouped("poisson", 600, 60, 0.5, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pg.glmm("y ~ x", ["~ 0 + g"], frame, family="poisson", m=1000, rng=1,
                      chunk_size=256)  # several chunks (of 8 shifted sets of 32)
    return fit, effects


@pytest.fixture(scope="module")
def booth_hobert_fit(booth_hobert):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=10_000, rng=1)


def test_table_layout(poisson_fit):
    fit, _ = poisson_fit
    table = ranef(fit)
    assert table.columns.tolist() == ["term", "level", "column", "mean", "sd", "ess", "method"]
    assert len(table) == fit.design.n_effects
    assert (table["term"] == "g").all() and (table["column"] == "(Intercept)").all()
    assert table["level"].tolist() == list(fit.design.random_terms[0].levels)
    assert (table["method"] == "importance").all()
    assert (table["sd"] > 0).all() and (table["ess"] > 10).all()
    assert "sd" not in ranef(fit, cond_var=False).columns


def test_poisson_means_track_true_effects(poisson_fit):
    fit, effects = poisson_fit
    # 10 counts of mean ~1.5 per group and variance 0.5: the shrinkage estimates
    # explain most of the true effects' variation (population value of the correlation
    # about 0.85); 0.7 leaves room for sampling variation of 60 groups.
    assert np.corrcoef(ranef(fit)["mean"], effects)[0, 1] > 0.7


def test_bernoulli_means_track_true_effects():
    frame, effects = _grouped("bernoulli", 1200, 40, 1.0, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pg.glmm("y ~ x", ["~ 0 + g"], frame, family="bernoulli", m=1000, rng=2)
    # 30 binary responses per group, variance 1: correlation about 0.85 expected
    assert np.corrcoef(ranef(fit)["mean"], effects)[0, 1] > 0.7


def test_chunked_moments_equal_concatenated(poisson_fit):
    fit, _ = poisson_fit
    theta = np.concatenate([fit.beta, fit.nu])
    pieces = list(fit.sample.weighted_draws(theta))
    assert len(pieces) > 1  # the running-max merge over chunks is exercised
    u = np.concatenate([p[0] for p in pieces])
    lw = np.concatenate([p[1] for p in pieces])
    w = np.exp(lw - lw.max(axis=0))
    w /= w.sum(axis=0)
    blocks = fit.sample.problem.blocks
    we = w[:, blocks.effect_block]
    mean = (we * u).sum(axis=0)
    sd = np.sqrt((we * (u - mean) ** 2).sum(axis=0))
    ess = 1.0 / (w**2).sum(axis=0)
    table = ranef(fit)
    # the same sums in another order: equal to rounding
    np.testing.assert_allclose(table["mean"], blocks.effects_to_design_order(mean),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(table["sd"], blocks.effects_to_design_order(sd), rtol=1e-10)
    np.testing.assert_allclose(table["ess"],
                               blocks.effects_to_design_order(ess[blocks.effect_block]),
                               rtol=1e-10)


def _quadrature(fit):
    """Posterior mean and SD of each level's effect by 1-D quadrature at the estimate."""
    beta, nu = fit.beta[0], fit.nu[0]
    term = fit.design.random_terms[0]
    grid = np.linspace(-12 * np.sqrt(nu), 12 * np.sqrt(nu), 8001)
    eta = fit.design.x[:, :1] * beta + grid[None, :]
    y = fit.design.y[:, None]
    loglik = y * log_expit(eta) + (1.0 - y) * log_expit(-eta)
    log_post = np.zeros((term.n_levels, grid.size))
    np.add.at(log_post, term.codes, loglik)
    log_post -= 0.5 * grid**2 / nu
    w = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mean = w @ grid
    return mean, np.sqrt(w @ grid**2 - mean**2)


def test_sd_matches_quadrature(booth_hobert_fit):
    fit = booth_hobert_fit
    mean, sd = _quadrature(fit)
    table = ranef(fit)
    rel = np.abs(table["sd"].to_numpy() / sd - 1.0)
    # With ESS ~ 9700 per block the relative Monte Carlo SE of a SD is about
    # sqrt(1 / (2 ESS)) ~ 0.007: the average over the 10 levels is ~0.006 (1e-2 is
    # ~3 of its SEs above), a single level may reach ~2 SEs (3e-2 is ~4 SEs).
    assert rel.mean() < 1e-2
    assert rel.max() < 3e-2
    # the mean's Monte Carlo SE is sd / sqrt(ESS) ~ 0.01 sd: allow 4.5 of them
    assert np.max(np.abs(table["mean"].to_numpy() - mean) / sd) < 4.5e-2


def test_degenerate_blocks_fall_back_to_mode(booth_hobert_fit):
    fit = booth_hobert_fit
    with pytest.warns(ImportanceSamplingWarning, match="conditional mode"):
        table = ranef(fit, min_ess=1e12)
    assert (table["method"] == "conditional mode").all()
    # the inverse curvature at the mode, by hand: 1 / (1/nu + sum_i p_i (1 - p_i))
    term = fit.design.random_terms[0]
    u = table["mean"].to_numpy()
    eta = fit.design.x[:, 0] * fit.beta[0] + u[term.codes]
    p = 1.0 / (1.0 + np.exp(-eta))
    curvature = 1.0 / fit.nu[0] + np.bincount(term.codes, p * (1 - p), term.n_levels)
    np.testing.assert_allclose(table["sd"], 1.0 / np.sqrt(curvature), rtol=1e-8)
    # the mode solves the score equation sum_i (y_i - p_i) - u / nu = 0
    score = np.bincount(term.codes, fit.design.y - p, term.n_levels) - u / fit.nu[0]
    np.testing.assert_allclose(score, 0.0, atol=1e-8)
    # and it is close to the (importance) conditional mean: the posterior is near normal
    _, sd = _quadrature(fit)
    np.testing.assert_allclose(table["sd"], sd, rtol=0.1)


def test_fit_without_sample_is_refused(poisson_fit):
    fit, _ = poisson_fit
    restored = dataclasses.replace(fit, sample=None)
    with pytest.raises(ArgumentError, match="importance sample"):
        ranef(restored)


def test_resampling_reproduces_moments(poisson_fit):
    fit, _ = poisson_fit
    draws = resample_conditional(fit, 4000, np.random.default_rng(3))
    table = ranef(fit)
    assert draws.shape == (4000, fit.design.n_effects)
    # resampling ESS ~ 1000 weighted draws 4000 times: the draws' mean is off by about
    # sd * sqrt(1/1000 + 1/4000) ~ 0.035 sd; 0.15 sd is > 4 SEs for the worst of 60
    sd = table["sd"].to_numpy()
    assert np.max(np.abs(draws.mean(axis=0) - table["mean"].to_numpy()) / sd) < 0.15
    assert np.max(np.abs(draws.std(axis=0) / sd - 1.0)) < 0.15


def test_correlated_slopes():
    sim = simulate_glmm("bernoulli", 600, {"g": 30}, beta=(0.2, 0.5),
                                    nu=[[[1.0, 0.3], [0.3, 0.5]]], rng=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pg.glmm("y ~ x + (1 + x | g)", None, sim, family="bernoulli", m=1000, rng=1)
    table = ranef(fit)
    assert len(table) == 60
    assert table["column"].tolist()[:4] == ["(Intercept)", "x", "(Intercept)", "x"]
    labels = [f"{t}:{lev}:{c}" for t, lev, c in zip(table["term"], table["level"],
                                                    table["column"], strict=True)]
    assert labels == list(fit.design.effect_names)
    summary = conditional_summary(fit)
    np.testing.assert_array_equal(summary.mean, table["mean"])
    assert np.all(np.isfinite(table["sd"])) and (table["sd"] > 0).all()
