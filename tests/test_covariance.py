"""Covariance structures: closed-form prior terms against finite differences and densities.

Every structure is linear in its parameters, ``Sigma(psi) = sum_a psi_a E_a``; its
:meth:`~pyglmm.covariance.CovarianceStructure.prior_terms` gives ``log det Sigma``, the
coefficients ``pi`` with ``tr(Sigma^{-1} S) = pi @ stats`` and their first and second
derivatives. These are checked against central finite differences and against a direct
sum of multivariate normal log-densities.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from pyglmm.covariance import (
    STRUCTURES,
    Diagonal,
    Scalar,
    Unstructured,
    make_structure,
)

CASES = [(cls, k) for cls in (Scalar, Diagonal, Unstructured) for k in (1, 2, 3)]
IDS = [f"{cls.name}-{k}" for cls, k in CASES]

# a well-conditioned covariance with non-trivial correlations (k = 3)
SIGMA3 = np.array([[0.9, 0.25, -0.15], [0.25, 0.6, 0.1], [-0.15, 0.1, 1.3]])


def _psi(structure):
    """A point of the structure's parameter space away from Sigma = I."""
    k = structure.k
    if isinstance(structure, Scalar):
        return np.array([0.7])
    if isinstance(structure, Diagonal):
        return np.array([0.7, 1.3, 0.45][:k])
    return structure.from_covariance(SIGMA3[:k, :k])


def _relative_error(approx, exact):
    approx, exact = np.asarray(approx, float), np.asarray(exact, float)
    return float(np.max(np.abs(approx - exact)) / max(np.max(np.abs(exact)), 1e-8))


def _fd(f, psi, h=1e-5):
    """Central differences of an array-valued ``f``; derivative index last."""
    cols = []
    for a in range(psi.size):
        step = np.zeros_like(psi)
        step[a] = h * max(1.0, abs(psi[a]))
        cols.append((np.asarray(f(psi + step)) - np.asarray(f(psi - step))) / (2 * step[a]))
    return np.stack(cols, axis=-1)


def _stats(structure, u):
    """The structure's statistics of ``S = sum_l u_l u_l^T``, straight from stat_pairs."""
    s = u.T @ u
    return np.array([sum(s[c1, c2] for c1, c2 in group) for group in structure.stat_pairs()])


@pytest.mark.parametrize(("cls", "k"), CASES, ids=IDS)
def test_prior_terms_derivatives_match_finite_differences(cls, k):
    structure = cls(k)
    psi = _psi(structure)
    pt = structure.prior_terms(psi)
    assert pt is not None
    n_par, n_stat = structure.n_params, len(structure.stat_pairs())
    assert pt.dlogdet.shape == (n_par,)
    assert pt.d2logdet.shape == (n_par, n_par)
    assert pt.pi.shape == (n_stat,)
    assert pt.dpi.shape == (n_stat, n_par)
    assert pt.d2pi.shape == (n_stat, n_par, n_par)

    def terms(p):
        out = structure.prior_terms(p)
        assert out is not None
        return out

    assert _relative_error(pt.dlogdet, _fd(lambda p: terms(p).logdet, psi)) < 1e-5
    assert _relative_error(pt.d2logdet, _fd(lambda p: terms(p).dlogdet, psi)) < 1e-5
    assert _relative_error(pt.dpi, _fd(lambda p: terms(p).pi, psi)) < 1e-5
    assert _relative_error(pt.d2pi, _fd(lambda p: terms(p).dpi, psi)) < 1e-5
    # symmetric second derivatives
    np.testing.assert_allclose(pt.d2logdet, pt.d2logdet.T, atol=1e-12)
    np.testing.assert_allclose(pt.d2pi, np.swapaxes(pt.d2pi, 1, 2), atol=1e-12)


@pytest.mark.parametrize(("cls", "k"), CASES, ids=IDS)
def test_prior_terms_values_are_log_det_and_precision(cls, k):
    structure = cls(k)
    psi = _psi(structure)
    sigma = structure.covariance(psi)
    pt = structure.prior_terms(psi)
    assert pt.logdet == pytest.approx(np.linalg.slogdet(sigma)[1], rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(pt.precision, np.linalg.inv(sigma), rtol=1e-12, atol=1e-12)
    # pi @ stats is tr(P S) for any symmetric S
    rng = np.random.default_rng(k)
    u = rng.standard_normal((7, k))
    assert pt.pi @ _stats(structure, u) == pytest.approx(
        np.trace(np.linalg.inv(sigma) @ u.T @ u), rel=1e-12)


@pytest.mark.parametrize(("cls", "k"), CASES, ids=IDS)
def test_log_density_equals_sum_of_normal_log_densities(cls, k):
    structure = cls(k)
    psi = _psi(structure)
    sigma = structure.covariance(psi)
    rng = np.random.default_rng(10 + k)
    n_levels = 9
    u = rng.multivariate_normal(np.zeros(k), sigma, size=n_levels)
    pt = structure.prior_terms(psi)
    mine = (-0.5 * n_levels * k * np.log(2 * np.pi) - 0.5 * n_levels * pt.logdet
            - 0.5 * pt.pi @ _stats(structure, u))
    direct = multivariate_normal(np.zeros(k), sigma).logpdf(u).sum()
    assert mine == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize(("cls", "k"), CASES, ids=IDS)
def test_start_is_identity_and_from_covariance_inverts_covariance(cls, k):
    structure = cls(k)
    np.testing.assert_allclose(structure.covariance(structure.start()), np.eye(k), atol=1e-14)
    psi = _psi(structure)
    np.testing.assert_allclose(structure.from_covariance(structure.covariance(psi)), psi,
                               rtol=1e-12, atol=1e-14)
    assert structure.feasible(structure.start())
    assert structure.feasible(psi)
    assert structure.covariance(psi).shape == (k, k)
    np.testing.assert_allclose(structure.covariance(psi), structure.covariance(psi).T)


@pytest.mark.parametrize(("cls", "k"), CASES, ids=IDS)
def test_infeasible_parameters(cls, k):
    structure = cls(k)
    psi = _psi(structure)
    neg = psi.copy()
    neg[structure.variance_index()[-1]] = -0.3
    assert not structure.feasible(neg)
    assert structure.prior_terms(neg) is None
    zero = psi.copy()
    zero[structure.variance_index()[0]] = 0.0
    assert not structure.feasible(zero)
    nan = psi.copy()
    nan[0] = np.nan
    assert not structure.feasible(nan)
    inf = psi.copy()
    inf[0] = np.inf
    assert structure.prior_terms(inf) is None


@pytest.mark.parametrize(
    ("k", "sigma"),
    [
        (2, np.array([[1.0, 1.5], [1.5, 1.0]])),  # |correlation| > 1
        (2, np.array([[1.0, -1.0], [-1.0, 1.0]])),  # singular
        # every pairwise correlation below 1, yet indefinite
        (3, np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])),
    ],
    ids=["corr-above-one", "singular", "pairwise-valid-indefinite"],
)
def test_unstructured_indefinite_sigma_is_infeasible(k, sigma):
    structure = Unstructured(k)
    assert np.min(np.linalg.eigvalsh(sigma)) <= 1e-12
    # the lower triangle row by row, exactly (least squares could round off)
    psi = sigma[np.tril_indices(k)]
    np.testing.assert_array_equal(structure.covariance(psi), sigma)
    assert not structure.feasible(psi)
    assert structure.prior_terms(psi) is None


def test_variance_params_and_index():
    assert Scalar(1).variance_params().tolist() == [True]
    assert Scalar(3).variance_params().tolist() == [True]
    assert Scalar(3).variance_index().tolist() == [0, 0, 0]
    assert Diagonal(3).variance_params().tolist() == [True] * 3
    assert Diagonal(3).variance_index().tolist() == [0, 1, 2]
    assert Unstructured(1).variance_params().tolist() == [True]
    assert Unstructured(2).variance_params().tolist() == [True, False, True]
    assert Unstructured(3).variance_params().tolist() == [True, False, True, False, False, True]
    assert Unstructured(3).variance_index().tolist() == [0, 2, 5]


def test_sizes_and_diagonality():
    assert [Scalar(k).n_params for k in (1, 2, 3)] == [1, 1, 1]
    assert [Diagonal(k).n_params for k in (1, 2, 3)] == [1, 2, 3]
    assert [Unstructured(k).n_params for k in (1, 2, 3)] == [1, 3, 6]
    assert Scalar(3).is_diagonal and Diagonal(3).is_diagonal
    assert Unstructured(1).is_diagonal
    assert not Unstructured(2).is_diagonal
    # a scalar term's single statistic is the trace of S
    assert Scalar(3).stat_pairs() == (((0, 0), (1, 1), (2, 2)),)
    assert Unstructured(2).stat_pairs() == (((0, 0),), ((1, 0),), ((1, 1),))


def test_param_labels():
    cols2 = ("(Intercept)", "x")
    assert Scalar(2).param_labels(cols2) == ("var (Intercept),x",)
    assert Diagonal(2).param_labels(cols2) == ("var (Intercept)", "var x")
    assert Unstructured(2).param_labels(cols2) == (
        "var (Intercept)", "cov (Intercept),x", "var x")
    assert Unstructured(3).param_labels(("a", "b", "c")) == (
        "var a", "cov a,b", "var b", "cov a,c", "cov b,c", "var c")


def test_make_structure():
    assert make_structure("scalar", 2) == Scalar(2)
    assert make_structure("diagonal", 3) == Diagonal(3)
    assert make_structure("unstructured", 2) == Unstructured(2)
    assert set(STRUCTURES) == {"scalar", "diagonal", "unstructured"}
    with pytest.raises(ValueError, match="unknown covariance structure 'banded'") as info:
        make_structure("banded", 2)
    for name in STRUCTURES:
        assert name in str(info.value)
