"""The block-ordered prior: statistics, precision products and log-densities, directly.

Everything :class:`pyglmm.prior.PriorLayout` and :class:`pyglmm.prior.PriorAt` compute
from a few index arrays is rebuilt here the slow way, from the design's levels and a
dense ``D = blockdiag(Sigma_t per level)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.problem import Problem
from pyglmm.simulate import simulate_glmm

_FAMILY = pg.get_family("poisson")


def _crossed_data():
    return simulate_glmm("poisson", 70, {"g": 6, "h": 5}, (0.3, 0.5),
                         [np.array([[0.5, 0.1], [0.1, 0.4]]), 0.3], rng=1)


def _nested_data():
    data = simulate_glmm("poisson", 70, {"g": 5}, (0.3, 0.5),
                         [np.array([[0.5, 0.1], [0.1, 0.4]])], rng=2)
    sub = np.random.default_rng(3).integers(0, 2, len(data))
    data["h"] = pd.Categorical([f"{g}_{j}" for g, j in zip(data["g"], sub, strict=True)])
    return data


MODELS = {
    # an unstructured term crossed with a scalar one: a single block
    "crossed": ("y ~ x + (1 + x | g) + (1 | h)", None, _crossed_data, None, False),
    # h nested in g: one block per level of g
    "nested": ("y ~ x + (1 + x | g) + (1 | h)", None, _nested_data, None, False),
    "nested-joint": ("y ~ x + (1 + x | g) + (1 | h)", None, _nested_data, None, True),
    "diagonal": ("y ~ x + (1 + x || g) + (1 | h)", None, _nested_data, None, False),
    # list form, a random slope and two tied scalar terms
    "tied": ("y ~ x", ["~ 0 + g", "~ 0 + x:g", "~ 0 + h"], _nested_data, [1, 2, 1], False),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    fixed, random, data, equal, joint = MODELS[request.param]
    design = build_design(fixed, random, data(), _FAMILY, varcomps_equal=equal)
    problem = Problem.build(design, _FAMILY, joint=joint)
    lay = problem.params
    n_var = int(lay.is_variance.sum())
    psi = np.full(lay.n_random, 0.12)
    psi[lay.is_variance] = 0.4 + 0.15 * np.arange(n_var)
    assert lay.feasible(psi)
    return problem, psi


def _level_effects(problem):
    """Per term, the block-order effects of every level: (L_t, k_t)."""
    inverse = np.empty_like(problem.blocks.effect_order)
    inverse[problem.blocks.effect_order] = np.arange(inverse.size)
    return [inverse[problem.design.level_effects(t)]
            for t in range(len(problem.design.random_terms))]


def _dense_covariance(problem, psi):
    q = problem.n_effects
    d = np.zeros((q, q))
    covs = problem.params.covariances(psi)
    for t, pos in enumerate(_level_effects(problem)):
        for level in pos:
            d[np.ix_(level, level)] = covs[t]
    return d


def _direct_statistics(problem, u):
    prior = problem.prior
    out = np.zeros((u.shape[0], prior.n_blocks, prior.n_stats))
    block = problem.blocks.effect_block
    for t, pos in enumerate(_level_effects(problem)):
        structure = problem.params.structures[t]
        for s, pairs in enumerate(structure.stat_pairs()):
            col = prior.stat_start[t] + s
            for level in pos:
                b = block[level[0]]
                assert np.all(block[level] == b)
                for c1, c2 in pairs:
                    out[:, b, col] += u[:, level[c1]] * u[:, level[c2]]
    return out


def _direct_log_density(problem, psi, u):
    """Per draw and block, the sum of the levels' multivariate normal log-densities."""
    out = np.zeros((u.shape[0], problem.prior.n_blocks))
    block = problem.blocks.effect_block
    covs = problem.params.covariances(psi)
    for t, pos in enumerate(_level_effects(problem)):
        dist = multivariate_normal(np.zeros(pos.shape[1]), covs[t])
        for level in pos:
            out[:, block[level[0]]] += np.atleast_1d(dist.logpdf(u[:, level]))
    return out


def _draws(problem, psi, m=4, seed=0):
    d = _dense_covariance(problem, psi)
    return np.random.default_rng(seed).multivariate_normal(np.zeros(d.shape[0]), d, size=m)


def test_effect_term_and_column_match_the_design(model):
    problem, _ = model
    prior = problem.prior
    seen = np.zeros(problem.n_effects, dtype=int)
    for t, pos in enumerate(_level_effects(problem)):
        assert np.all(prior.effect_term[pos] == t)
        assert np.all(prior.effect_column[pos] == np.arange(pos.shape[1]))
        seen[pos.ravel()] += 1
        np.testing.assert_array_equal(
            prior.term_levels[:, t],
            np.bincount(problem.blocks.effect_block[pos[:, 0]], minlength=prior.n_blocks))
    assert np.all(seen == 1)
    np.testing.assert_array_equal(
        prior.block_sizes, np.bincount(problem.blocks.effect_block, minlength=prior.n_blocks))


def test_statistics_match_direct_sums(model):
    problem, psi = model
    u = _draws(problem, psi)
    np.testing.assert_allclose(problem.prior.statistics(u), _direct_statistics(problem, u),
                               rtol=1e-12, atol=1e-13)


def test_precision_products_match_dense_inverse(model):
    problem, psi = model
    at = problem.prior.at(psi)
    assert at is not None
    d = _dense_covariance(problem, psi)
    d_inv = np.linalg.inv(d)
    np.testing.assert_allclose(at.variances, np.diagonal(d), rtol=1e-14)
    np.testing.assert_allclose(problem.effect_variances(psi), np.diagonal(d), rtol=1e-14)
    np.testing.assert_allclose(at.diag_precision, np.diagonal(d_inv), rtol=1e-10)
    assert at.log_det == pytest.approx(np.linalg.slogdet(d)[1], rel=1e-10)
    rng = np.random.default_rng(5)
    v = rng.standard_normal(problem.n_effects)
    np.testing.assert_allclose(at.times(problem.prior, v), d_inv @ v, rtol=1e-10, atol=1e-12)
    many = rng.standard_normal((3, problem.n_effects))
    np.testing.assert_allclose(at.times(problem.prior, many), many @ d_inv, rtol=1e-10,
                               atol=1e-12)
    assert at.quadratic(problem.prior, v) == pytest.approx(v @ d_inv @ v, rel=1e-10)
    # the off-diagonal entries sit where D^{-1} has them, and nowhere else
    rebuilt = np.diag(at.diag_precision)
    rebuilt[problem.prior.off_a, problem.prior.off_b] = at.off_precision
    rebuilt[problem.prior.off_b, problem.prior.off_a] = at.off_precision
    np.testing.assert_allclose(rebuilt, d_inv, rtol=1e-10, atol=1e-12)


def test_log_density_matches_multivariate_normal(model):
    problem, psi = model
    at = problem.prior.at(psi)
    u = _draws(problem, psi, seed=1)
    stats = problem.prior.statistics(u)
    mine = at.const - 0.5 * stats @ at.pi
    np.testing.assert_allclose(mine, _direct_log_density(problem, psi, u), rtol=1e-11)
    # and in total, against the dense D
    d = _dense_covariance(problem, psi)
    total = multivariate_normal(np.zeros(problem.n_effects), d).logpdf(u)
    np.testing.assert_allclose(mine.sum(axis=1), total, rtol=1e-10)


def test_score_and_hessian_coefficients_match_finite_differences(model):
    problem, psi = model
    u = _draws(problem, psi, m=3, seed=2)
    stats = problem.prior.statistics(u)

    def log_density(p):
        return problem.prior.at(p).const - 0.5 * stats @ problem.prior.at(p).pi  # (m, B)

    def score(p):
        at = problem.prior.at(p)
        return at.score_const + stats @ at.score_stat  # (m, B, R)

    at = problem.prior.at(psi)
    h = 1e-6
    fd_score = np.zeros_like(score(psi))
    fd_hess = np.zeros((u.shape[0], psi.size, psi.size))
    for a in range(psi.size):
        e = np.zeros_like(psi)
        e[a] = h
        fd_score[..., a] = (log_density(psi + e) - log_density(psi - e)) / (2 * h)
        fd_hess[:, :, a] = ((score(psi + e) - score(psi - e)) / (2 * h)).sum(axis=1)
    s = score(psi)
    assert np.max(np.abs(s - fd_score)) < 1e-5 * np.max(np.abs(s))
    hess = at.hess_const + np.einsum("kbs,srt->krt", stats, at.hess_stat)
    assert np.max(np.abs(hess - fd_hess)) < 1e-5 * np.max(np.abs(hess))
    np.testing.assert_allclose(at.score_stat, -0.5 * at.dpi)


def test_projections_and_gram_of_shifted_draws(model):
    problem, psi = model
    prior = problem.prior
    rng = np.random.default_rng(7)
    u = _draws(problem, psi, m=3, seed=3)
    p = 2
    slope = rng.standard_normal((problem.n_effects, p))
    proj = prior.projections(u, slope)
    gram = prior.gram(slope)
    assert proj.shape == (3, prior.n_blocks, prior.n_stats, p)
    assert gram.shape == (prior.n_blocks, prior.n_stats, p, p)
    np.testing.assert_allclose(gram, np.swapaxes(gram, 2, 3), atol=1e-14)
    s = prior.statistics(u)
    for d in (np.array([0.3, -0.7]), np.array([1.5, 0.2])):
        shifted = prior.statistics(u + slope @ d)
        predicted = s + 2.0 * proj @ d + np.einsum("bsij,i,j->bs", gram, d, d)
        np.testing.assert_allclose(shifted, predicted, rtol=1e-11, atol=1e-11)
    # the sparse operator the shifted draws use gives the same projections
    operator = prior.projection_operator(slope)
    assert operator.shape == (prior.seg_starts.size * p, problem.n_effects)
    np.testing.assert_allclose(prior.projections_by(u, operator), proj, rtol=1e-13,
                               atol=1e-13)


def test_at_is_none_outside_the_parameter_space(model):
    problem, psi = model
    lay = problem.params
    bad = psi.copy()
    bad[np.flatnonzero(lay.is_variance)[0]] = -0.1
    assert problem.prior.at(bad) is None
    with pytest.raises(ValueError, match="positive definite"):
        problem.prior_at(bad)
    cov = np.flatnonzero(~lay.is_variance)
    if cov.size:
        indefinite = psi.copy()
        indefinite[cov[0]] = 5.0
        assert problem.prior.at(indefinite) is None
