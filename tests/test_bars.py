"""Tests of pyglmm.bars: lme4 bar terms and offsets taken out of a formula's RHS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyglmm.bars import BarTerm, split_bars
from pyglmm.errors import ArgumentTypeError, DataError, FormulaError
from pyglmm.offsets import evaluate_expression, split_offsets

F = "y ~ formula"


def bar(text: str, covariates: str, grouping: tuple[str, ...], correlated: bool = True) -> BarTerm:
    return BarTerm(text, covariates, grouping, correlated)


# --- split_bars: what is left ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "fixed"),
    [
        ("x + (1|g)", "x"),
        ("(1|g)", "1"),
        ("0 + (1|g)", "0"),
        ("(1|g) + 0", "0"),
        ("1 + x + (1 | g) + z", "1 + x + z"),
        ("(1 | g) + x", "x"),
        ("x*z + (1|g) + w:v", "x*z + w:v"),
        ("x+(1|g)+z", "x+z"),  # the remaining text is kept as written
        ("  x  +\n (1 | g)  ", "x"),
        ("(1|g) - 1", "- 1"),
        ("(1|g) + (1|h)", "1"),
        ("x + (1|g) + (x|h) + z", "x + z"),
        ("x + + (1|g) + z", "x + z"),  # a unary '+' goes with the term
    ],
)
def test_split_bars_fixed_part(rhs: str, fixed: str) -> None:
    assert split_bars(rhs, F)[0] == fixed


def test_split_bars_without_bars_returns_the_rhs() -> None:
    assert split_bars("x + z", F) == ("x + z", ())
    assert split_bars(" x*z ", F) == ("x*z", ())


def test_split_bars_leaves_bitwise_or_inside_a_call_alone() -> None:
    assert split_bars("x + I(a | b)", F) == ("x + I(a | b)", ())


# --- split_bars: the terms ---------------------------------------------------------------


def test_simple_terms() -> None:
    assert split_bars("x + (1|g)", F)[1] == (bar("(1 | g)", "1", ("g",)),)
    assert split_bars("(1 + x | g)", F)[1] == (bar("(1 + x | g)", "1 + x", ("g",)),)
    assert split_bars("(0 + x | g)", F)[1] == (bar("(0 + x | g)", "0 + x", ("g",)),)


def test_implicit_intercept_kept_as_written() -> None:
    (term,) = split_bars("(x | g)", F)[1]
    assert term.covariates == "x"
    assert term.text == "(x | g)"


def test_whitespace_insensitive_and_normalised() -> None:
    a = split_bars("x+(1+x|g)", F)
    b = split_bars("x + ( 1 +   x |\n g )", F)
    assert a[1][0].grouping == b[1][0].grouping == ("g",)
    assert b[1][0].covariates == "1 + x"
    assert b[1][0].text == "(1 + x | g)"
    assert a[0] == b[0] == "x"


@pytest.mark.parametrize(
    "covariates", ["1 + log(x)", "1 + I(x^2)", "1 + I((x + 1) * (z - 2))", "np.log(x)"]
)
def test_nested_parentheses_in_covariates(covariates: str) -> None:
    fixed, terms = split_bars(f"x + ({covariates} | g) + z", F)
    assert fixed == "x + z"
    assert terms == (bar(f"({covariates} | g)", covariates, ("g",)),)


def test_quoted_text_in_covariates_keeps_its_spaces_and_bars() -> None:
    fixed, terms = split_bars("(1 + I(f == 'a  |b') | g)", F)
    assert fixed == "1"
    assert terms[0].covariates == "1 + I(f == 'a  |b')"


def test_redundant_parentheses() -> None:
    assert split_bars("((1 | g)) + x", F) == ("x", (bar("(1 | g)", "1", ("g",)),))


def test_double_bar_is_uncorrelated() -> None:
    (term,) = split_bars("x + (1 + x || g)", F)[1]
    assert term == bar("(1 + x || g)", "1 + x", ("g",), correlated=False)


def test_backticked_grouping() -> None:
    (term,) = split_bars("(1 | `my group`)", F)[1]
    assert term.grouping == ("my group",)
    assert term.text == "(1 | `my group`)"
    (term,) = split_bars("(1 | `a-b`:c)", F)[1]
    assert term.grouping == ("a-b", "c")
    assert term.text == "(1 | `a-b`:c)"


def test_interaction_grouping() -> None:
    (term,) = split_bars("(1 | g1:g2)", F)[1]
    assert term == bar("(1 | g1:g2)", "1", ("g1", "g2"))
    (term,) = split_bars("(1 | g1 : g2)", F)[1]
    assert term.grouping == ("g1", "g2")


def test_nesting_expands_like_lme4() -> None:
    fixed, terms = split_bars("x + (1 + x | g1/g2)", F)
    assert fixed == "x"
    assert terms == (
        bar("(1 + x | g1)", "1 + x", ("g1",)),
        bar("(1 + x | g1:g2)", "1 + x", ("g1", "g2")),
    )


def test_three_level_nesting() -> None:
    terms = split_bars("(1 || a / b / c)", F)[1]
    assert [t.grouping for t in terms] == [("a",), ("a", "b"), ("a", "b", "c")]
    assert [t.text for t in terms] == ["(1 || a)", "(1 || a:b)", "(1 || a:b:c)"]
    assert not any(t.correlated for t in terms)


def test_nesting_of_an_interaction_and_backticks() -> None:
    terms = split_bars("(1 | a:b/`c d`)", F)[1]
    assert [t.grouping for t in terms] == [("a", "b"), ("a", "b", "c d")]
    assert terms[1].text == "(1 | a:b:`c d`)"


def test_several_bar_terms_in_order() -> None:
    fixed, terms = split_bars("x + (1 | site) + z + (0 + x || animal) + (1 | a/b)", F)
    assert fixed == "x + z"
    assert [t.text for t in terms] == [
        "(1 | site)", "(0 + x || animal)", "(1 | a)", "(1 | a:b)",
    ]


# --- split_bars: errors ------------------------------------------------------------------


def _error(function: object, rhs: str) -> str:
    assert callable(function)
    with pytest.raises(FormulaError) as info:
        function(rhs, "y ~ " + rhs)
    return str(info.value)


@pytest.mark.parametrize("rhs", ["x + 1 | g", "1 | g", "x + 1 || g", "(1 | g) | h"])
def test_bar_outside_parentheses(rhs: str) -> None:
    message = _error(split_bars, rhs)
    assert f"y ~ {rhs}" in message
    assert "(1 | g)" in message and "parentheses" in message


@pytest.mark.parametrize("rhs", ["x:(1 | g)", "(1 | g)^2", "(x + (1 | g))", "x*(1|g)"])
def test_bar_not_a_term_of_its_own(rhs: str) -> None:
    message = _error(split_bars, rhs)
    assert f"y ~ {rhs}" in message
    assert "term of its own" in message


@pytest.mark.parametrize(
    "rhs", ["x - (1 | g)", "x + -(1|g)", "-(1 + x || g)", "x - + (1|g)"]
)
def test_subtracted_bar_term(rhs: str) -> None:
    message = _error(split_bars, rhs)
    term = rhs.split("-", 1)[1].strip(" +")
    assert repr(term) in message
    assert "'-'" in message


def test_empty_covariates() -> None:
    message = _error(split_bars, "x + ( | g)")
    assert "'( | g)'" in message and "nothing before '|'" in message


def test_empty_grouping() -> None:
    message = _error(split_bars, "x + (1 | )")
    assert "'(1 | )'" in message and "no grouping column" in message


@pytest.mark.parametrize(
    ("rhs", "shown"),
    [
        ("(1 | g + h)", "'+'"),
        ("(1 | log(g))", "function call"),
        ("(1 | (g))", "function call"),
        ("(1 | 2)", "'2'"),
        ("(1 | g h)", "'g h'"),
        ("(1 | g:)", "'nothing'"),
        ("(1 | a//b)", "'nothing'"),
        ("(1 | g*h)", "'*'"),
        ("(1 | g - h)", "'-'"),
        ("(1 | ``)", "'``'"),
    ],
)
def test_bad_grouping(rhs: str, shown: str) -> None:
    message = _error(split_bars, "x + " + rhs)
    assert repr(rhs) in message
    assert shown in message
    assert "g1:g2" in message and "g1/g2" in message


def test_more_than_one_bar_in_a_term() -> None:
    message = _error(split_bars, "(1 | g | h)")
    assert "'(1 | g | h)'" in message and "more than one bar" in message


def test_bar_inside_bar_covariates() -> None:
    message = _error(split_bars, "((1 | g) | h)")
    assert "'((1 | g) | h)'" in message


@pytest.mark.parametrize(
    ("rhs", "phrase"),
    [
        ("x + (1 | g", "'(' without a matching ')'"),
        ("x) + (1 | g)", "')' without a matching '('"),
        ("x + (1 | `g)", "unclosed `"),
        ("x + (1 | g) +", "ends with '+'"),
        ("   ", "no right-hand side"),
    ],
)
def test_malformed_rhs(rhs: str, phrase: str) -> None:
    message = _error(split_bars, rhs)
    assert phrase in message
    assert repr("y ~ " + rhs) in message


def test_non_string_rhs() -> None:
    with pytest.raises(ArgumentTypeError, match="must be a string"):
        split_bars(3, F)  # type: ignore[arg-type]


# --- split_offsets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rhs", "fixed", "offsets"),
    [
        ("x + offset(log(t))", "x", ("log(t)",)),
        ("offset(log(t))", "1", ("log(t)",)),
        ("0 + offset(a)", "0", ("a",)),
        ("offset(a) + x", "x", ("a",)),
        ("x + +offset(a)", "x", ("a",)),
        ("1 + x + offset( n - s ) + z", "1 + x + z", ("n - s",)),
        ("x + offset(np.log(t + 1)) + offset(`my t`)", "x", ("np.log(t + 1)", "`my t`")),
        ("x + offset (a)", "x", ("a",)),
        ("x + offset(log((t + 1) * 2))", "x", ("log((t + 1) * 2)",)),
        ("x + z", "x + z", ()),
        ("x + I(offset(t))", "x + I(offset(t))", ()),  # inside another call: left alone
        ("x + my_offset(t)", "x + my_offset(t)", ()),
        ("x + log(offset(t))", "x + log(offset(t))", ()),
    ],
)
def test_split_offsets(rhs: str, fixed: str, offsets: tuple[str, ...]) -> None:
    assert split_offsets(rhs, F) == (fixed, offsets)


@pytest.mark.parametrize("rhs", ["x - offset(a)", "-offset(log(t)) + x", "x + -offset(a)"])
def test_subtracted_offset(rhs: str) -> None:
    message = _error(split_offsets, rhs)
    term = "offset(a)" if "(a)" in rhs else "offset(log(t))"
    assert repr(term) in message and "'-'" in message


def test_empty_offset() -> None:
    message = _error(split_offsets, "x + offset( )")
    assert "'offset( )'" in message and "empty" in message


@pytest.mark.parametrize("rhs", ["offset(a):x", "x*offset(a)", "offset(a)^2"])
def test_offset_not_a_term_of_its_own(rhs: str) -> None:
    message = _error(split_offsets, rhs)
    assert repr(rhs) in message and "term of its own" in message


def test_offset_unbalanced() -> None:
    assert "without a matching" in _error(split_offsets, "x + offset(log(t)")


# --- bars and offsets together -----------------------------------------------------------


@pytest.mark.parametrize(
    "rhs",
    [
        "x + (1 + x | g) + offset(log(t))",
        "offset(log(t)) + (1 + x | g) + x",
        "x + offset(log(t)) + (1 + x | g)",
    ],
)
def test_bars_and_offsets_in_either_order(rhs: str) -> None:
    rest, offsets = split_offsets(rhs, F)
    fixed_a, terms_a = split_bars(rest, F)
    rest, terms_b = split_bars(rhs, F)
    fixed_b, offsets_b = split_offsets(rest, F)
    assert fixed_a == fixed_b == "x"
    assert offsets == offsets_b == ("log(t)",)
    assert terms_a == terms_b == (bar("(1 + x | g)", "1 + x", ("g",)),)


def test_only_bars_and_offsets() -> None:
    rest, offsets = split_offsets("0 + offset(a) + (1 | g)", F)
    assert split_bars(rest, F) == ("0", (bar("(1 | g)", "1", ("g",)),))
    assert offsets == ("a",)
    rest, terms = split_bars("(1 | g) + offset(a)", F)
    assert split_offsets(rest, F) == ("1", ("a",))


def test_offset_inside_bar_covariates_is_refused_in_either_order() -> None:
    rhs = "x + (1 + offset(a) | g)"
    rest, offsets = split_offsets(rhs, F)
    assert (rest, offsets) == (rhs, ())  # split_offsets leaves bar terms alone
    message = _error(split_bars, rest)
    assert "'(1 + offset(a) | g)'" in message and "fixed part" in message
    # inside a function call of the covariates it is left alone, like everywhere
    assert split_bars("(1 + I(offset(a)) | g)", F)[1][0].covariates == "1 + I(offset(a))"


# --- evaluate_expression -----------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t": [1.0, 2.0, 4.0],
            "n": [5, 6, 7],
            "s": [1, 2, 4],
            "my t": [1.0, np.e, 1.0],
            "f": ["a", "b", "a"],
            "c": pd.Categorical(["u", "v", "u"]),
            "zero": [1.0, 0.0, 0.0],
            "miss": [1.0, np.nan, 2.0],
        },
        index=["r1", "r2", "r3"],
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("log(t)", np.log([1.0, 2.0, 4.0])),
        ("np.log(t)", np.log([1.0, 2.0, 4.0])),
        ("log2(t)", [0.0, 1.0, 2.0]),
        ("n - s", [4.0, 4.0, 3.0]),
        ("t", [1.0, 2.0, 4.0]),
        ("`my t`", [1.0, np.e, 1.0]),
        ("log(`my t`)", [0.0, 1.0, 0.0]),
        ("np.sqrt(t) * 2", [2.0, 2.0 * np.sqrt(2.0), 4.0]),
        (" t ", [1.0, 2.0, 4.0]),
    ],
)
def test_evaluate_expression(frame: pd.DataFrame, expr: str, expected: list[float]) -> None:
    values = evaluate_expression(expr, frame, f"offset {expr!r}")
    assert values.dtype == np.float64
    assert values.shape == (len(frame),)
    np.testing.assert_allclose(values, expected)


def test_evaluate_expression_integers_become_float(frame: pd.DataFrame) -> None:
    assert evaluate_expression("n", frame, "offset 'n'").dtype == np.float64


def test_evaluate_expression_does_not_see_local_names(frame: pd.DataFrame) -> None:
    for name in ("frame", "expr", "what"):
        with pytest.raises(FormulaError, match=name):
            evaluate_expression(name, frame, f"offset {name!r}")


@pytest.mark.parametrize("expr", ["unknown_column", "sqrt(t)", "log(unknown)"])
def test_evaluate_unknown_name(frame: pd.DataFrame, expr: str) -> None:
    with pytest.raises(FormulaError) as info:
        evaluate_expression(expr, frame, f"offset {expr!r}")
    message = str(info.value)
    assert f"offset {expr!r}" in message and "cannot be evaluated" in message


@pytest.mark.parametrize("expr", ["t +", "t)+(n", "log(t", "t, n"])
def test_evaluate_malformed(frame: pd.DataFrame, expr: str) -> None:
    with pytest.raises(FormulaError) as info:
        evaluate_expression(expr, frame, "offset")
    assert repr(expr) in str(info.value)


@pytest.mark.parametrize(
    ("expr", "phrase"),
    [
        ("f", "categorical"),
        ("c", "categorical"),
        ("'text'", "must give numbers"),
        ("1j * n", "must give numbers"),
        ("np.column_stack([n, s])", "2 column(s)"),
        ("None", "0 column(s)"),
        ("n[0:2]", "one value per row"),
    ],
)
def test_evaluate_not_one_number_per_row(frame: pd.DataFrame, expr: str, phrase: str) -> None:
    with pytest.raises(DataError) as info:
        evaluate_expression(expr, frame, f"offset {expr!r}")
    message = str(info.value)
    assert f"offset {expr!r}" in message and phrase in message


def test_evaluate_non_finite_names_rows(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError) as info:
        evaluate_expression("log(zero)", frame, "offset 'log(zero)'")
    message = str(info.value)
    assert "offset 'log(zero)'" in message
    assert "2 row(s)" in message and "['r2', 'r3']" in message
    with pytest.raises(DataError, match=r"\['r2'\]"):
        evaluate_expression("miss", frame, "offset 'miss'")


def test_evaluate_non_finite_lists_only_the_first_rows() -> None:
    frame = pd.DataFrame({"t": np.zeros(8)}, index=range(10, 18))
    with pytest.raises(DataError) as info:
        evaluate_expression("log(t)", frame, "offset 'log(t)'")
    message = str(info.value)
    assert "[10, 11, 12, 13, 14] and 3 more" in message


def test_evaluate_names_what_and_expression(frame: pd.DataFrame) -> None:
    with pytest.raises(FormulaError) as info:
        evaluate_expression("nope", frame, "the offset of formula 'y ~ x'")
    message = str(info.value)
    assert "the offset of formula 'y ~ x'" in message and "'nope'" in message


def test_evaluate_bad_arguments(frame: pd.DataFrame) -> None:
    with pytest.raises(FormulaError, match="non-empty"):
        evaluate_expression("  ", frame, "offset")
    with pytest.raises(ArgumentTypeError, match="DataFrame"):
        evaluate_expression("t", {"t": [1.0]}, "offset 't'")  # type: ignore[arg-type]
