"""Tests of the results object: accessors, summary, intervals, tests and the JSON record."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pyglmm as pg
from pyglmm.diagnostics import BOUNDARY_NU, recommend_m
from pyglmm.errors import ArgumentError, ArgumentTypeError
from pyglmm.summary import Summary, display_decimals, format_fixed

CROSS = ["CrossR/R", "CrossR/W", "CrossW/R", "CrossW/W"]


@pytest.fixture(scope="module")
def salamander_fit() -> pg.GLMMResults:
    return pg.glmm(
        "Mate ~ 0 + Cross",
        random=["~ 0 + Female", "~ 0 + Male"],
        data=pg.datasets.load_salamander(),
        family="bernoulli",
        m=10_000,
        rng=1234,
        varcomps_names=["F", "M"],
    )


@pytest.fixture(scope="module")
def booth_hobert_fit() -> pg.GLMMResults:
    return pg.glmm(
        "y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), "bernoulli", m=2000, rng=1
    )


@pytest.fixture(params=["salamander", "booth_hobert"])
def fit(request: pytest.FixtureRequest) -> pg.GLMMResults:
    return request.getfixturevalue(f"{request.param}_fit")


def direct_se(fit: pg.GLMMResults) -> np.ndarray:
    """Standard errors straight from the Hessian, independently of the accessors."""
    return np.sqrt(np.diag(np.linalg.inv(-fit.loglike_hessian)))


# -- names and the one table ---------------------------------------------------------


def test_accessors_are_named_as_in_r(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    assert fit.coef().index.tolist() == CROSS
    assert fit.varcomps().index.tolist() == ["F", "M"]
    assert fit.params().index.tolist() == [*CROSS, "F", "M"]
    np.testing.assert_array_equal(fit.coef().to_numpy(), fit.beta)
    np.testing.assert_array_equal(fit.varcomps().to_numpy(), fit.nu)
    np.testing.assert_array_equal(fit.params().to_numpy(), np.r_[fit.beta, fit.nu])
    for series in (fit.se(), fit.mcse()):
        assert series.index.tolist() == [*CROSS, "F", "M"]
    assert fit.vcov().index.tolist() == fit.vcov().columns.tolist() == [*CROSS, "F", "M"]
    assert fit.loglik() == fit.loglike_value


def test_tidy_is_the_table_the_accessors_read(fit: pg.GLMMResults) -> None:
    table = fit.tidy()
    assert table.columns.tolist() == ["term", "kind", "estimate", "se", "mcse", "z", "p"]
    n_fixed = fit.beta.size
    assert table["kind"].tolist() == ["fixed"] * n_fixed + ["varcomp"] * fit.nu.size
    np.testing.assert_array_equal(table["estimate"], fit.params())
    np.testing.assert_array_equal(table["se"], fit.se())
    np.testing.assert_array_equal(table["mcse"], fit.mcse())
    np.testing.assert_allclose(table["se"], direct_se(fit), rtol=1e-10)
    np.testing.assert_allclose(table["z"], table["estimate"] / table["se"], rtol=1e-14)


# -- the summary -----------------------------------------------------------------------


def test_summary_p_values_are_the_normal_formulas(fit: pg.GLMMResults) -> None:
    summary = fit.summary()
    assert isinstance(summary, Summary)
    assert isinstance(summary.fixed, pd.DataFrame) and isinstance(summary.varcomps, pd.DataFrame)
    se = direct_se(fit)
    n_fixed = fit.beta.size
    z_fixed = fit.beta / se[:n_fixed]
    z_varcomp = fit.nu / se[n_fixed:]
    np.testing.assert_allclose(summary.fixed["Estimate"], fit.beta, rtol=0)
    np.testing.assert_allclose(summary.fixed["Std. Error"], se[:n_fixed], rtol=1e-10)
    np.testing.assert_allclose(summary.fixed["z value"], z_fixed, rtol=1e-10)
    np.testing.assert_allclose(
        summary.fixed["Pr(>|z|)"], 2 * stats.norm.sf(np.abs(z_fixed)), rtol=1e-9
    )
    two_sided = 2 * stats.norm.sf(np.abs(z_varcomp))
    np.testing.assert_allclose(summary.varcomps["Pr(>z)"], two_sided / 2, rtol=1e-9)
    np.testing.assert_allclose(summary.varcomps["Pr(>z)"], stats.norm.sf(z_varcomp), rtol=1e-9)
    np.testing.assert_allclose(summary.varcomps["MCSE"], fit.mcse()[n_fixed:], rtol=0)


def test_summary_text_has_r_layout_and_the_checks(salamander_fit: pg.GLMMResults) -> None:
    summary = salamander_fit.summary()
    text = str(summary)
    for piece in [
        "Call:", 'glmm("Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"]',
        'family="bernoulli"', "m=10000", 'Link is: "logit (log odds)"', "Fixed Effects:",
        "Estimate Std. Error", "MCSE z value Pr(>|z|)", "Pr(>z)", "P-values are one-sided",
        "H_A: nu > 0", "Signif. codes:", "Log-likelihood", "6 independent blocks",
        "Smallest block ESS", "largest Pareto k", "largest MCSE/SE",
    ]:
        assert piece in text, piece
    assert "WARNING" not in text and summary.warnings == ()
    assert repr(summary) == text
    assert all(line == line.rstrip() for line in text.splitlines())
    html = summary._repr_html_()
    assert html.count("<table") == 2 and "CrossR/R" in html and "Pr(&gt;z)" in html


def test_summary_rounds_at_the_mcse_and_the_se(salamander_fit: pg.GLMMResults) -> None:
    text = str(salamander_fit.summary())
    table = salamander_fit.tidy()
    for _, row in table.iterrows():
        decimals = display_decimals(row["se"], row["mcse"])
        line = next(li for li in text.splitlines() if li.startswith(row["term"] + " "))
        cells = line.split()
        assert cells[1] == format_fixed(row["estimate"], decimals)
        assert cells[2] == format_fixed(row["se"], decimals)
        assert float(cells[4]) == pytest.approx(row["z"], abs=5e-4)
    assert display_decimals(se=0.404, mcse=0.0076) == 2  # capped by the SE
    assert display_decimals(se=0.404, mcse=0.058) == 2
    assert display_decimals(se=3.1, mcse=0.6) == 1
    assert display_decimals(se=3.1, mcse=2.0) == 0
    assert display_decimals(se=250.0, mcse=12.0) == -1
    assert display_decimals(se=2500.0, mcse=120.0) == -2
    assert display_decimals(se=float("nan"), mcse=float("nan")) == 4
    assert format_fixed(1234.5, -1) == "1230" and format_fixed(-0.004, 2) == "0.00"


def test_summary_warns_when_not_converged(salamander_fit: pg.GLMMResults) -> None:
    stopped = dataclasses.replace(salamander_fit, trust_converged=False)
    text = str(stopped.summary())
    assert text.startswith("WARNING: the trust-region optimiser did not converge")
    assert "par_init=fit.params()" in text
    assert f"{salamander_fit.beta[0]:.6g}" in text


def test_summary_warns_on_poor_importance_sampling(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    rng = np.random.default_rng(0)
    heavy = np.sort(-1.5 * np.log(rng.uniform(size=(fit.n_blocks, fit.m))), axis=1)
    poor = dataclasses.replace(
        fit,
        block_ess=fit.block_ess * 1e-3,
        top_log_weights=heavy[:, -fit.top_log_weights.shape[1] :],
        score_mc_covariance=fit.score_mc_covariance * 1e4,  # MCSE a hundred times larger
    )
    summary = poor.summary()
    text = " ".join(str(summary).split())  # undo the line wrapping
    assert len(summary.warnings) == 3
    assert "below 1% of m = 10000" in text
    assert "Pareto k" in text and "above 0.7" in text
    ratio = float((poor.mcse() / poor.se()).max())
    assert f"m = {recommend_m(fit.m, ratio)}" in text
    assert summary.diagnostics.recommended_m == recommend_m(fit.m, ratio)


def test_variance_component_at_the_boundary_has_no_se(booth_hobert_fit: pg.GLMMResults) -> None:
    at_zero = dataclasses.replace(booth_hobert_fit, nu=np.array([BOUNDARY_NU / 100]))
    assert np.isnan(at_zero.se()["z1"]) and not np.isnan(at_zero.se()["x1"])
    assert np.isnan(at_zero.tidy().set_index("term").loc["z1", "p"])
    assert at_zero.confint().loc["z1"].isna().all()
    text = " ".join(str(at_zero.summary()).split())
    assert "'z1' at the boundary 0" in text
    assert re.search(r"z1 0\.0+ NA \S+ NA NA", text)


# -- covariance, MCSE ------------------------------------------------------------------


def test_vcov_is_symmetric_positive_definite(fit: pg.GLMMResults) -> None:
    assert fit.trust_converged
    vcov = fit.vcov().to_numpy()
    np.testing.assert_array_equal(vcov, vcov.T)
    assert np.linalg.eigvalsh(vcov).min() > 0
    np.testing.assert_allclose(vcov, np.linalg.inv(-fit.loglike_hessian), rtol=1e-10)
    np.testing.assert_allclose(fit.se(), np.sqrt(np.diag(vcov)), rtol=1e-14)
    assert fit.information_min_eigenvalue() > 0


def test_mcse_is_the_block_sandwich(fit: pg.GLMMResults) -> None:
    inverse = np.linalg.inv(fit.loglike_hessian)
    expected = np.sqrt(np.diag(inverse @ fit.score_mc_covariance @ inverse))
    np.testing.assert_allclose(fit.mcse(), expected, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.mcvcov())), expected, rtol=1e-9)
    assert np.all(fit.mcse() > 0)


def test_salamander_mcse_is_below_se(salamander_fit: pg.GLMMResults) -> None:
    assert np.all(salamander_fit.mcse() < salamander_fit.se())


# -- confidence intervals -------------------------------------------------------------


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.93, 0.95, 0.99])
def test_confint_is_estimate_plus_minus_z_se(fit: pg.GLMMResults, level: float) -> None:
    interval = fit.confint(level=level)
    alpha = 1 - level
    assert interval.columns.tolist() == [f"{alpha / 2:.12g}", f"{1 - alpha / 2:.12g}"]
    quantile = stats.norm.ppf(1 - alpha / 2)
    estimate, se = fit.params().to_numpy(), direct_se(fit)
    lower, upper = estimate - quantile * se, estimate + quantile * se
    lower[fit.beta.size :] = np.maximum(lower[fit.beta.size :], 0.0)  # truncated at 0
    np.testing.assert_allclose(interval.iloc[:, 0], lower, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(interval.iloc[:, 1], upper, rtol=1e-10)


def test_confint_columns_are_named_like_r(salamander_fit: pg.GLMMResults) -> None:
    assert salamander_fit.confint().columns.tolist() == ["0.025", "0.975"]
    assert salamander_fit.confint(0.9).columns.tolist() == ["0.05", "0.95"]
    assert salamander_fit.confint(0.93).columns.tolist() == ["0.035", "0.965"]


def test_booth_hobert_variance_interval_is_truncated(booth_hobert_fit: pg.GLMMResults) -> None:
    nu, se = booth_hobert_fit.nu[0], booth_hobert_fit.se()["z1"]
    assert nu - 1.96 * se < 0
    assert booth_hobert_fit.confint().loc["z1", "0.025"] == 0.0


def test_confint_subsets_by_name_and_position(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    full = fit.confint(level=0.9)
    by_name = fit.confint(level=0.9, parm=["CrossR/R", "CrossW/R"])
    by_position = fit.confint(level=0.9, parm=[0, 2])
    pd.testing.assert_frame_equal(by_name, by_position)
    pd.testing.assert_frame_equal(by_name, full.iloc[[0, 2]])
    pd.testing.assert_frame_equal(fit.confint(level=0.93, parm="F"), fit.confint(0.93, [4]))
    pd.testing.assert_frame_equal(fit.confint(parm=5), fit.confint().iloc[[5]])
    mixed = fit.confint(parm=np.array([5, 1]))
    assert mixed.index.tolist() == ["M", "CrossR/W"]
    assert fit.confint(parm=["M", 0]).index.tolist() == ["M", "CrossR/R"]


def test_confint_log_method(salamander_fit: pg.GLMMResults) -> None:
    wald = salamander_fit.confint()
    log = salamander_fit.confint(method="log")
    pd.testing.assert_frame_equal(log.iloc[:4], wald.iloc[:4])
    quantile = stats.norm.ppf(0.975)
    nu, se = salamander_fit.nu, salamander_fit.se().to_numpy()[4:]
    np.testing.assert_allclose(log.iloc[4:, 0], nu * np.exp(-quantile * se / nu), rtol=1e-12)
    np.testing.assert_allclose(log.iloc[4:, 1], nu * np.exp(quantile * se / nu), rtol=1e-12)


@pytest.mark.parametrize("level", [1.5, 1.0, 0.0, -0.2, float("nan"), 95])
def test_confint_rejects_bad_levels(salamander_fit: pg.GLMMResults, level: float) -> None:
    with pytest.raises(ArgumentError, match="level must be strictly between 0 and 1"):
        salamander_fit.confint(level=level)


def test_confint_rejects_bad_parm_and_method(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    with pytest.raises(ArgumentTypeError):
        fit.confint(level="0.95")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match=r"unknown parameter 'Cross R/R'.*CrossR/R"):
        fit.confint(parm=["Cross R/R"])
    with pytest.raises(ArgumentError, match="out of range.*0-based, from 0 to 5"):
        fit.confint(parm=6)
    with pytest.raises(ArgumentError, match="out of range"):
        fit.confint(parm=[0, -1])
    with pytest.raises(ArgumentTypeError):
        fit.confint(parm=[1.5])  # type: ignore[list-item]
    with pytest.raises(ArgumentError, match="method"):
        fit.confint(method="likelihood")
    with pytest.raises(ValueError):  # the errors are ValueErrors too
        fit.confint(level=2)


# -- Wald tests --------------------------------------------------------------------------


def test_wald_test_matches_the_vignette(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    vcov = np.linalg.inv(-fit.loglike_hessian)
    se = math.sqrt(vcov[0, 0] + vcov[3, 3] - 2 * vcov[0, 3])
    z = (fit.beta[0] - fit.beta[3]) / se
    test = fit.wald_test("CrossR/R - CrossW/W = 0")
    assert test.df == 1
    assert test.statistic == pytest.approx(z * z, rel=1e-9)
    assert test.z == pytest.approx(z, rel=1e-9)
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    vector = fit.wald_test([1, 0, 0, -1, 0, 0])
    assert vector.statistic == pytest.approx(test.statistic, rel=1e-12)
    assert "chi2(1)" in str(test)


def test_wald_test_forms(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    test = fit.wald_test("2 * F = M + 0.5")
    np.testing.assert_array_equal(test.contrast.to_numpy(), [[0, 0, 0, 0, 2, -1]])
    np.testing.assert_array_equal(test.rhs, [0.5])
    assert test.difference[0] == pytest.approx(2 * fit.nu[0] - fit.nu[1] - 0.5)
    backticks = fit.wald_test("`CrossR/R` - `CrossW/W`")
    assert backticks.statistic == pytest.approx(fit.wald_test("CrossR/R = CrossW/W").statistic)
    joint = fit.wald_test(["CrossR/R = CrossW/W", "F - M = 0"])
    same = fit.wald_test("CrossR/R = CrossW/W; F - M = 0")
    assert joint.df == same.df == 2 and joint.statistic == pytest.approx(same.statistic)
    contrast = np.array([[1, 0, 0, -1, 0, 0], [0, 0, 0, 0, 1, -1]])
    assert fit.wald_test(contrast).statistic == pytest.approx(joint.statistic, rel=1e-12)
    shifted = fit.wald_test([0, 0, 0, 0, 1, 0], rhs=1.0)
    assert shifted.difference[0] == pytest.approx(fit.nu[0] - 1.0)
    assert np.isnan(joint.z)


def test_wald_test_errors(salamander_fit: pg.GLMMResults) -> None:
    fit = salamander_fit
    with pytest.raises(ArgumentError, match="cannot read"):
        fit.wald_test("CrossQ/Q = 0")
    with pytest.raises(ArgumentError, match="linearly dependent"):
        fit.wald_test(["F = M", "2 * F = 2 * M"])
    with pytest.raises(ArgumentError, match="columns"):
        fit.wald_test([1, -1])
    with pytest.raises(ArgumentError, match="one '='"):
        fit.wald_test("F = M = 1")
    with pytest.raises(ArgumentError, match="expected a parameter name"):
        fit.wald_test("2 * = 0")


# -- the JSON record ---------------------------------------------------------------------


def assert_same(mine: object, theirs: object, where: str) -> None:
    """Exact equality, field by field, of what a fit holds (arrays, records, numbers)."""
    if dataclasses.is_dataclass(theirs):
        assert type(mine) is type(theirs), where
        for spec in dataclasses.fields(theirs):
            name = spec.name
            assert_same(getattr(mine, name), getattr(theirs, name), f"{where}.{name}")
    elif isinstance(theirs, np.ndarray):
        assert isinstance(mine, np.ndarray), where
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, where
        np.testing.assert_array_equal(mine, theirs, err_msg=where)
    elif isinstance(theirs, tuple | list):
        assert type(mine) is type(theirs) and len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, dict):
        assert isinstance(mine, dict) and list(mine) == list(theirs), where
        for key in theirs:
            assert_same(mine[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(mine, float) and math.isnan(mine), where
    else:
        assert mine == theirs, where


def assert_same_fit(restored: pg.GLMMResults, original: pg.GLMMResults) -> None:
    for spec in dataclasses.fields(original):
        mine, theirs = getattr(restored, spec.name), getattr(original, spec.name)
        if spec.name == "family":
            assert type(mine) is type(theirs)
        elif spec.name not in ("design", "sample"):
            assert_same(mine, theirs, spec.name)


def test_json_round_trip_reproduces_every_number(fit: pg.GLMMResults) -> None:
    text = fit.to_json()
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    restored = pg.GLMMResults.from_json(text)
    assert_same_fit(restored, fit)
    assert restored.to_dict() == fit.to_dict() == record
    pd.testing.assert_frame_equal(restored.tidy(), fit.tidy(), check_exact=True)
    pd.testing.assert_frame_equal(restored.vcov(), fit.vcov(), check_exact=True)
    pd.testing.assert_frame_equal(restored.confint(0.9), fit.confint(0.9), check_exact=True)
    assert str(restored.summary()) == str(fit.summary())
    assert record["inference"]["se"] == fit.se().tolist()
    assert record["inference"]["vcov"] == fit.vcov().to_numpy().tolist()
    assert set(record["versions"]) == {"pyglmm", "python", "numpy", "scipy", "pandas"}
    assert restored.design is None
    with pytest.raises(AttributeError, match="without its design"):
        _ = restored.x


def test_json_keeps_non_finite_numbers_and_traces(booth_hobert_fit: pg.GLMMResults) -> None:
    fit = booth_hobert_fit
    odd = dataclasses.replace(
        fit, timings=fit.timings | {"nothing": float("nan")},
        block_ess=np.r_[np.inf, fit.block_ess[1:]],
    )
    text = odd.to_json(indent=1)
    assert '"Infinity"' in text and '"NaN"' in text
    restored = pg.GLMMResults.from_json(text)
    assert restored.block_ess[0] == np.inf and math.isnan(restored.timings["nothing"])
    assert_same_fit(restored, odd)
    assert sum(len(r.trace) for r in restored.rounds) > 0  # the trust traces came back


def test_from_dict_rejects_foreign_and_newer_records(salamander_fit: pg.GLMMResults) -> None:
    record = salamander_fit.to_dict()
    with pytest.raises(ArgumentError, match="not a pyglmm.GLMMResults record"):
        pg.GLMMResults.from_dict(record | {"format": "something else"})
    with pytest.raises(ArgumentError, match="newer"):
        pg.GLMMResults.from_dict(record | {"format_version": 99})


# -- display -----------------------------------------------------------------------------


def test_repr_is_short(salamander_fit: pg.GLMMResults) -> None:
    text = repr(salamander_fit)
    assert len(text) < 200 and "\n" not in text and "array(" not in text
    assert re.search(r"m=10000: loglik -20\d\.\d{4}, converged", text)
    assert "<table" in salamander_fit._repr_html_()
