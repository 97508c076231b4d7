"""Wald tests of linear hypotheses ``L theta = r`` about the parameters.

:func:`wald_test` reads a hypothesis as a matrix ``L`` (and ``r``) or as equations in
the parameter names (``"CrossR/R = CrossW/W"``), and returns a :class:`WaldTest` with
its chi-square statistic, degrees of freedom and p-value, and the statistic's Monte
Carlo standard error. :meth:`pyglmm.GLMMResults.wald_test` calls it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from .errors import ArgumentError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class WaldTest:
    """A Wald test of :math:`L\\theta = r` (returned by :meth:`GLMMResults.wald_test`).

    Attributes
    ----------
    statistic : float
        :math:`(L\\hat\\theta-r)^\\top(LVL^\\top)^{-1}(L\\hat\\theta-r)`, chi-square.
    df : int
        Degrees of freedom, the number of hypotheses.
    p_value : float
        Upper tail of the chi-square distribution with ``df`` degrees of freedom.
    contrast : pandas.DataFrame
        :math:`L`, one row per hypothesis, columns named by parameter.
    rhs : ndarray
        :math:`r`.
    difference : ndarray
        :math:`L\\hat\\theta - r`.
    """

    statistic: float
    df: int
    p_value: float
    contrast: pd.DataFrame
    rhs: FloatArray
    difference: FloatArray

    @property
    def z(self) -> float:
        """Signed z statistic of a single hypothesis (NaN when ``df > 1``)."""
        if self.df != 1:
            return float("nan")
        return float(np.sign(self.difference[0]) * math.sqrt(self.statistic))

    def __str__(self) -> str:
        return f"Wald test: chi2({self.df}) = {self.statistic:.4g}, p-value = {self.p_value:.4g}"


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _parse_side(text: str, names: tuple[str, ...]) -> tuple[FloatArray, float]:
    """Read ``[+-] [number *] name | [+-] number`` terms into coefficients and a constant."""
    coefficients, constant = np.zeros(len(names)), 0.0
    by_length = sorted(set(names), key=len, reverse=True)
    position, first = 0, True

    def skip(at: int) -> int:
        while at < len(text) and text[at].isspace():
            at += 1
        return at

    def name_at(at: int) -> tuple[str | None, int]:
        if text.startswith("`", at):
            end = text.find("`", at + 1)
            if end > at and text[at + 1 : end] in names:
                return text[at + 1 : end], end + 1
            return None, at
        return next(((n, at + len(n)) for n in by_length if text.startswith(n, at)), (None, at))

    while (position := skip(position)) < len(text):
        sign, signed = 1.0, False
        while position < len(text) and text[position] in "+-":
            sign, signed = (-sign if text[position] == "-" else sign), True
            position = skip(position + 1)
        name, end = name_at(position)
        number = None if name else _NUMBER.match(text, position)
        if (not first and not signed) or (name is None and number is None):
            raise ArgumentError(
                f"cannot read {text[position:]!r} in {text!r}: expected terms such as "
                f"'name', '2 * name' or a number joined by + or -, with names from "
                f"{list(names)} (in backticks if they could be misread)"
            )
        factor = 1.0
        if number is not None:
            factor, end = float(number.group()), skip(number.end())
            if text.startswith("*", end):
                name, end = name_at(skip(end + 1))
                if name is None:
                    raise ArgumentError(f"expected a parameter name after '*' in {text!r}")
        if name is None:
            constant += sign * factor
        else:
            coefficients[names.index(name)] += sign * factor
        position, first = end, False
    if first:
        raise ArgumentError(f"an empty side in the hypothesis {text!r}")
    return coefficients, constant


def _parse_equation(equation: str, names: tuple[str, ...]) -> tuple[FloatArray, float]:
    sides = re.split(r"==?", equation)
    if len(sides) > 2:
        raise ArgumentError(f"a hypothesis has one '=', got {equation!r}")
    left, left_constant = _parse_side(sides[0], names)
    right, right_constant = _parse_side(sides[1], names) if len(sides) == 2 else (0.0, 0.0)
    return left - right, right_constant - left_constant


def wald_test(
    names: tuple[str, ...],
    estimate: FloatArray,
    covariance: FloatArray,
    hypothesis: str | Sequence[str] | ArrayLike,
    rhs: ArrayLike | None = None,
) -> WaldTest:
    """Wald test of :math:`L\\theta = r` (see :meth:`pyglmm.GLMMResults.wald_test`).

    Parameters
    ----------
    names : tuple of str
        Parameter names, in the order of ``estimate``.
    estimate : ndarray, shape (P,)
        The estimates :math:`\\hat\\theta`.
    covariance : ndarray, shape (P, P)
        Their covariance :math:`V`.
    hypothesis : str, sequence of str, or array_like
        Equations in the names (``"a - b = 0"``; several separated by ``;`` or in a
        list), or a contrast vector / matrix with P columns.
    rhs : array_like, optional
        :math:`r` for a numeric contrast (default 0).

    Returns
    -------
    WaldTest

    Examples
    --------
    >>> import numpy as np
    >>> test = wald_test(("a", "b"), np.array([1.0, 0.5]), np.eye(2) * 0.04, "a - b = 0")
    >>> round(test.statistic, 6), test.df
    (3.125, 1)
    """
    if isinstance(hypothesis, str) or (
        isinstance(hypothesis, Sequence) and len(hypothesis) > 0
        and isinstance(hypothesis[0], str)
    ):
        equations = hypothesis.split(";") if isinstance(hypothesis, str) else hypothesis
        rows = [_parse_equation(str(eq), names) for eq in equations if str(eq).strip()]
        if not rows:
            raise ArgumentError("the hypothesis is empty")
        contrast = np.array([row[0] for row in rows])
        target = np.array([row[1] for row in rows])
    else:
        contrast = np.atleast_2d(np.asarray(hypothesis, dtype=np.float64))
        if contrast.ndim != 2 or contrast.shape[1] != len(names):
            raise ArgumentError(
                f"a contrast needs {len(names)} columns (one per parameter {list(names)}), "
                f"got shape {np.shape(hypothesis)}"
            )
        target = np.broadcast_to(
            np.asarray(0.0 if rhs is None else rhs, dtype=np.float64), contrast.shape[:1]
        ).copy()
    if np.linalg.matrix_rank(contrast) < contrast.shape[0]:
        raise ArgumentError("the hypotheses are linearly dependent or empty; drop some")
    difference = contrast @ estimate - target
    middle = contrast @ covariance @ contrast.T
    try:
        statistic = float(difference @ np.linalg.solve(middle, difference))
    except np.linalg.LinAlgError:  # a singular information: no covariance to test with
        statistic = float("nan")
    df = int(contrast.shape[0])
    return WaldTest(
        statistic=statistic, df=df, p_value=float(stats.chi2.sf(statistic, df)),
        contrast=pd.DataFrame(contrast, columns=list(names)), rhs=target,
        difference=difference,
    )
