"""Predictions, fitted values, residuals and simulation from a fitted GLMM.

The linear predictor of an observation is ``offset + x^T beta + sum_t z_t^T u_t``,
``u_t`` the effects of its level of term ``t``. :func:`predict` plugs in

* ``re="conditional"``: the conditional means of the random effects given the data
  (:func:`pyglmm.ranef.ranef`; lme4 plugs in the conditional modes);
* ``re="none"``: ``u = 0`` (lme4's ``re.form = NA``);
* ``re="marginal"``: the population-averaged mean
  :math:`E_{u \\sim N(0, D(\\psi))}[g^{-1}(\\eta)]`, by Monte Carlo.

On new data ``X`` is rebuilt from the fit's formulaic model spec (so factor levels,
contrasts and stateful transforms are those of the fit), ``Z`` from the terms' level
labels and columns, and the offset from the formula's ``offset(...)`` terms plus the
``offset=`` argument. :func:`fitted`, :func:`residuals` and :func:`simulate` work on
the fit's own rows.

The response scale is the inverse link: probabilities for the Bernoulli and binomial
families (per trial, as lme4), means for the Poisson.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from .covariance import sqrt_covariance
from .errors import ArgumentError, DataError
from .newdata import SLAB, Rows, fit_design, fit_rows, level_labels, new_rows, random_part
from .postargs import as_generator, choice
from .ranef import conditional_summary
from .residuals import fitted, residuals
from .scales import inverse_link, link
from .simulate_fit import simulate

__all__ = ["fitted", "predict", "residuals", "simulate"]

FloatArray = NDArray[np.float64]


def _marginal_mean(
    fit: Any, rows: Rows, fixed_eta: FloatArray, m: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Monte Carlo ``E[g^{-1}(eta + z^T b)]`` over ``b_t ~ N(0, Sigma_t)`` and its MCSE.

    The same ``m`` draws per term serve every row (each row's integral involves only
    its own levels' effects, which are all distributed as ``N(0, Sigma_t)``).
    """
    design = fit_design(fit)
    sigmas = design.layout.covariances(np.asarray(fit.nu, dtype=np.float64))
    draws = [rng.standard_normal((m, s.shape[0])) @ sqrt_covariance(s).T for s in sigmas]
    n = fixed_eta.size
    mean = np.empty(n)
    mcse = np.empty(n)
    for start in range(0, n, SLAB):
        stop = min(start + SLAB, n)
        eta = np.broadcast_to(fixed_eta[start:stop], (m, stop - start)).copy()
        for part, b in zip(rows.terms, draws, strict=True):
            eta += b @ part.values[start:stop].T  # (m, slab)
        mu = inverse_link(fit, eta)
        mean[start:stop] = mu.mean(axis=0)
        mcse[start:stop] = mu.std(axis=0, ddof=1) / np.sqrt(m)
    return mean, mcse


def predict(
    fit: Any,
    newdata: Any = None,
    type: str = "link",  # noqa: A002 - named as in R
    re: str = "conditional",
    new_levels: str = "population",
    se_fit: bool = False,
    offset: ArrayLike | str | None = None,
    rng: int | np.random.Generator | None = None,
    m: int = 2000,
) -> pd.Series | pd.DataFrame:
    """Predict the linear predictor or the mean response (lme4's ``predict``).

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm` (it must keep its design; ``re="conditional"``
        also needs its importance sample).
    newdata : DataFrame or mapping, optional
        Rows to predict. None: the rows of the fit, with the fit's offset.
    type : {"link", "response"}
        Linear predictor, or the inverse link of it (probabilities per trial for the
        Bernoulli and binomial families, means for the Poisson).
    re : {"conditional", "marginal", "none"}
        ``"conditional"``: the random effects at their conditional means given the data
        (:func:`pyglmm.ranef.ranef`). ``"none"``: all random effects 0. ``"marginal"``:
        the random effects integrated out, :math:`E[g^{-1}(\\eta)]` over
        ``u ~ N(0, D(psi))`` by Monte Carlo with ``m`` draws of each term's effects;
        with ``type="link"`` the link of that marginal mean.
    new_levels : {"population", "error"}
        With ``re="conditional"``, levels of a grouping factor that the fit did not see
        get random effects 0 (``"population"``) or raise an error naming the term and
        levels (``"error"``). Ignored by the other ``re``.
    se_fit : bool
        Also return delta-method standard errors from the fixed-effects block ``V`` of
        ``fit.vcov()``: ``sqrt(x_i^T V x_i)`` on the link scale, times ``d mu / d eta``
        on the response scale. Like lme4's ``predict(se.fit=TRUE)`` this ignores the
        uncertainty of the random effects (and of the variance components). Only with
        ``re="none"`` or ``"conditional"``.
    offset : array-like or str, optional
        With ``newdata``: an offset per row (or the name of a column of ``newdata``),
        added to the formula's ``offset(...)`` terms, which are evaluated on ``newdata``.
        Without ``newdata`` the fit's own offset is used and ``offset`` must be None.
    rng : int or numpy.random.Generator, optional
        Seed of the Monte Carlo draws of ``re="marginal"`` (default 0: reproducible).
    m : int
        Number of Monte Carlo draws for ``re="marginal"``.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like ``newdata`` (without it: the 0-based positions of the fit's rows in
        the data as given). A Series named ``"fit"``; a DataFrame with columns ``fit``
        and ``se_fit`` when ``se_fit``; a DataFrame with columns ``fit`` and ``mcse``
        (Monte Carlo standard error of ``fit``; on the link scale by the delta method)
        for ``re="marginal"``.

    Raises
    ------
    pyglmm.errors.DataError
        A factor level of a fixed effect, or (``new_levels="error"``) of a grouping
        factor, that the fit's data did not have; a missing column.
    pyglmm.errors.ArgumentError
        An invalid option.

    Examples
    --------
    >>> import pyglmm as pg
    >>> from pyglmm.prediction import predict
    >>> data = pg.datasets.load_booth_hobert()
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, m=2000, rng=1)
    >>> predict(fit, data.head(3), type="response").shape
    (3,)
    """
    choice(type, "type", ("link", "response"))
    choice(re, "re", ("conditional", "marginal", "none"))
    choice(new_levels, "new_levels", ("population", "error"))
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or m < 2:
        raise ArgumentError(f"m must be an integer of at least 2, not {m!r}")
    if se_fit and re == "marginal":
        raise ArgumentError("se_fit is available with re='none' or re='conditional' only")
    design = fit_design(fit)
    if newdata is None:
        if offset is not None:
            raise ArgumentError("offset= applies to newdata; without newdata the fit's own "
                                "offset is used")
        rows = fit_rows(design)
    else:
        rows = new_rows(design, newdata, offset, need_levels=re == "conditional")
    beta = np.asarray(fit.beta, dtype=np.float64)
    eta = rows.offset + rows.x @ beta
    if re == "marginal":
        mean, mcse = _marginal_mean(fit, rows, eta, int(m), as_generator(rng))
        if type == "response":
            return pd.DataFrame({"fit": mean, "mcse": mcse}, index=rows.index)
        on_link, slope = link(fit, mean)
        return pd.DataFrame({"fit": on_link, "mcse": mcse * slope}, index=rows.index)
    if re == "conditional":
        if new_levels == "error":
            for term, part in zip(design.random_terms, rows.terms, strict=True):
                if np.any(part.codes < 0):
                    unseen = sorted(set(level_labels(pd.DataFrame(newdata), term)[part.codes < 0]))
                    raise DataError(
                        f"random term {term.formula!r}: newdata has level(s) {unseen[:10]} "
                        f"of {term.name!r} that the fit did not see; pass "
                        "new_levels='population' to predict them with random effects 0"
                    )
        u = conditional_summary(fit, cond_var=False).mean
        eta = eta + random_part(design, rows, u)
    value = inverse_link(fit, eta) if type == "response" else eta
    if not se_fit:
        return pd.Series(value, index=rows.index, name="fit")
    p = beta.size
    v = np.asarray(fit.vcov(), dtype=np.float64)[:p, :p]
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows.x, v, rows.x), 0.0))
    if type == "response":
        se = se * fit.family.variance(eta, np.ones(1))
    return pd.DataFrame({"fit": value, "se_fit": se}, index=rows.index)
