"""The MCLA objective: derivatives against finite differences, chunked reduction.

Gradient and Hessian are closed forms (docs/method.md, "Gradient and Hessian as
weighted moments"); they must agree with central finite differences of the value
(gradient) and of the gradient (Hessian) to a relative error below 1e-5, for each
family, joint and block-wise,
with and without tied variance components.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import fd_gradient, make_objective

import pyglmm as pg
from pyglmm.chunks import _rows_times
from pyglmm.simulate import simulate_glmm

CASES = {
    "bernoulli": dict(
        fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"], family="bernoulli",
        data=simulate_glmm("bernoulli", 120, {"a": 8, "b": 6}, (0.2, 0.8), [0.8, 0.5], rng=3),
    ),
    "poisson": dict(
        fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"], family="poisson",
        data=simulate_glmm("poisson", 120, {"a": 8, "b": 6}, (0.5, 0.4), [0.4, 0.3], rng=4),
    ),
    "binomial": dict(
        fixed="cbind(y, fail) ~ x", random=["~ 0 + a", "~ 0 + b"], family="binomial",
        data=simulate_glmm("binomial", 120, {"a": 8, "b": 6}, (-0.2, 0.6), [0.5, 0.4],
                           trials=6, rng=5),
    ),
}


def _relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(approx - exact)) / max(np.max(np.abs(exact)), 1e-8))


_fd_gradient = fd_gradient


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("joint", [False, True], ids=["blocks", "joint"])
@pytest.mark.parametrize("equal", [None, [1, 1]], ids=["untied", "tied"])
@pytest.mark.parametrize("shift", [False, True], ids=["fixed-draws", "shifted-draws"])
def test_gradient_and_hessian_match_finite_differences(family, joint, equal, shift):
    case = CASES[family]
    n_comp = 1 if equal else 2
    _, objective, _ = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], joint=joint,
        equal=equal, theta_centre=np.concatenate([[0.1, 0.5], np.full(n_comp, 0.6)]),
        shift=shift,
    )
    # a point away from the centre, so the weights are not uniform
    theta = np.concatenate([[0.25, 0.35], np.full(n_comp, 0.45)])
    if n_comp == 2:
        theta[-1] = 0.7
    ev = objective.evaluate(theta)
    assert np.isfinite(ev.value)
    fd_grad = _fd_gradient(lambda t: objective.evaluate(t).value, theta)
    assert _relative_error(ev.gradient, fd_grad) < 1e-5
    fd_hess = np.column_stack([
        _fd_gradient(lambda t, j=j: objective.evaluate(t).gradient[j], theta)
        for j in range(theta.size)
    ])
    assert _relative_error(ev.hessian, 0.5 * (fd_hess + fd_hess.T)) < 1e-5
    assert np.allclose(ev.hessian, ev.hessian.T)


def test_three_formulas_tied_one_and_three(salamander):
    data = salamander.assign(Pair=salamander["Cross"])
    _, objective, _ = make_objective(
        "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male", "~ 0 + Pair"], data,
        "bernoulli", equal=[1, 2, 1], theta_centre=np.array([1, 0.3, -1.9, 1, 1.2, 1.1]),
    )
    theta = np.array([0.9, 0.4, -1.7, 0.8, 1.0, 1.3])
    ev = objective.evaluate(theta)
    fd_grad = _fd_gradient(lambda t: objective.evaluate(t).value, theta)
    assert _relative_error(ev.gradient, fd_grad) < 1e-5


def test_blocks_of_salamander(salamander):
    problem, _, _ = make_objective(
        "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], salamander, "bernoulli",
        theta_centre=np.array([1, 0.3, -1.9, 1, 1.2, 1.1]),
    )
    assert problem.blocks.n_blocks == 6
    assert problem.blocks.block_sizes.tolist() == [20] * 6
    assert problem.blocks.block_n_obs.tolist() == [60] * 6
    assert problem.blocks.component_counts.tolist() == [[10, 10]] * 6


def test_merging_is_associative_and_exact():
    case = CASES["poisson"]
    _, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=500, chunk=100
    )
    records = [objective.chunk_record(objective.chunk_source(j), theta) for j in range(5)]
    left = records[0]
    for rec in records[1:]:
        left = objective.merge(left, rec)
    right = records[-1]
    for rec in reversed(records[:-1]):
        right = objective.merge(rec, right)
    a, b = objective.finish(left, theta), objective.finish(right, theta)
    assert a.value == pytest.approx(b.value, rel=1e-13, abs=1e-12)
    np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(a.hessian, b.hessian, rtol=1e-11, atol=1e-11)


def test_one_chunk_equals_many_chunks_for_the_same_draws():
    """Chunking only changes how the same independent draws are reduced, not the result.

    (Randomised QMC draws depend on the chunks, whose sets are shifted apart.)
    """
    case = CASES["bernoulli"]
    problem, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=300, chunk=100,
        sampler="importance",
    )
    chunks = [objective.chunk_source(j) for j in range(3)]
    joined = type(chunks[0])(
        zu=np.concatenate([c.zu for c in chunks]),
        stats=np.concatenate([c.stats for c in chunks]),
        log_h=np.concatenate([c.log_h for c in chunks]),
    )
    single = pg.mcla.MCLAObjective(problem, lambda j: joined, [300])
    a, b = objective.evaluate(theta), single.evaluate(theta)
    assert a.value == pytest.approx(b.value, rel=1e-13)
    np.testing.assert_allclose(a.gradient, b.gradient, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.hessian, b.hessian, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.score_mc_covariance, b.score_mc_covariance, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(np.sort(a.top_log_weights, 1), np.sort(b.top_log_weights, 1))


def test_value_matches_direct_log_mean_exp():
    """The value is sum over blocks of log-mean-exp of the per-block log-weights."""
    case = CASES["bernoulli"]
    problem, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=200, chunk=200
    )
    chunk = objective.chunk_source(0)
    p = problem.n_fixed
    beta, nu = theta[:p], theta[p:]
    eta = chunk.zu + problem.x @ beta
    y = problem.y
    loglik = y * eta - np.logaddexp(0.0, eta)
    per_block = np.add.reduceat(loglik, problem.blocks.obs_starts, axis=1)
    counts = problem.blocks.component_counts
    log_prior = (-0.5 * counts.sum(1) * np.log(2 * np.pi) - 0.5 * counts @ np.log(nu)
                 - 0.5 * chunk.stats @ (1 / nu))
    logw = per_block + log_prior - chunk.log_h
    direct = np.sum(np.log(np.mean(np.exp(logw), axis=0)))
    assert objective.evaluate(theta).value == pytest.approx(direct, rel=1e-12)


def test_non_positive_variance_is_infeasible():
    case = CASES["bernoulli"]
    _, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=100, chunk=100
    )
    bad = theta.copy()
    bad[-1] = 0.0
    ev = objective.evaluate(bad)
    assert ev.value == -np.inf
    assert np.all(np.isfinite(ev.gradient)) and np.all(np.isfinite(ev.hessian))


def test_extreme_eta_stays_finite():
    case = CASES["poisson"]
    _, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=100, chunk=100
    )
    for beta0 in (-500.0, 400.0):
        t = theta.copy()
        t[0] = beta0
        ev = objective.evaluate(t)
        assert np.isfinite(ev.value)
        assert np.all(np.isfinite(ev.gradient)) and np.all(np.isfinite(ev.hessian))


@pytest.mark.parametrize("budget", [10**9, 150_000, 1_000])
def test_cache_modes_give_identical_results(budget):
    """Keeping chunks, keeping draws only, or redrawing from the seed: same numbers."""
    from pyglmm.fitting import round_sample
    from pyglmm.parallel import chunk_seeds, chunk_sizes

    case = CASES["bernoulli"]
    problem, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=300, chunk=100
    )
    reference = objective.evaluate(theta)
    sizes = chunk_sizes(300, 100)
    sampler = objective.chunk_source.sampler
    store, other = round_sample(problem, sampler, chunk_seeds(np.random.SeedSequence(1), 0, 3),
                                sizes, cache_bytes=budget)
    assert store.mode == {10**9: "chunks", 150_000: "draws", 1_000: "redraw"}[budget]
    for _ in range(2):
        ev = other.evaluate(theta)
        assert ev.value == reference.value
        assert np.array_equal(ev.hessian, reference.hessian)


def test_merge_groups_depend_only_on_the_number_of_chunks():
    """Up to MAX_GROUPS chunks the runs are single chunks (the plain left fold)."""
    from pyglmm.chunks import MAX_GROUPS, merge_groups

    assert merge_groups(5) == [range(j, j + 1) for j in range(5)]
    assert len(merge_groups(MAX_GROUPS)) == MAX_GROUPS
    runs = merge_groups(10 * MAX_GROUPS + 3)
    assert len(runs) <= MAX_GROUPS
    assert [j for run in runs for j in run] == list(range(10 * MAX_GROUPS + 3))
    assert merge_groups(0) == []


def test_records_fold_runs_left_to_right():
    """The objective's record is the left fold of its runs' left folds."""
    from pyglmm.chunks import merge_groups

    case = CASES["poisson"]
    _, objective, theta = make_objective(
        case["fixed"], case["random"], case["data"], case["family"], m=500, chunk=100
    )
    chunks = [objective.chunk_record(objective.chunk_source(j), theta) for j in range(5)]
    runs = objective.records(theta)
    assert len(runs) == len(merge_groups(5)) == 5
    for a, b in zip(runs, chunks, strict=True):
        np.testing.assert_array_equal(a.score_sum, b.score_sum)


@pytest.mark.parametrize("shape", [(2000, 6, 2, 4), (7, 1, 3, 1), (5, 3, 0), (0, 3, 2)])
def test_rows_times_is_the_stacked_product(shape) -> None:
    """The chunk's one matrix-vector product gives the stacked ``@``'s numbers."""
    rng = np.random.default_rng(5)
    stack, vector = rng.normal(size=shape), rng.normal(size=shape[-1])
    got = _rows_times(stack, vector)
    assert got.shape == shape[:-1]
    np.testing.assert_array_equal(got, stack @ vector)
