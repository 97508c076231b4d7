"""Wald inference of a fit: covariance, the parameter table, confidence intervals.

The sampling covariance of the estimates is the inverse of the observed information
``-loglike_hessian`` (:func:`observed_covariance`); :func:`wald_table` is the table of
:meth:`pyglmm.GLMMResults.tidy` (estimates, SEs, MCSEs, z and p); for
:meth:`pyglmm.GLMMResults.confint`, :func:`parameter_positions` picks parameters by
name or 0-based position and :func:`wald_intervals` forms the intervals
(docs/method.md).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
from numpy.typing import NDArray
from scipy import stats

from .diagnostics import BOUNDARY_NU
from .errors import ArgumentError, ArgumentTypeError

FloatArray = NDArray[np.float64]


def observed_covariance(hessian: FloatArray) -> FloatArray:
    """Inverse of the observed information ``-hessian``, symmetrised.

    By Cholesky; a matrix that is not positive definite is inverted directly, and one
    that is singular gives NaN everywhere.
    """
    information = -np.asarray(hessian, dtype=np.float64)
    try:
        factor = scipy.linalg.cho_factor(information, lower=True)
        inverse = scipy.linalg.cho_solve(factor, np.eye(information.shape[0]))
    except np.linalg.LinAlgError:
        inverse = _inverse(information)
    return np.asarray(0.5 * (inverse + inverse.T), dtype=np.float64)


def _inverse(matrix: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    except np.linalg.LinAlgError:
        return np.full_like(matrix, np.nan)


def wald_table(
    param_names: Sequence[str],
    beta: FloatArray,
    nu: FloatArray,
    covariance: FloatArray,
    score_mc_covariance: FloatArray,
    is_variance: NDArray[np.bool_] | None = None,
) -> pd.DataFrame:
    """The table of :meth:`GLMMResults.tidy` (which documents its columns).

    ``covariance`` is :func:`observed_covariance`'s; ``score_mc_covariance`` the Monte
    Carlo covariance of the MCLA gradient, the middle of the MCSE sandwich.
    ``is_variance`` marks the random-effect parameters that are variances (default:
    all); the others are covariances (kind ``"covariance"``, two-sided p-values).
    """
    if is_variance is None:
        is_variance = np.ones(nu.size, dtype=bool)
    variances = np.diag(covariance)
    se = np.sqrt(np.where(variances > 0, variances, np.nan))
    se[beta.size :][is_variance & (nu < BOUNDARY_NU)] = np.nan
    mc_variances = np.diag(covariance @ score_mc_covariance @ covariance)
    estimate = np.concatenate([beta, nu])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = estimate / se
    two_sided = 2.0 * stats.norm.sf(np.abs(z))
    is_fixed = np.arange(estimate.size) < beta.size
    one_sided = np.concatenate([np.zeros(beta.size, dtype=bool), is_variance])
    kind = np.where(is_fixed, "fixed", np.where(one_sided, "varcomp", "covariance"))
    return pd.DataFrame({
        "term": list(param_names),
        "kind": kind,
        "estimate": estimate,
        "se": se,
        "mcse": np.sqrt(np.clip(mc_variances, 0.0, None)),
        "z": z,
        "p": np.where(one_sided, 0.5 * two_sided, two_sided),
    })


def interval_alpha(level: Any, method: Any) -> float:
    """Check ``level`` and ``method`` of a confidence interval; return ``1 - level``."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real):
        raise ArgumentTypeError(f"level must be a number, not {type(level).__name__}")
    if not 0.0 < float(level) < 1.0:
        raise ArgumentError(
            f"level must be strictly between 0 and 1 (e.g. 0.95), got {level!r}"
        )
    if method not in ("wald", "log", "profile"):
        raise ArgumentError(f"method must be 'wald', 'log' or 'profile', got {method!r}")
    return 1.0 - float(level)


def parameter_positions(param_names: Sequence[str], parm: Any) -> list[int]:
    """0-based positions of the parameters ``parm`` names (names or positions; None: all)."""
    names = list(param_names)
    if parm is None:
        return list(range(len(names)))
    items = [parm] if isinstance(parm, str | numbers.Integral) else list(parm)
    positions = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ArgumentError(f"unknown parameter {item!r}; the parameters are {names}")
            if names.count(item) > 1:
                raise ArgumentError(f"{item!r} names several parameters; give positions")
            positions.append(names.index(item))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if not 0 <= int(item) < len(names):
                raise ArgumentError(
                    f"parameter position {item} is out of range: positions are 0-based, "
                    f"from 0 to {len(names) - 1} ({names})"
                )
            positions.append(int(item))
        else:
            raise ArgumentTypeError(
                f"parm must hold names or 0-based positions, not {type(item).__name__}"
            )
    return positions


def wald_intervals(table: pd.DataFrame, alpha: float, method: str) -> pd.DataFrame:
    """Intervals of level ``1 - alpha`` for the rows of a :meth:`~GLMMResults.tidy` table.

    Fixed effects and covariances: estimate plus or minus ``z_{1-alpha/2}`` SEs.
    Variances:
    the same, lower limit truncated at 0 (``method="wald"``), or the Wald interval of
    ``log(nu)`` mapped back (``method="log"``). Columns are named by the quantiles as
    R names them, e.g. ``"0.025"`` and ``"0.975"``.
    """
    quantile = stats.norm.ppf(1.0 - alpha / 2.0)
    estimate, se = table["estimate"].to_numpy(), table["se"].to_numpy()
    lower, upper = estimate - quantile * se, estimate + quantile * se
    varcomp = (table["kind"] == "varcomp").to_numpy()
    if method == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.exp(quantile * se / estimate)
        lower = np.where(varcomp, estimate / spread, lower)
        upper = np.where(varcomp, estimate * spread, upper)
    else:
        lower = np.where(varcomp, np.maximum(lower, 0.0), lower)
    columns = [f"{alpha / 2.0:.12g}", f"{1.0 - alpha / 2.0:.12g}"]
    return pd.DataFrame(
        np.column_stack([lower, upper]), index=list(table["term"]), columns=columns
    )
