"""Offsets in a formula's right-hand side, and expressions of data columns.

:func:`split_offsets` removes the ``offset(expr)`` terms of a right-hand side (as
string processing, with the scanner of :mod:`pyglmm.bars`) and returns their
expressions; :func:`evaluate_expression` evaluates such an expression (``log(t)``,
``n - s``) on a data frame the way formulaic evaluates a term, with errors that name
the offset and the rows. Only :func:`evaluate_expression` imports formulaic, when it
is called.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .bars import (
    _LABELS_SHOWN,
    _OFFSET,
    _bar_inner,
    _check_offset_not_nested,
    _check_rhs,
    _remove_pieces,
    _scan,
    _signs,
    _split_terms,
    _wrapped,
)
from .errors import ArgumentTypeError, DataError, FormulaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate_expression", "split_offsets"]


def split_offsets(rhs: str, formula: str) -> tuple[str, tuple[str, ...]]:
    """Remove 'offset(expr)' terms from a RHS; return the rest and the expressions.

    Parameters
    ----------
    rhs : str
        The right-hand side of a formula (the part after ``~``).
    formula : str
        The whole formula, named in error messages.

    Returns
    -------
    fixed : str
        The right-hand side without the offset terms, the other terms as written:
        ``"1"`` when nothing is left, ``"0"`` for ``"0 + offset(a)"``.
    offsets : tuple of str
        The expressions inside the ``offset(...)`` terms, stripped, in order.

    Raises
    ------
    FormulaError
        For an offset after ``-``, an empty ``offset()``, or an offset that is part of
        an interaction or power instead of a term of its own. An ``offset(`` inside
        another function call (``I(offset(x))``) is left alone.

    Examples
    --------
    >>> split_offsets("x + offset(log(t))", "y ~ x + offset(log(t))")
    ('x', ('log(t)',))
    """
    _check_rhs(rhs, formula)
    pieces = _split_terms(rhs, formula)
    removed: list[tuple[int, int]] = []
    offsets: list[str] = []
    for k, piece in enumerate(pieces):
        if _bar_inner(piece.text, formula) is not None:
            continue  # a random-effect term: split_bars refuses an offset in it
        if not _OFFSET.match(piece.text) or not piece.text.endswith(")"):
            _check_offset_not_nested(piece.text, formula)
            continue
        opening = piece.text.index("(")
        call = piece.text[opening:]
        if not _wrapped(call, formula):
            _check_offset_not_nested(piece.text, formula)
            continue
        at, operators = _signs(pieces, k)
        if "-" in operators:
            raise FormulaError(
                f"formula {formula!r} subtracts the offset {piece.text!r}; an offset "
                f"cannot be removed with '-': write '+ {piece.text}', or "
                f"'+ offset(-({call[1:-1].strip()}))' for a negated offset"
            )
        expression = call[1:-1].strip()
        if not expression:
            raise FormulaError(
                f"formula {formula!r} has an empty offset {piece.text!r}; write the "
                "offset's expression inside, e.g. 'offset(log(time))'"
            )
        offsets.append(expression)
        removed.append((at, piece.end))
    if not removed:
        return rhs.strip(), ()
    return _remove_pieces(rhs, removed), tuple(offsets)


def evaluate_expression(expr: str, frame: pd.DataFrame, what: str) -> NDArray[np.float64]:
    """Evaluate a numeric expression of data columns as formulaic would.

    Evaluates an expression such as ``'log(t)'``, ``'n - s'`` or ``'t'`` and returns a
    float64 vector of length ``len(frame)``.
    The expression is evaluated by :mod:`formulaic` as the factor ``I(expr)``: it may
    use the columns of the data (in backticks if their names have spaces or symbols),
    ``np`` (numpy) and formulaic's ``log``, ``log2``, ``log10``, ``exp`` and ``exp2``.

    Parameters
    ----------
    expr : str
        The expression, e.g. ``"log(t)"``, ``"np.log(t)"``, ``"n - s"``, ``"`my t`"``.
    frame : pandas.DataFrame
        The data.
    what : str
        What the expression is, for error messages, e.g. ``"offset 'log(t)'"``.

    Returns
    -------
    numpy.ndarray
        The values, float64, one per row of ``frame``.

    Raises
    ------
    FormulaError
        If the expression cannot be evaluated (unknown column or function, syntax).
    DataError
        If its value is not one number per row (text, a factor, several columns,
        another length) or is not finite (rows named by their index labels).

    Examples
    --------
    >>> import pandas as pd
    >>> evaluate_expression("log(t)", pd.DataFrame({"t": [1.0, 1.0]}), "offset 'log(t)'")
    array([0., 0.])
    """
    import pandas as pd

    from .datachecks import library_message

    label = what if str(expr) in what else f"{what} {expr!r}"
    if not isinstance(expr, str) or not expr.strip():
        raise FormulaError(f"{label} must be a non-empty expression of data columns")
    if not isinstance(frame, pd.DataFrame):
        raise ArgumentTypeError(
            f"the data for {label} must be a pandas DataFrame, not {type(frame).__name__}"
        )
    try:  # balanced parentheses, so that I(...) below wraps exactly the expression
        for _ in _scan(expr, expr):
            pass
    except FormulaError:
        raise FormulaError(
            f"{label} has unbalanced parentheses or quotes; check the expression"
        ) from None

    import formulaic

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            matrix = formulaic.model_matrix(
                f"0 + I({expr.strip()})", frame, context={}, na_action="ignore",
                ensure_full_rank=False, output="pandas",
            )
    except Exception as exc:
        message = library_message(exc)
        if "does not match length" in message:
            raise DataError(
                f"{label} does not give one value per row of the data ({len(frame)} "
                f"rows): {message}"
            ) from None
        raise FormulaError(
            f"{label} cannot be evaluated from the data: {message}; it may "
            "use the data's columns (in backticks if need be), np.* and log, log2, "
            "log10, exp, exp2"
        ) from None
    states = matrix.model_spec.encoder_state
    kinds = [str(getattr(kind, "value", kind)) for kind, _ in states.values()]
    if matrix.shape[1] != 1 or kinds != ["numerical"] or [str(c) for c in matrix.columns] != [
        str(name) for name in states
    ]:
        columns = [str(c) for c in matrix.columns]
        kind = "a categorical value" if "categorical" in kinds else (
            f"{len(columns)} column(s) {columns}"
        )
        raise DataError(
            f"{label} must give one number per row, but it gives {kind}; use a numeric "
            "expression of numeric columns"
        )
    column = matrix.iloc[:, 0]
    if column.dtype.kind not in "biuf":
        raise DataError(
            f"{label} must give numbers, but its values have type {column.dtype}; use "
            "a numeric expression of numeric columns"
        )
    if len(column) != len(frame):
        raise DataError(
            f"{label} gives {len(column)} values but the data have {len(frame)} rows; "
            "it must give one value per row"
        )
    values = np.asarray(column, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        labels = [frame.index[i] for i in bad[:_LABELS_SHOWN]]
        more = f" and {bad.size - _LABELS_SHOWN} more" if bad.size > _LABELS_SHOWN else ""
        raise DataError(
            f"{label} is not finite (NaN or infinite, e.g. log(0) or a missing value) in "
            f"{bad.size} row(s), index labels {labels}{more}; fix or drop those rows"
        )
    return values
