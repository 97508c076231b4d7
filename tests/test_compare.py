"""Model comparison: information criteria, likelihood-ratio tests, anova (pyglmm.compare)."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

import pyglmm as pg
from pyglmm import compare
from pyglmm.errors import ArgumentError, BoundaryWarning, DataWarning
from pyglmm.simulate import simulate_glmm
from pyglmm.terms import INTERCEPT, TermInfo

SAL_FIXED = "Mate ~ 0 + Cross"
SAL_RANDOM = ["~ 0 + Female", "~ 0 + Male"]


def _fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pg.glmm(*args, **kwargs)


# -- fits shared by the tests ------------------------------------------------------------
@pytest.fixture(scope="module")
def sal_fits(salamander):
    full = _fit(SAL_FIXED, SAL_RANDOM, salamander, m=1000, rng=1)
    full_again = _fit(SAL_FIXED, SAL_RANDOM, salamander, m=1000, rng=7)
    null = _fit(SAL_FIXED, SAL_RANDOM[:1], salamander, m=1000, rng=2)
    return SimpleNamespace(full=full, full_again=full_again, null=null)


@pytest.fixture(scope="module")
def crossed_data():
    """Poisson data with two crossed factors; the second has true variance 0."""
    return simulate_glmm("poisson", 300, {"a": 15, "b": 15}, beta=(0.5, 0.3),
                         nu=[0.5, 0.0], rng=0)


@pytest.fixture(scope="module")
def crossed_fits(crossed_data):
    alt = _fit("y ~ x", ["~ 0 + a", "~ 0 + b"], crossed_data, family="poisson", m=1000,
               rng=1)
    null = _fit("y ~ x", ["~ 0 + a"], crossed_data, family="poisson", m=1000, rng=2)
    return SimpleNamespace(alt=alt, null=null)


@pytest.fixture(scope="module")
def slope_fits():
    data = simulate_glmm("poisson", 300, {"g": 20}, beta=(0.5, 0.3),
                         nu=[[[0.5, 0.1], [0.1, 0.3]]], rng=3)
    intercept = _fit("y ~ x + (1 | g)", None, data, family="poisson", m=1000, rng=2)
    slope = _fit("y ~ x + (1 + x | g)", None, data, family="poisson", m=1000, rng=3)
    diagonal = _fit("y ~ x + (1 + x || g)", None, data, family="poisson", m=1000, rng=4)
    return SimpleNamespace(intercept=intercept, slope=slope, diagonal=diagonal)


# -- single fits -------------------------------------------------------------------------
def test_df_nobs_aic_bic(sal_fits, salamander):
    fit = sal_fits.full
    assert compare.loglik_df(fit) == 6 == fit.beta.size + fit.nu.size
    assert compare.nobs(fit) == len(salamander)
    ll = fit.loglike_value
    assert compare.aic(fit) == pytest.approx(-2 * ll + 2 * 6)
    assert compare.bic(fit) == pytest.approx(-2 * ll + math.log(len(salamander)) * 6)


def test_nobs_counts_binomial_rows():
    data = simulate_glmm("binomial", 120, {"g": 10}, beta=(0.2, 0.5), nu=[0.5], trials=7,
                         rng=5)
    fit = _fit("cbind(y, fail) ~ x", ["~ 0 + g"], data, family="binomial", m=500, rng=1)
    assert compare.nobs(fit) == 120


def test_loglik_mcse_formula(sal_fits, salamander):
    # independent draws: from each block's ESS (the delta method)
    fit = _fit(SAL_FIXED, SAL_RANDOM, salamander, m=1000, rng=1, sampler="importance")
    expected = math.sqrt(np.sum(np.maximum(1 / fit.block_ess - 1 / fit.n_draws, 0)))
    assert fit.block_value_variance is None
    assert compare.loglik_mcse(fit) == pytest.approx(expected)
    assert 0 < compare.loglik_mcse(fit) < 1
    # randomly shifted Sobol sets (the default here): from the spread between the sets
    fit = sal_fits.full
    assert fit.rounds[-1].sampler == "qmc" and fit.block_value_variance is not None
    assert compare.loglik_mcse(fit) == pytest.approx(
        math.sqrt(np.sum(fit.block_value_variance)))
    assert 0 < compare.loglik_mcse(fit) < 1


def test_refit_loglik_within_mcse(sal_fits):
    a, b = sal_fits.full, sal_fits.full_again
    spread = math.hypot(compare.loglik_mcse(a), compare.loglik_mcse(b))
    assert abs(a.loglike_value - b.loglike_value) < 4 * spread
    with pytest.raises(ArgumentError, match="both models have 6 parameters"):
        compare.lrt(a, b)


def test_restored_fit(sal_fits):
    restored = pg.GLMMResults.from_json(sal_fits.null.to_json())
    with pytest.raises(ArgumentError, match="restored"):
        compare.nobs(restored)
    with pytest.raises(ArgumentError, match="restored"):
        compare.bic(restored)
    assert compare.aic(restored) == compare.aic(sal_fits.null)
    with pytest.warns(DataWarning, match="same observations"):
        result = compare.lrt(restored, sal_fits.full)
    assert result.statistic == compare.lrt(sal_fits.null, sal_fits.full).statistic
    with pytest.warns(DataWarning):
        table = compare.anova(restored, sal_fits.full)
    assert np.isnan(table["BIC"].iloc[0]) and np.isfinite(table["BIC"].iloc[1])


# -- the likelihood-ratio test -----------------------------------------------------------
def test_lrt_dropped_variance_component(sal_fits):
    result = compare.lrt(sal_fits.full, sal_fits.null)  # either order
    assert result == compare.lrt(sal_fits.null, sal_fits.full)
    assert result.statistic == pytest.approx(
        2 * (sal_fits.full.loglike_value - sal_fits.null.loglike_value))
    assert result.df == 1
    assert result.boundary
    assert result.null_distribution == "0.5 chi-square(0) + 0.5 chi-square(1)"
    assert result.weights == (0.5, 0.5) and result.mixture_df == (0, 1)
    assert result.naive_p_value == pytest.approx(stats.chi2.sf(result.statistic, 1))
    assert result.p_value == pytest.approx(0.5 * result.naive_p_value)
    expected_mcse = 2 * math.hypot(compare.loglik_mcse(sal_fits.full),
                                   compare.loglik_mcse(sal_fits.null))
    assert result.mcse == pytest.approx(expected_mcse)
    assert result.null == "Mate ~ 0 + Cross; random: ~ 0 + Female"


def test_lrt_true_variance_zero(crossed_fits):
    alt, null = crossed_fits.alt, crossed_fits.null
    result = compare.lrt(null, alt)
    assert result.statistic == pytest.approx(2 * (alt.loglike_value - null.loglike_value))
    # no real gain from the second factor: the statistic is small, and never far below 0
    assert -4 * result.mcse < result.statistic < 4.0
    assert result.null_distribution == "0.5 chi-square(0) + 0.5 chi-square(1)"
    if result.statistic > 0:
        assert result.p_value == pytest.approx(0.5 * result.naive_p_value)
    else:
        assert result.p_value == 1.0


def test_lrt_bar_models_random_slope(slope_fits):
    result = compare.lrt(slope_fits.intercept, slope_fits.slope)
    assert result.df == 2 and result.boundary
    assert result.null_distribution == "0.5 chi-square(1) + 0.5 chi-square(2)"
    x = result.statistic
    assert result.p_value == pytest.approx(0.5 * stats.chi2.sf(x, 1) + 0.5 * stats.chi2.sf(x, 2))
    assert result.naive_p_value == pytest.approx(stats.chi2.sf(x, 2))
    assert result.null == "y ~ x + (1 | g)"


def test_lrt_structure_relaxation_is_interior(slope_fits):
    diag = compare.lrt(slope_fits.intercept, slope_fits.diagonal)
    assert diag.null_distribution == "0.5 chi-square(0) + 0.5 chi-square(1)"
    full = compare.lrt(slope_fits.diagonal, slope_fits.slope)  # adds one covariance
    assert full.df == 1 and not full.boundary
    assert full.null_distribution == "chi-square(1)"
    assert full.p_value == full.naive_p_value
    with pytest.raises(ArgumentError, match="not nested"):
        compare.lrt(slope_fits.slope, _enlarged(slope_fits.diagonal))


def _enlarged(fit):
    """The diagonal fit with two more parameters: larger than, but not holding, the slope."""
    return SimpleNamespace(**{**_attrs(fit), "nu": np.append(fit.nu, [0.0, 0.0])})


def _attrs(fit):
    names = ["family", "design", "fixed_names", "terms", "beta", "nu", "loglike_value",
             "block_ess", "n_draws", "fixed_formula", "random_formulas"]
    return {n: getattr(fit, n) for n in names}


def test_lrt_fallback_for_correlated_columns():
    data = simulate_glmm("poisson", 300, {"a": 10, "g": 15}, beta=(0.5, 0.3),
                         nu=[0.4, [[0.4, 0.0], [0.0, 0.2]]], rng=8)
    null = _fit("y ~ x + (1 | a)", None, data, family="poisson", m=1000, rng=1)
    alt = _fit("y ~ x + (1 | a) + (1 + x | g)", None, data, family="poisson", m=1000, rng=2)
    with pytest.warns(BoundaryWarning, match="boundary not accounted for"):
        result = compare.lrt(null, alt)
    assert result.df == 3 and result.boundary
    assert result.null_distribution == "chi-square(3) (boundary not accounted for)"
    assert result.p_value == result.naive_p_value


# -- refusals ----------------------------------------------------------------------------
def test_refuse_different_family(sal_fits, salamander):
    poisson = _fit(SAL_FIXED, SAL_RANDOM[:1], salamander, family="poisson", m=500, rng=1)
    with pytest.raises(ArgumentError, match="different families.*'poisson' and 'bernoulli'"):
        compare.lrt(poisson, sal_fits.full)
    with pytest.raises(ArgumentError, match="different families"):
        compare.anova(sal_fits.full, poisson)


def test_refuse_different_data(sal_fits, salamander):
    fewer = _fit(SAL_FIXED, SAL_RANDOM[:1], salamander.iloc[:300], m=500, rng=1)
    with pytest.raises(ArgumentError, match="different data.*360 and 300 observations"):
        compare.lrt(sal_fits.full, fewer)
    flipped = salamander.copy()
    flipped["Mate"] = 1 - flipped["Mate"]
    other = _fit(SAL_FIXED, SAL_RANDOM[:1], flipped, m=500, rng=1)
    with pytest.raises(ArgumentError, match=r"response \(y\).*differ"):
        compare.lrt(other, sal_fits.full)
    with pytest.raises(ArgumentError, match="different data"):
        compare.anova(sal_fits.full, other)


def test_refuse_different_offset_and_weights(crossed_data, crossed_fits):
    data = crossed_data.assign(t=np.linspace(1, 2, len(crossed_data)))
    offset = _fit("y ~ x + offset(log(t))", ["~ 0 + a"], data, family="poisson", m=500,
                  rng=1)
    with pytest.raises(ArgumentError, match="offset"):
        compare.lrt(offset, crossed_fits.alt)
    weighted = _fit("y ~ x", ["~ 0 + a"], crossed_data, family="poisson", m=500, rng=1,
                    weights=np.linspace(0.5, 1.5, len(crossed_data)))
    with pytest.raises(ArgumentError, match="weights"):
        compare.lrt(weighted, crossed_fits.alt)


def test_refuse_non_nested(crossed_data, crossed_fits):
    other_term = _fit("y ~ x + (1 | b)", None, crossed_data, family="poisson", m=500, rng=1)
    slope_a = _fit("y ~ x + (1 + x | a)", None, crossed_data, family="poisson", m=500, rng=1)
    with pytest.raises(ArgumentError, match=r"not nested: random term \(1 \| b\)"):
        compare.lrt(other_term, slope_a)
    no_x = _fit("y ~ 1", ["~ 0 + a", "~ 0 + b"], crossed_data, family="poisson", m=500, rng=1)
    no_x_slope = _fit("y ~ 1 + (1 + x | a)", None, crossed_data, family="poisson", m=500,
                      rng=1)
    with pytest.raises(ArgumentError, match=r"fixed effect\(s\) \['x'\]"):
        compare.lrt(crossed_fits.null, no_x_slope)
    with pytest.raises(ArgumentError, match="both models have 3 parameters"):
        compare.lrt(no_x, crossed_fits.null)


# -- the boundary rules on stub fits -----------------------------------------------------
def _stub(fixed, terms, n_random):
    design = SimpleNamespace(n_obs=3, y=np.zeros(3), trials=np.ones(3), weights=None,
                             offset=np.zeros(3), x=np.ones((3, len(fixed))))
    return SimpleNamespace(
        family=pg.get_family("poisson"), design=design, fixed_names=tuple(fixed),
        terms=tuple(terms), beta=np.zeros(len(fixed)), nu=np.zeros(n_random),
        loglike_value=-10.0, block_ess=np.array([500.0]), n_draws=1000,
        fixed_formula="y ~ x", random_formulas=(),
    )


def _term(name, columns, structure, params):
    return TermInfo(name, f"({' + '.join(columns)} | {name})", tuple(columns), structure,
                    tuple(params), 5)


def test_rule_binomial_weights_for_independent_components():
    null = _stub(["(Intercept)"], [_term("a", [INTERCEPT], "scalar", [0])], 1)
    alt = _stub(["(Intercept)", "x"], [
        _term("a", [INTERCEPT], "scalar", [0]),
        _term("b", [INTERCEPT, "x"], "diagonal", [1, 2]),  # two independent variances
    ], 3)
    result = compare.lrt(null, alt)
    assert result.df == 3
    assert result.weights == (0.25, 0.5, 0.25) and result.mixture_df == (1, 2, 3)
    assert result.null_distribution == (
        "0.25 chi-square(1) + 0.5 chi-square(2) + 0.25 chi-square(3)")
    alt.loglike_value = -7.0
    x = 6.0
    expected = 0.25 * stats.chi2.sf(x, 1) + 0.5 * stats.chi2.sf(x, 2) + 0.25 * stats.chi2.sf(x, 3)
    assert compare.lrt(null, alt).p_value == pytest.approx(expected)


def test_rule_column_added_to_unstructured_term():
    null = _stub(["(Intercept)"], [_term("g", [INTERCEPT, "x"], "unstructured", [0, 1, 2])],
                 3)
    alt = _stub(["(Intercept)", "z"],
                [_term("g", [INTERCEPT, "x", "w"], "unstructured", [0, 1, 2, 3, 4, 5])], 6)
    result = compare.lrt(null, alt)  # q = 2 covariances, k = 1 fixed effect
    assert result.null_distribution == "0.5 chi-square(3) + 0.5 chi-square(4)"


def test_rule_tied_components_count_once_and_must_go_together():
    tied = [_term("a", [INTERCEPT], "scalar", [0]), _term("b", [INTERCEPT], "scalar", [0])]
    null = _stub(["(Intercept)"], [_term("c", [INTERCEPT], "scalar", [0])], 1)
    alt = _stub(["(Intercept)"], [_term("c", [INTERCEPT], "scalar", [0]),
                                  *[_term(t.name, t.columns, "scalar", [1]) for t in tied]], 2)
    assert compare.lrt(null, alt).null_distribution == "0.5 chi-square(0) + 0.5 chi-square(1)"
    half = _stub(["(Intercept)"], [_term("a", [INTERCEPT], "scalar", [0])], 1)
    alt_tied = _stub(["(Intercept)"], [*tied, _term("c", [INTERCEPT], "scalar", [1])], 2)
    with pytest.raises(ArgumentError, match="share their variance components"):
        compare.lrt(half, alt_tied)


def test_rule_scalar_term_with_added_columns_is_not_nested():
    null = _stub([], [_term("g", ["x"], "scalar", [0])], 1)
    alt = _stub([], [_term("g", ["x", "z"], "scalar", [0]),
                     _term("h", [INTERCEPT], "scalar", [1])], 2)
    with pytest.raises(ArgumentError, match="not nested"):
        compare.lrt(null, alt)


# -- anova -------------------------------------------------------------------------------
def test_anova_table(slope_fits):
    table = compare.anova(slope_fits.slope, slope_fits.intercept, slope_fits.diagonal)
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "logLik_mcse", "deviance",
                                   "Chisq", "Chisq_mcse", "Df", "Pr(>Chisq)",
                                   "null_distribution"]
    assert list(table.index) == ["y ~ x + (1 | g)", "y ~ x + (1 + x || g)",
                                 "y ~ x + (1 + x | g)"]
    assert table["npar"].tolist() == [3, 4, 5]
    assert table.iloc[0][["Chisq", "Chisq_mcse", "Df", "Pr(>Chisq)"]].isna().all()
    second = compare.lrt(slope_fits.intercept, slope_fits.diagonal)
    assert table["Chisq"].iloc[1] == pytest.approx(second.statistic)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(second.p_value)
    assert table["Chisq_mcse"].iloc[1] == pytest.approx(second.mcse)
    assert table["null_distribution"].tolist()[1:] == [
        "0.5 chi-square(0) + 0.5 chi-square(1)", "chi-square(1)"]
    fit = slope_fits.slope
    row = table.loc["y ~ x + (1 + x | g)"]
    assert row["AIC"] == pytest.approx(compare.aic(fit))
    assert row["BIC"] == pytest.approx(compare.bic(fit))
    assert row["deviance"] == pytest.approx(-2 * fit.loglike_value)
    assert row["logLik_mcse"] == pytest.approx(compare.loglik_mcse(fit))


def test_anova_names_and_equal_df(sal_fits):
    table = compare.anova(sal_fits.full, sal_fits.full_again, sal_fits.null)
    assert list(table.index) == ["model 3", "model 1", "model 2"]
    assert table["Df"].tolist()[1:] == [1.0, 0.0]
    assert table["null_distribution"].iloc[2] == "none (equal df)"
    assert np.isnan(table["Chisq"].iloc[2])
    named = compare.anova(sal_fits.null, sal_fits.full, names=["F", "F+M"])
    assert list(named.index) == ["F", "F+M"]
    with pytest.raises(ArgumentError, match="names has 1 entries"):
        compare.anova(sal_fits.null, sal_fits.full, names=["F"])
    with pytest.raises(ArgumentError, match="at least one"):
        compare.anova()


def test_results_methods_and_package_names_read_the_criteria():
    import pyglmm as pg
    from pyglmm import criteria

    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), m=500, rng=3)
    assert fit.aic() == criteria.aic(fit) == -2 * fit.loglik() + 2 * fit.loglik_df()
    assert fit.bic() == criteria.bic(fit)
    assert fit.nobs == 150 and fit.loglik_df() == 2
    assert fit.loglik_mcse() == criteria.loglik_mcse(fit)
    assert pg.lrt is compare.lrt and pg.anova is compare.anova
