"""The MCMC likelihood (sampler="mcmc"): chains, level, derivatives, errors, fits.

* the chain kernel's log-likelihood and gradient equal the numpy reference, and the
  gradient equals finite differences of the log target;
* the chains sample the conditional distribution: on Booth-Hobert (ten blocks of one
  effect) their means match the exact conditional means by quadrature within four of
  their own batch-means MCSEs, and the bridge level matches the quadrature log
  likelihood within four of its reported MCSEs;
* the MCLA built on a fixed chain has gradient and Hessian equal to central finite
  differences of its value (relative 1e-5, as for importance sampling);
* an MCMC fit and an importance-sampling fit of a case where importance sampling works
  agree within 4 combined MCSEs (8 parameters: a 4-sigma bound is exceeded by chance with
  probability about 5e-4); the same seed gives the same fit, also on two processes.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import assert_derivatives_match, make_objective, round_settings
from scipy.special import logsumexp

import pyglmm as pg
import pyglmm.chains as chains_module
from pyglmm.bridge import bridge_level, optimal_bridge
from pyglmm.chains import (
    ChainSampler,
    _data_loglik_gradient_numpy,
    data_loglik_gradient,
    default_step,
)
from pyglmm.design import build_design
from pyglmm.errors import ArgumentError
from pyglmm.importance import laplace_t
from pyglmm.mixing import RHAT_MAX, chain_diagnostics
from pyglmm.problem import Problem
from pyglmm.rounds import build_round
from pyglmm.simulate import simulate_glmm


def _problem(fixed, random, family, data):
    fam = pg.get_family(family)
    return Problem.build(build_design(fixed, random, data, fam), fam)


CASES = {
    "bernoulli": ("y ~ x", ["~ 0 + a", "~ 0 + b"], "bernoulli",
                  simulate_glmm("bernoulli", 150, {"a": 9, "b": 7}, (0.2, 0.8), [0.8, 0.5],
                                rng=3)),
    "binomial": ("cbind(y, fail) ~ x", ["~ 0 + a", "~ 0 + b"], "binomial",
                 simulate_glmm("binomial", 150, {"a": 9, "b": 7}, (-0.2, 0.6), [0.5, 0.4],
                               trials=6, rng=5)),
    "poisson": ("y ~ x", ["~ 0 + a", "~ 0 + b"], "poisson",
                simulate_glmm("poisson", 150, {"a": 9, "b": 7}, (0.5, 0.4), [0.4, 0.3],
                              rng=4)),
    "slopes": ("y ~ x + (1 + x | a)", None, "bernoulli",
               simulate_glmm("bernoulli", 200, {"a": 12}, (0.1, 0.5),
                             [[[0.6, 0.1], [0.1, 0.3]]], rng=6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_chain_kernel_matches_numpy_and_finite_differences(case):
    problem = _problem(*CASES[case])
    rng = np.random.default_rng(1)
    u = 0.5 * rng.standard_normal((5, problem.n_effects))
    xb = problem.offset + problem.x @ np.full(problem.n_fixed, 0.3)
    weights = np.ones(problem.y.size) if problem.weights is None else problem.weights
    loglik, grad = data_loglik_gradient(problem, u, xb)
    ref_loglik, ref_grad = _data_loglik_gradient_numpy(problem.family, problem, u, xb,
                                                      weights)
    np.testing.assert_allclose(loglik, ref_loglik, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
    # without the log-likelihood the logistic mean takes another formula: same to rounding
    np.testing.assert_allclose(data_loglik_gradient(problem, u, xb, with_loglik=False)[1],
                               grad, rtol=1e-13, atol=1e-13)
    h = 1e-6
    for j in (0, problem.n_effects // 2, problem.n_effects - 1):
        step = np.zeros(problem.n_effects)
        step[j] = h
        up = data_loglik_gradient(problem, u + step, xb)[0].sum(axis=1)
        down = data_loglik_gradient(problem, u - step, xb)[0].sum(axis=1)
        np.testing.assert_allclose((up - down) / (2 * h), grad[:, j], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def booth_chain():
    """Chains at a fixed point of Booth-Hobert: 10 blocks of one effect, 15 rows each."""
    data = pg.datasets.load_booth_hobert()
    problem = _problem("y ~ 0 + x1", "~ 0 + z1", "bernoulli", data)
    beta, nu = np.array([6.0]), np.array([2.0])
    laplace, _, _ = laplace_t(problem, beta, nu, 20.0)
    sampler = ChainSampler.at(laplace, problem, beta, nu)
    return problem, beta, nu, sampler


def _quadrature(problem, beta, nu):
    """Per block: log of the integral of f(y_b, u) and the conditional mean of u."""
    grid = np.linspace(-15, 15, 6001)
    eta = (problem.x @ beta)[:, None] + problem.z_columns[:, [0]] * 0.0 + grid[None, :]
    log_f = problem.y[:, None] * eta - np.logaddexp(0.0, eta)
    block = problem.blocks.obs_block
    per_block = np.stack([log_f[block == b].sum(axis=0) for b in range(10)])
    per_block += -0.5 * grid**2 / nu[0] - 0.5 * np.log(2 * np.pi * nu[0])
    dx = grid[1] - grid[0]
    level = logsumexp(per_block, axis=1) + np.log(dx)
    weights = np.exp(per_block - level[:, None]) * dx
    return level, weights @ grid


def test_chains_sample_the_conditional_distribution(booth_chain):
    problem, beta, nu, sampler = booth_chain
    assert problem.blocks.block_sizes.tolist() == [1] * 10
    rng = np.random.default_rng(7)
    n_chains, length = sampler.n_chains, 250
    u = sampler.draw(rng, n_chains * length, problem)  # rows t * n_chains + c
    chain_means = u.reshape(length, n_chains, -1).mean(axis=0)  # (C, q)
    mcse = chain_means.std(axis=0, ddof=1) / np.sqrt(n_chains)
    _, exact_mean = _quadrature(problem, beta, nu)
    # the effects are in block order, one per block, in level order
    z = (u.mean(axis=0) - exact_mean) / mcse
    assert np.all(np.abs(z) < 4.0), z


def test_bridge_level_matches_quadrature(booth_chain):
    problem, beta, nu, sampler = booth_chain
    level, variance = bridge_level(problem, sampler, np.random.SeedSequence(3), 4096)
    exact, _ = _quadrature(problem, beta, nu)
    z = (level - exact) / np.sqrt(variance)
    assert np.all(np.abs(z) < 4.0), z
    assert np.all(np.sqrt(variance) < 0.05)
    # the Laplace level is an approximation of the same quantity (off by less than 0.1)
    assert np.all(np.abs(sampler.laplace_level(problem) - exact) < 0.1)


def test_optimal_bridge_is_exact_for_a_known_ratio():
    rng = np.random.default_rng(0)
    # target N(1, 1) unnormalised by e^3, g = N(0, 1): l(u) = 3 + u - 1/2
    u1, u2 = rng.normal(1.0, 1.0, 20_000), rng.normal(0.0, 1.0, 20_000)
    log_r = optimal_bridge((3 + u1 - 0.5)[:, None], (3 + u2 - 0.5)[:, None])
    assert abs(float(log_r[0]) - 3.0) < 0.03


@pytest.mark.parametrize("shift", [False, True], ids=["fixed-draws", "shifted-draws"])
def test_mcmc_likelihood_derivatives_match_finite_differences(shift):
    fixed, random, family, data = CASES["bernoulli"]
    _, objective, _ = make_objective(
        fixed, random, data, family, m=256, chunk=128, sampler="mcmc", shift=shift,
        theta_centre=np.array([0.1, 0.5, 0.6, 0.6]),
    )
    theta = np.array([0.25, 0.35, 0.45, 0.7])  # away from the centre: weights not uniform
    ev = assert_derivatives_match(objective, theta)
    assert ev.n_batches == 2 * 32 and ev.score_iid_covariance is not None


def test_mcmc_weights_at_the_centre_are_the_level():
    fixed, random, family, data = CASES["poisson"]
    centre = np.array([0.5, 0.4, 0.4, 0.3])
    problem, objective, _ = make_objective(fixed, random, data, family, m=256, chunk=128,
                                           sampler="mcmc", theta_centre=centre)
    ev = objective.evaluate(centre)
    assert ev.block_ess.min() > 255.99  # every likelihood ratio is 1
    assert ev.block_value_variance is not None and np.all(ev.block_value_variance > 0)


@pytest.fixture(scope="module")
def salamander_fits():
    sal = pg.datasets.load_salamander()
    args = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"], data=sal,
                m=4096, rng=11, varcomps_names=["F", "M"])
    return pg.glmm(**args, sampler="mcmc"), pg.glmm(**args, sampler="importance"), args


def test_mcmc_and_importance_fits_agree_within_their_mcse(salamander_fits):
    chains, importance, _ = salamander_fits
    assert [r.sampler for r in chains.rounds] == ["mcmc"] * len(chains.rounds)
    assert chains.n_batches > 0 and importance.n_batches == 0
    combined = np.sqrt(chains.mcse() ** 2 + importance.mcse() ** 2)
    z = (chains.params() - importance.params()) / combined
    assert np.all(np.abs(z) < 4.0), z
    assert abs(chains.loglik() - importance.loglik()) < 4 * np.hypot(
        chains.loglik_mcse(), importance.loglik_mcse())
    assert np.all(chains.mcse() < 0.1 * chains.se())
    diag = chains.diagnostics()
    assert diag.chains is not None and diag.chains.max_rhat < RHAT_MAX
    assert diag.messages == ()
    assert "Markov chains" in str(chains.summary())


def test_mcmc_fit_is_reproducible_and_the_same_on_two_processes(salamander_fits):
    chains, _, args = salamander_fits
    args = args | {"m": 1024}
    serial = pg.glmm(**args, sampler="mcmc")
    again = pg.glmm(**args, sampler="mcmc")
    two = pg.glmm(**args, sampler="mcmc", n_jobs=2)
    for other in (again, two):
        assert np.array_equal(other.params().to_numpy(), serial.params().to_numpy())
        assert other.loglike_value == serial.loglike_value
        assert np.array_equal(other.score_mc_covariance, serial.score_mc_covariance)


def test_mcmc_fit_record_round_trips(salamander_fits):
    chains, _, _ = salamander_fits
    back = pg.GLMMResults.from_json(chains.to_json())
    assert back.n_batches == chains.n_batches and back.sampler == "mcmc"
    assert np.array_equal(back.block_value_variance, chains.block_value_variance)
    assert back.loglik_mcse() == chains.loglik_mcse()
    assert back.diagnostics().chains.max_rhat == chains.diagnostics().chains.max_rhat
    record = json.loads(chains.to_json())
    assert record["settings"]["sampler"] == "mcmc"
    old = dict(record["settings"])
    del old["sampler"]  # a record written before the setting existed
    assert pg.settings.FitSettings.from_dict(old).sampler == "importance"


def test_auto_uses_chains_only_for_large_blocks():
    settings = dataclasses.replace(pg.validation.check_settings(
        m=10, blocks="independent", importance="laplace", recentre=0, pilot_m=10,
        p=(1, 0, 0), zeta=20, rmax=10, iterlim=10, chunk_size=None))
    assert settings.sampler == "auto"
    assert not settings.uses_chains(199) and settings.uses_chains(200)
    assert not dataclasses.replace(settings, importance="glmm").uses_chains(10_000)
    assert dataclasses.replace(settings, sampler="mcmc").uses_chains(1)
    assert not dataclasses.replace(settings, sampler="importance").uses_chains(10_000)


def test_sampler_argument_is_checked():
    data = pg.datasets.load_booth_hobert()
    with pytest.raises(ArgumentError, match="sampler must be"):
        pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, sampler="gibbs")
    with pytest.raises(ArgumentError, match="importance='laplace'"):
        pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, sampler="mcmc", importance="glmm")


def test_chain_diagnostics_formulas():
    hessian = -np.diag([4.0, 1.0])
    iid = np.diag([4.0, 1.0]) * 1e-3
    between = np.diag([4.0, 3.0]) * 1e-3  # autocorrelation times 1 and 3
    d = chain_diagnostics(hessian, between, iid, m=1000, n_chains=10,
                          parameter_names=["a", "b"])
    np.testing.assert_allclose(d.ess, [1000.0, 1000.0 / 3])
    np.testing.assert_allclose(d.rhat, np.sqrt([99 / 100 + 1 / 100, 99 / 100 + 3 / 100]))
    assert [c.name for c in d.checks()] == ["chain_ess"]
    bad = chain_diagnostics(hessian, between * 20, iid, m=1000, n_chains=10,
                            parameter_names=["a", "b"])
    assert {c.name for c in bad.checks()} == {"rhat", "chain_ess"}


def test_a_crossed_design_shaped_like_verbagg():
    """316 persons x 24 items, every person answering every item (n = 7,584, one block
    of 340 effects, as lme4's VerbAgg): no warning, every MCSE/SE at most 0.1, and two
    seeds agree within 2.5 combined MCSEs (BENCHMARKS.md section 8 runs VerbAgg itself)."""
    import warnings

    rng = np.random.default_rng(316)
    person, item = np.repeat(np.arange(316), 24), np.tile(np.arange(24), 316)
    x = rng.normal(size=316)[person]
    eta = -0.2 + 0.5 * x + rng.normal(0, 1.3, 316)[person] + rng.normal(0, 0.5, 24)[item]
    data = pd.DataFrame({"y": (rng.random(eta.size) < 1 / (1 + np.exp(-eta))).astype(int),
                         "x": x, "id": person.astype(str), "item": item.astype(str)})
    fits = []
    for seed in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fits.append(pg.glmm("y ~ x + (1 | id) + (1 | item)", data=data, m=2_000,
                                pilot_m=1_000, rng=seed))
    first, second = fits
    assert first.block_sizes.tolist() == [340] and first.rounds[-1].sampler == "mcmc"
    for fit in fits:
        assert np.all(fit.mcse() <= 0.1 * fit.se())
    combined = np.hypot(first.mcse(), second.mcse())
    assert np.all(np.abs(first.params() - second.params()) <= 2.5 * combined)


# -- chains in the large blocks only ----------------------------------------------------
def _mixed_blocks_data(seed=8):
    """One crossed block (9 x 7 levels, 150 rows) and 10 blocks of 2 effects (clusters
    with their own levels of ``a`` and ``b``, 5 rows each)."""
    crossed = simulate_glmm("bernoulli", 150, {"a": 9, "b": 7}, (0.2, 0.8), [0.8, 0.5],
                            rng=seed)
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(10), 5)
    u = rng.normal(0.0, 0.9, 10)[cluster] + rng.normal(0.0, 0.7, 10)[cluster]
    x = rng.uniform(-1, 1, cluster.size)
    small = pd.DataFrame({
        "y": (rng.random(cluster.size) < 1 / (1 + np.exp(-(0.2 + 0.8 * x + u)))).astype(int),
        "x": x, "a": [f"s{c}" for c in cluster], "b": [f"s{c}" for c in cluster]})
    for column in ("a", "b"):
        crossed[column] = crossed[column].astype(str)
    return pd.concat([crossed[["y", "x", "a", "b"]], small], ignore_index=True)


@pytest.fixture
def chains_from_16(monkeypatch):
    """``sampler="auto"`` chains blocks of at least 16 effects (the default is 200)."""
    monkeypatch.setattr(chains_module, "MCMC_MIN_BLOCK", 16)


def test_auto_chains_only_the_large_blocks(chains_from_16):
    data = _mixed_blocks_data()
    problem = _problem("y ~ x", ["~ 0 + a", "~ 0 + b"], "bernoulli", data)
    sizes = problem.blocks.block_sizes
    assert sorted(sizes.tolist()) == [2] * 10 + [16]
    settings = round_settings(m=256, chunk=128, seed=1, joint=False, importance="laplace",
                              shift=False, sampler="auto")
    assert np.array_equal(settings.chained_blocks(sizes), sizes >= 16)
    assert dataclasses.replace(settings, sampler="mcmc").chained_blocks(sizes).all()
    built = build_round(problem, settings, 0, np.array([0.2, 0.8, 0.8, 0.5]), 256)
    sampler = built.sampler
    assert sampler.kind == "mcmc" and np.array_equal(sampler.chained, sizes >= 16)
    assert sampler.step == pytest.approx(default_step(16))
    # no level where the chains do not run; the others' weights are the Laplace t's
    assert np.all(sampler.level[~sampler.chained] == 0.0)
    assert np.all(sampler.level_variance[~sampler.chained] == 0.0)
    assert np.all(sampler.level_variance[sampler.chained] > 0.0)
    u = sampler.draw(np.random.default_rng(3), 512, problem)
    own = sampler.log_density(u, problem)
    t_density = sampler.laplace.log_density(u, problem)
    assert np.array_equal(own[:, ~sampler.chained], t_density[:, ~sampler.chained])
    # the independent blocks' draws are not a chain: no autocorrelation along the rows
    small = problem.blocks.effect_block != np.flatnonzero(sampler.chained)[0]
    lag = u[:, small].reshape(-1, sampler.n_chains, small.sum())
    r = np.mean([np.corrcoef(lag[:-1, :, k].ravel(), lag[1:, :, k].ravel())[0, 1]
                 for k in range(small.sum())])
    assert abs(r) < 0.05
    # every block chained is the sampler without a mask: the same draws as before
    whole = ChainSampler.at(sampler.laplace, problem, sampler.beta, sampler.psi,
                            chained=np.ones(sizes.size, dtype=bool))
    assert whole.chained is None


@pytest.mark.parametrize("shift", [False, True], ids=["fixed-draws", "shifted-draws"])
def test_mixed_chain_likelihood_derivatives_match_finite_differences(chains_from_16, shift):
    _, objective, _ = make_objective(
        "y ~ x", ["~ 0 + a", "~ 0 + b"], _mixed_blocks_data(), "bernoulli", m=256,
        chunk=128, sampler="auto", shift=shift, theta_centre=np.array([0.1, 0.5, 0.6, 0.6]))
    assert objective.chunk_source.sampler.chained is not None
    ev = assert_derivatives_match(objective, np.array([0.25, 0.35, 0.45, 0.7]))
    assert ev.n_batches == 2 * 32 and ev.block_value_variance is not None


def test_mixed_chain_fit_agrees_with_importance_sampling(chains_from_16):
    data = _mixed_blocks_data()
    args = dict(fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"], data=data, m=4096, rng=5)
    mixed = pg.glmm(**args)  # sampler="auto": chains in the 16-effect block only
    importance = pg.glmm(**args, sampler="importance")
    assert [r.sampler for r in mixed.rounds][-1] == "mcmc"
    combined = np.sqrt(mixed.mcse() ** 2 + importance.mcse() ** 2)
    z = (mixed.params() - importance.params()) / combined
    assert np.all(np.abs(z) < 4.0), z
    assert abs(mixed.loglik() - importance.loglik()) < 4 * np.hypot(
        mixed.loglik_mcse(), importance.loglik_mcse())
    two = pg.glmm(**(args | {"m": 1024}), n_jobs=2)
    serial = pg.glmm(**(args | {"m": 1024}))
    assert np.array_equal(two.params().to_numpy(), serial.params().to_numpy())
    assert two.loglike_value == serial.loglike_value


@pytest.mark.parametrize("family_code", [0, 1, 2])
@pytest.mark.parametrize("with_loglik", [True, False])
def test_gradient_kernel_sweeps_each_row_as_if_alone(family_code, with_loglik):
    """The chains' kernel takes four rows at a time; each row's numbers are those of the
    row passed alone, to the last bit, whatever the number of rows (the last group's
    lanes past the last row write padding rows)."""
    rng = np.random.default_rng(21)
    n, q = 500, 60
    columns = np.column_stack([rng.integers(0, 30, n), rng.integers(30, q, n)]).astype(np.intp)
    values = np.column_stack([np.ones(n), rng.normal(size=n)])
    weights = rng.integers(0, 3, n).astype(float)
    xb = rng.normal(size=n)
    trials = rng.integers(1, 5, n).astype(float) if family_code == 1 else np.ones(n)
    y = (rng.poisson(2, n).astype(float) if family_code == 2
         else rng.binomial(trials.astype(int), 0.4).astype(float))
    obs_block = np.repeat(np.arange(2), [300, 200]).astype(np.intp)

    def kernel(u):
        rows = -(-u.shape[0] // 4) * 4
        loglik, grad = np.zeros((rows, 2)), np.empty((rows, q))
        chains_module._data_gradient_kernel(u, columns, values, weights, xb, y, trials,
                                            obs_block, family_code, with_loglik, loglik,
                                            grad)
        return loglik[:u.shape[0]], grad[:u.shape[0]]

    for m in (1, 6, 9):
        u = rng.normal(0, 2, (m, q))
        loglik, grad = kernel(u)
        for k in range(m):
            alone_loglik, alone_grad = kernel(u[k:k + 1])
            np.testing.assert_array_equal(loglik[k:k + 1], alone_loglik)
            np.testing.assert_array_equal(grad[k:k + 1], alone_grad)
