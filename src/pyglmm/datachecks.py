"""Checks and conversions of the data of a model: frame, columns, response, factors, design.

Everything a user can get wrong in the data is caught here with a :mod:`pyglmm.errors`
exception that names the column (docs/method.md): missing columns and values, responses
that are not numbers, grouping columns that are not factors, non-finite or
rank-deficient fixed designs. Separation of the response by the fixed effects is only
warned about (:class:`~pyglmm.errors.DataWarning`). Errors of formulaic and pandas are
wrapped (:func:`library_message`), never passed on. Used by
:func:`pyglmm.design.build_design`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import linprog

from .errors import ArgumentTypeError, DataError, DataWarning, FormulaError
from .families import Family

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Largest number of (distinct rows x columns) for which the separation check runs.
#: Larger designs skip the (advisory) separation check: its linear programme grows with
#: the distinct rows and took 4 s at 10,000 rows.
SEPARATION_CHECK_MAX_ENTRIES = 10_000


def library_message(exc: BaseException) -> str:
    """The message of a formulaic or pandas exception, without colour codes or markers."""
    text = _ANSI.sub("", str(exc)).replace("\u29db", "").replace("\u29da", "")
    text = " ".join(text.split())
    return text or type(exc).__name__


def as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except Exception as exc:
            raise DataError(
                f"data could not be made into a DataFrame: {library_message(exc)}; give "
                "a pandas DataFrame, or a mapping of column names to equally long columns"
            ) from None
    raise ArgumentTypeError(
        f"data must be a pandas DataFrame or a mapping of column names to columns, "
        f"not {type(data).__name__}"
    )


def require_columns(frame: pd.DataFrame, names: Sequence[str], formula: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise FormulaError(
            f"column(s) {missing} named in formula {formula!r} are not in data; "
            f"available columns: {[str(c) for c in frame.columns]}"
        )
    duplicated = [name for name in names if int((frame.columns == name).sum()) > 1]
    if duplicated:
        raise DataError(
            f"data has several columns named {duplicated} (used by formula {formula!r}); "
            "rename them so that every column name is unique"
        )



def check_fixed_columns(frame: pd.DataFrame, columns: Sequence[str], fixed: str) -> None:
    """Refuse fixed-effect columns that are neither numbers nor labels (e.g. dates)."""
    for column in columns:
        series = frame[column]
        dtype = series.dtype
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            inferred = series.infer_objects()
            if pd.api.types.is_numeric_dtype(inferred.dtype):
                frame[column] = inferred  # numbers stored as objects are numbers
                dtype = inferred.dtype
            else:
                refuse_mostly_numeric(series, column, fixed)
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(
            dtype
        ) or pd.api.types.is_complex_dtype(dtype):
            raise DataError(
                f"column {column!r} of fixed formula {fixed!r} has dtype {dtype}; convert it "
                "to numbers (e.g. days since a start date) or to a category"
            )


def refuse_mostly_numeric(series: pd.Series, column: str, formula: str) -> None:
    """A text column whose values are nearly all numbers is a data-entry error, not a factor.

    Read as a factor it would give one fixed effect per distinct number. Refused unless
    the user makes it categorical on purpose (``astype("category")``).
    """
    present = series.dropna()
    if present.empty:
        return
    numbers = pd.to_numeric(present, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any() and bad.mean() <= 0.1 and (~bad).sum() >= 2:
        rows = present.index[bad]
        shown = [f"{label!r}: {present.loc[label]!r}" for label in list(rows)[:5]]
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise DataError(
            f"column {column!r} of {formula!r} holds numbers except in {len(rows)} row(s) "
            f"({', '.join(shown)}{more}); read as text it would become a factor with "
            f"{present.nunique()} levels. Fix those values (pd.to_numeric(data[{column!r}], "
            f"errors='coerce') makes them missing), or make the column categorical on "
            f"purpose: data[{column!r}].astype('category')"
        )


def _sorted_levels(values: Any) -> list[Any]:
    """Distinct values in natural order; mixed types are ordered by type, then text."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def factor_codes(
    frame: pd.DataFrame, grouping: tuple[str, ...], formula: str
) -> tuple[IntArray, tuple[str, ...]]:
    """Codes and level labels of the (interaction of) grouping columns."""
    labels: list[pd.Series] = []
    for column in grouping:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            used = series.cat.remove_unused_categories()
            if len(used.cat.categories) < len(series.cat.categories):
                warnings.warn(
                    f"grouping column {column!r} has categories that no row uses; they "
                    "get no random effect",
                    DataWarning,
                    stacklevel=4,
                )
            categories = [str(c) for c in used.cat.categories]
            values = used
        elif pd.api.types.is_float_dtype(series.dtype) or pd.api.types.is_complex_dtype(
            series.dtype
        ):
            raise DataError(
                f"grouping column {column!r} in random formula {formula!r} has float dtype; "
                "a grouping factor must hold labels: convert it with "
                f"data[{column!r}].astype(int) or .astype('category')"
            )
        else:
            try:
                distinct = pd.unique(series)
            except TypeError:
                raise DataError(
                    f"grouping column {column!r} in random formula {formula!r} holds "
                    "values that cannot be compared (lists or dicts?); give it labels "
                    "such as strings or integers"
                ) from None
            categories = [str(level) for level in _sorted_levels(distinct)]
            values = series
        if len(set(categories)) < len(categories):
            raise DataError(
                f"grouping column {column!r} has distinct values that print the same "
                "(e.g. 1 and '1'); make the column a single type"
            )
        labels.append(values.astype(str).astype(pd.CategoricalDtype(categories)))
    if len(labels) == 1:
        combined = labels[0]
    else:
        joined = labels[0].astype(str)
        for extra in labels[1:]:
            joined = joined + ":" + extra.astype(str)
        order = pd.MultiIndex.from_arrays(
            [lab.cat.codes.to_numpy() for lab in labels]
        ).to_frame(index=False)
        order["label"] = joined.to_numpy()
        order = order.drop_duplicates().sort_values(list(order.columns[:-1]))
        combined = joined.astype(pd.CategoricalDtype(order["label"].tolist()))
    codes = combined.cat.codes.to_numpy().astype(np.intp)
    levels = tuple(str(c) for c in combined.cat.categories)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor {':'.join(grouping)!r} in random formula {formula!r} has "
            f"{len(levels)} level(s); a variance component needs at least two groups: "
            "drop this random formula"
        )
    return codes, levels



def handle_missing(
    frame: pd.DataFrame, na_action: str
) -> tuple[pd.DataFrame, tuple[Any, ...], tuple[int, ...]]:
    """Refuse, or drop with a warning, rows with missing values in the used columns."""
    missing = frame.isna()
    if not missing.to_numpy().any():
        return frame, (), ()
    counts = {str(c): int(n) for c, n in missing.sum().items() if n}
    if na_action == "raise":
        raise DataError(
            f"missing values in column(s) {counts} (number of rows each); remove those "
            "rows or pass na_action='drop'"
        )
    rows = missing.any(axis=1).to_numpy()
    positions = tuple(int(i) for i in np.flatnonzero(rows))
    labels = tuple(frame.index[rows])
    shown = list(labels[:10])
    more = f" and {len(labels) - 10} more" if len(labels) > 10 else ""
    warnings.warn(
        f"na_action='drop': dropped {len(labels)} row(s) with missing values (per column: "
        f"{counts}); index labels {shown}{more}; all are in fit.design.dropped_rows",
        DataWarning,
        stacklevel=4,
    )
    kept = frame.loc[~rows]
    if len(kept) == 0:
        raise DataError("no rows are left after dropping the rows with missing values")
    return kept, labels, positions


def response_values(frame: pd.DataFrame, column: str, family: Family) -> FloatArray:
    """A response column as floats; booleans are 0/1, text is refused."""
    series = frame[column]
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if pd.api.types.is_numeric_dtype(categories.dtype) or pd.api.types.is_bool_dtype(
            categories.dtype
        ):
            series = series.astype(categories.dtype)
            dtype = series.dtype
    elif pd.api.types.is_object_dtype(dtype):
        inferred = series.infer_objects()
        if pd.api.types.is_numeric_dtype(inferred.dtype) or pd.api.types.is_bool_dtype(
            inferred.dtype
        ):
            series, dtype = inferred, inferred.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        try:
            return series.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"response column {column!r} cannot be read as numbers: "
                f"{library_message(exc)}"
            ) from None
    distinct = [str(v) for v in pd.unique(series.dropna())]
    wanted = {
        "bernoulli": "0 (failure) and 1 (success)",
        "binomial": "non-negative whole numbers",
        "poisson": "non-negative whole numbers",
    }.get(family.name, "numbers")
    truth = {v for v in distinct if v.lower() in ("true", "false")}
    if truth and len(truth) == len(distinct):
        mapping = ", ".join(
            f"{v!r}: {int(v.lower() == 'true')}" for v in sorted(truth, key=str.lower)
        )
        recode = f"data[{column!r}].map({{{mapping}}})"
    else:
        recode = f"data[{column!r}].map({{...}})"
    raise DataError(
        f"response column {column!r} must be numeric ({wanted}), not {dtype} with values "
        f"such as {distinct[:3]}; recode it as numbers, e.g. {recode}"
    )



def check_finite_design(
    x: FloatArray, names: tuple[str, ...], fixed: str, labels: pd.Index
) -> None:
    """Refuse infinite or NaN entries of the fixed design (e.g. ``np.log`` of 0)."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    columns = {names[j]: int(bad[:, j].sum()) for j in np.flatnonzero(bad.any(axis=0))}
    first = int(np.flatnonzero(bad.any(axis=1))[0])
    raise DataError(
        f"the fixed design of {fixed!r} has non-finite values (inf or NaN) in column(s) "
        f"{columns} (number of rows each; first at row {labels[first]!r}); fix those "
        "values in the data or the transformation in the formula"
    )


def check_rank(x: FloatArray, names: tuple[str, ...], fixed: str) -> None:
    """Refuse a rank-deficient fixed design, naming the aliased columns."""
    if x.shape[0] < x.shape[1]:
        raise DataError(
            f"the fixed design of {fixed!r} has {x.shape[1]} columns {list(names)} but "
            f"only {x.shape[0]} rows; the fixed effects cannot all be estimated"
        )
    scale = np.linalg.norm(x, axis=0)
    zero = np.flatnonzero(scale == 0)
    if zero.size:
        raise DataError(
            f"fixed-effect column(s) {[names[j] for j in zero]} of {fixed!r} are all zero; "
            "remove them from the formula"
        )
    scaled = x / scale
    try:
        singular = np.linalg.svd(scaled, compute_uv=False)
    except np.linalg.LinAlgError:  # pragma: no cover - finite input converges
        singular = np.zeros(1)
    if singular[-1] > singular[0] * 1e-10:
        return
    # greedily keep independent columns; each other column is aliased with some of them
    kept: list[int] = []
    aliases: list[str] = []
    for j in range(x.shape[1]):
        trial = kept + [j]
        if np.linalg.matrix_rank(scaled[:, trial]) == len(trial):
            kept = trial
            continue
        coef = np.linalg.lstsq(scaled[:, kept], scaled[:, j], rcond=None)[0]
        partners = [names[kept[i]] for i in np.flatnonzero(np.abs(coef) > 1e-8)]
        aliases.append(f"{names[j]!r} = a combination of {partners}")
    raise DataError(
        f"the fixed design of {fixed!r} is rank deficient (aliased columns): "
        f"{'; '.join(aliases)}. Remove the aliased column(s) from the formula"
    )


def check_separation(
    x: FloatArray,
    names: tuple[str, ...],
    fixed: str,
    family: Family,
    y: FloatArray,
    trials: FloatArray,
) -> None:
    """Warn if the fixed effects separate the response (the MLE is at infinity).

    A direction ``b`` with ``x_i b <= 0`` for every row at the lower end of its
    range, ``x_i b >= 0`` at the upper end, ``x_i b = 0`` elsewhere and ``x b != 0``
    raises the conditional likelihood for every value of the random effects, so the
    estimates diverge along it (complete or quasi-complete separation). The largest
    such ``sum_i |x_i b|`` over the box ``|b_j| <= 1`` is a linear programme (as in
    Konis 2007); it is solved on the distinct rows of the design.
    """
    lower, upper = family.response_edges(y, trials)
    if not (lower.any() or upper.any()):
        return
    # +1: x b may only grow, -1: only shrink, 0: must stay, 2: free (no information)
    kind = np.where(lower & upper, 2, np.where(upper, 1, np.where(lower, -1, 0)))
    keep = kind != 2
    scale = np.max(np.abs(x), axis=0)
    rows = np.unique(np.column_stack([x[keep] / scale, kind[keep]]), axis=0)
    if rows.size > SEPARATION_CHECK_MAX_ENTRIES:
        return
    xs, sign = rows[:, :-1], rows[:, -1]
    free = sign != 0
    if not free.any():
        return
    a_ub = -(sign[free, None] * xs[free])
    a_eq = xs[~free] if (~free).any() else None
    try:
        result = linprog(
            -(sign[free] @ xs[free]),
            A_ub=a_ub,
            b_ub=np.zeros(a_ub.shape[0]),
            A_eq=a_eq,
            b_eq=None if a_eq is None else np.zeros(a_eq.shape[0]),
            bounds=[(-1.0, 1.0)] * x.shape[1],
            method="highs",
        )
    except Exception:  # pragma: no cover - the check is advisory only
        return
    if result.status != 0 or -result.fun <= 1e-6 * max(1, rows.shape[0]):
        return
    direction = np.asarray(result.x, dtype=np.float64)
    moved = np.abs((x / scale) @ direction) > 1e-7
    involved = [names[j] for j in np.flatnonzero(np.abs(direction) > 1e-7)]
    complete = _completely_separated(xs[free], sign[free]) if free.all() else False
    count = len(y) if complete else int(moved.sum())
    warnings.warn(
        f"the fixed effects of {fixed!r} separate the response "
        f"({'complete' if complete else 'quasi-complete'} separation): a combination of "
        f"column(s) {involved} predicts {'all' if complete else 'at least'} {count} of "
        f"{len(y)} responses perfectly, so their estimates diverge to infinity and the fit "
        "cannot reach a finite maximum (expect huge estimates and standard errors). "
        "Remove or merge those columns or factor levels",
        DataWarning,
        stacklevel=4,
    )


def _completely_separated(xs: FloatArray, sign: FloatArray) -> bool:
    """Whether some ``b`` in the unit box has ``sign_i x_i b >= t > 0`` for every row."""
    p = xs.shape[1]
    objective = np.zeros(p + 1)
    objective[-1] = -1.0  # maximise the margin t
    a_ub = np.column_stack([-(sign[:, None] * xs), np.ones(xs.shape[0])])
    try:
        result = linprog(
            objective,
            A_ub=a_ub,
            b_ub=np.zeros(xs.shape[0]),
            bounds=[(-1.0, 1.0)] * p + [(0.0, 1.0)],
            method="highs",
        )
    except Exception:  # pragma: no cover - advisory only
        return False
    return bool(result.status == 0 and -result.fun > 1e-9)


def observation_vector(
    value: Any,
    name: str,
    given: pd.DataFrame,
    kept: NDArray[np.intp],
    nonnegative: bool = False,
) -> FloatArray:
    """An offset or weights: a column name or one number per row of the data as given.

    Returns the values of the rows kept (after ``na_action``), as float64; raises
    :class:`~pyglmm.errors.DataError` naming ``name`` for a wrong length, non-numbers,
    non-finite or (``nonnegative``) negative values.
    """
    if isinstance(value, str):
        column = given[value]
        if not (pd.api.types.is_numeric_dtype(column.dtype)
                and not pd.api.types.is_bool_dtype(column.dtype)):
            raise DataError(
                f"{name} column {value!r} must be numeric, not {column.dtype}; convert it "
                f"with pd.to_numeric(data[{value!r}])"
            )
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        label = f"{name} column {value!r}"
    else:
        try:
            values = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"{name} must be numbers (an array with one value per row, or a column "
                "name)"
            ) from None
        if values.ndim != 1 or values.size != len(given):
            raise DataError(
                f"{name} has shape {values.shape} but the data have {len(given)} rows; give "
                "one value per row of the data (before any rows are dropped)"
            )
        label = name
    values = values[kept]
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataError(
            f"{label} is not finite (NaN or infinite) in {bad.size} row(s), positions "
            f"{bad[:10].tolist()}; fix or drop those rows"
        )
    if nonnegative:
        negative = np.flatnonzero(values < 0)
        if negative.size:
            raise DataError(
                f"{label} must be non-negative; {negative.size} row(s) are negative, "
                f"positions {negative[:10].tolist()}"
            )
    return values
