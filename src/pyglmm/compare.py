r"""Model comparison: information criteria, likelihood-ratio tests and ``anova``.

The log-likelihood of a fit is the maximised Monte Carlo likelihood approximation
(MCLA) ``fit.loglike_value``, constants included, so AIC, BIC and likelihood-ratio
statistics are on lme4's scale; each carries a Monte Carlo standard error
(:func:`loglik_mcse`) that says how much of a difference is sampling noise.

* :func:`loglik_df`, :func:`nobs`, :func:`aic`, :func:`bic`, :func:`loglik_mcse`;
* :func:`lrt` tests a null model against a more general one that nests it, with the
  chi-bar-square null distribution when the alternative adds variance components on
  the boundary 0 of the parameter space (Self & Liang 1987; Stram & Lee 1994);
* :func:`anova` tabulates several fits the way ``lme4::anova`` does.

Fits are compared only when they are fitted to the same data by the same family;
otherwise :class:`pyglmm.errors.ArgumentError` names what differs.

References
----------
Self, S. G. and Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood
estimators and likelihood ratio tests under nonstandard conditions. *JASA* 82, 605-610.

Stram, D. O. and Lee, J. W. (1994). Variance components testing in the longitudinal
mixed effects model. *Biometrics* 50, 1171-1177.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .criteria import aic, bic, loglik_df, loglik_mcse, nobs
from .criteria import loglik_variance as _loglik_variance
from .errors import ArgumentError, BoundaryWarning
from .mixtures import chi2_sf, null_distribution
from .nesting import check_nested, check_same_data, model_name
from .results import GLMMResults

__all__ = [
    "LRTResult",
    "aic",
    "anova",
    "bic",
    "loglik_df",
    "loglik_mcse",
    "lrt",
    "model_name",
    "nobs",
]


@dataclass(frozen=True)
class LRTResult:
    """A likelihood-ratio test of a null model against a more general one.

    Attributes
    ----------
    statistic : float
        ``2 (loglik_alternative - loglik_null)``; it may be slightly negative from Monte
        Carlo error (the p-values then treat it as 0).
    df : int
        Difference of the numbers of parameters (:func:`loglik_df`).
    p_value : float
        Upper tail of ``null_distribution`` at the statistic.
    naive_p_value : float
        Upper tail of the plain chi-square with ``df`` degrees of freedom.
    mcse : float
        Monte Carlo standard error of the statistic, ``2 sqrt(var0 + var1)`` from the
        two fits' :func:`loglik_mcse` (independent samples).
    null_distribution : str
        The reference distribution, e.g. ``"chi-square(1)"`` or
        ``"0.5 chi-square(0) + 0.5 chi-square(1)"``; ``"chi-square(d) (boundary not
        accounted for)"`` where the boundary rules do not apply.
    boundary : bool
        Whether the alternative adds variance components that the null fixes at 0.
    weights : tuple of float
        Weights of the chi-square mixture (``(1.0,)`` without a boundary).
    mixture_df : tuple of int
        Degrees of freedom of the mixture's chi-squares, matching ``weights``.
    null, alternative : str
        Names of the two models (their formulas).
    """

    statistic: float
    df: int
    p_value: float
    naive_p_value: float
    mcse: float
    null_distribution: str
    boundary: bool
    weights: tuple[float, ...]
    mixture_df: tuple[int, ...]
    null: str = ""
    alternative: str = ""



def lrt(fit0: GLMMResults, fit1: GLMMResults) -> LRTResult:
    r"""Likelihood-ratio test of nested GLMMs, with the boundary's chi-bar-square.

    The fit with fewer parameters is the null. The statistic is
    :math:`2(\ell_1 - \ell_0)` of the maximised MCLAs, with Monte Carlo standard error
    :math:`2\sqrt{v_0 + v_1}` (:func:`loglik_mcse`; the two fits' samples taken as
    independent, which fits with different seeds are).

    **Null distribution.** Adding fixed effects or relaxing a covariance structure
    (scalar to diagonal to unstructured on the same columns) adds interior parameters:
    the reference is :math:`\chi^2_d`, ``d`` the difference in parameters. When the
    alternative adds variance components that the null fixes at 0 (a dropped random
    term, or columns added to a term), the true value is on the boundary and the
    statistic follows a chi-bar-square mixture (Self & Liang 1987; Stram & Lee 1994):

    * one independent variance component (a scalar term, or a column of a diagonal
      term) added with ``k`` other, interior, parameters:
      :math:`\tfrac12\chi^2_k + \tfrac12\chi^2_{k+1}`;
    * ``s`` independent variance components (scalar or diagonal terms, uncorrelated):
      weights :math:`\binom sj / 2^s` on :math:`\chi^2_{k+j}`, ``j = 0..s``;
    * one column added to an unstructured term of ``q`` columns (``q + 1`` new
      parameters: its variance and ``q`` covariances):
      :math:`\tfrac12\chi^2_{k+q} + \tfrac12\chi^2_{k+q+1}`.

    Several such additions to different terms count as independent boundary
    components (the binomial rule with ``s`` their number and ``k`` the remaining
    parameters). Variance components tied by ``varcomps_equal`` count once. In the other
    cases (several columns added to an unstructured term, or a dropped unstructured
    term of several columns) the mixture has no closed form; the naive
    :math:`\chi^2_d` is used, labelled ``"chi-square(d) (boundary not accounted
    for)"``, with a :class:`~pyglmm.errors.BoundaryWarning` (its p-value is
    conservative).

    Parameters
    ----------
    fit0, fit1 : GLMMResults
        Two fits to the same data by the same family, one nested in the other (in
        either order).

    Returns
    -------
    LRTResult

    Raises
    ------
    ArgumentError
        If the families or data differ, the models have the same number of
        parameters, or the smaller model is not nested in the larger: its fixed
        effects must be among the larger model's, and each of its random terms must
        appear in the larger model with the same grouping, a superset of its columns
        and the same or a more general covariance structure.

    Examples
    --------
    >>> import pyglmm as pg
    >>> sal = pg.datasets.load_salamander()
    >>> fit1 = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], sal,
    ...                m=1000, rng=1)
    >>> fit0 = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female"], sal, m=1000, rng=2)
    >>> lrt(fit1, fit0).null_distribution
    '0.5 chi-square(0) + 0.5 chi-square(1)'
    """
    check_same_data([fit0, fit1])
    return _test(fit0, fit1)


def _test(fit0: GLMMResults, fit1: GLMMResults) -> LRTResult:
    """:func:`lrt` after the data check."""
    df0, df1 = loglik_df(fit0), loglik_df(fit1)
    if df0 == df1:
        raise ArgumentError(
            f"both models have {df0} parameters: a likelihood-ratio test needs one model "
            f"nested in a larger one ({model_name(fit0)!r} vs {model_name(fit1)!r})"
        )
    if df0 > df1:
        fit0, fit1 = fit1, fit0
        df0, df1 = df1, df0
    match = check_nested(fit0, fit1)
    df = df1 - df0
    mixture = null_distribution(fit0, fit1, match, df)
    if not mixture.accounted:
        warnings.warn(
            f"the larger model {model_name(fit1)!r} adds several correlated random "
            "columns whose variances the smaller one fixes at 0: the chi-bar-square "
            f"mixture has no closed form here, so the naive chi-square({df}) is used "
            "(boundary not accounted for; its p-value is conservative)",
            BoundaryWarning,
            stacklevel=3,
        )
    statistic = float(2.0 * (fit1.loglike_value - fit0.loglike_value))
    mcse = float(2.0 * math.sqrt(_loglik_variance(fit0) + _loglik_variance(fit1)))
    return LRTResult(
        statistic=statistic,
        df=df,
        p_value=mixture.sf(statistic),
        naive_p_value=chi2_sf(max(statistic, 0.0), df),
        mcse=mcse,
        null_distribution=mixture.label,
        boundary=mixture.boundary,
        weights=mixture.weights,
        mixture_df=mixture.dfs,
        null=model_name(fit0),
        alternative=model_name(fit1),
    )


# -- the table ---------------------------------------------------------------------------
_COLUMNS = ["npar", "AIC", "BIC", "logLik", "logLik_mcse", "deviance", "Chisq",
            "Chisq_mcse", "Df", "Pr(>Chisq)", "null_distribution"]


def anova(*fits: GLMMResults, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Compare fits in one table, as ``lme4::anova``: each row tested against the previous.

    Parameters
    ----------
    *fits : GLMMResults
        Fits to the same data by the same family.
    names : sequence of str, optional
        Row names, one per fit in the order given. By default the fits' formulas
        (:func:`model_name`), or ``"model 1"``, ``"model 2"``, ... (the position among
        ``fits``) when two fits have the same formulas.

    Returns
    -------
    pandas.DataFrame
        One row per fit, ordered by number of parameters (ties keep the given order),
        columns ``npar`` (:func:`loglik_df`), ``AIC``, ``BIC`` (NaN for a fit restored
        from JSON, whose number of observations is unknown), ``logLik``,
        ``logLik_mcse`` (:func:`loglik_mcse`), ``deviance`` (``-2 logLik``), and the
        test of each row against the one above (:func:`lrt`): ``Chisq``,
        ``Chisq_mcse``, ``Df``, ``Pr(>Chisq)`` (from ``null_distribution``) and
        ``null_distribution``. The first row's test columns are NaN (empty text); a
        row with as many parameters as the one above has ``Df`` 0, no test, and
        ``null_distribution`` ``"none (equal df)"``.

    Raises
    ------
    ArgumentError
        If no fit is given, the fits differ in family or data, ``names`` has the wrong
        length, or two consecutive rows are not nested (see :func:`lrt`).

    Examples
    --------
    >>> import pyglmm as pg
    >>> sal = pg.datasets.load_salamander()
    >>> fit1 = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], sal,
    ...                m=1000, rng=1)
    >>> fit0 = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female"], sal, m=1000, rng=2)
    >>> anova(fit1, fit0)["npar"].tolist()
    [5, 6]
    """
    if not fits:
        raise ArgumentError("anova needs at least one fit")
    check_same_data(list(fits))
    if names is None:
        labels = [model_name(f) for f in fits]
        if len(set(labels)) < len(labels):
            labels = [f"model {i + 1}" for i in range(len(fits))]
    else:
        labels = [str(n) for n in names]
        if len(labels) != len(fits):
            raise ArgumentError(
                f"names has {len(labels)} entries for {len(fits)} fits"
            )
        if len(set(labels)) < len(labels):
            raise ArgumentError("names must be distinct")
    order = sorted(range(len(fits)), key=lambda i: loglik_df(fits[i]))
    rows = []
    for position, i in enumerate(order):
        fit = fits[i]
        row: dict[str, object] = {
            "npar": loglik_df(fit),
            "AIC": aic(fit),
            "BIC": bic(fit) if fit.design is not None else math.nan,
            "logLik": float(fit.loglike_value),
            "logLik_mcse": loglik_mcse(fit),
            "deviance": float(-2.0 * fit.loglike_value),
            "Chisq": math.nan, "Chisq_mcse": math.nan, "Df": math.nan,
            "Pr(>Chisq)": math.nan, "null_distribution": "",
        }
        if position > 0:
            previous = fits[order[position - 1]]
            if loglik_df(previous) == loglik_df(fit):
                row.update({"Df": 0, "null_distribution": "none (equal df)"})
            else:
                test = _test(previous, fit)
                row.update({"Chisq": test.statistic, "Chisq_mcse": test.mcse,
                            "Df": test.df, "Pr(>Chisq)": test.p_value,
                            "null_distribution": test.null_distribution})
        rows.append(row)
    table = pd.DataFrame(rows, index=[labels[i] for i in order], columns=_COLUMNS)
    table["npar"] = table["npar"].astype(int)
    table["Df"] = table["Df"].astype(float)
    return table


