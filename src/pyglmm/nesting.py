"""Which fits can be compared: the same data and family, one model nested in the other.

:func:`check_same_data` refuses fits of different families, links or data (naming
what differs); :func:`check_nested` refuses a smaller model that is not nested in the
larger one and maps each of its random terms to the larger model's term that holds it
(:func:`match_terms`); :func:`model_name` is the name a fit's row gets in
:func:`pyglmm.anova`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError, DataWarning
from .results import GLMMResults
from .terms import TermInfo

FloatArray = NDArray[np.float64]

#: Generality of the covariance structures: each is a special case of the next.
STRUCTURE_RANK = {"scalar": 0, "diagonal": 1, "unstructured": 2}


def model_name(fit: GLMMResults) -> str:
    """The fit's formulas in one string: ``"Mate ~ 0 + Cross; random: ~ 0 + Female"``.

    lme4 bar terms are already part of the fixed formula (``"y ~ x + (1 | g)"``) and
    are not repeated.

    Parameters
    ----------
    fit : GLMMResults
        A fitted model.

    Returns
    -------
    str
        The name :func:`anova` gives the fit's row.
    """
    extra = [f for f in fit.random_formulas if f not in fit.fixed_formula]
    if not extra:
        return fit.fixed_formula
    return fit.fixed_formula + "; random: " + ", ".join(extra)


def response_name(fit: GLMMResults) -> str:
    return fit.fixed_formula.split("~", 1)[0].strip()


def check_same_data(fits: Sequence[GLMMResults]) -> None:
    """Refuse fits of different families or data (naming what differs)."""
    first = fits[0]
    for i, other in enumerate(fits[1:], start=2):
        where = f"model 1 and model {i}"
        if first.family.name != other.family.name:
            raise ArgumentError(
                f"cannot compare fits of different families: {where} are "
                f"{first.family.name!r} and {other.family.name!r}"
            )
        if first.family.link != other.family.link:
            raise ArgumentError(
                f"cannot compare fits with different links: {where} use "
                f"{first.family.link!r} and {other.family.link!r}"
            )
        a, b = first.design, other.design
        if a is None or b is None:
            # restored from JSON: the record keeps no data; compare what it keeps
            if response_name(first) != response_name(other):
                raise ArgumentError(
                    f"cannot compare fits of different responses: {where} model "
                    f"{response_name(first)!r} and {response_name(other)!r}"
                )
            warnings.warn(
                "a fit restored from its JSON record keeps no data: pyglmm cannot check "
                "that the compared fits used the same observations (only the family and "
                "the response's name were compared)",
                DataWarning,
                stacklevel=3,
            )
            continue
        if a.n_obs != b.n_obs:
            raise ArgumentError(
                f"cannot compare fits to different data: {where} have {a.n_obs} and "
                f"{b.n_obs} observations"
            )
        arrays = {
            "response (y)": (a.y, b.y),
            "binomial trials": (a.trials, b.trials),
            "weights": (_weights(a.weights, a.n_obs), _weights(b.weights, b.n_obs)),
            "offset": (a.offset, b.offset),
        }
        for what, (left, right) in arrays.items():
            if not np.array_equal(np.asarray(left), np.asarray(right)):
                raise ArgumentError(
                    f"cannot compare fits to different data: the {what} of {where} "
                    "differ (refit both models to the same data)"
                )


def _weights(weights: FloatArray | None, n: int) -> FloatArray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def can_hold(alt: TermInfo, null: TermInfo) -> bool:
    """Whether the alternative term ``alt`` contains the null term ``null``."""
    if alt.name != null.name or not set(null.columns) <= set(alt.columns):
        return False
    if len(alt.columns) > 1 and alt.structure == "scalar" and alt.columns != null.columns:
        # one variance for all columns: no value of it leaves the null's columns alone
        return False
    if len(null.columns) == 1:
        return True
    return STRUCTURE_RANK.get(alt.structure, 2) >= STRUCTURE_RANK.get(null.structure, 2)


def match_terms(
    null: Sequence[TermInfo], alt: Sequence[TermInfo]
) -> dict[int, int] | None:
    """A one-to-one map of null terms to alternative terms holding them (or None)."""
    candidates = [[j for j, a in enumerate(alt) if can_hold(a, n)] for n in null]
    # fewest added columns first
    for options in candidates:
        options.sort(key=lambda j: len(alt[j].columns))
    assignment: dict[int, int] = {}

    def place(i: int) -> bool:
        if i == len(null):
            return True
        for j in candidates[i]:
            if j not in assignment.values():
                assignment[i] = j
                if place(i + 1):
                    return True
                del assignment[i]
        return False

    return dict(assignment) if place(0) else None


def _term_label(info: TermInfo) -> str:
    return f"{info.formula} (grouping {info.name}, columns {', '.join(info.columns)})"


def check_nested(fit0: GLMMResults, fit1: GLMMResults) -> dict[int, int]:
    """Refuse non-nested models; return the map of the null's terms to the alternative's."""
    missing = [name for name in fit0.fixed_names if name not in fit1.fixed_names]
    if missing:
        raise ArgumentError(
            "the models are not nested: fixed effect(s) "
            f"{missing} of the smaller model {model_name(fit0)!r} are not in the larger "
            f"model {model_name(fit1)!r}"
        )
    if fit0.design is not None and fit1.design is not None:
        for j, name in enumerate(fit0.fixed_names):
            other = fit1.design.x[:, fit1.fixed_names.index(name)]
            if not np.array_equal(fit0.design.x[:, j], other):
                raise ArgumentError(
                    f"the models are not nested: fixed effect {name!r} has different "
                    "values in the two designs"
                )
    match = match_terms(fit0.terms, fit1.terms)
    if match is None:
        unmatched = [t for t in fit0.terms if not any(can_hold(a, t) for a in fit1.terms)]
        which = unmatched[0] if unmatched else fit0.terms[0]
        raise ArgumentError(
            "the models are not nested: random term "
            f"{_term_label(which)} of the smaller model has no counterpart in the larger "
            "model with the same grouping, a superset of its columns and the same or a "
            "more general covariance structure (scalar < diagonal < unstructured)"
        )
    _check_ties(fit0, fit1, match)
    return match


def _check_ties(fit0: GLMMResults, fit1: GLMMResults, match: dict[int, int]) -> None:
    """Terms tied in the alternative (``varcomps_equal``) must be kept or dropped together."""
    back = {j: i for i, j in match.items()}
    for j, a in enumerate(fit1.terms):
        for k in range(j + 1, len(fit1.terms)):
            b = fit1.terms[k]
            if not set(a.params) & set(b.params):
                continue
            kept = (j in back, k in back)
            same = kept == (True, True) and (
                fit0.terms[back[j]].params == fit0.terms[back[k]].params
                and fit0.terms[back[j]].columns == a.columns
                and fit0.terms[back[k]].columns == b.columns
            )
            if kept != (False, False) and not same:
                raise ArgumentError(
                    "the models are not nested: random terms "
                    f"{a.formula!r} and {b.formula!r} share their variance components "
                    "in the larger model (varcomps_equal) but not in the smaller one"
                )
