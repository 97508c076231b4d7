"""Design matrices from R-style formulas: response, fixed effects, random effects.

The fixed part is built by :mod:`formulaic` (treatment contrasts, names rewritten the
way R writes them, e.g. ``CrossR/W`` and ``(Intercept)``). Each random formula names
one grouping factor (``~ 0 + Female``, or an interaction ``~ 0 + Site:Block``) and
contributes one random effect per level; its design matrix is a 0/1 indicator, so it
is stored as the level index of every observation rather than as a matrix
(ALGORITHM.md 1.3, ARCHITECTURE.md). Grouping columns are factors whatever their
dtype; a float grouping column is refused.

Everything a user can get wrong here is caught with a :mod:`pyglmm.errors` exception
that names the column or argument (ALGORITHM.md 9): errors of formulaic and pandas
are wrapped, never passed on. The caller's data are never modified.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import linprog

from .errors import ArgumentError, ArgumentTypeError, DataError, DataWarning, FormulaError
from .families import Binomial, Family

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_CBIND = re.compile(r"^cbind\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$")
_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Largest number of (distinct rows x columns) for which the separation check runs.
SEPARATION_CHECK_MAX_ENTRIES = 5_000_000
_NO_INTERCEPT = re.compile(r"(^|\+)\s*0\s*(?=\+|$)|-\s*1\s*(?=\+|-|$)")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect formula: a grouping factor and its levels.

    Attributes
    ----------
    formula : str
        The formula as given.
    grouping : tuple of str
        Data columns whose interaction is the grouping factor.
    levels : tuple of str
        Level labels in the order of the random effects.
    codes : ndarray of int, shape (n,)
        Level index of every observation.
    """

    formula: str
    grouping: tuple[str, ...]
    levels: tuple[str, ...]
    codes: IntArray

    @property
    def name(self) -> str:
        """The grouping factor's name as R prints it (``Female`` or ``Site:Block``)."""
        return ":".join(self.grouping)


@dataclass(frozen=True)
class Design:
    """Everything the likelihood needs from the data, in ALGORITHM.md's notation.

    Attributes
    ----------
    y : ndarray, shape (n,)
        Response (successes for the binomial family).
    trials : ndarray, shape (n,)
        Binomial numbers of trials (ones for the other families).
    x : ndarray, shape (n, p)
        Fixed-effects design matrix; its columns are named by ``fixed_names``.
    random_terms : tuple of RandomTerm
        One per random formula, in the order given.
    varcomps_equal : tuple of int
        Variance component (1-based) of each random formula.
    varcomps_names : tuple of str
        Names of the ``T`` variance components.
    z_columns : ndarray of int, shape (n, K)
        Index in ``u`` of each observation's effect for each random formula; ``u`` is
        ordered by variance component, then by formula, then by level.
    effect_component : ndarray of int, shape (q,)
        0-based variance component of every random effect.
    effect_names : tuple of str
        ``"Female:10"``-style labels of the random effects.
    dropped_rows : tuple
        Index labels of the rows dropped for missing values (``na_action="drop"``).
    dropped_positions : tuple of int
        Their 0-based positions in the data as given (unambiguous when the index
        has duplicate labels).
    """

    fixed_formula: str
    random_formulas: tuple[str, ...]
    response_name: str
    y: FloatArray
    trials: FloatArray
    x: FloatArray
    fixed_names: tuple[str, ...]
    random_terms: tuple[RandomTerm, ...]
    varcomps_equal: tuple[int, ...]
    varcomps_names: tuple[str, ...]
    z_columns: IntArray
    effect_component: IntArray
    effect_names: tuple[str, ...]
    dropped_rows: tuple[Any, ...] = ()
    dropped_positions: tuple[int, ...] = ()

    @property
    def n_obs(self) -> int:
        """Number of observations ``n``."""
        return int(self.y.shape[0])

    @property
    def n_fixed(self) -> int:
        """Number of fixed effects ``p``."""
        return int(self.x.shape[1])

    @property
    def n_components(self) -> int:
        """Number of variance components ``T``."""
        return len(self.varcomps_names)

    @property
    def n_effects(self) -> int:
        """Number of random effects ``q``."""
        return int(self.effect_component.shape[0])

    @property
    def component_sizes(self) -> IntArray:
        """Number of random effects ``q_t`` of each variance component."""
        return np.bincount(self.effect_component, minlength=self.n_components)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of ``theta = (beta, nu)``: fixed effects, then variance components."""
        return self.fixed_names + self.varcomps_names

    def z_matrix(self) -> sp.csr_matrix:
        """Return the random-effects design ``Z`` (n x q) as a sparse 0/1 matrix."""
        n, k = self.z_columns.shape
        rows = np.repeat(np.arange(n), k)
        data = np.ones(n * k)
        return sp.csr_matrix(
            (data, (rows, self.z_columns.ravel())), shape=(n, self.n_effects)
        )

    def z_times(self, u: FloatArray) -> FloatArray:
        """Return ``Z u`` for ``u`` of shape (..., q), a gather-and-add (shape (..., n))."""
        out = np.take(u, self.z_columns[:, 0], axis=-1)
        for k in range(1, self.z_columns.shape[1]):
            out += np.take(u, self.z_columns[:, k], axis=-1)
        return out

    def zt_times(self, r: FloatArray) -> FloatArray:
        """Return ``Z^T r`` for an n-vector ``r`` (a scatter-add, shape (q,))."""
        out = np.zeros(self.n_effects)
        for k in range(self.z_columns.shape[1]):
            np.add.at(out, self.z_columns[:, k], r)
        return out


def _library_message(exc: BaseException) -> str:
    """The message of a formulaic or pandas exception, without colour codes or markers."""
    text = _ANSI.sub("", str(exc)).replace("\u29db", "").replace("\u29da", "")
    text = " ".join(text.split())
    return text or type(exc).__name__


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except Exception as exc:
            raise DataError(
                f"data could not be made into a DataFrame: {_library_message(exc)}; give "
                "a pandas DataFrame, or a mapping of column names to equally long columns"
            ) from None
    raise ArgumentTypeError(
        f"data must be a pandas DataFrame or a mapping of column names to columns, "
        f"not {type(data).__name__}"
    )


def _require_columns(frame: pd.DataFrame, names: Sequence[str], formula: str) -> None:
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


def _parse_fixed(fixed: str) -> tuple[list[str], str]:
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
    if "|" in rhs:
        raise FormulaError(
            f"fixed formula {fixed!r} contains '|': random effects are not written in the "
            "fixed formula (lme4's '(1 | g)'); pass them as random=['~ 0 + g']"
        )
    if "offset(" in rhs.replace(" ", ""):
        raise FormulaError(
            f"fixed formula {fixed!r} has an offset; offsets are not supported "
            "(R's glmm silently ignores them)"
        )
    match = _CBIND.match(lhs)
    if match:
        return [_response_name(match.group(1), fixed), _response_name(match.group(2), fixed)], rhs
    if lhs.replace(" ", "").startswith("cbind("):
        raise FormulaError(
            f"response {lhs!r} must be 'cbind(successes, failures)' with exactly two "
            "column names"
        )
    return [_response_name(lhs, fixed)], rhs


def _r_style_name(name: str) -> str:
    """Rewrite formulaic column names the way R names model-matrix columns."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\[\]]*)\]", r"\1", name)


def _random_list(random: Any) -> list[str]:
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


def _parse_random(formula: str) -> tuple[str, ...]:
    """Return the grouping columns of a random formula such as ``~ 0 + Female``."""
    if not isinstance(formula, str):
        raise ArgumentTypeError(
            f"each random formula must be a string such as '~ 0 + Female', "
            f"not {type(formula).__name__}"
        )
    rhs = formula.split("~")[-1].strip()
    if "|" in rhs:
        raise FormulaError(
            f"random formula {formula!r} uses lme4's '(1 | g)' syntax; write one formula "
            "per grouping factor as '~ 0 + g'"
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
            "'~ 0 + g' (or an interaction '~ 0 + g1:g2'); random slopes and "
            "correlated effects are not supported"
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


def _transform_arguments(formula: Any) -> set[str]:
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


def _check_fixed_columns(frame: pd.DataFrame, columns: Sequence[str], fixed: str) -> None:
    """Refuse fixed-effect columns that are neither numbers nor labels (e.g. dates)."""
    for column in columns:
        series = frame[column]
        dtype = series.dtype
        if pd.api.types.is_object_dtype(dtype):
            inferred = series.infer_objects()
            if pd.api.types.is_numeric_dtype(inferred.dtype):
                frame[column] = inferred  # numbers stored as objects are numbers
                dtype = inferred.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(
            dtype
        ) or pd.api.types.is_complex_dtype(dtype):
            raise DataError(
                f"column {column!r} of fixed formula {fixed!r} has dtype {dtype}; convert it "
                "to numbers (e.g. days since a start date) or to a category"
            )


def _sorted_levels(values: Any) -> list[Any]:
    """Distinct values in natural order; mixed types are ordered by type, then text."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _factor_codes(
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


def _as_list(value: Any, name: str, example: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(
        value, Sequence | np.ndarray | pd.Series | pd.Index
    ):
        raise ArgumentTypeError(
            f"{name} must be a sequence, e.g. {example}, not {type(value).__name__}"
        )
    return list(value)


def _check_varcomps(
    n_formulas: int,
    varcomps_equal: Sequence[int] | None,
    varcomps_names: Sequence[str] | None,
    random_terms_names: Sequence[str],
    fixed_names: Sequence[str] = (),
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if varcomps_equal is None:
        equal = tuple(range(1, n_formulas + 1))
    else:
        equal_list = _as_list(varcomps_equal, "varcomps_equal", "[1, 2, 1]")
        if len(equal_list) != n_formulas:
            raise ArgumentError(
                f"varcomps_equal has {len(equal_list)} entries but there are {n_formulas} "
                "random formulas; give one variance-component number per formula"
            )
        if not all(isinstance(e, int | np.integer) and not isinstance(e, bool | np.bool_)
                   for e in equal_list):
            raise ArgumentTypeError(
                f"varcomps_equal must hold integers 1..T, got {equal_list!r}"
            )
        first_seen: list[int] = []
        for e in equal_list:
            if int(e) not in first_seen:
                first_seen.append(int(e))
        if first_seen != list(range(1, len(first_seen) + 1)):
            raise ArgumentError(
                f"varcomps_equal {[int(e) for e in equal_list]!r} must number the variance "
                "components 1, 2, ..., T in order of first appearance (e.g. [1, 2, 1])"
            )
        equal = tuple(int(e) for e in equal_list)
    n_components = max(equal)
    if varcomps_names is None:
        names = tuple(
            "/".join(random_terms_names[k] for k in range(n_formulas) if equal[k] == t)
            for t in range(1, n_components + 1)
        )
    else:
        if isinstance(varcomps_names, str):
            varcomps_names = [varcomps_names]
        name_list = _as_list(varcomps_names, "varcomps_names", "['F', 'M']")
        if not all(isinstance(name, str) for name in name_list):
            raise ArgumentTypeError(f"varcomps_names must be strings, got {name_list!r}")
        names = tuple(name_list)
        if len(names) != n_components:
            raise ArgumentError(
                f"varcomps_names has {len(names)} name(s) but the model has {n_components} "
                "variance component(s); give one name per distinct value of varcomps_equal"
            )
        if any(not name.strip() for name in names):
            raise ArgumentError(f"varcomps_names must not be empty strings, got {list(names)}")
    if len(set(names)) != len(names):
        raise ArgumentError(
            f"varcomps_names must be distinct, got {list(names)}; name every variance "
            "component differently (the same grouping factor in two formulas needs "
            "explicit varcomps_names, or varcomps_equal to tie them)"
        )
    clash = [name for name in names if name in fixed_names]
    if clash:
        raise ArgumentError(
            f"variance component name(s) {clash} are also fixed-effect names; every "
            "parameter needs its own name: give distinct varcomps_names"
        )
    return equal, names


def _handle_missing(
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


def _response_values(frame: pd.DataFrame, column: str, family: Family) -> FloatArray:
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
                f"{_library_message(exc)}"
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


def build_design(
    fixed: str,
    random: str | Sequence[str],
    data: Any,
    family: Family,
    *,
    varcomps_names: Sequence[str] | None = None,
    varcomps_equal: Sequence[int] | None = None,
    na_action: str = "raise",
) -> Design:
    """Build the :class:`Design` of a GLMM from formulas and data.

    Every check of ALGORITHM.md 9 that concerns the data is made here: columns named
    in a formula exist, used columns have no missing values (or their rows are dropped
    with a warning), the response suits the family, grouping columns are factors with
    at least two levels, the fixed design has full column rank. Warnings
    (:class:`~pyglmm.errors.DataWarning`) are issued for a response at the edge of its
    range in every row, for separation of the response by the fixed effects, and for
    more random effects than observations.

    Parameters
    ----------
    fixed : str
        Fixed-effects formula with the response on the left, e.g. ``"Mate ~ 0 + Cross"``;
        binomial responses are written ``"cbind(successes, failures) ~ ..."``.
    random : str or sequence of str
        Random-effects formulas, each naming one grouping factor: ``"~ 0 + Female"``.
    data : DataFrame or mapping
        The data; it is never modified.
    family : Family
        The response family, used to check the response.
    varcomps_names, varcomps_equal : sequence, optional
        Names of the variance components and the component of each random formula.
    na_action : {"raise", "drop"}
        What to do with rows that have missing values in a column the model uses.

    Returns
    -------
    Design

    Raises
    ------
    pyglmm.errors.DataError, pyglmm.errors.FormulaError, pyglmm.errors.ArgumentError
        ``ValueError`` subclasses naming the column or argument at fault.
    pyglmm.errors.ArgumentTypeError
        A ``TypeError`` subclass, for arguments of the wrong type.

    Examples
    --------
    >>> import pyglmm as pg
    >>> from pyglmm.design import build_design
    >>> d = build_design("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"],
    ...                  pg.datasets.load_salamander(), pg.get_family("bernoulli"))
    >>> d.fixed_names, d.varcomps_names, d.n_effects
    (('CrossR/R', 'CrossR/W', 'CrossW/R', 'CrossW/W'), ('Female', 'Male'), 120)
    """
    if na_action not in ("raise", "drop"):
        raise ArgumentError(f"na_action must be 'raise' or 'drop', not {na_action!r}")
    if not isinstance(family, Family):
        raise ArgumentTypeError(
            f"family must be a pyglmm Family (see pyglmm.get_family), not "
            f"{type(family).__name__}"
        )
    frame = _as_frame(data)
    if len(frame) == 0:
        raise DataError("data has no rows: there is nothing to fit (check the filtering)")
    response_columns, rhs = _parse_fixed(fixed)
    random_list = _random_list(random)
    groupings = []
    for formula in random_list:  # a loop, so that warnings point at the caller
        groupings.append(_parse_random(formula))
    try:
        parsed = formulaic.Formula(rhs)
        required = sorted(str(v) for v in parsed.required_variables)
    except Exception as exc:
        raise FormulaError(
            f"cannot parse fixed formula {fixed!r}: {_library_message(exc)}"
        ) from None
    _require_columns(frame, response_columns + required, fixed)
    # formulaic leaves out the arguments of stateful transforms (poly(x, 2), center(x))
    fixed_variables = required + sorted(
        name for name in _transform_arguments(parsed) - set(required)
        if name in frame.columns
    )
    _require_columns(frame, fixed_variables, fixed)
    for formula, grouping in zip(random_list, groupings, strict=True):
        _require_columns(frame, list(grouping), formula)

    used = list(dict.fromkeys(
        response_columns + fixed_variables + [c for g in groupings for c in g]
    ))
    frame = frame.loc[:, used].copy()
    _check_fixed_columns(frame, fixed_variables, fixed)
    frame, dropped, dropped_positions = _handle_missing(frame, na_action)
    labels = frame.index

    # response
    binomial = isinstance(family, Binomial)
    if len(response_columns) == 2:
        if not binomial:
            raise FormulaError(
                f"a two-column response cbind(...) is only for family='binomial', "
                f"not {family.name!r}"
            )
        response_name = f"cbind({', '.join(response_columns)})"
        succ, fail = (_response_values(frame, c, family) for c in response_columns)
        family.check_response(succ, succ + fail, response_name, labels.tolist())
        y, trials = succ, succ + fail
    else:
        if binomial:
            raise FormulaError(
                "family='binomial' needs the response as 'cbind(successes, failures) ~ ...'; "
                "for 0/1 responses use family='bernoulli'"
            )
        response_name = response_columns[0]
        y = _response_values(frame, response_name, family)
        trials = np.ones_like(y)
        family.check_response(y, trials, response_name, labels.tolist())
    degenerate = family.degenerate_response(y, trials)
    if degenerate is not None:
        warnings.warn(
            f"the response {response_name!r} takes a single value ({degenerate}); the "
            "fixed effects then diverge and the fit cannot reach a finite maximum",
            DataWarning,
            stacklevel=3,
        )

    try:
        with np.errstate(all="ignore"):  # e.g. log(0): reported below by column
            matrix = formulaic.model_matrix("~ " + rhs, frame, na_action="ignore")
    except Exception as exc:
        raise FormulaError(
            f"cannot build the fixed design from {fixed!r}: {_library_message(exc)}"
        ) from None
    x = np.asarray(matrix, dtype=np.float64)
    fixed_names = tuple(_r_style_name(str(c)) for c in matrix.columns)
    if x.shape[1] == 0:
        raise FormulaError(f"fixed formula {fixed!r} has no fixed effects; use '~ 1'")
    if x.shape[0] != len(frame):
        raise FormulaError(
            f"the fixed design of {fixed!r} has {x.shape[0]} rows but the data have "
            f"{len(frame)}; a term of the formula changed the number of rows"
        )
    _check_finite_design(x, fixed_names, fixed, labels)
    _check_rank(x, fixed_names, fixed)
    if degenerate is None:
        _check_separation(x, fixed_names, fixed, family, y, trials)

    terms = []
    for formula, grouping in zip(random_list, groupings, strict=True):
        codes, levels = _factor_codes(frame, grouping, formula)
        terms.append(RandomTerm(formula, grouping, levels, codes))
    equal, names = _check_varcomps(
        len(terms), varcomps_equal, varcomps_names, [t.name for t in terms], fixed_names
    )

    # u is ordered by variance component, then formula, then level (ALGORITHM.md 1.3)
    z_columns = np.empty((len(frame), len(terms)), dtype=np.intp)
    effect_component: list[int] = []
    effect_names: list[str] = []
    offset = 0
    for t in range(1, len(names) + 1):
        for k, term in enumerate(terms):
            if equal[k] != t:
                continue
            z_columns[:, k] = offset + term.codes
            effect_component.extend([t - 1] * len(term.levels))
            effect_names.extend(f"{term.name}:{level}" for level in term.levels)
            offset += len(term.levels)
    if offset > len(frame):
        warnings.warn(
            f"the model has {offset} random effects (levels of the grouping factors) for "
            f"{len(frame)} observations; the variance components are weakly identified "
            "and their estimates unreliable",
            DataWarning,
            stacklevel=3,
        )
    return Design(
        fixed_formula=fixed,
        random_formulas=tuple(random_list),
        response_name=response_name,
        y=y,
        trials=trials,
        x=x,
        fixed_names=fixed_names,
        random_terms=tuple(terms),
        varcomps_equal=equal,
        varcomps_names=names,
        z_columns=z_columns,
        effect_component=np.asarray(effect_component, dtype=np.intp),
        effect_names=tuple(effect_names),
        dropped_rows=dropped,
        dropped_positions=dropped_positions,
    )


def _check_finite_design(
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


def _check_rank(x: FloatArray, names: tuple[str, ...], fixed: str) -> None:
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


def _check_separation(
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
