"""Families: cumulant functions (closed forms, extreme eta) and response checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, gammaln

import pyglmm as pg
from pyglmm.errors import ArgumentError, ArgumentTypeError, DataError
from pyglmm.families import POISSON_ETA_MAX, Bernoulli, Binomial, Family, Poisson

ETA = np.array([-800.0, -40.0, -3.0, -1e-3, 0.0, 1e-3, 2.5, 40.0, 800.0])


# -- get_family ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("bernoulli", Bernoulli),
        ("Bernoulli", Bernoulli),
        ("bernoulli.glmm", Bernoulli),
        (" poisson ", Poisson),
        ("poisson.glmm", Poisson),
        ("binomial", Binomial),
        ("binomial()", Binomial),
        (Poisson, Poisson),
        (Binomial(), Binomial),
    ],
)
def test_get_family_accepts_names_classes_and_instances(spec, cls):
    assert isinstance(pg.get_family(spec), cls)


def test_unknown_family_name_is_an_argument_error_with_the_choices():
    with pytest.raises(ArgumentError, match="unknown family 'gaussian'") as info:
        pg.get_family("gaussian")
    assert isinstance(info.value, ValueError)
    assert "bernoulli" in str(info.value) and "poisson" in str(info.value)


def test_misspelt_family_gets_a_suggestion():
    with pytest.raises(ArgumentError, match="did you mean 'poisson'"):
        pg.get_family("poison")


@pytest.mark.parametrize("spec", [3, None, ["bernoulli"], object])
def test_family_of_wrong_type_is_a_type_error(spec):
    with pytest.raises(ArgumentTypeError, match="family must be") as info:
        pg.get_family(spec)
    assert isinstance(info.value, TypeError)


def test_glmm_rejects_unknown_family_before_any_work(salamander):
    with pytest.raises(ArgumentError, match="unknown family"):
        pg.glmm("Mate ~ 0 + Cross", "~ 0 + Female", salamander, family="logistic", m=10)


# -- closed forms --------------------------------------------------------------------------
@pytest.mark.parametrize("family", [Bernoulli(), Binomial()])
def test_logistic_cumulant_mean_variance_match_closed_forms(family):
    trials = np.full(ETA.shape, 3.0) if isinstance(family, Binomial) else np.ones(ETA.shape)
    cumulant = family.cumulant(ETA, trials)
    mean, variance = family.mean_variance(ETA, trials)
    np.testing.assert_allclose(cumulant, trials * np.logaddexp(0.0, ETA), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mean, trials * expit(ETA), rtol=1e-12, atol=1e-15)
    # the variance keeps full relative accuracy in the tails: e^{-|eta|} / (1 + e^{-|eta|})^2
    np.testing.assert_allclose(
        variance, trials * expit(ETA) * expit(-ETA), rtol=1e-12, atol=1e-300
    )


@pytest.mark.parametrize("family", [Bernoulli(), Binomial(), Poisson()])
def test_variance_derivative_closed_forms_match_the_numerical_default(family):
    """The closed forms against :class:`Family`'s central differences, whose error is
    about 1e-9 relative, or 1e-11 absolute where the slope crosses 0 (eta = 0)."""
    eta = ETA[np.abs(ETA) < 40]
    trials = np.full(eta.shape, 3.0)
    closed = family.variance_derivative(eta, trials)
    numerical = Family.variance_derivative(family, eta, trials)
    np.testing.assert_allclose(closed, numerical, rtol=1e-8, atol=1e-10)
    if not isinstance(family, Poisson):  # mu (1 - mu) (1 - 2 mu), times the trials
        mu = expit(eta)
        scale = 3.0 if isinstance(family, Binomial) else 1.0
        np.testing.assert_allclose(closed, scale * mu * (1 - mu) * (1 - 2 * mu),
                                   rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("family", [Bernoulli(), Binomial(), Poisson()])
def test_all_terms_agrees_with_the_separate_functions(family):
    trials = np.full(ETA.shape, 4.0) if isinstance(family, Binomial) else np.ones(ETA.shape)
    y = np.where(ETA > 0, trials, 0.0)
    terms, mean, variance = family.all_terms(ETA, y, trials)
    np.testing.assert_allclose(terms, family.loglik_terms(ETA, y, trials), rtol=1e-12)
    np.testing.assert_allclose(mean, family.mean(ETA, trials), rtol=1e-12)
    np.testing.assert_allclose(variance, family.variance(ETA, trials), rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("family", [Bernoulli(), Binomial(), Poisson()])
@pytest.mark.parametrize("eta_value", [-1e6, -745.0, -40.0, 0.0, 40.0, 709.0, 710.0, 1e6])
def test_extreme_eta_gives_finite_terms_without_warnings(family, eta_value):
    eta = np.full((2, 3), eta_value)
    trials = np.array([1.0, 5.0, 2.0]) if isinstance(family, Binomial) else np.ones(3)
    y = np.array([0.0, 1.0, 1.0]) if not isinstance(family, Poisson) else np.array([0.0, 3, 7])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        terms, mean, variance = family.all_terms(eta, y, trials)
    for array in (terms, mean, variance):
        assert np.all(np.isfinite(array))
    assert np.all(variance >= 0)


def test_bernoulli_terms_at_huge_eta_are_exact_limits():
    eta = np.array([-1e6, 1e6])
    fam = Bernoulli()
    # the correct response costs nothing, the wrong one costs |eta|
    np.testing.assert_allclose(fam.loglik_terms(eta, np.array([0.0, 1.0]), np.ones(2)), 0.0)
    np.testing.assert_allclose(
        fam.loglik_terms(eta, np.array([1.0, 0.0]), np.ones(2)), [-1e6, -1e6]
    )


def test_poisson_is_capped_not_overflowing():
    fam = Poisson()
    mean = fam.mean(np.array([POISSON_ETA_MAX + 100.0]), np.ones(1))
    assert np.isfinite(mean[0]) and mean[0] == pytest.approx(np.exp(POISSON_ETA_MAX))


def test_loglik_constants():
    y = np.array([0.0, 2.0, 5.0])
    trials = np.array([3.0, 4.0, 5.0])
    expected = np.sum(gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1))
    assert Binomial().loglik_constant(y, trials) == pytest.approx(expected)
    assert Poisson().loglik_constant(y, np.ones(3)) == pytest.approx(-np.sum(gammaln(y + 1)))
    assert Bernoulli().loglik_constant(np.array([0.0, 1.0]), np.ones(2)) == 0.0


# -- response checks -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [2.0, 0.5, -1.0])
def test_bernoulli_response_outside_0_1(bad):
    y = np.array([0.0, 1.0, bad])
    with pytest.raises(DataError, match=r"bernoulli response 'y' must be 0 or 1") as info:
        Bernoulli().check_response(y, np.ones(3), "y", labels=["a", "b", "c"])
    assert "row 'c'" in str(info.value)
    assert "binomial" in str(info.value)


def test_nonfinite_response_is_refused():
    with pytest.raises(DataError, match="non-finite"):
        Poisson().check_response(np.array([1.0, np.inf]), np.ones(2), "y")


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([1.0, -2.0]), "must be non-negative counts"),
        (np.array([1.0, 2.5]), "must be integer-valued"),
    ],
)
def test_poisson_response_negative_or_fractional(y, message):
    with pytest.raises(DataError, match=message) as info:
        Poisson().check_response(y, np.ones(2), "count")
    assert "'count'" in str(info.value) and "row 1" in str(info.value)


def test_poisson_accepts_integer_valued_floats():
    # R's glmm rejects these (its GitHub issue #5)
    Poisson().check_response(np.array([0.0, 3.0, 1e6]), np.ones(3), "y")


@pytest.mark.parametrize(
    ("succ", "fail", "message"),
    [
        ([1.0, -1.0], [1.0, 1.0], "successes .* must be non-negative"),
        ([1.0, 1.0], [0.0, -2.0], "failures .* must be non-negative"),
        ([1.5, 1.0], [1.0, 1.0], "successes .* must be integer-valued"),
        ([1.0, 1.0], [0.25, 1.0], "failures .* must be integer-valued"),
    ],
)
def test_binomial_counts_negative_or_fractional(succ, fail, message):
    succ_a, fail_a = np.array(succ), np.array(fail)
    with pytest.raises(DataError, match=message):
        Binomial().check_response(succ_a, succ_a + fail_a, "cbind(s, f)")


def test_binomial_accepts_integer_valued_floats_and_zero_trials():
    Binomial().check_response(np.array([0.0, 2.0, 0.0]), np.array([3.0, 2.0, 0.0]), "r")


@pytest.mark.parametrize(
    ("family", "y", "trials", "phrase"),
    [
        (Bernoulli(), [0.0, 0.0], [1.0, 1.0], "all 0"),
        (Bernoulli(), [1.0, 1.0], [1.0, 1.0], "all 1"),
        (Binomial(), [0.0, 0.0], [3.0, 2.0], "no successes in any row"),
        (Binomial(), [3.0, 2.0], [3.0, 2.0], "no failures in any row"),
        (Poisson(), [0.0, 0.0], [1.0, 1.0], "all 0"),
        (Bernoulli(), [0.0, 1.0], [1.0, 1.0], None),
        (Binomial(), [1.0, 1.0], [3.0, 3.0], None),
        (Poisson(), [4.0, 4.0], [1.0, 1.0], None),
    ],
)
def test_degenerate_response(family, y, trials, phrase):
    assert family.degenerate_response(np.array(y), np.array(trials)) == phrase


def test_response_edges():
    y, trials = np.array([0.0, 1.0, 3.0, 0.0]), np.array([3.0, 3.0, 3.0, 0.0])
    lower, upper = Binomial().response_edges(y, trials)
    np.testing.assert_array_equal(lower, [True, False, False, True])
    np.testing.assert_array_equal(upper, [False, False, True, True])
    lower, upper = Poisson().response_edges(y, trials)
    np.testing.assert_array_equal(lower, [True, False, False, True])
    assert not upper.any()


def test_every_family_is_registered_and_documented():
    for name in ("bernoulli", "binomial", "poisson"):
        fam = pg.get_family(name)
        assert isinstance(fam, Family) and fam.name == name and fam.link
        assert repr(fam).endswith("()")
