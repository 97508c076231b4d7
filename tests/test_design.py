"""The design: formulas, data checks, response checks, rank and separation."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.errors import (
    ArgumentError,
    ArgumentTypeError,
    DataError,
    DataWarning,
    FormulaError,
    PyGLMMError,
)

BERNOULLI = pg.get_family("bernoulli")
POISSON = pg.get_family("poisson")
BINOMIAL = pg.get_family("binomial")


@pytest.fixture
def small() -> pd.DataFrame:
    """40 rows, 8 groups of 5, a 0/1 response that no fixed effect separates."""
    rng = np.random.default_rng(3)
    n = 40
    return pd.DataFrame(
        {
            "y": np.tile([0, 1, 1, 0, 1], 8),
            "x": rng.normal(size=n),
            "g": np.repeat(np.arange(8), 5),
            "h": np.tile(np.arange(5), 8),
            "count": rng.poisson(3.0, n),
            "succ": rng.integers(0, 4, n),
            "fail": rng.integers(0, 4, n),
        }
    )


def _no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


# -- a plain design ------------------------------------------------------------------------
def test_salamander_design(salamander):
    design = _no_warnings(lambda: build_design(
        "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], salamander, BERNOULLI,
        varcomps_names=["F", "M"],
    ))
    assert design.fixed_names == ("CrossR/R", "CrossR/W", "CrossW/R", "CrossW/W")
    assert design.param_names[-2:] == ("F", "M")
    assert design.n_obs == 360 and design.n_effects == 120
    assert design.z_matrix().sum(axis=1).min() == 2


def test_tied_components_order_the_effects_by_component(small):
    design = build_design(
        "y ~ x", ["~ 0 + g", "~ 0 + h", "~ 0 + g:h"], small, BERNOULLI,
        varcomps_equal=[1, 2, 1],
    )
    assert design.varcomps_names == ("g/g:h", "h")
    np.testing.assert_array_equal(design.component_sizes, [8 + 40, 5])
    # effects of component 1 (g, then g:h) come first, then h
    assert design.effect_names[0].startswith("g:") and design.effect_names[-1].startswith("h:")


# -- data: missing values ------------------------------------------------------------------
def test_missing_values_name_the_column_and_count(small):
    data = small.copy()
    data.loc[[2, 5, 7], "x"] = np.nan
    data.loc[[9], "g"] = None
    with pytest.raises(DataError, match=r"missing values in column\(s\)") as info:
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)
    message = str(info.value)
    assert "'x': 3" in message and "'g': 1" in message and "na_action='drop'" in message


def test_missing_values_in_unused_columns_do_not_matter(small):
    data = small.assign(unused=np.nan)
    assert build_design("y ~ x", "~ 0 + g", data, BERNOULLI).n_obs == 40


def test_na_action_drop_warns_with_the_count_and_reports_exactly_the_rows(small):
    data = small.copy()
    data.index = [f"r{i}" for i in range(len(data))]
    data.loc[["r2", "r5"], "x"] = np.nan
    data.loc["r30", "y"] = np.nan
    with pytest.warns(DataWarning, match=r"dropped 3 row\(s\) with missing values") as rec:
        design = build_design("y ~ x", "~ 0 + g", data, BERNOULLI, na_action="drop")
    assert "'x': 2" in str(rec[0].message) and "'y': 1" in str(rec[0].message)
    assert "r30" in str(rec[0].message)
    assert design.dropped_rows == ("r2", "r5", "r30")
    assert design.dropped_positions == (2, 5, 30)
    assert design.n_obs == 37
    kept = data.drop(index=["r2", "r5", "r30"])
    np.testing.assert_array_equal(design.y, kept["y"].to_numpy(dtype=float))


def test_na_action_drop_with_a_duplicated_index_reports_positions(small):
    data = small.set_axis(np.zeros(len(small), dtype=int))
    data.iloc[[4, 11], 1] = np.nan
    with pytest.warns(DataWarning, match="dropped 2 row"):
        design = build_design("y ~ x", "~ 0 + g", data, BERNOULLI, na_action="drop")
    assert design.dropped_positions == (4, 11)


def test_na_action_drop_of_every_row(small):
    with pytest.warns(DataWarning), pytest.raises(DataError, match="no rows are left"):
        build_design("y ~ x", "~ 0 + g", small.assign(x=np.nan), BERNOULLI, na_action="drop")


@pytest.mark.parametrize("action", ["omit", "exclude", None])
def test_unknown_na_action_is_refused_even_without_missing_values(small, action):
    with pytest.raises(ArgumentError, match="na_action must be 'raise' or 'drop'"):
        build_design("y ~ x", "~ 0 + g", small, BERNOULLI, na_action=action)


# -- data: columns, emptiness, types -------------------------------------------------------
@pytest.mark.parametrize(
    ("fixed", "random", "missing"),
    [
        ("y ~ x + nope", "~ 0 + g", "nope"),
        ("nope ~ x", "~ 0 + g", "nope"),
        ("cbind(succ, nope) ~ x", "~ 0 + g", "nope"),
        ("y ~ x", "~ 0 + nope", "nope"),
        ("y ~ x", "~ 0 + g:nope", "nope"),
    ],
)
def test_column_not_in_data(small, fixed, random, missing):
    family = BINOMIAL if fixed.startswith("cbind") else BERNOULLI
    with pytest.raises(FormulaError, match=rf"column\(s\) \['{missing}'\] named in formula"):
        build_design(fixed, random, small, family)


def test_empty_data(small):
    with pytest.raises(DataError, match="data has no rows"):
        build_design("y ~ x", "~ 0 + g", small.iloc[:0], BERNOULLI)
    with pytest.raises(DataError, match="data has no rows"):
        build_design("y ~ x", "~ 0 + g", pd.DataFrame(), BERNOULLI)


@pytest.mark.parametrize("data", [[1, 2, 3], np.zeros((3, 2)), "data.csv", None])
def test_data_of_wrong_type(data):
    with pytest.raises(ArgumentTypeError, match="data must be a pandas DataFrame"):
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)


def test_data_as_a_mapping(small):
    design = build_design("y ~ x", "~ 0 + g", small.to_dict(orient="list"), BERNOULLI)
    assert design.n_obs == 40
    with pytest.raises(DataError, match="could not be made into a DataFrame"):
        build_design("y ~ x", "~ 0 + g", {"y": [0, 1], "x": [1.0], "g": [1, 2]}, BERNOULLI)


def test_duplicated_column_names(small):
    data = pd.concat([small, small[["x"]]], axis=1)
    with pytest.raises(DataError, match=r"several columns named \['x'\]"):
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)


# -- data: grouping factors ----------------------------------------------------------------
def test_float_grouping_column(small):
    with pytest.raises(DataError, match="grouping column 'g' .* has float dtype") as info:
        build_design("y ~ x", "~ 0 + g", small.assign(g=small.g.astype(float)), BERNOULLI)
    assert "astype(int)" in str(info.value)


def test_float_categorical_grouping_column_is_a_factor(small):
    data = small.assign(g=pd.Categorical(small.g.astype(float)))
    assert build_design("y ~ x", "~ 0 + g", data, BERNOULLI).n_effects == 8


def test_grouping_factor_with_a_single_level(small):
    with pytest.raises(DataError, match=r"'g' .* has 1 level\(s\).*at least two"):
        build_design("y ~ x", "~ 0 + g", small.assign(g="one"), BERNOULLI)


def test_single_level_after_dropping_missing_rows(small):
    data = small.copy()
    data.loc[data.g != 3, "x"] = np.nan
    with pytest.warns(DataWarning), pytest.raises(DataError, match="1 level"):
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI, na_action="drop")


def test_more_random_effects_than_observations_is_allowed(small):
    """Whether they are identified is judged after the fit (tests/test_checks.py)."""
    data = small.assign(a=np.arange(40), b=np.arange(40) + 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        design = build_design("y ~ x", ["~ 0 + a", "~ 0 + b"], data, BERNOULLI)
    assert design.n_effects == 80


@pytest.mark.parametrize(
    ("column", "levels"),
    [
        (np.tile([True, False], 20), ("False", "True")),
        (np.repeat(["b", "a", "c", "d"], 10), ("a", "b", "c", "d")),
        (pd.Series(np.repeat([1, 2, 10, 3], 10), dtype="Int64"), ("1", "2", "3", "10")),
        (np.array([1, "a"] * 20, dtype=object), ("1", "a")),
        (pd.Categorical(np.repeat(["x", "y"], 20), categories=["y", "x"]), ("y", "x")),
    ],
    ids=["bool", "object-str", "nullable-int", "mixed-object", "categorical"],
)
def test_grouping_columns_of_any_label_dtype_are_factors(small, column, levels):
    data = small.assign(f=column)
    design = _no_warnings(lambda: build_design("y ~ x", "~ 0 + f", data, BERNOULLI))
    assert design.random_terms[0].levels == levels
    assert design.n_effects == len(levels)


def test_values_that_print_alike_in_a_grouping_column(small):
    data = small.assign(f=np.array([1, "1", 2, "x"] * 10, dtype=object))
    with pytest.raises(DataError, match="print the same"):
        build_design("y ~ x", "~ 0 + f", data, BERNOULLI)


def test_unused_categories_are_warned_and_get_no_effect(small):
    data = small.assign(f=pd.Categorical(small.g % 2, categories=[0, 1, 2]))
    with pytest.warns(DataWarning, match="categories that no row uses"):
        design = build_design("y ~ x", "~ 0 + f", data, BERNOULLI)
    assert design.n_effects == 2


# -- random formulas -----------------------------------------------------------------------
def test_implicit_intercept_in_a_random_formula_is_warned(small):
    with pytest.warns(DataWarning, match="implicit intercept"):
        design = build_design("y ~ x", "~ g", small, BERNOULLI)
    assert design.n_effects == 8


@pytest.mark.parametrize(
    ("random", "message"),
    [
        ("~ 1 + g", "explicit intercept.*'~ 0 \\+ g'"),
        ("~ 0 + g + h", "one grouping factor"),
        ("~ 0 + x * g", "one grouping factor"),
        ("~ (1 | g)", "lme4"),
        ("~ 0", "one grouping factor"),
        ("~ 1", "names no grouping factor"),
    ],
)
def test_unsupported_random_formulas(small, random, message):
    with pytest.raises(FormulaError, match=message):
        build_design("y ~ x", random, small, BERNOULLI)


@pytest.mark.parametrize("random", [3, {"g": 1}, [1]])
def test_random_of_wrong_type(small, random):
    with pytest.raises(ArgumentTypeError, match="random|random formula"):
        build_design("y ~ x", random, small, BERNOULLI)


def test_no_random_effects_at_all(small):
    """random=None is lme4's form: then the formula must hold bar terms."""
    with pytest.raises(ArgumentError, match="no random effects.*'\\(1 \\| g\\)'"):
        build_design("y ~ x", None, small, BERNOULLI)


def test_no_random_formula(small):
    with pytest.raises(ArgumentError, match="at least one random-effect formula"):
        build_design("y ~ x", [], small, BERNOULLI)


# -- fixed formulas ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ("y x", "exactly one '~'"),
        ("y ~ x ~ g", "exactly one '~'"),
        ("~ x", "no response"),
        ("y ~", "no right-hand side"),
        ("y ~ x + (1 | g)", "random= is given as well; use one form"),
        ("log(y) ~ x", "must be a column name"),
        ("cbind(succ) ~ x", "cbind\\(successes, failures\\)"),
        ("y ~ x +", "ends with '\\+'"),
        ("y ~ x(", "cannot parse fixed formula|unbalanced|parenthes"),
    ],
)
def test_malformed_fixed_formulas(small, fixed, message):
    with pytest.raises(FormulaError, match=message) as info:
        build_design(fixed, "~ 0 + g", small, BERNOULLI)
    text = str(info.value)
    assert "\x1b[" not in text, "formulaic's colour codes must not reach the user"
    assert "\u29db" not in text and "\u29da" not in text


def test_fixed_of_wrong_type(small):
    with pytest.raises(ArgumentTypeError, match="fixed must be a formula string"):
        build_design(["y ~ x"], "~ 0 + g", small, BERNOULLI)


def test_backticked_response_name(small):
    data = small.rename(columns={"y": "my y"})
    assert build_design("`my y` ~ x", "~ 0 + g", data, BERNOULLI).response_name == "my y"


def test_nonfinite_fixed_design_names_the_column(small):
    data = small.assign(x=np.where(np.arange(40) == 6, np.inf, small.x))
    with pytest.raises(DataError, match=r"non-finite values .* \{'x': 1\}.*row 6"):
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)
    with pytest.raises(DataError, match=r"non-finite .*np.log\(count\)"):
        build_design("y ~ np.log(count)", "~ 0 + g", small.assign(count=0), BERNOULLI)


@pytest.mark.parametrize(
    ("fixed", "names"),
    [
        ("y ~ poly(x, 2)", ("(Intercept)", "poly(x, 2)1", "poly(x, 2)2")),
        ("y ~ center(x)", ("(Intercept)", "center(x)")),
        ("y ~ np.log(count + 1)", ("(Intercept)", "np.log(count + 1)")),
        ("y ~ C(f, Treatment('b'))", ("(Intercept)", "C(f, Treatment('b'))a")),
    ],
)
def test_transformed_fixed_terms(small, fixed, names):
    data = small.assign(f=np.where(small.g < 4, "a", "b"))
    design = build_design(fixed, "~ 0 + g", data, BERNOULLI)
    assert design.fixed_names == names


def test_missing_values_inside_a_transform_are_found(small):
    data = small.copy()
    data.loc[3, "x"] = np.nan
    with pytest.raises(DataError, match=r"missing values in column\(s\) \{'x': 1\}"):
        build_design("y ~ poly(x, 2)", "~ 0 + g", data, BERNOULLI)


def test_numbers_stored_as_objects_are_numbers(small):
    design = build_design("y ~ x", "~ 0 + g", small.assign(x=small.x.astype(object)),
                          BERNOULLI)
    assert design.fixed_names == ("(Intercept)", "x")


@pytest.mark.parametrize("values", [pd.date_range("2020-01-01", periods=40),
                                    np.arange(40) + 1j])
def test_dates_or_complex_numbers_as_fixed_effects(small, values):
    with pytest.raises(DataError, match="column 'd' of fixed formula .* convert it"):
        build_design("y ~ d", "~ 0 + g", small.assign(d=values), BERNOULLI)


def test_unhashable_grouping_values(small):
    with pytest.raises(DataError, match="cannot be compared"):
        build_design("y ~ x", "~ 0 + f", small.assign(f=[[1]] * 40), BERNOULLI)


def test_no_fixed_effects(small):
    with pytest.raises(FormulaError, match="no fixed effects"):
        build_design("y ~ 0", "~ 0 + g", small, BERNOULLI)


def test_family_must_be_a_family_object(small):
    with pytest.raises(ArgumentTypeError, match="get_family"):
        build_design("y ~ x", "~ 0 + g", small, "bernoulli")


# -- responses -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_bernoulli_response_outside_0_1(small, bad):
    data = small.assign(y=small.y.where(small.index != 7, bad))
    with pytest.raises(DataError, match=r"bernoulli response 'y' must be 0 or 1.*row 7"):
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)


@pytest.mark.parametrize(
    "values",
    [
        np.where(np.tile([0, 1, 1, 0, 1], 8) == 1, "True", "False"),
        np.where(np.tile([0, 1, 1, 0, 1], 8) == 1, "yes", "no"),
        pd.Categorical(np.where(np.tile([0, 1, 1, 0, 1], 8) == 1, "T", "F")),
    ],
    ids=["True/False strings", "yes/no", "categorical text"],
)
def test_text_response_is_refused_with_a_recoding_hint(small, values):
    with pytest.raises(DataError, match=r"response column 'y' must be numeric \(0") as info:
        build_design("y ~ x", "~ 0 + g", small.assign(y=values), BERNOULLI)
    assert ".map(" in str(info.value)


def test_true_false_strings_get_the_exact_recoding():
    data = pd.DataFrame({"y": ["True", "False"] * 4, "g": [1, 2] * 4})
    with pytest.raises(DataError, match=r"map\(\{'False': 0, 'True': 1\}\)"):
        build_design("y ~ 1", "~ 0 + g", data, BERNOULLI)


@pytest.mark.parametrize(
    "values",
    [
        np.tile([0, 1, 1, 0, 1], 8).astype(bool),
        pd.array(np.tile([0, 1, 1, 0, 1], 8).astype(bool), dtype="boolean"),
        pd.Categorical(np.tile([0, 1, 1, 0, 1], 8)),
        np.tile([0, 1, 1, 0, 1], 8).astype(object),
        np.tile([0, 1, 1, 0, 1], 8).astype(np.float32),
    ],
    ids=["bool", "nullable boolean", "categorical 0/1", "object ints", "float32"],
)
def test_bernoulli_responses_that_are_really_0_1(small, values):
    design = _no_warnings(lambda: build_design("y ~ x", "~ 0 + g", small.assign(y=values),
                                               BERNOULLI))
    np.testing.assert_array_equal(design.y, np.tile([0, 1, 1, 0, 1], 8))


def test_poisson_negative_or_fractional(small):
    with pytest.raises(DataError, match="poisson response 'count' must be non-negative"):
        build_design("count ~ x", "~ 0 + g", small.assign(count=small["count"] - 10), POISSON)
    with pytest.raises(DataError, match="poisson response 'count' must be integer-valued"):
        build_design("count ~ x", "~ 0 + g", small.assign(count=small["count"] + 0.5), POISSON)


def test_poisson_integer_valued_floats_are_accepted(small):
    data = small.assign(count=small["count"].astype(float))
    design = _no_warnings(lambda: build_design("count ~ x", "~ 0 + g", data, POISSON))
    np.testing.assert_array_equal(design.y, small["count"])


def test_binomial_float_integer_valued_cbind_is_accepted(small):
    data = small.assign(succ=small.succ.astype(float), fail=small.fail.astype(float))
    design = build_design("cbind(succ, fail) ~ x", "~ 0 + g", data, BINOMIAL)
    np.testing.assert_array_equal(design.trials, small.succ + small.fail)
    assert design.response_name == "cbind(succ, fail)"


@pytest.mark.parametrize(
    ("succ_shift", "fail_shift", "message"),
    [
        (-10, 0, "successes .* non-negative"),
        (0, -10, "failures .* non-negative"),
        (0.5, 0, "successes .* integer-valued"),
        (0, 0.25, "failures .* integer-valued"),
    ],
)
def test_binomial_counts_negative_or_fractional(small, succ_shift, fail_shift, message):
    data = small.assign(succ=small.succ + succ_shift, fail=small.fail + fail_shift)
    with pytest.raises(DataError, match=message):
        build_design("cbind(succ, fail) ~ x", "~ 0 + g", data, BINOMIAL)


def test_binomial_needs_cbind(small):
    with pytest.raises(FormulaError, match=r"needs the response as 'cbind\(successes"):
        build_design("y ~ x", "~ 0 + g", small, BINOMIAL)


def test_cbind_with_another_family(small):
    with pytest.raises(FormulaError, match="only for family='binomial'"):
        build_design("cbind(succ, fail) ~ x", "~ 0 + g", small, POISSON)


@pytest.mark.parametrize(
    ("family", "fixed", "column", "value", "phrase"),
    [
        (BERNOULLI, "y ~ x", "y", 0, "all 0"),
        (BERNOULLI, "y ~ x", "y", 1, "all 1"),
        (POISSON, "count ~ x", "count", 0, "all 0"),
        (BINOMIAL, "cbind(succ, fail) ~ x", "succ", 0, "no successes"),
        (BINOMIAL, "cbind(succ, fail) ~ x", "fail", 0, "no failures"),
    ],
)
def test_single_valued_response_is_warned(small, family, fixed, column, value, phrase):
    data = small.assign(**{column: value})
    with pytest.warns(DataWarning, match=f"takes a single value \\({phrase}") as rec:
        build_design(fixed, "~ 0 + g", data, family)
    assert "diverge" in str(rec[0].message)


def test_constant_nonzero_poisson_response_is_fine(small):
    _no_warnings(lambda: build_design("count ~ x", "~ 0 + g", small.assign(count=4), POISSON))


# -- rank deficiency -----------------------------------------------------------------------
def test_rank_deficient_design_names_the_aliased_columns(salamander):
    data = salamander.assign(RR=(salamander.Cross == "R/R").astype(float))
    with pytest.raises(DataError, match="rank deficient") as info:
        build_design("Mate ~ Cross + RR", ["~ 0 + Female"], data, BERNOULLI)
    message = str(info.value)
    assert "'RR' = a combination of" in message
    for name in ("(Intercept)", "CrossR/W", "CrossW/R", "CrossW/W"):
        assert name in message


def test_rank_deficient_collinear_covariates(small):
    data = small.assign(x2=3 * small.x, x3=small.x + 1)
    with pytest.raises(DataError, match=r"'x2' = a combination of \['x'\]"):
        build_design("y ~ 0 + x + x2", "~ 0 + g", data, BERNOULLI)
    with pytest.raises(DataError, match=r"'x3' = a combination of \['\(Intercept\)', 'x'\]"):
        build_design("y ~ x + x3", "~ 0 + g", data, BERNOULLI)


def test_all_zero_column_and_too_few_rows(small):
    with pytest.raises(DataError, match=r"\['z'\] .* are all zero"):
        build_design("y ~ x + z", "~ 0 + g", small.assign(z=0.0), BERNOULLI)
    with pytest.raises(DataError, match="only 3 rows"):
        build_design("y ~ x + C(g)", "~ 0 + h", small.iloc[[1, 5, 10]].assign(h=[1, 2, 1]),
                     BERNOULLI)


# -- separation ----------------------------------------------------------------------------
def test_complete_separation_is_warned(small):
    data = small.assign(y=(small.x > 0).astype(int))
    with pytest.warns(DataWarning, match="complete separation") as rec:
        build_design("y ~ x", "~ 0 + g", data, BERNOULLI)
    message = str(rec[0].message)
    assert "'x'" in message and "all 40 of 40" in message and "diverge" in message


def test_quasi_complete_separation_by_a_factor_level_is_warned(small):
    data = small.assign(f=np.where(small.g == 0, "a", "b"))
    data.loc[data.f == "a", "y"] = 1  # level a: every response is 1
    with pytest.warns(DataWarning, match="quasi-complete separation") as rec:
        build_design("y ~ f", "~ 0 + h", data, BERNOULLI)
    assert "(Intercept)" in str(rec[0].message) and "at least 5 of 40" in str(rec[0].message)


def test_poisson_level_with_only_zero_counts_is_warned(small):
    data = small.assign(f=np.where(small.g == 0, "a", "b"), count=small["count"] + 1)
    data.loc[data.f == "a", "count"] = 0
    with pytest.warns(DataWarning, match="separation"):
        build_design("count ~ 0 + f", "~ 0 + h", data, POISSON)


def test_binomial_separation_is_warned(small):
    data = small.assign(succ=np.where(small.x > 0, 3, 0), fail=np.where(small.x > 0, 0, 2))
    with pytest.warns(DataWarning, match="complete separation"):
        build_design("cbind(succ, fail) ~ x", "~ 0 + g", data, BINOMIAL)


@pytest.mark.parametrize("loader", ["salamander", "booth_hobert"])
def test_no_false_separation_on_the_bundled_data(request, loader):
    data = request.getfixturevalue(loader)
    if loader == "salamander":
        call = lambda: build_design(  # noqa: E731
            "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], data, BERNOULLI)
    else:
        call = lambda: build_design("y ~ 0 + x1", "~ 0 + z1", data, BERNOULLI)  # noqa: E731
    _no_warnings(call)


def test_overlapping_data_do_not_warn(small):
    _no_warnings(lambda: build_design("y ~ x", "~ 0 + g", small, BERNOULLI))
    data = small.assign(count=small["count"] + 1)
    _no_warnings(lambda: build_design("count ~ x", "~ 0 + g", data, POISSON))


# -- variance components -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("equal", "error", "message"),
    [
        ([2, 1], ArgumentError, "order of first appearance"),
        ([1, 3], ArgumentError, "order of first appearance"),
        ([0, 1], ArgumentError, "order of first appearance"),
        ([1], ArgumentError, "1 entries but there are 2 random formulas"),
        ([1, 2, 1], ArgumentError, "3 entries but there are 2"),
        ([1.0, 2.0], ArgumentTypeError, "must hold integers"),
        ([True, True], ArgumentTypeError, "must hold integers"),
        (1, ArgumentTypeError, "must be a sequence"),
        ("12", ArgumentTypeError, "must be a sequence"),
    ],
)
def test_bad_varcomps_equal(small, equal, error, message):
    with pytest.raises(error, match=message):
        build_design("y ~ x", ["~ 0 + g", "~ 0 + h"], small, BERNOULLI, varcomps_equal=equal)


def test_varcomps_equal_accepts_numpy_integers(small):
    design = build_design("y ~ x", ["~ 0 + g", "~ 0 + h"], small, BERNOULLI,
                          varcomps_equal=np.array([1, 1]), varcomps_names="G")
    assert design.varcomps_names == ("G",) and design.varcomps_equal == (1, 1)


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        (["a"], ArgumentError, "1 name\\(s\\) but the model has 2"),
        (["a", "b", "c"], ArgumentError, "3 name\\(s\\) but the model has 2"),
        (["a", "a"], ArgumentError, "must be distinct"),
        (["a", ""], ArgumentError, "empty"),
        (["a", 2], ArgumentTypeError, "must be strings"),
        (5, ArgumentTypeError, "must be a sequence"),
        (["x", "b"], ArgumentError, "also fixed-effect names"),
    ],
)
def test_bad_varcomps_names(small, names, error, message):
    with pytest.raises(error, match=message):
        build_design("y ~ x", ["~ 0 + g", "~ 0 + h"], small, BERNOULLI, varcomps_names=names)


# -- nothing lost --------------------------------------------------------------------------
def test_build_design_never_modifies_the_data(salamander):
    data = salamander.copy()
    data.loc[3, "Mate"] = np.nan
    data["extra"] = "kept"
    before = data.copy(deep=True)
    with pytest.warns(DataWarning):
        build_design("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], data, BERNOULLI,
                     na_action="drop")
    pd.testing.assert_frame_equal(data, before)
    assert list(data.Female.cat.categories) == list(before.Female.cat.categories)


def test_every_error_here_is_a_value_or_type_error():
    for cls in (DataError, FormulaError, ArgumentError, ArgumentTypeError):
        assert issubclass(cls, PyGLMMError)
        assert issubclass(cls, ValueError) or issubclass(cls, TypeError)
    assert re.search("ValueError", str(DataError.__mro__))
