"""Fitted values and residuals of the fit's own rows (lme4's ``fitted`` and ``residuals``).

Both plug in the conditional means of the random effects given the data
(:func:`pyglmm.ranef.ranef`): the conditional linear predictor is
``offset + X beta + Z u``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .newdata import fit_design, fit_index
from .postargs import choice
from .ranef import conditional_summary
from .scales import inverse_link, unit_deviance

FloatArray = NDArray[np.float64]


def conditional_eta(fit: Any) -> FloatArray:
    """``offset + X beta + Z u`` on the fit's rows, ``u`` the conditional means."""
    design = fit_design(fit)
    u = conditional_summary(fit, cond_var=False).mean
    return np.asarray(design.offset + design.x @ np.asarray(fit.beta, np.float64)
                      + design.z_times(u), dtype=np.float64)


def fitted(fit: Any) -> pd.Series:
    """Conditional fitted values on the response scale (lme4's ``fitted``).

    ``g^{-1}(offset + X beta + Z u)`` with ``u`` the conditional means of the random
    effects (:func:`pyglmm.ranef.ranef`): probabilities per trial for the Bernoulli and
    binomial families, means for the Poisson.

    Parameters
    ----------
    fit : GLMMResults

    Returns
    -------
    pandas.Series
        Indexed by the 0-based positions of the fit's rows in the data as given.
    """
    design = fit_design(fit)
    return pd.Series(inverse_link(fit, conditional_eta(fit)), index=fit_index(design),
                     name="fitted")


def residuals(fit: Any, type: str = "deviance") -> pd.Series:  # noqa: A002 - as R
    """Conditional residuals of the fit's rows (lme4's ``residuals``).

    With ``mu_i`` the conditional mean in counts (``n_i p_i`` for the binomial, where
    ``p_i`` is :func:`fitted`) and ``V_i`` the family's variance there
    (``n_i p_i (1 - p_i)``; ``mu_i`` for the Poisson):

    * ``"response"``: ``y_i / n_i - p_i`` for the Bernoulli and binomial families (the
      proportion scale, as lme4 and R's ``glm``; ``n_i = 1`` for the Bernoulli), ``y_i -
      mu_i`` for the Poisson; that is, observed minus :func:`fitted`;
    * ``"pearson"``: ``sqrt(w_i) (y_i - mu_i) / sqrt(V_i)``;
    * ``"deviance"``: ``sign(y_i - mu_i) sqrt(w_i d_i)`` with ``d_i`` the unit deviance
      ``2 [log f(y_i | saturated) - log f(y_i | mu_i)]``, so the squares sum to the
      conditional deviance.

    ``w_i`` are the prior weights (1 without them); response residuals are unweighted.

    Parameters
    ----------
    fit : GLMMResults
    type : {"deviance", "pearson", "response"}

    Returns
    -------
    pandas.Series
        Indexed by the 0-based positions of the fit's rows in the data as given.
    """
    choice(type, "type", ("deviance", "pearson", "response"))
    design = fit_design(fit)
    eta = conditional_eta(fit)
    y, trials = design.y, design.trials
    mean, variance = fit.family.mean_variance(eta, trials)
    weights = np.ones_like(y) if design.weights is None else design.weights
    if type == "response":
        out = y / trials - mean / trials
    elif type == "pearson":
        out = np.sqrt(weights) * (y - mean) / np.sqrt(variance)
    else:
        d = np.maximum(unit_deviance(fit.family.name, y, mean, trials), 0.0)
        out = np.sign(y - mean) * np.sqrt(weights * d)
    return pd.Series(out, index=fit_index(design), name=type)
