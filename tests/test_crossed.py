"""The Schur-complement factor of large crossed blocks against the plain dense path.

Every operation of :class:`pyglmm.crossed.CrossedFactor` is pinned to the dense
Cholesky factor of the same block (1e-12 relative, or 1e-12 of the largest entry for
results that are differences), on designs small enough for both paths: one block of
crossed effects from two or three random formulas, with and without the PQL scaling.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyglmm.blocklinalg import BlockCholesky, solve_columns
from pyglmm.crossed import CrossedFactor, CrossedMatrix
from pyglmm.design import build_design
from pyglmm.families import get_family
from pyglmm.importance import conditional_mode, laplace_t
from pyglmm.laplace import laplace_fit, laplace_gradient, laplace_loglik
from pyglmm.pql import pql_centre
from pyglmm.problem import Problem
from pyglmm.simulate import simulate_glmm

DENSE = 10**9  # crossed_min_size that keeps every block dense


def _check_inverse_entries(chol: BlockCholesky, matrix: np.ndarray,
                           rng: np.random.Generator) -> None:
    """Every entry of the crossed block's inverse, and a shuffled sample of pairs, against
    the dense inverse (1e-12 of its largest entry), in one panel and in many."""
    import pyglmm.crossed as crossed_module

    inverse = np.linalg.inv(matrix)
    q = matrix.shape[0]
    rows, cols = (index.ravel() for index in np.meshgrid(np.arange(q), np.arange(q)))
    pick = rng.permutation(rows.size)[: rows.size // 3]
    for r, c in ((rows, cols), (rows[pick], cols[pick])):
        np.testing.assert_allclose(chol.inverse_entries(r, c), inverse[r, c], rtol=0,
                                   atol=1e-12 * np.abs(inverse).max())
    factor = chol.factors[0]
    assert isinstance(factor, CrossedFactor)
    n_rest = factor.schur_factor.shape[0]
    saved = crossed_module.PANEL_ENTRIES
    try:  # panels of 3 pivot rows
        crossed_module.PANEL_ENTRIES = 3 * n_rest
        np.testing.assert_allclose(chol.inverse_entries(rows[pick], cols[pick]),
                                   inverse[rows[pick], cols[pick]], rtol=0,
                                   atol=1e-12 * np.abs(inverse).max())
    finally:
        crossed_module.PANEL_ENTRIES = saved


def _design(groups: dict[str, int], n_obs: int, seed: int):  # type: ignore[no-untyped-def]
    nu = tuple(0.4 + 0.1 * k for k in range(len(groups)))
    frame = simulate_glmm("bernoulli", n_obs, groups, beta=(-0.3, 0.5), nu=nu, rng=seed)
    family = get_family("bernoulli")
    random = [f"~ 0 + {g}" for g in groups]
    return build_design("y ~ x", random, frame, family), family


@pytest.fixture(scope="module", params=["two formulas", "three formulas"])
def problems(request: pytest.FixtureRequest) -> tuple[Problem, Problem]:
    groups = {"a": 40, "b": 30} if request.param == "two formulas" else {
        "a": 40, "b": 25, "c": 8}
    design, family = _design(groups, 2_500, seed=11)
    dense = Problem.build(design, family, crossed_min_size=DENSE)
    crossed = Problem.build(design, family, crossed_min_size=16)
    return dense, crossed


def test_crossed_layout_is_used(problems: tuple[Problem, Problem]) -> None:
    dense, crossed = problems
    assert dense.blocks.n_blocks == 1 and not any(dense.layout.crossed)
    layout = crossed.layout.crossed[0]
    assert layout is not None
    assert layout.pivot.size == 40  # the formula with most levels is the pivot set
    assert layout.pivot.size + layout.rest.size == crossed.n_effects


@pytest.mark.parametrize("scaled", [False, True])
def test_crossed_factor_matches_dense(problems: tuple[Problem, Problem], scaled: bool) -> None:
    dense, crossed = problems
    rng = np.random.default_rng(3)
    q = dense.n_effects
    weights = rng.uniform(0.05, 0.25, dense.y.size)
    diagonal = rng.uniform(0.5, 2.0, q)
    scale = rng.uniform(0.3, 2.0, q) if scaled else None
    (matrix,) = dense.precision(weights, diagonal, scale)
    (structured,) = crossed.precision(weights, diagonal, scale)
    assert isinstance(structured, CrossedMatrix)
    np.testing.assert_allclose(structured.dense(), matrix[0], rtol=0, atol=1e-12 * np.abs(
        matrix).max())

    chol_dense = BlockCholesky.from_blocks(dense.groups, (matrix,), 1)
    chol_crossed = BlockCholesky.from_blocks(crossed.groups, (structured,), 1)
    assert isinstance(chol_crossed.factors[0], CrossedFactor)
    np.testing.assert_allclose(chol_crossed.half_log_det, chol_dense.half_log_det, rtol=1e-12)

    rhs = rng.standard_normal((q, 3))
    expected = solve_columns(chol_dense, rhs)
    np.testing.assert_allclose(solve_columns(chol_crossed, rhs), expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())
    rows = rng.standard_normal((6, q))
    np.testing.assert_allclose(chol_crossed.quadratic_form(rows, 1),
                               chol_dense.quadratic_form(rows, 1), rtol=1e-12)
    _check_inverse_entries(chol_crossed, matrix[0], rng)

    # draws: L^{-T} z with L the dense Cholesky factor of the pivot-then-rest ordering
    layout = crossed.layout.crossed[0]
    assert layout is not None
    perm = np.concatenate([layout.pivot, layout.rest])
    factor = np.linalg.cholesky(matrix[0][np.ix_(perm, perm)])
    z = rng.standard_normal((5, q))
    expected_draws = np.linalg.solve(factor.T, z[:, perm].T).T
    draws = chol_crossed.draw_transform(z)[:, perm]
    np.testing.assert_allclose(draws, expected_draws, rtol=0,
                               atol=1e-12 * np.abs(expected_draws).max())


def test_crossed_not_positive_definite_raises(problems: tuple[Problem, Problem]) -> None:
    _, crossed = problems
    q = crossed.n_effects
    (structured,) = crossed.precision(np.full(crossed.y.size, 0.2), np.full(q, -50.0))
    with pytest.raises(np.linalg.LinAlgError, match="crossed block"):
        BlockCholesky.from_blocks(crossed.groups, (structured,), 1)


def test_mode_pql_and_laplace_match_dense(problems: tuple[Problem, Problem]) -> None:
    """The fit's deterministic stages agree whichever factorisation they use."""
    dense, crossed = problems
    beta, nu = np.array([-0.2, 0.4]), np.full(dense.n_components, 0.6)
    mode_d, chol_d = conditional_mode(dense, beta, nu)
    mode_c, chol_c = conditional_mode(crossed, beta, nu)
    np.testing.assert_allclose(mode_c, mode_d, rtol=0, atol=1e-12 * np.abs(mode_d).max())
    np.testing.assert_allclose(chol_c.half_log_det, chol_d.half_log_det, rtol=1e-12)
    value_d = laplace_loglik(dense, beta, nu)[0]
    np.testing.assert_allclose(laplace_loglik(crossed, beta, nu)[0], value_d, rtol=1e-12)
    grad_d = laplace_gradient(dense, beta, nu, mode_d, chol_d)
    grad_c = laplace_gradient(crossed, beta, nu, mode_c, chol_c)
    np.testing.assert_allclose(grad_c, grad_d, rtol=0, atol=1e-10 * np.abs(grad_d).max())
    _, _, slope_d = laplace_t(dense, beta, nu, 20.0)
    _, _, slope_c = laplace_t(crossed, beta, nu, 20.0)
    np.testing.assert_allclose(slope_c, slope_d, rtol=0, atol=1e-12 * np.abs(slope_d).max())
    # optimisers: the same optimum within their tolerances (their paths differ by rounding)
    pql_d, pql_c = pql_centre(dense), pql_centre(crossed)
    np.testing.assert_allclose(pql_c.beta, pql_d.beta, atol=1e-4)
    np.testing.assert_allclose(pql_c.nu, pql_d.nu, atol=1e-4)
    fit_d = laplace_fit(dense, pql_d.beta, pql_d.variances)
    fit_c = laplace_fit(crossed, pql_c.beta, pql_c.variances)
    np.testing.assert_allclose(fit_c.loglik, fit_d.loglik, rtol=1e-9)
    np.testing.assert_allclose(fit_c.beta, fit_d.beta, atol=1e-4)
    np.testing.assert_allclose(fit_c.nu, fit_d.nu, atol=1e-4)


def test_warm_started_mode_matches_cold(problems: tuple[Problem, Problem]) -> None:
    """Chord steps from a nearby theta's factor reach the same mode as Newton from 0."""
    _, crossed = problems
    beta, nu = np.array([-0.2, 0.4]), np.full(crossed.n_components, 0.6)
    near_mode, near_factor = conditional_mode(crossed, beta + 0.05, nu * 1.1)
    cold, chol_cold = conditional_mode(crossed, beta, nu)
    warm, chol_warm = conditional_mode(crossed, beta, nu, start=near_mode, factor=near_factor)
    np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-10)
    np.testing.assert_allclose(chol_warm.half_log_det, chol_cold.half_log_det, rtol=1e-12)


def test_fit_of_a_large_crossed_block_recovers_the_truth() -> None:
    """glmm() end to end on one block of 300 crossed effects (the Schur path).

    ``sampler="auto"`` draws Markov chains for a block this large (the MCMC likelihood,
    tests/test_chains.py). The truth is recovered within 3 SE (the data's error
    dominates: MCSE/SE is small), and no sampling check fails (no
    ImportanceSamplingWarning: likelihood ratios, chain ESS and R-hat are fine).
    """
    import warnings

    import pyglmm as pg
    from pyglmm.crossed import CROSSED_MIN_SIZE
    from pyglmm.errors import ImportanceSamplingWarning

    truth = np.array([-0.3, 0.5, 0.6, 0.4])
    frame = simulate_glmm("bernoulli", 4_000, {"a": 160, "b": 140}, beta=tuple(truth[:2]),
                          nu=tuple(truth[2:]), rng=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImportanceSamplingWarning)
        fit = pg.glmm("y ~ x", ["~ 0 + a", "~ 0 + b"], frame, m=2_000, rng=1)
    assert fit.n_blocks == 1 and fit.block_sizes[0] == 300 >= CROSSED_MIN_SIZE
    assert {r.sampler for r in fit.rounds} == {"mcmc"} and fit.n_batches > 0
    z = (fit.params().to_numpy() - truth) / fit.se().to_numpy()
    assert np.all(np.abs(z) < 3.0), z
    assert np.all(fit.mcse().to_numpy() < 0.2 * fit.se().to_numpy())


# -- random slopes and correlated terms in a crossed block -----------------------------------
@pytest.fixture(scope="module")
def slope_problems() -> tuple[Problem, Problem]:
    """A crossed block with a correlated intercept and slope per level of ``a``.

    Z has slope values (not 0/1) and the prior precision has off-diagonal entries
    between a level's intercept and slope: the Schur path must carry both.
    """
    frame = simulate_glmm("bernoulli", 2_500, {"a": 40, "b": 30}, beta=(-0.3, 0.5),
                          nu=[[[0.4, 0.1], [0.1, 0.3]], 0.5], rng=12)
    family = get_family("bernoulli")
    design = build_design("y ~ x + (1 + x | a) + (1 | b)", None, frame, family)
    return (Problem.build(design, family, crossed_min_size=DENSE),
            Problem.build(design, family, crossed_min_size=16))


def test_crossed_factor_with_slopes_and_correlations(
    slope_problems: tuple[Problem, Problem],
) -> None:
    dense, crossed = slope_problems
    assert crossed.layout.crossed[0] is not None
    rng = np.random.default_rng(5)
    q = dense.n_effects
    prior = dense.prior_at(np.array([0.4, 0.1, 0.3, 0.5]))
    assert dense.prior.off_a.size == 40  # one correlation per level of a
    weights = rng.uniform(0.05, 0.25, dense.y.size)
    (matrix,) = dense.precision(weights, prior.diag_precision,
                                off_diagonal=prior.off_precision)
    (structured,) = crossed.precision(weights, prior.diag_precision,
                                      off_diagonal=prior.off_precision)
    np.testing.assert_allclose(structured.dense(), matrix[0], rtol=0,
                               atol=1e-12 * np.abs(matrix).max())
    # the dense block is Z^T W Z + D^{-1}, built here from the sparse Z
    z = dense.design.z_matrix()[dense.blocks.obs_order][:, dense.blocks.effect_order]
    d_inv = np.diag(prior.diag_precision)
    d_inv[dense.prior.off_a, dense.prior.off_b] = prior.off_precision
    d_inv[dense.prior.off_b, dense.prior.off_a] = prior.off_precision
    direct = (z.T @ (weights[:, None] * z.toarray())) + d_inv
    np.testing.assert_allclose(matrix[0], direct, rtol=0, atol=1e-12 * np.abs(direct).max())
    chol_dense = BlockCholesky.from_blocks(dense.groups, (matrix,), 1)
    chol_crossed = BlockCholesky.from_blocks(crossed.groups, (structured,), 1)
    np.testing.assert_allclose(chol_crossed.half_log_det, chol_dense.half_log_det, rtol=1e-12)
    rhs = rng.standard_normal((q, 2))
    expected = solve_columns(chol_dense, rhs)
    np.testing.assert_allclose(solve_columns(chol_crossed, rhs), expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())
    _check_inverse_entries(chol_crossed, matrix[0], rng)


def test_crossed_modes_and_laplace_with_slopes(slope_problems: tuple[Problem, Problem]) -> None:
    dense, crossed = slope_problems
    beta, psi = np.array([-0.2, 0.4]), np.array([0.4, 0.1, 0.3, 0.5])
    mode_d, chol_d = conditional_mode(dense, beta, psi)
    mode_c, chol_c = conditional_mode(crossed, beta, psi)
    np.testing.assert_allclose(mode_c, mode_d, rtol=0, atol=1e-10)
    assert laplace_loglik(crossed, beta, psi)[0] == pytest.approx(
        laplace_loglik(dense, beta, psi)[0], rel=1e-12)
    # the gradient through the Schur inverse: slopes' Z values and the prior's
    # intercept-slope pairs (pivot-pivot entries off the diagonal)
    grad_d = laplace_gradient(dense, beta, psi, mode_d, chol_d)
    grad_c = laplace_gradient(crossed, beta, psi, mode_c, chol_c)
    np.testing.assert_allclose(grad_c, grad_d, rtol=0, atol=1e-9 * np.abs(grad_d).max())
