"""The parameter layout: ties, feasibility, variance floors and unconstrained coordinates."""

from __future__ import annotations

import numpy as np
import pytest

import pyglmm as pg
from pyglmm.covariance import Diagonal, Scalar, Unstructured
from pyglmm.design import build_design
from pyglmm.layout import ParameterLayout
from pyglmm.simulate import simulate_glmm

FIXED = ("(Intercept)", "x")


def _mixed_layout(tied=False):
    """Scalar, diagonal, unstructured 2x2 and 3x3 terms (optionally a tied scalar)."""
    structures = [Scalar(1), Diagonal(2), Unstructured(2), Unstructured(3)]
    groups = [0, 1, 2, 3]
    if tied:
        structures.append(Scalar(1))
        groups.append(0)
    names = tuple(f"p{j}" for j in range(1 + 2 + 3 + 6))
    return ParameterLayout.build(FIXED, tuple(structures), tuple(groups), names)


def _mixed_psi():
    s2 = np.array([[0.8, -0.3], [-0.3, 0.5]])
    s3 = np.array([[1.2, 0.4, -0.2], [0.4, 0.7, 0.15], [-0.2, 0.15, 0.9]])
    return np.concatenate([[0.6], [0.3, 1.7], s2[np.tril_indices(2)], s3[np.tril_indices(3)]])


def test_tied_scalar_terms_share_a_parameter():
    lay = ParameterLayout.build(FIXED, (Scalar(1), Scalar(1), Scalar(1)), (0, 1, 0),
                                ("a", "b"))
    assert [ix.tolist() for ix in lay.term_index] == [[0], [1], [0]]
    assert lay.n_random == 2 and lay.n_term_params == 3 and lay.n_params == 4
    assert lay.names == ("(Intercept)", "x", "a", "b")
    np.testing.assert_array_equal(lay.tie_matrix(), [[1, 0], [0, 1], [1, 0]])
    psi = np.array([0.4, 0.9])
    np.testing.assert_array_equal(lay.tie_matrix() @ psi, [0.4, 0.9, 0.4])
    assert [float(lay.term_params(psi, t)[0]) for t in range(3)] == [0.4, 0.9, 0.4]
    assert lay.all_scalar
    assert lay.is_variance.tolist() == [True, True]


def test_ties_from_varcomps_equal_in_the_design():
    data = simulate_glmm("poisson", 80, {"a": 6, "b": 5, "c": 4}, (0.2, 0.4), [0.4, 0.3, 0.2],
                         rng=2)
    design = build_design("y ~ x", ["~ 0 + a", "~ 0 + b", "~ 0 + c"], data,
                          pg.get_family("poisson"), varcomps_equal=[1, 2, 1])
    lay = design.layout
    assert lay.n_random == 2
    assert [ix.tolist() for ix in lay.term_index] == [[0], [1], [0]]
    np.testing.assert_array_equal(lay.tie_matrix(), [[1, 0], [0, 1], [1, 0]])


def test_tie_matrix_and_indices_of_a_mixed_layout():
    lay = _mixed_layout(tied=True)
    assert [ix.tolist() for ix in lay.term_index] == [
        [0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10, 11], [0]]
    j = lay.tie_matrix()
    assert j.shape == (1 + 2 + 3 + 6 + 1, 12)
    np.testing.assert_array_equal(j[:12], np.eye(12))
    np.testing.assert_array_equal(j[12], np.eye(12)[0])
    assert lay.is_variance.tolist() == [True, True, True, True, False, True,
                                        True, False, True, False, False, True]
    assert not lay.all_scalar
    psi = _mixed_psi()
    covs = lay.covariances(psi)
    assert [c.shape for c in covs] == [(1, 1), (2, 2), (2, 2), (3, 3), (1, 1)]
    np.testing.assert_allclose(covs[1], np.diag([0.3, 1.7]))
    np.testing.assert_allclose(covs[4], covs[0])
    theta = lay.join([0.1, -0.2], psi)
    np.testing.assert_array_equal(lay.beta(theta), [0.1, -0.2])
    np.testing.assert_array_equal(lay.psi(theta), psi)


def test_build_refuses_inconsistent_ties_and_names():
    with pytest.raises(ValueError, match="same structure"):
        ParameterLayout.build(FIXED, (Scalar(1), Unstructured(2)), (0, 0), ("a",))
    with pytest.raises(ValueError, match="same structure"):  # same count, other structure
        ParameterLayout.build(FIXED, (Diagonal(3), Unstructured(2)), (0, 0), ("p", "q", "r"))
    with pytest.raises(ValueError, match="names"):
        ParameterLayout.build(FIXED, (Scalar(1), Scalar(1)), (0, 1), ("a",))


def test_start_is_identity_for_every_term():
    lay = _mixed_layout(tied=True)
    for sigma in lay.covariances(lay.start()):
        np.testing.assert_allclose(sigma, np.eye(sigma.shape[0]), atol=1e-14)
    assert lay.feasible(lay.start())


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_unconstrained_round_trip(tied):
    lay = _mixed_layout(tied=tied)
    psi = _mixed_psi()
    z = lay.to_unconstrained(psi)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(lay.from_unconstrained(z), psi, rtol=1e-12, atol=1e-12)
    # and the other way round, from arbitrary unconstrained coordinates
    rng = np.random.default_rng(4)
    for _ in range(5):
        w = rng.normal(0.0, 0.8, lay.n_random)
        back = lay.from_unconstrained(w)
        assert lay.feasible(back)
        np.testing.assert_allclose(lay.to_unconstrained(back), w, rtol=1e-12, atol=1e-12)


def test_unconstrained_coordinates_are_log_variances_and_log_cholesky():
    lay = _mixed_layout()
    psi = _mixed_psi()
    z = lay.to_unconstrained(psi)
    np.testing.assert_allclose(z[:3], np.log(psi[:3]), rtol=1e-14)
    sigma = lay.covariances(psi)[2]
    chol = np.linalg.cholesky(sigma)
    np.testing.assert_allclose(z[3:6], [np.log(chol[0, 0]), chol[1, 0], np.log(chol[1, 1])],
                               rtol=1e-12)
    assert lay.unconstrained_is_log_variance().tolist() == lay.is_variance.tolist()


def test_feasible():
    lay = _mixed_layout()
    psi = _mixed_psi()
    assert lay.feasible(psi)
    for j in np.flatnonzero(lay.is_variance):
        bad = psi.copy()
        bad[j] = 0.0
        assert not lay.feasible(bad), j
    indefinite = psi.copy()
    indefinite[4] = 0.7  # cov^2 = 0.49 > 0.8 * 0.5
    assert not lay.feasible(indefinite)
    pairwise = psi.copy()  # pairwise correlations valid, the 3x3 indefinite
    pairwise[6:] = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])[
        np.tril_indices(3)]
    assert not lay.feasible(pairwise)
    nan = psi.copy()
    nan[4] = np.nan
    assert not lay.feasible(nan)
    # a negative covariance is fine
    negative = psi.copy()
    negative[4] = -0.5
    assert lay.feasible(negative)


def test_floor_variances_raises_variances_and_keeps_definite():
    lay = _mixed_layout()
    psi = _mixed_psi()
    psi[0] = 1e-8  # scalar
    psi[1] = -0.2  # diagonal, negative
    psi[3] = 1e-6  # unstructured 2x2 variance: with cov -0.3 now indefinite
    psi[6:] = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])[
        np.tril_indices(3)]
    assert not lay.feasible(psi)
    floor = 0.05
    out = lay.floor_variances(psi, floor)
    assert lay.feasible(out)
    variance = lay.is_variance
    np.testing.assert_allclose(out[variance], np.maximum(psi[variance], floor), rtol=1e-10)
    assert np.all(out[variance] >= floor * (1 - 1e-12))
    # correlations only shrink, keeping their signs
    for t in (2, 3):
        before = lay.structures[t].covariance(psi[lay.term_index[t]])
        after = lay.structures[t].covariance(out[lay.term_index[t]])
        off = ~np.eye(before.shape[0], dtype=bool)
        assert np.all(np.abs(after[off]) <= np.abs(before[off]) + 1e-12)
        assert np.all(np.sign(after[off]) == np.sign(before[off]))
    # the input is not modified
    assert psi[0] == 1e-8


def test_floor_variances_leaves_a_feasible_point_alone():
    lay = _mixed_layout()
    psi = _mixed_psi()
    np.testing.assert_allclose(lay.floor_variances(psi, 1e-4), psi, rtol=1e-12, atol=1e-14)


def test_unconstrained_jacobian_matches_finite_differences():
    lay = _mixed_layout()
    z = lay.to_unconstrained(_mixed_psi()) + np.linspace(-0.2, 0.3, lay.n_random)
    jacobian = lay.unconstrained_jacobian(z)
    fd = np.empty_like(jacobian)
    for j in range(z.size):
        up, down = z.copy(), z.copy()
        up[j] += 1e-6
        down[j] -= 1e-6
        fd[:, j] = (lay.from_unconstrained(up) - lay.from_unconstrained(down)) / 2e-6
    np.testing.assert_allclose(jacobian, fd, rtol=0, atol=1e-8 * np.abs(fd).max())
