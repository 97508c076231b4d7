"""Randomised quasi-Monte Carlo draws (sampler="qmc").

* the points are draws of the Laplace t: their distribution matches it (Kolmogorov-
  Smirnov on a one-effect block); each set is the one scrambled Sobol net under its own
  random digital shift, and the tabulated chi-square quantile agrees with scipy's
  ``gammaincinv`` to a relative ``1e-10``;
* the MCLA built on them has the same closed-form derivatives (finite differences);
* the Monte Carlo errors from the spread between the shifted sets are honest: over
  12 seeds the spread of the estimates divided by the mean MCSE lies in [0.4, 2.2] (a
  sample SD over 12 values is within about 40% of its target with probability 0.99),
  and on R glmm's bacteria data, at equal m, it is at least 2x smaller than with
  independent draws (BENCHMARKS.md measures about 3x);
* the same seed gives the same fit, on one process or two.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import assert_derivatives_match, make_objective
from scipy import stats

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.errors import ArgumentError
from pyglmm.importance import laplace_t
from pyglmm.problem import Problem
from pyglmm.qmc import BITS, QMCSampler, chi2_quantile, qmc_chunk_size, sobol_net
from pyglmm.simulate import simulate_glmm


@pytest.fixture(scope="module")
def booth_problem():
    data = pg.datasets.load_booth_hobert()
    fam = pg.get_family("bernoulli")
    return Problem.build(build_design("y ~ 0 + x1", "~ 0 + z1", data, fam), fam)


def test_points_follow_the_proposal(booth_problem):
    problem = booth_problem
    laplace, mode, _ = laplace_t(problem, np.array([6.0]), np.array([2.0]), 20.0)
    points = QMCSampler(laplace)
    u = points.draw(np.random.default_rng(5), 4096, problem)
    scale = 1.0 / laplace.components[0].cholesky.factors[0][:, 0, 0]  # 1 / sqrt(H_b)
    for b in (0, 9):  # blocks are single effects, in order
        standardised = (u[:, b] - mode[b]) / scale[b]
        assert stats.kstest(standardised, stats.t(df=20.0).cdf).pvalue > 1e-3
    # every set is its own shift of the net: reproducible from the stream, not shared
    again = points.draw(np.random.default_rng(5), 4096, problem)
    assert np.array_equal(u, again)
    assert not np.allclose(u[0::8], u[1::8])
    np.testing.assert_allclose(points.log_density(u[:5], problem),
                               laplace.log_density(u[:5], problem))


def test_a_chunk_redrawn_from_its_stream_is_the_same(booth_problem):
    """scipy's Sobol spawns from the seed sequence of a generator it is given; the
    chunk's own stream must not change, or a redrawn chunk would differ."""
    from pyglmm.chunks import draw_effects

    laplace, _, _ = laplace_t(booth_problem, np.array([6.0]), np.array([2.0]), 20.0)
    seed = np.random.SeedSequence(9, spawn_key=(0, 3))
    first = draw_effects(booth_problem, QMCSampler(laplace), seed, 300)
    assert seed.n_children_spawned == 0
    assert np.array_equal(draw_effects(booth_problem, QMCSampler(laplace), seed, 300), first)


def test_each_set_is_a_digital_shift_of_one_net(booth_problem):
    """XOR-ing a set's uniforms with the first set's recovers one shift per coordinate:
    the sets are the same net under different digital shifts."""
    laplace, _, _ = laplace_t(booth_problem, np.array([6.0]), np.array([2.0]), 20.0)
    points = QMCSampler(laplace)
    net = sobol_net(20, 64)  # Booth-Hobert: 10 blocks of one effect and one chi-square
    assert net.shape == (64, 20) and not net.flags.writeable
    # the first 2^k points of the sequence are balanced: each coordinate's 64 values fall
    # one in each of the 64 intervals of length 1/64
    assert np.array_equal(np.sort(net[:, 7] >> (BITS - 6)), np.arange(64))
    assert np.array_equal(sobol_net(20, 40), net[:40])  # a prefix of the same sequence
    rng = np.random.default_rng(3)
    shifts = np.random.default_rng(3).integers(0, 1 << BITS, size=(8, 20), dtype=np.uint32)
    u = points.draw(rng, 8 * 64, booth_problem)
    # the first effect of row t of set r is the normal quantile of (net[t] ^ shift[r])
    scale = 1.0 / laplace.components[0].cholesky.factors[0][0, 0, 0]
    for r in (0, 5):
        uniforms = (net[:, 0] ^ shifts[r, 0]) * 2.0**-BITS
        chi = chi2_quantile((net[:, 1] ^ shifts[r, 1]) * 2.0**-BITS, 20.0)
        expected = laplace.components[0].location[0] + scale * stats.norm.ppf(
            uniforms) / np.sqrt(chi / 20.0)
        np.testing.assert_allclose(u[r::8, 0], expected, rtol=1e-12)


@pytest.mark.parametrize("df", [1.0, 3.0, 20.0, 100.0])
def test_the_tabulated_chi_square_quantile_is_as_exact_as_gammaincinv(df):
    from scipy.special import gammaincinv

    rng = np.random.default_rng(11)
    p = np.concatenate([rng.random(20_000), 2.0 ** -rng.uniform(1, 53, 2_000),
                        1.0 - 2.0 ** -rng.uniform(1, 52, 2_000)])
    exact = 2.0 * gammaincinv(0.5 * df, p)
    np.testing.assert_allclose(chi2_quantile(p, df), exact, rtol=1e-10, atol=0.0)


def test_chunks_hold_whole_sets_of_a_power_of_two():
    assert qmc_chunk_size(150) == 8 * 256
    assert qmc_chunk_size(7_584) == 8 * 16
    size = qmc_chunk_size(1_000)
    assert size % 8 == 0 and (size // 8) & (size // 8 - 1) == 0


def test_qmc_likelihood_derivatives_match_finite_differences():
    data = simulate_glmm("poisson", 120, {"a": 8, "b": 6}, (0.5, 0.4), [0.4, 0.3], rng=4)
    _, objective, _ = make_objective("y ~ x", ["~ 0 + a", "~ 0 + b"], data, "poisson",
                                     m=256, chunk=128, sampler="qmc", shift=True,
                                     theta_centre=np.array([0.5, 0.4, 0.4, 0.3]))
    theta = np.array([0.45, 0.5, 0.5, 0.25])
    ev = assert_derivatives_match(objective, theta)
    assert ev.n_batches == 2 * 8


def _seed_study(data, sampler, seeds, fixed, random, m=1000):
    fits = [pg.glmm(fixed, random, data, m=m, rng=seed, sampler=sampler)
            for seed in range(1, seeds + 1)]
    values = np.array([f.params().to_numpy() for f in fits])
    mcse = np.array([f.mcse().to_numpy() for f in fits]).mean(axis=0)
    return fits, values.std(axis=0, ddof=1), mcse


def test_qmc_errors_are_honest_and_smaller_than_independent_draws():
    bacteria = pg.datasets.load_bacteria()
    bacteria = bacteria.assign(week_gt_2=(bacteria["week"] > 2).astype(float))
    model = ("y2 ~ trt + week_gt_2", "~ 0 + ID")
    fits, spread, mcse = _seed_study(bacteria, "qmc", 12, *model)
    assert all(f.rounds[-1].sampler == "qmc" for f in fits)
    assert np.all((0.4 < spread / mcse) & (spread / mcse < 2.2)), spread / mcse
    assert "randomised quasi-Monte Carlo" in str(fits[0].summary())
    assert fits[0].diagnostics().chains is None  # point sets are not chains
    iid = [pg.glmm(*model, bacteria, m=1000, rng=seed, sampler="importance")
           for seed in (1, 2, 3)]
    iid_mcse = np.mean([f.mcse().to_numpy() for f in iid], axis=0)
    assert np.all(iid_mcse > 2.0 * mcse), iid_mcse / mcse


def test_qmc_fit_is_reproducible_and_the_same_on_two_processes():
    data = pg.datasets.load_salamander()
    args = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"], data=data,
                m=2048, rng=3, sampler="qmc")
    serial = pg.glmm(**args)
    for other in (pg.glmm(**args), pg.glmm(**args, n_jobs=2)):
        assert np.array_equal(other.params().to_numpy(), serial.params().to_numpy())
        assert other.loglike_value == serial.loglike_value
    back = pg.GLMMResults.from_json(serial.to_json())
    assert back.loglik_mcse() == serial.loglik_mcse() and back.n_batches == serial.n_batches


def test_qmc_needs_the_laplace_proposal():
    with pytest.raises(ArgumentError, match="importance='laplace'"):
        pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), sampler="qmc",
                importance="glmm")


def test_auto_uses_points_up_to_48_effects_a_block():
    """The measured boundary (BENCHMARKS.md section 8): blocks of 48 gain, of 96 do not."""
    from pyglmm.qmc import QMC_MAX_BLOCK
    from pyglmm.validation import check_settings

    settings = check_settings(m=10, blocks="independent", importance="laplace", recentre=0,
                              pilot_m=10, p=(1, 0, 0), zeta=20, rmax=10, iterlim=10,
                              chunk_size=None)
    assert QMC_MAX_BLOCK == 48
    assert settings.uses_qmc(1) and settings.uses_qmc(48) and not settings.uses_qmc(49)
    assert not settings.uses_chains(48) and not settings.uses_chains(199)
    glmm_mixture = dataclasses.replace(settings, importance="glmm")
    assert not glmm_mixture.uses_qmc(1)
    assert dataclasses.replace(settings, sampler="qmc").uses_qmc(500)
    assert not dataclasses.replace(settings, sampler="importance").uses_qmc(1)


def normal_quantile(p: np.ndarray) -> np.ndarray:
    """AS 241 (:func:`pyglmm.qmc._phi_inverse`, what :func:`shifted_normals` applies)
    elementwise, compiled here: the package applies it only inside its shifting pass."""
    import numba

    from pyglmm.qmc import _phi_inverse

    @numba.njit
    def each(flat: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
        out = np.empty_like(flat)
        for i in range(flat.size):
            out[i] = _phi_inverse(flat[i])
        return out

    flat = np.ascontiguousarray(p, dtype=np.float64).ravel()
    return each(flat).reshape(np.shape(p))


def test_normal_quantile_matches_ndtri_to_a_few_ulps():
    """AS 241 is accurate to about 1e-16; against scipy's ndtri (Cephes) both errors
    add: 1e-15 relative covers them, from p = 1e-300 to 1 - 1e-16."""
    from scipy.special import ndtri

    p = np.concatenate([np.logspace(-300, -1, 3000),
                        np.random.default_rng(4).random(20_000),
                        1.0 - np.logspace(-16, -1, 1000), [0.5, 0.075, 0.925]])
    got, want = normal_quantile(p), ndtri(p)
    np.testing.assert_allclose(got, want, rtol=2e-15, atol=0)
    np.testing.assert_array_equal(normal_quantile(p[:24_000].reshape(-1, 4)),
                                  got[:24_000].reshape(-1, 4))
    np.testing.assert_array_equal(normal_quantile(np.array([0.0, 1.0, 1.5, np.nan])),
                                  [-np.inf, np.inf, np.nan, np.nan])


def test_shifted_normals_are_the_quantiles_of_the_shifted_points_to_the_last_bit():
    from pyglmm.qmc import shifted_normals, shifted_uniforms

    rng = np.random.default_rng(9)
    net = sobol_net(12, 64)
    shifts = rng.integers(0, 1 << BITS, size=(8, 12), dtype=np.uint32)
    dims = np.array([0, 3, 4, 11, 7], dtype=np.intp)
    uniforms = shifted_uniforms(net, shifts, dims)
    assert uniforms.shape == (64 * 8, 5)
    np.testing.assert_array_equal(uniforms[8 * 5 + 3], ((net[5] ^ shifts[3]) * 2.0**-BITS)[dims])
    np.testing.assert_array_equal(shifted_normals(net, shifts, dims), normal_quantile(uniforms))
