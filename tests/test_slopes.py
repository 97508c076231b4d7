"""Random slopes, correlated terms, lme4 syntax, offsets and weights, fitted end to end.

Tolerances: truths are recovered within 3 SE (a 3-sigma band of the MLE's sampling
spread; the Monte Carlo error at these m is below 0.01 SE, see each fit's MCSE).
The lme4 comparison is on a Poisson model with large counts (mean 10 per observation,
25 observations per level), where Laplace is accurate; agreement within 0.1 SE
leaves room for Laplace's error and our Monte Carlo error (MCSE/SE below 0.01).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pyglmm as pg
from pyglmm.errors import ArgumentError, DataError, DataWarning, FormulaError
from pyglmm.simulate import simulate_glmm

REFERENCE = Path(__file__).resolve().parent / "reference"
SIGMA = [[0.5, 0.1], [0.1, 0.3]]


@pytest.fixture(scope="module")
def poisson_slopes() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "poisson_slopes.csv")


@pytest.fixture(scope="module")
def slopes_fit(poisson_slopes):
    return pg.glmm("y ~ x + (1 + x | g)", data=poisson_slopes, family="poisson", m=4000,
                   rng=1)


def test_agrees_with_lme4_where_laplace_is_accurate(slopes_fit):
    ref = json.loads((REFERENCE / "poisson_slopes_lme4.json").read_text())
    se = slopes_fit.se()
    lme4 = {
        "(Intercept)": ref["fixef"]["(Intercept)"], "x": ref["fixef"]["x"],
        "var (Intercept)|g": ref["varcorr"]["var_(Intercept)"],
        "cov (Intercept),x|g": ref["varcorr"]["cov_(Intercept)_x"],
        "var x|g": ref["varcorr"]["var_x"],
    }
    for name, value in lme4.items():
        assert abs(slopes_fit.params()[name] - value) < 0.1 * se[name], name
    # lme4's fixed-effect SEs come from the Laplace curvature: within 5%
    for name in ("(Intercept)", "x"):
        assert se[name] == pytest.approx(ref["fixef_se"][name], rel=0.05)
    # the Laplace log-likelihood is a close approximation here
    assert slopes_fit.loglik() == pytest.approx(ref["loglik"], abs=0.1)
    assert (slopes_fit.mcse() / se).max() < 0.01


def test_varcorr_reports_sds_and_correlations(slopes_fit):
    table = slopes_fit.varcorr()
    assert list(table.columns) == ["grp", "var1", "var2", "vcov", "sdcor", "se_vcov",
                                   "se_sdcor", "sdcor_lower", "sdcor_upper"]
    params = slopes_fit.params()
    v0, c, v1 = params["var (Intercept)|g"], params["cov (Intercept),x|g"], params["var x|g"]
    corr = table[table["var2"] == "x"].iloc[0]
    assert corr["sdcor"] == pytest.approx(c / np.sqrt(v0 * v1), rel=1e-12)
    sd0 = table[(table["var1"] == "(Intercept)") & (table["var2"] == "")].iloc[0]
    assert sd0["sdcor"] == pytest.approx(np.sqrt(v0), rel=1e-12)
    # delta-method SEs against finite differences of the transformation
    vcov = slopes_fit.vcov().to_numpy()[2:, 2:]
    psi = np.array([v0, c, v1])

    def correlation(x):
        return x[1] / np.sqrt(x[0] * x[2])

    h = 1e-6
    grad = np.array([(correlation(psi + h * e) - correlation(psi - h * e)) / (2 * h)
                     for e in np.eye(3)])
    assert corr["se_sdcor"] == pytest.approx(np.sqrt(grad @ vcov @ grad), rel=1e-6)
    assert sd0["se_sdcor"] == pytest.approx(sd0["se_vcov"] / (2 * np.sqrt(v0)), rel=1e-12)
    # Wald intervals of the SDs and the correlation at the asked level
    narrow = slopes_fit.varcorr(level=0.5)
    half = 0.6744897501960817 * corr["se_sdcor"]
    row = narrow[narrow["var2"] == "x"].iloc[0]
    assert row["sdcor_lower"] == pytest.approx(corr["sdcor"] - half, rel=1e-12)
    assert row["sdcor_upper"] == pytest.approx(corr["sdcor"] + half, rel=1e-12)
    assert (table["sdcor_lower"] >= -1).all() and (table["sdcor_upper"] <= 1).sum() >= 1
    with pytest.raises(ArgumentError, match="level"):
        slopes_fit.varcorr(level=95)


def test_summary_tables_and_json_round_trip(slopes_fit):
    text = str(slopes_fit.summary())
    assert 'glmm("y ~ x + (1 + x | g)", family="poisson"' in text
    assert "two-sided for covariances" in text
    assert "standard deviations and correlations" in text
    tidy = slopes_fit.tidy()
    assert tidy["kind"].tolist() == ["fixed", "fixed", "varcomp", "covariance", "varcomp"]
    again = pg.GLMMResults.from_json(slopes_fit.to_json())
    pd.testing.assert_frame_equal(again.varcorr(), slopes_fit.varcorr())
    assert again.terms == slopes_fit.terms
    assert slopes_fit.varcomps().index.tolist() == ["var (Intercept)|g", "var x|g"]
    ci = slopes_fit.confint(method="log")
    # covariances get symmetric Wald intervals, variances the log-scale ones
    cov = ci.loc["cov (Intercept),x|g"].to_numpy()
    assert np.mean(cov) == pytest.approx(slopes_fit.params()["cov (Intercept),x|g"])


@pytest.mark.parametrize(
    ("family", "n", "beta", "seed"),
    [("bernoulli", 2400, (0.3, 0.8), 11), ("poisson", 1200, (0.5, 0.4), 12)],
)
def test_correlated_term_recovers_the_truth(family, n, beta, seed):
    data = simulate_glmm(family, n, {"g": 120}, beta=beta, nu=[SIGMA], rng=seed)
    fit = pg.glmm("y ~ x + (1 + x | g)", data=data, family=family, m=2000, rng=1)
    truth = np.array([*beta, SIGMA[0][0], SIGMA[0][1], SIGMA[1][1]])
    z = (fit.params().to_numpy() - truth) / fit.se().to_numpy()
    assert np.all(np.abs(z) < 3), z
    assert fit.n_blocks == 120  # a level's intercept and slope share a block
    assert set(fit.block_sizes.tolist()) == {2}


@pytest.mark.filterwarnings("ignore::pyglmm.errors.BoundaryWarning")
@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_uncorrelated_bar_term_is_two_scalar_terms(family):
    """(1 + x || g) and R glmm's ~ 0 + g, ~ 0 + x:g are one model with one sample."""
    data = simulate_glmm(family, 600, {"g": 40}, beta=(0.3, 0.5), nu=[SIGMA], rng=5)
    bar = pg.glmm("y ~ x + (1 + x || g)", data=data, family=family, m=1000, rng=2)
    listed = pg.glmm("y ~ x", ["~ 0 + g", "~ 0 + x:g"], data=data, family=family,
                     m=1000, rng=2)
    np.testing.assert_allclose(bar.params().to_numpy(), listed.params().to_numpy(),
                               rtol=1e-10)
    assert listed.varcomps_names == ("g", "x:g")
    assert bar.varcomps_names == ("var (Intercept)|g", "var x|g")


def test_offsets_recover_the_truth_and_both_spellings_agree():
    data = simulate_glmm("poisson", 400, {"g": 40}, beta=(0.2, 0.5), nu=[0.3],
                         exposure=True, rng=22)
    in_formula = pg.glmm("y ~ x + offset(log(t))", "~ 0 + g", data=data, family="poisson",
                         m=2000, rng=3)
    as_argument = pg.glmm("y ~ x", "~ 0 + g", data=data, family="poisson",
                          offset=np.log(data["t"]), m=2000, rng=3)
    np.testing.assert_array_equal(in_formula.params().to_numpy(),
                                  as_argument.params().to_numpy())
    z = (in_formula.params().to_numpy() - [0.2, 0.5, 0.3]) / in_formula.se().to_numpy()
    assert np.all(np.abs(z) < 3), z
    without = pg.glmm("y ~ x", "~ 0 + g", data=data, family="poisson", m=2000, rng=3)
    assert abs(without.coef()["(Intercept)"] - 0.2) > 3 * without.se()["(Intercept)"]
    lme4_style = pg.glmm("y ~ x + offset(log(t)) + (1 | g)", data=data, family="poisson",
                         m=2000, rng=3)
    np.testing.assert_array_equal(lme4_style.params().to_numpy(),
                                  in_formula.params().to_numpy())


@pytest.mark.parametrize("kw", [{}, {"blocks": "joint", "importance": "glmm",
                                     "recentre": 0}])
def test_integer_weights_equal_duplicated_rows(kw):
    """R glmm's weights: w_i times row i's log-density, i.e. row i repeated w_i times.

    The default chunk size depends on the number of rows, so both fits set it: then
    they draw the same sample and agree to rounding (measured 1e-11 and 6e-11).
    """
    data = simulate_glmm("bernoulli", 300, {"g": 30}, beta=(0.2, 0.7), nu=[0.6], rng=21)
    w = np.arange(len(data)) % 3 + 1
    repeated = data.loc[data.index.repeat(w)].reset_index(drop=True)
    weighted = pg.glmm("y ~ x", "~ 0 + g", data=data, weights=w, m=1000, rng=3,
                       chunk_size=250, **kw)
    duplicated = pg.glmm("y ~ x", "~ 0 + g", data=repeated, m=1000, rng=3, chunk_size=250,
                         **kw)
    np.testing.assert_allclose(weighted.params().to_numpy(), duplicated.params().to_numpy(),
                               rtol=0, atol=1e-8)
    assert weighted.loglike_value == pytest.approx(duplicated.loglike_value, abs=1e-8)


def test_weights_and_offset_by_column_name():
    data = simulate_glmm("poisson", 200, {"g": 20}, beta=(0.2, 0.5), nu=[0.3],
                         exposure=True, rng=8).assign(w=2.0, lt=lambda d: np.log(d.t))
    by_name = pg.glmm("y ~ x", "~ 0 + g", data=data, family="poisson", weights="w",
                      offset="lt", m=500, rng=1, chunk_size=100)
    by_value = pg.glmm("y ~ x", "~ 0 + g", data=data, family="poisson",
                       weights=data["w"].to_numpy(), offset=data["lt"].to_numpy(), m=500,
                       rng=1, chunk_size=100)
    np.testing.assert_array_equal(by_name.params().to_numpy(), by_value.params().to_numpy())


# -- syntax ------------------------------------------------------------------------------
def test_nested_and_crossed_bar_terms():
    data = simulate_glmm("poisson", 300, {"a": 6, "b": 10}, beta=(0.2, 0.3),
                         nu=[0.3, 0.2], rng=4)
    nested = pg.design.build_design("y ~ x + (1 | a/b)", None, data, pg.get_family("poisson"))
    assert [t.name for t in nested.random_terms] == ["a", "a:b"]
    assert nested.param_names[-2:] == ("a", "a:b")
    crossed = pg.design.build_design("y ~ x + (1 | a) + (1 | b)", None, data,
                                     pg.get_family("poisson"))
    listed = pg.design.build_design("y ~ x", ["~ 0 + a", "~ 0 + b"], data,
                                    pg.get_family("poisson"))
    np.testing.assert_array_equal(crossed.z_columns, listed.z_columns)
    slope_only = pg.design.build_design("y ~ x + (0 + x | a)", None, data,
                                        pg.get_family("poisson"))
    np.testing.assert_array_equal(slope_only.z_values[:, 0], data["x"].to_numpy())


def test_r_formula_parity_on_both_sides():
    data = simulate_glmm("binomial", 200, {"g": 20}, beta=(0.1, 0.4), nu=[0.3], rng=9)
    data = data.assign(n=data.y + data.fail, z=np.linspace(1, 3, len(data)))
    fam = pg.get_family("binomial")
    a = pg.design.build_design("cbind(y, n - y) ~ x + I(z**2) + log(z) + (1 | g)", None,
                               data, fam)
    b = pg.design.build_design("cbind(y, fail) ~ x + I(z**2) + log(z)", "~ 0 + g", data, fam)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.trials, b.trials)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.fixed_names == ("(Intercept)", "x", "I(z ** 2)", "log(z)")
    c = pg.design.build_design("cbind(y, fail) ~ scale(z) + poly(x, 2) + (1 + scale(x) | g)",
                               None, data, fam)
    assert c.fixed_names == ("(Intercept)", "scale(z)", "poly(x, 2)1", "poly(x, 2)2")
    assert c.param_names[-3:] == ("var (Intercept)|g", "cov (Intercept),scale(x)|g",
                                  "var scale(x)|g")
    np.testing.assert_allclose(c.z_values[:, 1].mean(), 0.0, atol=1e-12)


# -- bad input ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate_glmm("poisson", 120, {"g": 12}, beta=(0.2, 0.3), nu=[0.3], rng=1)


def test_bar_term_with_unknown_grouping_column(small):
    with pytest.raises(FormulaError, match=r"\['site'\] named in formula '\(1 \| site\)'"):
        pg.glmm("y ~ x + (1 | site)", data=small, family="poisson")


def test_bar_terms_and_random_argument_together(small):
    with pytest.raises(FormulaError, match="use one form"):
        pg.glmm("y ~ x + (1 | g)", "~ 0 + g", data=small, family="poisson")


def test_ties_do_not_apply_to_bar_terms(small):
    with pytest.raises(ArgumentError, match="varcomps_equal"):
        pg.glmm("y ~ x + (1 | g)", data=small, family="poisson", varcomps_equal=[1])


@pytest.mark.parametrize(
    ("weights", "message"),
    [(-np.ones(120), "non-negative"), (np.r_[np.nan, np.ones(119)], "not finite"),
     (np.ones(7), "one value per row")],
)
def test_bad_weights(small, weights, message):
    with pytest.raises(DataError, match=message):
        pg.glmm("y ~ x", "~ 0 + g", data=small, family="poisson", weights=weights)


def test_offset_of_the_wrong_length(small):
    with pytest.raises(DataError, match="offset has shape"):
        pg.glmm("y ~ x", "~ 0 + g", data=small, family="poisson", offset=np.zeros(3))


def test_text_slope_column_is_refused(small):
    data = small.assign(x=small.x.astype(str))
    data.loc[5, "x"] = "1.2a"
    with pytest.raises(DataError, match=r"column 'x'.*1 row.*\b5\b.*'1.2a'"):
        pg.glmm("y ~ 1 + (1 + x | g)", data=data, family="poisson")
    with pytest.raises(DataError, match="astype\\('category'\\)"):
        pg.glmm("y ~ x", "~ 0 + g", data=data, family="poisson")
    with pytest.raises(DataError, match="column 'x' of '~ 0 \\+ x:g'"):  # a slope, in text
        pg.glmm("y ~ 1", "~ 0 + x:g", data=data, family="poisson")
    # made categorical on purpose, it is a factor
    design = pg.design.build_design("y ~ x", "~ 0 + g", data.assign(x=data.x.astype(
        "category")), pg.get_family("poisson"))
    assert design.n_fixed == data.x.nunique()


def test_unstructured_term_with_few_observations_per_level_warns():
    data = simulate_glmm("poisson", 60, {"g": 40}, beta=(0.2, 0.3), nu=[SIGMA], rng=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unused levels, more effects than rows
        warnings.simplefilter("always", DataWarning)
        with pytest.warns(DataWarning, match="too few to inform a full covariance"):
            pg.design.build_design("y ~ x + (1 + x | g)", None, data,
                                   pg.get_family("poisson"))


def test_par_init_with_an_indefinite_covariance_is_refused(small):
    with pytest.raises(ArgumentError, match="positive definite"):
        pg.glmm("y ~ x + (1 + x | g)", data=small, family="poisson",
                par_init=[0.2, 0.3, 0.1, 0.5, 0.1])


def test_no_warning_for_a_well_determined_correlated_fit(poisson_slopes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pg.glmm("y ~ x + (1 + x | g)", data=poisson_slopes, family="poisson", m=500, rng=3)
