"""Design matrices from R-style formulas: response, fixed effects, random effects.

The fixed part is built by :mod:`formulaic` (treatment contrasts, names rewritten the
way R writes them, e.g. ``CrossR/W`` and ``(Intercept)``). Each random formula names
one grouping factor (``~ 0 + Female``, or an interaction ``~ 0 + Site:Block``) and
contributes one random effect per level; its design matrix is a 0/1 indicator, so it
is stored as the level index of every observation rather than as a matrix
(docs/method.md, docs/architecture.md). Grouping columns are factors whatever their
dtype; a float grouping column is refused.

Everything a user can get wrong here is caught with a :mod:`pyglmm.errors` exception
that names the column or argument (docs/method.md): errors of formulaic and pandas
are wrapped, never passed on. The caller's data are never modified.

This module holds the :class:`Design` and :func:`build_design`, which puts it
together; the formulas are parsed by :mod:`pyglmm.formulas` and the data checked and
converted by :mod:`pyglmm.datachecks`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from .bars import split_bars
from .datachecks import SEPARATION_CHECK_MAX_ENTRIES as SEPARATION_CHECK_MAX_ENTRIES
from .datachecks import (
    as_frame,
    check_finite_design,
    check_fixed_columns,
    check_rank,
    check_separation,
    handle_missing,
    library_message,
    observation_vector,
    require_columns,
    response_values,
)
from .errors import ArgumentError, ArgumentTypeError, DataError, DataWarning, FormulaError
from .families import Binomial, Family
from .formulas import (
    parse_fixed,
    parse_random,
    r_style_name,
    random_formula_list,
    transform_arguments,
)
from .layout import ParameterLayout
from .offsets import evaluate_expression, split_offsets
from .termbuild import (
    _check_names,
    _check_varcomps,
    _rename,
    assemble_random,
    bar_form_terms,
    bar_names,
    list_form_terms,
)
from .terms import RandomTerm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class Design:
    """Everything the likelihood needs from the data, in docs/method.md's notation.

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
        Index in ``u`` of each observation's effect for each (term, column); ``u`` is
        ordered by variance component (tie group), then by term, level and column.
    z_values : ndarray, shape (n, K), or None
        The matching entries of ``Z`` (covariate values of random slopes); None when
        every entry is 1.
    effect_component : ndarray of int, shape (q,)
        0-based tie group (R glmm's variance component) of every random effect.
    layout : ParameterLayout
        What every entry of ``theta`` is (:mod:`pyglmm.layout`).
    term_offsets : ndarray of int, shape (T,)
        First design-order effect of each term.
    offset : ndarray, shape (n,)
        Known offset added to the linear predictor (zeros if none).
    weights : ndarray, shape (n,), or None
        Prior weights of the observations' conditional log-densities (None: all 1).
    fixed_spec : formulaic ModelSpec
        The fixed part's model spec (factor levels, stateful transforms), which
        rebuilds ``X`` on new data.
    offset_terms : tuple of str
        The expressions of the formula's ``offset(...)`` terms.
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
    layout: ParameterLayout
    term_offsets: IntArray
    offset: FloatArray
    z_values: FloatArray | None = None
    weights: FloatArray | None = None
    fixed_spec: Any = field(default=None, repr=False, compare=False)
    offset_terms: tuple[str, ...] = ()
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
        """Number of random-effect parameters (R glmm's ``T`` variance components)."""
        return self.layout.n_random

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
        """Names of ``theta = (beta, psi)``: fixed effects, then the terms' parameters."""
        return self.layout.names

    @property
    def kept_positions(self) -> IntArray:
        """0-based positions, in the data as given, of the rows the design keeps."""
        return kept_positions(self.n_obs + len(self.dropped_positions), self.dropped_positions)

    def level_effects(self, t: int) -> IntArray:
        """Design-order effects of term ``t``: shape (levels, columns)."""
        term = self.random_terms[t]
        return (self.term_offsets[t]
                + np.arange(term.n_effects, dtype=np.intp).reshape(term.n_levels, -1))

    def z_matrix(self) -> sp.csr_matrix:
        """Return the random-effects design ``Z`` (n x q) as a sparse matrix."""
        n, k = self.z_columns.shape
        rows = np.repeat(np.arange(n), k)
        data = np.ones(n * k) if self.z_values is None else self.z_values.ravel()
        return sp.csr_matrix(
            (data, (rows, self.z_columns.ravel())), shape=(n, self.n_effects)
        )

    def z_times(self, u: FloatArray) -> FloatArray:
        """Return ``Z u`` for ``u`` of shape (..., q), a gather-and-add (shape (..., n))."""
        return z_gather(self.z_columns, u, self.z_values)

    def zt_times(self, r: FloatArray) -> FloatArray:
        """Return ``Z^T r`` for an n-vector ``r`` (a scatter-add, shape (q,))."""
        return zt_scatter(self.z_columns, r, self.n_effects, self.z_values)


def z_gather(
    z_columns: IntArray, u: FloatArray, z_values: FloatArray | None = None
) -> FloatArray:
    """``Z u`` for the design whose row i has entries ``z_values[i]`` (default 1) in
    columns ``z_columns[i]``.

    ``u`` has shape (..., q); the result (..., n). Each (term, column) contributes one
    gather, so this costs K passes over an (..., n) array and never a matrix product.
    """
    if z_values is None:
        out = np.take(u, z_columns[:, 0], axis=-1)
        for k in range(1, z_columns.shape[1]):
            out += np.take(u, z_columns[:, k], axis=-1)
        return out
    out = np.take(u, z_columns[:, 0], axis=-1) * z_values[:, 0]
    for k in range(1, z_columns.shape[1]):
        out += np.take(u, z_columns[:, k], axis=-1) * z_values[:, k]
    return out


def zt_scatter(
    z_columns: IntArray, r: FloatArray, n_effects: int, z_values: FloatArray | None = None
) -> FloatArray:
    """``Z^T r`` for an n-vector ``r`` and the design of :func:`z_gather`: a q-vector."""
    out = np.zeros(n_effects)
    for k in range(z_columns.shape[1]):
        weights = r if z_values is None else r * z_values[:, k]
        out += np.bincount(z_columns[:, k], weights=weights, minlength=n_effects)
    return out


def kept_positions(n_given: int, dropped_positions: Sequence[int]) -> IntArray:
    """0-based positions, in the data as given, of the rows a design keeps."""
    return np.setdiff1d(np.arange(n_given), np.asarray(dropped_positions, dtype=np.intp))


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _parse(rhs: str, formula: str, what: str = "fixed formula") -> Any:
    try:
        return formulaic.Formula(rhs)
    except Exception as exc:
        raise FormulaError(
            f"cannot parse {what} {formula!r}: {library_message(exc)}"
        ) from None


def _variables(rhs: str, frame: pd.DataFrame, formula: str) -> list[str]:
    """Data columns a right-hand side uses, including arguments of stateful transforms."""
    parsed = _parse(rhs, formula, "term" if formula.startswith("(") else "fixed formula")
    required = sorted(str(v) for v in parsed.required_variables)
    # formulaic leaves out the arguments of stateful transforms (poly(x, 2), center(x))
    return required + sorted(
        name for name in transform_arguments(parsed) - set(required) if name in frame.columns
    )


def build_design(
    fixed: str,
    random: str | Sequence[str] | None,
    data: Any,
    family: Family,
    *,
    varcomps_names: Sequence[str] | None = None,
    varcomps_equal: Sequence[int] | None = None,
    na_action: str = "raise",
    offset: Any = None,
    weights: Any = None,
) -> Design:
    """Build the :class:`Design` of a GLMM from formulas and data.

    Every check of docs/method.md that concerns the data is made here: columns named
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
    random : str or sequence of str or None
        R glmm's random-effects formulas, each naming one grouping factor
        (``"~ 0 + Female"``; ``"~ 0 + x:g"`` with a float ``x`` a random slope); None
        when the fixed formula holds lme4 terms such as ``(1 + x | g)``.
    data : DataFrame or mapping
        The data; it is never modified.
    family : Family
        The response family, used to check the response.
    varcomps_names, varcomps_equal : sequence, optional
        Names of the variance components and the component of each random formula.
    na_action : {"raise", "drop"}
        What to do with rows that have missing values in a column the model uses.
    offset : array-like or str, optional
        A known term added to the linear predictor: one value per row, or the name of
        a column.
    weights : array-like or str, optional
        Prior weights multiplying each observation's conditional log-density (R glmm
        1.4's ``weights``): non-negative, one per row, or a column name.

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
    frame = as_frame(data)
    given, n_given = frame, len(frame)
    if len(frame) == 0:
        raise DataError("data has no rows: there is nothing to fit (check the filtering)")
    response_columns, rhs = parse_fixed(fixed)
    rhs, offset_terms = split_offsets(rhs, fixed)
    rhs, bars = split_bars(rhs, fixed)
    if bars and random is not None:
        raise FormulaError(
            f"fixed formula {fixed!r} has lme4 random terms {[b.text for b in bars]} and "
            "random= is given as well; use one form: every random term in the formula as "
            "'(1 | g)', or random=['~ 0 + g'] (R glmm's form) and none in the formula"
        )
    if not bars and random is None:
        raise ArgumentError(
            "the model has no random effects: give random=['~ 0 + g'] (R glmm's form) or "
            "lme4 terms such as '(1 | g)' in the formula"
        )
    if bars and varcomps_equal is not None:
        raise ArgumentError(
            "varcomps_equal ties R glmm's random formulas (random=[...]); it does not apply "
            "to lme4 bar terms in the formula"
        )
    random_list = [] if bars else random_formula_list(random)
    groupings = []
    for formula in random_list:  # a loop, so that warnings point at the caller
        groupings.append(parse_random(formula))
    parsed = _parse(rhs, fixed)
    required = sorted(str(v) for v in parsed.required_variables)
    response_exprs = [c for c in response_columns if c not in frame.columns
                      and not _NAME.match(c)]
    response_vars = [c for c in response_columns if c not in response_exprs] + [
        v for e in response_exprs for v in _variables(f"0 + I({e})", frame, fixed)]
    require_columns(frame, response_vars + required, fixed)
    fixed_variables = _variables(rhs, frame, fixed)
    require_columns(frame, fixed_variables, fixed)
    for formula, grouping in zip(random_list, groupings, strict=True):
        require_columns(frame, list(grouping), formula)
    bar_variables: list[str] = []
    for bar in bars:
        cov = _variables(bar.covariates, frame, bar.text)
        require_columns(frame, cov, bar.text)
        require_columns(frame, list(bar.grouping), bar.text)
        bar_variables += cov + list(bar.grouping)
    offset_variables = [v for e in offset_terms
                        for v in _variables(f"0 + I({e})", frame, f"offset({e})")]
    require_columns(frame, offset_variables, fixed)

    extra = [v for v in (offset, weights) if isinstance(v, str)]
    require_columns(frame, extra, "offset/weights")
    used = list(dict.fromkeys(
        response_vars + fixed_variables + [c for g in groupings for c in g] + bar_variables
        + offset_variables + extra
    ))
    frame = frame.loc[:, used].copy()
    check_fixed_columns(frame, list(dict.fromkeys(fixed_variables + bar_variables
                                                  + offset_variables)), fixed)
    frame, dropped, dropped_positions = handle_missing(frame, na_action)
    labels = frame.index
    for expr in response_exprs:  # cbind(s, n - s): the expression becomes a column
        frame[expr] = evaluate_expression(expr, frame, f"response part {expr!r}")

    # response
    binomial = isinstance(family, Binomial)
    if len(response_columns) == 2:
        if not binomial:
            raise FormulaError(
                f"a two-column response cbind(...) is only for family='binomial', "
                f"not {family.name!r}"
            )
        response_name = f"cbind({', '.join(response_columns)})"
        succ, fail = (response_values(frame, c, family) for c in response_columns)
        family.check_response(succ, succ + fail, response_name, labels.tolist())
        y, trials = succ, succ + fail
    else:
        if binomial:
            raise FormulaError(
                "family='binomial' needs the response as 'cbind(successes, failures) ~ ...'; "
                "for 0/1 responses use family='bernoulli'"
            )
        response_name = response_columns[0]
        y = response_values(frame, response_name, family)
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
            f"cannot build the fixed design from {fixed!r}: {library_message(exc)}"
        ) from None
    x = np.asarray(matrix, dtype=np.float64)
    fixed_names = tuple(r_style_name(str(c)) for c in matrix.columns)
    if x.shape[1] == 0:
        raise FormulaError(f"fixed formula {fixed!r} has no fixed effects; use '~ 1'")
    if x.shape[0] != len(frame):
        raise FormulaError(
            f"the fixed design of {fixed!r} has {x.shape[0]} rows but the data have "
            f"{len(frame)}; a term of the formula changed the number of rows"
        )
    check_finite_design(x, fixed_names, fixed, labels)
    check_rank(x, fixed_names, fixed)
    if degenerate is None:
        check_separation(x, fixed_names, fixed, family, y, trials)

    if bars:
        terms = bar_form_terms(frame, bars)
        equal = tuple(range(1, len(terms) + 1))
        names = bar_names(terms)
        if varcomps_names is not None:
            names = _rename(names, varcomps_names)
        _check_names(names, fixed_names)
    else:
        terms = list_form_terms(frame, random_list, groupings)
        equal, names = _check_varcomps(
            len(terms), varcomps_equal, varcomps_names, [t.label for t in terms], fixed_names
        )
    random_part = assemble_random(terms, equal, names, fixed_names)
    # more random effects than observations is warned about after the fit, and only
    # if a variance is then poorly determined (pyglmm.checks): an observation-level
    # effect is often well identified
    kept = kept_positions(n_given, dropped_positions)
    offset_vector = (np.zeros(len(frame)) if offset is None
                     else observation_vector(offset, "offset", given, kept))
    for expr in offset_terms:
        offset_vector = offset_vector + evaluate_expression(expr, frame, f"offset({expr})")
    weight_vector = None if weights is None else observation_vector(
        weights, "weights", given, kept, nonnegative=True)
    return Design(
        fixed_formula=fixed,
        random_formulas=tuple(random_list) if not bars else tuple(b.text for b in bars),
        response_name=response_name,
        y=y,
        trials=trials,
        x=x,
        fixed_names=fixed_names,
        random_terms=random_part.terms,
        varcomps_equal=equal,
        varcomps_names=names,
        z_columns=random_part.z_columns,
        z_values=random_part.z_values,
        effect_component=random_part.effect_component,
        effect_names=random_part.effect_names,
        layout=random_part.layout,
        term_offsets=random_part.term_offsets,
        offset=offset_vector,
        weights=weight_vector,
        fixed_spec=matrix.model_spec,
        offset_terms=tuple(offset_terms),
        dropped_rows=dropped,
        dropped_positions=dropped_positions,
    )

