"""Parsing of R-style model formulas: the fixed formula, the random formulas, R's names.

The fixed formula has the response on the left (a column name, in backticks if need
be, or ``cbind(successes, failures)``) and a :mod:`formulaic` right-hand side; each
random formula names one grouping factor (``~ 0 + Female`` or ``~ 0 + Site:Block``).
Formula mistakes raise :class:`~pyglmm.errors.FormulaError` naming the formula
(docs/method.md). The design itself is built by :func:`pyglmm.design.build_design`.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError, ArgumentTypeError, DataWarning, FormulaError

_CBIND = re.compile(r"^cbind\(\s*([^,]+?)\s*,\s*([^,]+?)\s*\)$")
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_NO_INTERCEPT = re.compile(r"(^|\+)\s*0\s*(?=\+|$)|-\s*1\s*(?=\+|-|$)")


def _response_name(text: str, fixed: str) -> str:
    """One response column name: a plain name, or any name in backticks."""
    text = text.strip()
    if len(text) > 1 and text.startswith("`") and text.endswith("`"):
        return text[1:-1]
    if not _NAME.match(text):
        raise FormulaError(
            f"response {text!r} of fixed formula {fixed!r} must be a column name (in "
            "backticks if it has spaces or symbols) or 'cbind(successes, failures)'; "
            "transform the response in the data, not in the formula"
        )
    return text


def _response_part(text: str, fixed: str) -> str:
    """A part of ``cbind(...)``: a column name, or an expression such as ``n - s``."""
    text = text.strip()
    if len(text) > 1 and text.startswith("`") and text.endswith("`"):
        return text[1:-1]
    return text


def parse_fixed(fixed: str) -> tuple[list[str], str]:
    """Split a fixed formula into response column(s) and the right-hand side."""
    if not isinstance(fixed, str):
        raise ArgumentTypeError(f"fixed must be a formula string, not {type(fixed).__name__}")
    if fixed.count("~") != 1:
        raise FormulaError(
            f"fixed formula {fixed!r} must have exactly one '~' with the response on the "
            "left, e.g. 'Mate ~ 0 + Cross' or 'cbind(succ, fail) ~ x'"
        )
    lhs, rhs = (part.strip() for part in fixed.split("~"))
    if not lhs:
        raise FormulaError(f"fixed formula {fixed!r} has no response on the left of '~'")
    if not rhs:
        raise FormulaError(f"fixed formula {fixed!r} has no right-hand side (use '~ 1')")
    match = _CBIND.match(lhs)
    if match:
        return [_response_part(match.group(1), fixed), _response_part(match.group(2), fixed)], rhs
    if lhs.replace(" ", "").startswith("cbind("):
        raise FormulaError(
            f"response {lhs!r} must be 'cbind(successes, failures)' with exactly two "
            "column names"
        )
    return [_response_name(lhs, fixed)], rhs


def r_style_name(name: str) -> str:
    """Rewrite formulaic column names the way R names model-matrix columns."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\[\]]*)\]", r"\1", name)


def random_formula_list(random: Any) -> list[str]:
    """The random formulas as a list, refusing anything that is not strings."""
    if isinstance(random, str):
        return [random]
    if isinstance(random, Sequence | np.ndarray | pd.Series):
        formulas = list(random)
    else:
        raise ArgumentTypeError(
            "random must be a formula string such as '~ 0 + g' or a list of them, "
            f"not {type(random).__name__}"
        )
    if not formulas:
        raise ArgumentError("random must name at least one random-effect formula")
    return formulas


def parse_random(formula: str) -> tuple[str, ...]:
    """Return the grouping columns of a random formula such as ``~ 0 + Female``."""
    if not isinstance(formula, str):
        raise ArgumentTypeError(
            f"each random formula must be a string such as '~ 0 + Female', "
            f"not {type(formula).__name__}"
        )
    rhs = formula.split("~")[-1].strip()
    if "|" in rhs:
        raise FormulaError(
            f"random formula {formula!r} uses lme4's '(1 | g)' syntax; write lme4 terms in "
            "the fixed formula ('y ~ x + (1 | g)'), or one random formula per grouping "
            "factor as '~ 0 + g'"
        )
    stripped = _NO_INTERCEPT.sub("+", rhs)
    terms = [term.strip() for term in stripped.split("+") if term.strip()]
    if "1" in terms and len(terms) > 1:
        others = [term for term in terms if term != "1"]
        raise FormulaError(
            f"random formula {formula!r} has an explicit intercept; a variance component "
            f"needs one effect per level: write '~ 0 + {others[0]}'"
        )
    if len(terms) != 1 or re.search(r"[()*/|^-]", terms[0] if terms else "("):
        raise FormulaError(
            f"random formula {formula!r} must name one grouping factor, as "
            "'~ 0 + g' (or an interaction '~ 0 + g1:g2'; with a float column x, "
            "'~ 0 + x:g' is a random slope); for several columns per level, correlated or "
            "not, write lme4 terms in the fixed formula: '(1 + x | g)' or '(1 + x || g)'"
        )
    if terms[0] == "1":
        raise FormulaError(
            f"random formula {formula!r} names no grouping factor; write '~ 0 + g' "
            "with g the grouping column"
        )
    if stripped == rhs:
        warnings.warn(
            f"random formula {formula!r} has an implicit intercept; it is read as "
            f"'~ 0 + {terms[0]}' (one random effect per level), which is what a "
            "variance-component model means",
            DataWarning,
            stacklevel=4,
        )
    grouping = tuple(part.strip().strip("`") for part in terms[0].split(":"))
    if any(not part for part in grouping):
        raise FormulaError(f"random formula {formula!r} has an empty grouping variable")
    return grouping


def transform_arguments(formula: Any) -> set[str]:
    """Names used inside the Python-evaluated factors of a parsed formula.

    Function names (``poly``, ``np``) are left out; the caller keeps the names that
    are columns of the data.
    """
    names: set[str] = set()
    for term in formula:
        for factor in term.factors:
            if getattr(factor.eval_method, "name", "") != "PYTHON":
                continue
            expr = str(factor.expr)
            names.update(re.findall(r"`([^`]+)`", expr))
            try:
                tree = ast.parse(re.sub(r"`[^`]+`", "_", expr), mode="eval")
            except SyntaxError:
                continue
            called = {
                id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)
            }
            names.update(
                node.id for node in ast.walk(tree)
                if isinstance(node, ast.Name) and id(node) not in called
            )
    return names

