"""Design matrices from R-style formulas: response, fixed effects, random effects.

The fixed part is built by :mod:`formulaic` (treatment contrasts, names rewritten the
way R writes them, e.g. ``CrossR/W`` and ``(Intercept)``). Each random formula names
one grouping factor (``~ 0 + Female``, or an interaction ``~ 0 + Site:Block``) and
contributes one random effect per level; its design matrix is a 0/1 indicator, so it
is stored as the level index of every observation rather than as a matrix
(ALGORITHM.md 1.3, ARCHITECTURE.md). Grouping columns are factors whatever their
dtype; a float grouping column is refused.
"""

from __future__ import annotations

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

from .errors import ArgumentError, ArgumentTypeError, DataError, DataWarning, FormulaError
from .families import Bernoulli, Binomial, Family

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_CBIND = re.compile(r"^cbind\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$")
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


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:
            raise DataError(f"data could not be made into a DataFrame: {exc}") from None
    raise ArgumentTypeError(
        f"data must be a pandas DataFrame or a mapping of column names to columns, "
        f"not {type(data).__name__}"
    )


def _require_columns(frame: pd.DataFrame, names: Sequence[str], formula: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise FormulaError(
            f"column(s) {missing} named in formula {formula!r} are not in data; "
            f"available columns: {list(frame.columns)}"
        )


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
    if "offset(" in rhs.replace(" ", ""):
        raise FormulaError(
            f"fixed formula {fixed!r} has an offset; offsets are not supported "
            "(R's glmm silently ignores them)"
        )
    match = _CBIND.match(lhs)
    if match:
        return [match.group(1), match.group(2)], rhs
    if "(" in lhs or "," in lhs:
        raise FormulaError(
            f"response {lhs!r} must be a column name or 'cbind(successes, failures)'"
        )
    return [lhs], rhs


def _r_style_name(name: str) -> str:
    """Rewrite formulaic column names the way R names model-matrix columns."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[(?:T\.)?([^\[\]]*)\]", r"\1", name)


def _parse_random(formula: str) -> tuple[str, ...]:
    """Return the grouping columns of a random formula such as ``~ 0 + Female``."""
    if not isinstance(formula, str):
        raise ArgumentTypeError(
            f"each random formula must be a string such as '~ 0 + Female', "
            f"not {type(formula).__name__}"
        )
    rhs = formula.split("~")[-1].strip()
    stripped = _NO_INTERCEPT.sub("+", rhs)
    terms = [term.strip() for term in stripped.split("+") if term.strip()]
    if len(terms) != 1 or re.search(r"[()*/|-]", terms[0] if terms else "("):
        raise FormulaError(
            f"random formula {formula!r} must name one grouping factor, as "
            "'~ 0 + g' (or an interaction '~ 0 + g1:g2'); random slopes and "
            "correlated effects are not supported"
        )
    if stripped == rhs and not re.search(r"(^|\+)\s*1\s*$", rhs):
        warnings.warn(
            f"random formula {formula!r} has an implicit intercept; it is read as "
            f"'~ 0 + {terms[0]}' (one random effect per level), which is what a "
            "variance-component model means",
            DataWarning,
            stacklevel=4,
        )
    grouping = tuple(part.strip() for part in terms[0].split(":"))
    if any(not part for part in grouping):
        raise FormulaError(f"random formula {formula!r} has an empty grouping variable")
    return grouping


def _factor_codes(
    frame: pd.DataFrame, grouping: tuple[str, ...], formula: str
) -> tuple[IntArray, tuple[str, ...]]:
    """Codes and level labels of the (interaction of) grouping columns."""
    labels: list[pd.Series] = []
    for column in grouping:
        series = frame[column]
        if pd.api.types.is_float_dtype(series.dtype):
            raise DataError(
                f"grouping column {column!r} in random formula {formula!r} has float dtype; "
                "a grouping factor must hold labels: convert it with "
                f"data[{column!r}].astype(int) or .astype('category')"
            )
        if isinstance(series.dtype, pd.CategoricalDtype):
            used = series.cat.remove_unused_categories()
            if len(used.cat.categories) < len(series.cat.categories):
                warnings.warn(
                    f"grouping column {column!r} has categories that no row uses; they "
                    "get no random effect",
                    DataWarning,
                    stacklevel=4,
                )
            labels.append(used.astype(str).astype(pd.CategoricalDtype(
                [str(c) for c in used.cat.categories], ordered=False)))
        else:
            ordered = sorted(pd.unique(series))
            labels.append(series.astype(str).astype(pd.CategoricalDtype(
                [str(level) for level in ordered])))
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
            f"{len(levels)} level(s); a variance component needs at least two groups"
        )
    return codes, levels


def _check_varcomps(
    n_formulas: int,
    varcomps_equal: Sequence[int] | None,
    varcomps_names: Sequence[str] | None,
    random_terms_names: Sequence[str],
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if varcomps_equal is None:
        equal = tuple(range(1, n_formulas + 1))
    else:
        equal_list = list(varcomps_equal)
        if len(equal_list) != n_formulas:
            raise ArgumentError(
                f"varcomps_equal has {len(equal_list)} entries but there are {n_formulas} "
                "random formulas; give one variance-component number per formula"
            )
        if not all(isinstance(e, int | np.integer) and not isinstance(e, bool)
                   for e in equal_list):
            raise ArgumentError(
                f"varcomps_equal must hold integers 1..T, got {equal_list!r}"
            )
        first_seen: list[int] = []
        for e in equal_list:
            if int(e) not in first_seen:
                first_seen.append(int(e))
        if first_seen != list(range(1, len(first_seen) + 1)):
            raise ArgumentError(
                f"varcomps_equal {equal_list!r} must number the variance components "
                "1, 2, ..., T in order of first appearance (e.g. [1, 2, 1])"
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
        names = tuple(str(name) for name in varcomps_names)
        if len(names) != n_components:
            raise ArgumentError(
                f"varcomps_names has {len(names)} name(s) but the model has {n_components} "
                "variance component(s); give one name per distinct value of varcomps_equal"
            )
    if len(set(names)) != len(names):
        raise ArgumentError(f"varcomps_names must be distinct, got {list(names)}")
    return equal, names


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
    """
    frame = _as_frame(data)
    if len(frame) == 0:
        raise DataError("data has no rows")
    response_columns, rhs = _parse_fixed(fixed)
    random_list = [random] if isinstance(random, str) else list(random)
    if not random_list:
        raise ArgumentError("random must name at least one random-effect formula")
    groupings = [_parse_random(formula) for formula in random_list]
    try:
        fixed_variables = sorted(formulaic.Formula(rhs).required_variables)
    except Exception as exc:
        raise FormulaError(f"cannot parse fixed formula {fixed!r}: {exc}") from None
    _require_columns(frame, response_columns + fixed_variables, fixed)
    for formula, grouping in zip(random_list, groupings, strict=True):
        _require_columns(frame, list(grouping), formula)

    used = list(dict.fromkeys(
        response_columns + fixed_variables + [c for g in groupings for c in g]
    ))
    frame = frame.loc[:, used].copy()
    missing = frame.isna()
    dropped: tuple[Any, ...] = ()
    if missing.to_numpy().any():
        counts = {c: int(n) for c, n in missing.sum().items() if n}
        if na_action == "drop":
            rows = missing.any(axis=1)
            dropped = tuple(frame.index[rows])
            warnings.warn(
                f"dropped {len(dropped)} row(s) with missing values (per column: {counts}); "
                "their index labels are in fit.design.dropped_rows",
                DataWarning,
                stacklevel=3,
            )
            frame = frame.loc[~rows]
            if len(frame) == 0:
                raise DataError("no rows are left after dropping missing values")
        elif na_action == "raise":
            raise DataError(
                f"missing values in column(s) {counts} (number of rows each); remove them "
                "or pass na_action='drop'"
            )
        else:
            raise ArgumentError(f"na_action must be 'raise' or 'drop', not {na_action!r}")

    # response
    binomial = isinstance(family, Binomial)
    if len(response_columns) == 2:
        if not binomial:
            raise FormulaError(
                f"a two-column response cbind(...) is only for family='binomial', "
                f"not {family.name!r}"
            )
        succ, fail = (_numeric_column(frame, c) for c in response_columns)
        family.check_response(succ, succ + fail, f"cbind({', '.join(response_columns)})")
        y, trials = succ, succ + fail
        response_name = f"cbind({', '.join(response_columns)})"
    else:
        if binomial:
            raise FormulaError(
                "family='binomial' needs the response as 'cbind(successes, failures) ~ ...'; "
                "for 0/1 responses use family='bernoulli'"
            )
        response_name = response_columns[0]
        y = _numeric_column(frame, response_name)
        trials = np.ones_like(y)
        family.check_response(y, trials, response_name)
    if np.unique(y).size == 1 and (isinstance(family, Bernoulli) or binomial):
        warnings.warn(
            f"the response {response_name!r} takes a single value; the fixed effects "
            "then diverge and the fit cannot reach a finite maximum",
            DataWarning,
            stacklevel=3,
        )

    try:
        matrix = formulaic.model_matrix("~ " + rhs, frame, na_action="raise")
    except Exception as exc:
        raise FormulaError(f"cannot build the fixed design from {fixed!r}: {exc}") from None
    x = np.asarray(matrix, dtype=np.float64)
    fixed_names = tuple(_r_style_name(str(c)) for c in matrix.columns)
    if x.shape[1] == 0:
        raise FormulaError(f"fixed formula {fixed!r} has no fixed effects; use '~ 1'")
    _check_rank(x, fixed_names, fixed)

    terms = []
    for formula, grouping in zip(random_list, groupings, strict=True):
        codes, levels = _factor_codes(frame, grouping, formula)
        terms.append(RandomTerm(formula, grouping, levels, codes))
    equal, names = _check_varcomps(
        len(terms), varcomps_equal, varcomps_names, [t.name for t in terms]
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
            f"the model has {offset} random effects for {len(frame)} observations; the "
            "variance components are weakly identified",
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
    )


def _numeric_column(frame: pd.DataFrame, column: str) -> FloatArray:
    series = frame[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        raise DataError(
            f"response column {column!r} must be numeric, not {series.dtype}; "
            "recode it as numbers (e.g. 0/1)"
        )
    return series.to_numpy(dtype=np.float64)


def _check_rank(x: FloatArray, names: tuple[str, ...], fixed: str) -> None:
    """Refuse a rank-deficient fixed design, naming the aliased columns."""
    if x.shape[0] < x.shape[1]:
        raise DataError(
            f"the fixed design of {fixed!r} has {x.shape[1]} columns but only "
            f"{x.shape[0]} rows"
        )
    scale = np.linalg.norm(x, axis=0)
    zero = np.flatnonzero(scale == 0)
    if zero.size:
        raise DataError(
            f"fixed-effect column(s) {[names[j] for j in zero]} of {fixed!r} are all zero"
        )
    _, r, _ = np.linalg.svd(x / scale, full_matrices=False)
    if r[-1] > r[0] * 1e-10:
        return
    # find a set of aliased columns: greedily keep independent columns
    kept: list[int] = []
    aliased: list[str] = []
    for j in range(x.shape[1]):
        trial = kept + [j]
        if np.linalg.matrix_rank(x[:, trial] / scale[trial]) == len(trial):
            kept = trial
        else:
            aliased.append(names[j])
    raise DataError(
        f"the fixed design of {fixed!r} is rank deficient: column(s) {aliased} are linear "
        "combinations of earlier columns; remove them from the formula"
    )
