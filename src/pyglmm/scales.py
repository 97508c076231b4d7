"""The response scale of a family after the fit: inverse link, link and unit deviance.

The response scale is the inverse link: probabilities for the Bernoulli and binomial
families (per trial, as lme4), means for the Poisson.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, xlogy

from .errors import ArgumentError

FloatArray = NDArray[np.float64]

#: Families with the logit link whose response scale is a probability per trial.
LOGIT = ("bernoulli", "binomial")


def inverse_link(fit: Any, eta: FloatArray) -> FloatArray:
    """The fit's family's mean per trial at the linear predictor ``eta``."""
    name = fit.family.name
    if name in LOGIT:
        return np.asarray(expit(eta), dtype=np.float64)
    return np.asarray(fit.family.mean(eta, np.ones(1)), dtype=np.float64)


def link(fit: Any, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The link of ``mu`` and its derivative ``d link / d mu``."""
    name = fit.family.name
    with np.errstate(divide="ignore"):
        if name in LOGIT:
            return np.log(mu) - np.log1p(-mu), 1.0 / (mu * (1.0 - mu))
        if name == "poisson":
            return np.log(mu), 1.0 / mu
    raise ArgumentError(f"re='marginal' with type='link' is not available for family "
                        f"{name!r}")


def unit_deviance(name: str, y: FloatArray, mean: FloatArray, trials: FloatArray) -> FloatArray:
    """``2 [log f(y | saturated) - log f(y | mean)]`` per observation (``mean`` in counts)."""
    if name in LOGIT:
        return np.asarray(2.0 * (xlogy(y, y / mean) + xlogy(trials - y, (trials - y)
                                                            / (trials - mean))), np.float64)
    if name == "poisson":
        return np.asarray(2.0 * (xlogy(y, y / mean) - (y - mean)), np.float64)
    raise ArgumentError(f"deviance residuals are not available for family {name!r}")
