"""The rows a prediction is made for: ``X``, each term's part of ``Z``, and the offset.

On the fit's own rows (:func:`fit_rows`) they are the design's. On new data
(:func:`new_rows`) ``X`` is rebuilt from the fit's formulaic model spec (so factor
levels, contrasts and stateful transforms are those of the fit), each random term's
columns from its spec and its level codes from its level labels (``-1`` for a level the
fit did not see), and the offset from the formula's ``offset(...)`` terms plus the
``offset=`` argument. :func:`random_part` is ``Z u`` on such rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .datachecks import library_message
from .errors import ArgumentError, ArgumentTypeError, DataError, FormulaError
from .offsets import evaluate_expression
from .terms import INTERCEPT, RandomTerm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Observations per slab of the Monte Carlo integrals and simulations over many rows
#: (bounds the (m, slab) arrays).
SLAB = 4096


@dataclass(frozen=True)
class TermRows:
    """One term's part of ``Z`` on some rows: level codes (-1: unseen) and values."""

    codes: IntArray  # (n,)
    values: FloatArray  # (n, k)


@dataclass(frozen=True)
class Rows:
    """What the linear predictor needs on the rows being predicted."""

    x: FloatArray
    offset: FloatArray
    terms: tuple[TermRows, ...]
    index: pd.Index


def fit_design(fit: Any) -> Any:
    """The fit's design, or an error saying that a restored fit has none."""
    design = getattr(fit, "design", None)
    if design is None:
        raise ArgumentError(
            "this fit was restored without its design (from_json); refit it with "
            "pyglmm.glmm to predict, compute residuals or simulate"
        )
    return design


def fit_index(design: Any) -> pd.Index:
    """0-based positions, in the data as given, of the rows the fit used."""
    return pd.Index(design.kept_positions)


def fit_rows(design: Any) -> Rows:
    """The rows of the fit itself, from its design."""
    terms = tuple(
        TermRows(term.codes,
                  np.column_stack([term.column_values(c) for c in range(term.n_columns)]))
        for term in design.random_terms
    )
    return Rows(design.x, design.offset, terms, fit_index(design))


def _fixed_matrix(design: Any, frame: pd.DataFrame) -> FloatArray:
    """``X`` on new data from the fit's model spec; unseen factor levels are an error."""
    from formulaic.errors import DataMismatchWarning

    spec = design.fixed_spec
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            with np.errstate(all="ignore"):
                matrix = spec.get_model_matrix(frame, na_action="ignore")
    except DataMismatchWarning as exc:
        for name, (kind, state) in spec.encoder_state.items():
            levels = state.get("categories") if isinstance(state, dict) else None
            if str(getattr(kind, "value", kind)) != "categorical" or levels is None:
                continue
            if name in frame.columns:
                seen = pd.Series(frame[name]).dropna().astype(str)
                unseen = sorted(set(seen) - {str(v) for v in levels})
                if unseen:
                    raise DataError(
                        f"newdata column {name!r} has level(s) {unseen} that the fit's data "
                        f"did not have (levels {[str(v) for v in levels]}); a fixed effect "
                        "cannot be predicted for an unseen level"
                    ) from None
        raise DataError(
            f"newdata has factor levels the fit's data did not have: {library_message(exc)}"
        ) from None
    except Exception as exc:
        raise FormulaError(
            f"cannot build the fixed design of {design.fixed_formula!r} on newdata: "
            f"{library_message(exc)}"
        ) from None
    x = np.asarray(matrix, dtype=np.float64)
    if x.shape != (len(frame), design.n_fixed):
        raise DataError(
            f"the fixed design on newdata has shape {x.shape}, expected "
            f"({len(frame)}, {design.n_fixed}); a term of the formula changed the number of "
            "rows or columns"
        )
    return x


def level_labels(frame: pd.DataFrame, term: RandomTerm) -> pd.Series:
    """Each row's level label of ``term``, as :func:`pyglmm.datachecks.factor_codes` makes
    them (``str`` of each grouping value, joined by ``":"``)."""
    missing = [c for c in term.grouping if c not in frame.columns]
    if missing:
        raise DataError(
            f"newdata lacks the grouping column(s) {missing} of random term "
            f"{term.formula!r}; add them, or predict with re='none' or re='marginal'"
        )
    joined = frame[term.grouping[0]].astype(str)
    for column in term.grouping[1:]:
        joined = joined + ":" + frame[column].astype(str)
    return joined.reset_index(drop=True)


def _term_values(frame: pd.DataFrame, term: RandomTerm) -> FloatArray:
    """The term's columns on new data: (n, k)."""
    n = len(frame)
    if term.spec is not None:
        try:
            with np.errstate(all="ignore"):
                matrix = term.spec.get_model_matrix(frame, na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"cannot build the columns of random term {term.formula!r} on newdata: "
                f"{library_message(exc)}"
            ) from None
        values = np.asarray(matrix, dtype=np.float64)
        if values.shape != (n, term.n_columns):
            raise DataError(f"the columns of random term {term.formula!r} on newdata have "
                            f"shape {values.shape}, expected ({n}, {term.n_columns})")
        return values
    if term.columns == (INTERCEPT,):
        return np.ones((n, 1))
    names = term.columns[0].split(":")
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"newdata lacks the column(s) {missing} of random term "
                        f"{term.formula!r}")
    return np.prod(np.column_stack([frame[c].to_numpy(np.float64) for c in names]),
                   axis=1)[:, None]


def _offset_vector(design: Any, frame: pd.DataFrame, offset: Any) -> FloatArray:
    out = np.zeros(len(frame))
    if offset is not None:
        if isinstance(offset, str):
            if offset not in frame.columns:
                raise DataError(f"offset column {offset!r} is not in newdata")
            values = frame[offset].to_numpy(np.float64)
        else:
            values = np.asarray(offset, dtype=np.float64).reshape(-1)
        if values.shape != (len(frame),):
            raise ArgumentError(
                f"offset has {values.size} values but newdata has {len(frame)} rows"
            )
        out = out + values
    for expr in design.offset_terms:
        out = out + evaluate_expression(expr, frame, f"offset({expr}) on newdata")
    return out


def new_rows(design: Any, newdata: Any, offset: Any, need_levels: bool) -> Rows:
    """The rows of ``newdata`` (level codes only when ``need_levels``; else all -1)."""
    if isinstance(newdata, pd.DataFrame):
        frame = newdata
    else:
        try:
            frame = pd.DataFrame(newdata)
        except Exception as exc:
            raise ArgumentTypeError(
                f"newdata must be a DataFrame or a mapping of columns, not "
                f"{type(newdata).__name__} ({library_message(exc)})"
            ) from None
    x = _fixed_matrix(design, frame)
    terms = []
    for term in design.random_terms:
        values = _term_values(frame, term)
        if need_levels:
            lookup = pd.Index(term.levels)
            codes = lookup.get_indexer(level_labels(frame, term)).astype(np.intp)
        else:
            codes = np.full(len(frame), -1, dtype=np.intp)
        terms.append(TermRows(codes, values))
    return Rows(x, _offset_vector(design, frame, offset), tuple(terms), frame.index)


def random_part(design: Any, rows: Rows, u: FloatArray) -> FloatArray:
    """``Z u`` on ``rows`` for design-ordered ``u`` (q,); unseen levels contribute 0."""
    out = np.zeros(rows.x.shape[0])
    for t, part in enumerate(rows.terms):
        effects = design.level_effects(t)  # (levels, columns)
        seen = part.codes >= 0
        gathered = u[effects[np.where(seen, part.codes, 0)]]  # (n, k)
        out = out + np.where(seen, (gathered * part.values).sum(axis=1), 0.0)
    return out
