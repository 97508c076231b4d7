"""Random-effect terms from the data: R glmm's list form and lme4's bar terms.

:func:`list_form_terms` reads R glmm's random formulas (``~ 0 + Female``; with a float
column in the interaction, ``~ 0 + x:g``, a random slope per level with one variance)
and :func:`bar_form_terms` lme4's bar terms (``(1 + x | g)`` unstructured,
``(1 + x || g)`` diagonal, ``(0 + x | g)`` a slope). :func:`assemble_random` lays the
terms' effects out (design order: tie group, term, level, column), builds the
``Z`` index and value arrays and the :class:`~pyglmm.layout.ParameterLayout`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import formulaic
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .covariance import Diagonal, Scalar, Unstructured
from .datachecks import factor_codes, library_message, refuse_mostly_numeric
from .errors import ArgumentError, ArgumentTypeError, DataError, DataWarning, FormulaError
from .formulas import r_style_name
from .layout import ParameterLayout
from .terms import INTERCEPT, RandomTerm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class RandomLayout:
    """The random part of a design (see :class:`pyglmm.design.Design`)."""

    terms: tuple[RandomTerm, ...]
    layout: ParameterLayout
    groups: tuple[int, ...]  # 0-based tie group of each term
    z_columns: IntArray  # (n, K) design-order effect of each (term, column)
    z_values: FloatArray | None  # (n, K), None if all ones
    term_offsets: IntArray  # (T,) first design-order effect of each term
    effect_component: IntArray  # (q,) tie group of every effect
    effect_names: tuple[str, ...]


def _is_covariate(series: pd.Series) -> bool:
    dtype = series.dtype
    return (not isinstance(dtype, pd.CategoricalDtype)) and pd.api.types.is_float_dtype(dtype)


def list_form_terms(
    frame: pd.DataFrame, formulas: Sequence[str], parts: Sequence[tuple[str, ...]]
) -> list[RandomTerm]:
    """Terms of R glmm's random formulas; float columns in an interaction are slopes."""
    terms = []
    for formula, names in zip(formulas, parts, strict=True):
        for column in names:
            dtype = frame[column].dtype
            if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
                refuse_mostly_numeric(frame[column], column, formula)
        slopes = [c for c in names if _is_covariate(frame[c])]
        grouping = tuple(c for c in names if c not in slopes)
        if not grouping:  # every part is float: factor_codes says why that is refused
            slopes, grouping = [], tuple(names)
        codes, levels = factor_codes(frame, grouping, formula)
        if slopes:
            values = np.prod(np.column_stack([frame[c].to_numpy(np.float64) for c in slopes]),
                             axis=1)[:, None]
            terms.append(RandomTerm(formula, grouping, levels, codes, (":".join(slopes),),
                                    values, Scalar(1)))
        else:
            terms.append(RandomTerm(formula, grouping, levels, codes))
    return terms


def bar_form_terms(frame: pd.DataFrame, bars: Sequence[Any]) -> list[RandomTerm]:
    """Terms of lme4 bar terms (objects with ``text``, ``covariates``, ``grouping``,
    ``correlated``)."""
    terms = []
    for bar in bars:
        try:
            with np.errstate(all="ignore"):
                matrix = formulaic.model_matrix("~ " + bar.covariates, frame, na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"cannot build the columns of random term {bar.text!r}: {library_message(exc)}"
            ) from None
        columns = tuple(r_style_name(str(c)) for c in matrix.columns)
        values = np.asarray(matrix, dtype=np.float64)
        if values.shape[1] == 0:
            raise FormulaError(f"random term {bar.text!r} has no columns; write (1 | g)")
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))[:5]
            raise DataError(
                f"the columns of random term {bar.text!r} are not finite in rows "
                f"{frame.index[bad].tolist()}; fix or drop those rows"
            )
        codes, levels = factor_codes(frame, tuple(bar.grouping), bar.text)
        k = len(columns)
        if k == 1:
            structure: Any = Scalar(1)
        else:
            structure = Unstructured(k) if bar.correlated else Diagonal(k)
        indicator = columns == (INTERCEPT,)
        terms.append(RandomTerm(bar.text, tuple(bar.grouping), levels, codes, columns,
                                None if indicator else values, structure,
                                spec=None if indicator else matrix.model_spec))
        if k > 1 and bar.correlated:
            per_level = np.bincount(codes, minlength=len(levels))
            few = int(np.sum(per_level <= k))
            if few > 0.5 * len(levels):
                warnings.warn(
                    f"random term {bar.text!r}: {few} of {len(levels)} levels of "
                    f"{':'.join(bar.grouping)!r} have at most {k} observations, too few to "
                    "inform a full covariance of the term's columns; the correlations will "
                    "be poorly determined (consider '||' for uncorrelated effects)",
                    DataWarning,
                    stacklevel=4,
                )
    return terms


def bar_names(terms: Sequence[RandomTerm]) -> tuple[str, ...]:
    """Parameter names of bar terms: ``g`` for ``(1 | g)``, else ``var x|g``, ``cov ...|g``."""
    names: list[str] = []
    for term in terms:
        if term.columns == (INTERCEPT,):
            names.append(term.name)
        else:
            names.extend(f"{label}|{term.name}"
                         for label in term.covariance.param_labels(term.columns))
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise FormulaError(
            f"the random terms give parameters {duplicated} twice (the same term on the same "
            "grouping factor twice?); write each term once"
        )
    return tuple(names)


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
    _check_names(names, fixed_names)
    return equal, names



def assemble_random(
    terms: Sequence[RandomTerm],
    groups: Sequence[int],
    names: Sequence[str],
    fixed_names: Sequence[str],
) -> RandomLayout:
    """Lay out the effects of ``terms`` (tie ``groups`` 1-based) and their parameters."""
    n = terms[0].codes.size
    order = [k for t in range(1, max(groups) + 1) for k in range(len(terms)) if groups[k] == t]
    width = sum(term.n_columns for term in terms)
    z_columns = np.empty((n, width), dtype=np.intp)
    z_values = np.ones((n, width))
    offsets = np.empty(len(terms), dtype=np.intp)
    effect_component: list[int] = []
    effect_names: list[str] = []
    offset = 0
    column = {}
    col = 0
    for k, term in enumerate(terms):
        column[k] = col
        col += term.n_columns
    for k in order:
        term = terms[k]
        offsets[k] = offset
        for c in range(term.n_columns):
            j = column[k] + c
            z_columns[:, j] = offset + term.codes * term.n_columns + c
            z_values[:, j] = term.column_values(c)
        effect_component.extend([groups[k] - 1] * term.n_effects)
        effect_names.extend(term.effect_labels())
        offset += term.n_effects
    # the layout numbers parameters by first appearance in the term order of ``order``
    structures = tuple(terms[k].covariance for k in range(len(terms)))
    group0 = tuple(groups[k] - 1 for k in range(len(terms)))
    layout = ParameterLayout.build(tuple(fixed_names), structures, group0, tuple(names))
    indicator = all(term.is_indicator for term in terms)
    return RandomLayout(
        terms=tuple(terms), layout=layout, groups=group0, z_columns=z_columns,
        z_values=None if indicator else z_values, term_offsets=offsets,
        effect_component=np.asarray(effect_component, dtype=np.intp),
        effect_names=tuple(effect_names),
    )


def _check_names(names: Sequence[str], fixed_names: Sequence[str]) -> None:
    """Random-parameter names must be distinct and differ from the fixed effects'."""
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


def _rename(defaults: tuple[str, ...], given: Any) -> tuple[str, ...]:
    """``varcomps_names`` given for the parameters of lme4 bar terms."""
    if isinstance(given, str):
        given = [given]
    name_list = _as_list(given, "varcomps_names", "['F', 'M']")
    if not all(isinstance(name, str) and name.strip() for name in name_list):
        raise ArgumentTypeError(f"varcomps_names must be non-empty strings, got {name_list!r}")
    if len(name_list) != len(defaults):
        raise ArgumentError(
            f"varcomps_names has {len(name_list)} name(s) but the random terms have "
            f"{len(defaults)} parameter(s) {list(defaults)}; give one name per parameter"
        )
    return tuple(name_list)
