"""Information criteria of one fit: parameters, observations, AIC, BIC, the MCSE of loglik.

The log-likelihood is the maximised Monte Carlo likelihood approximation
``fit.loglike_value`` (constants included, on lme4's scale). :mod:`pyglmm.compare`
uses these for likelihood-ratio tests and ``anova``; :class:`pyglmm.GLMMResults` has
them as methods.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .errors import ArgumentError

if TYPE_CHECKING:
    from .results import GLMMResults


# -- single fits ------------------------------------------------------------------------
def loglik_df(fit: GLMMResults) -> int:
    """Number of estimated parameters: fixed effects plus random-effect parameters.

    Parameters
    ----------
    fit : GLMMResults
        A fitted model.

    Returns
    -------
    int
        ``len(beta) + len(nu)``; tied variance components (``varcomps_equal``) count
        once, as lme4's ``attr(logLik(fit), "df")``.
    """
    return int(np.size(fit.beta) + np.size(fit.nu))


def nobs(fit: GLMMResults) -> int:
    """Number of observations (rows of the data used), as ``lme4::nobs``.

    A binomial row (``cbind(y, fail)``) counts once, whatever its number of trials;
    rows dropped for missing values do not count.

    Parameters
    ----------
    fit : GLMMResults
        A fitted model with its design.

    Returns
    -------
    int

    Raises
    ------
    ArgumentError
        If the fit was restored from its JSON record, which does not keep the data.
    """
    if fit.design is None:
        raise ArgumentError(
            "the number of observations is unknown for a fit restored from its JSON "
            "record (the record keeps no data); use the fit returned by pyglmm.glmm"
        )
    return int(fit.design.n_obs)


def aic(fit: GLMMResults) -> float:
    """Akaike's information criterion ``-2 loglik + 2 df``.

    Parameters
    ----------
    fit : GLMMResults
        A fitted model.

    Returns
    -------
    float
        Its Monte Carlo standard error is twice :func:`loglik_mcse`.

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(),
    ...               m=500, rng=1)
    >>> aic(fit) == -2 * fit.loglik() + 2 * 2
    True
    """
    return float(-2.0 * fit.loglike_value + 2.0 * loglik_df(fit))


def bic(fit: GLMMResults) -> float:
    """Schwarz's Bayesian information criterion ``-2 loglik + log(nobs) df``.

    Parameters
    ----------
    fit : GLMMResults
        A fitted model with its design (:func:`nobs`).

    Returns
    -------
    float

    Raises
    ------
    ArgumentError
        If the number of observations is unknown (a fit restored from JSON).
    """
    return float(-2.0 * fit.loglike_value + math.log(nobs(fit)) * loglik_df(fit))


def loglik_variance(fit: GLMMResults) -> float:
    """Monte Carlo variance of ``fit.loglike_value`` (:func:`loglik_mcse` squared)."""
    return value_variance(getattr(fit, "block_value_variance", None), fit.block_ess,
                          fit.n_draws)


def value_variance(
    block_value_variance: ArrayLike | None, block_ess: ArrayLike, n_draws: int
) -> float:
    """Monte Carlo variance of an MCLA value from its per-block pieces.

    With batches (Markov chains or randomised QMC), the sum of
    ``block_value_variance``; otherwise ``sum_b max(1/ESS_b - 1/m, 0)``
    (:func:`loglik_mcse`). A fit and a :class:`pyglmm.mcla.Evaluation` both carry
    these three.
    """
    if block_value_variance is not None:  # between batches, plus the chains' level
        return float(np.sum(block_value_variance))
    ess = np.asarray(block_ess, dtype=np.float64)
    return float(np.sum(np.maximum(1.0 / ess - 1.0 / float(n_draws), 0.0)))


def loglik_mcse(fit: GLMMResults) -> float:
    r"""Monte Carlo standard error of the maximised MCLA value ``fit.loglike_value``.

    The MCLA is a sum over independent blocks of :math:`\log \bar w_b`, the log of the
    mean of block ``b``'s ``m`` importance weights. By the delta method,

    .. math:: \operatorname{Var}(\log \bar w_b) \approx
              \frac{\operatorname{Var}(w)}{m\,(\mathrm E w)^2}
              = \frac1m\Big(\frac{\mathrm E w^2}{(\mathrm E w)^2} - 1\Big)
              \approx \frac{1}{\mathrm{ESS}_b} - \frac1m ,

    with :math:`\mathrm{ESS}_b = (\sum_k w_k)^2 / \sum_k w_k^2` the Kish effective
    sample size (``fit.block_ess``, at the estimate). Blocks are sampled independently,
    so the variances add; the result is the square root of the sum (negative terms,
    from rounding, count as 0). With Markov chains (``sampler="mcmc"``) each block's
    variance is that of its estimated level ``log L_b(psi)`` (bridge sampling) plus
    that of the mean likelihood ratio, from the spread between independent chains
    (``fit.block_value_variance``).

    Parameters
    ----------
    fit : GLMMResults
        A fitted model.

    Returns
    -------
    float

    Notes
    -----
    This is the error of the MCLA at a fixed parameter. The maximised value is also
    biased upwards (the estimate is chosen on the same sample) and the log of a mean
    downwards (by about half the variance); both are of order ``1/ESS`` per block and
    not corrected. Trust the value only when the importance diagnostics pass
    (``fit.diagnostics()``).

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(),
    ...               m=500, rng=1)
    >>> 0 < loglik_mcse(fit) < 1
    True
    """
    return float(math.sqrt(loglik_variance(fit)))


# -- the likelihood-ratio test -----------------------------------------------------------
