"""The post-estimation methods of :class:`pyglmm.GLMMResults`, as a mixin.

Each method forwards to the module that owns the computation: :mod:`pyglmm.ranef`
(conditional means and SDs of the random effects by importance weighting of the fit's
own sample), :mod:`pyglmm.prediction` (predictions), :mod:`pyglmm.residuals` (fitted
values and residuals), :mod:`pyglmm.simulate_fit` (simulation) and
:mod:`pyglmm.profiles` (profile likelihood). Their docstrings give the details.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


class PostEstimation:
    """``ranef``, ``predict``, ``fitted``, ``residuals`` and ``simulate`` of a fit."""

    def ranef(self, cond_var: bool = True, min_ess: float = 10.0) -> pd.DataFrame:
        """Conditional means (and SDs) of the random effects at the MCMLE.

        See :func:`pyglmm.ranef.ranef`: one row per effect (``term``, ``level``,
        ``column``, ``mean``, ``sd``, ``ess``, ``method``); blocks whose ESS is below
        ``min_ess`` fall back to the conditional mode, labelled as such.
        """
        from .ranef import ranef

        return ranef(self, cond_var=cond_var, min_ess=min_ess)

    def predict(
        self,
        newdata: Any = None,
        type: str = "link",  # noqa: A002 - named as in R
        re: str = "conditional",
        new_levels: str = "population",
        se_fit: bool = False,
        offset: ArrayLike | str | None = None,
        rng: int | np.random.Generator | None = None,
        m: int = 2000,
    ) -> pd.Series | pd.DataFrame:
        """Predictions on the link or response scale (:func:`pyglmm.prediction.predict`)."""
        from .prediction import predict

        return predict(self, newdata=newdata, type=type, re=re, new_levels=new_levels,
                       se_fit=se_fit, offset=offset, rng=rng, m=m)

    def profile(self, param: str | int, n: int = 21, width: float = 4.0) -> pd.DataFrame:
        """The profile likelihood of one parameter or correlation (:func:`pyglmm.profiles.profile`).

        ``param``: a parameter's name or 0-based position, or a correlation's name as
        :meth:`varcorr` gives it (``"cor (Intercept),x|g"``).
        """
        from .profiles import profile

        return profile(self, param, n=n, width=width)

    def fitted(self) -> pd.Series:
        """Conditional fitted values on the response scale (:func:`pyglmm.residuals.fitted`)."""
        from .residuals import fitted

        return fitted(self)

    def residuals(self, type: str = "deviance") -> pd.Series:  # noqa: A002 - as R
        """Response, Pearson or deviance residuals (:func:`pyglmm.residuals.residuals`)."""
        from .residuals import residuals

        return residuals(self, type=type)

    def simulate(
        self, nsim: int = 1, rng: int | np.random.Generator | None = None, re: str = "new"
    ) -> pd.DataFrame:
        """Responses simulated from the fitted model (:func:`pyglmm.simulate_fit.simulate`)."""
        from .simulate_fit import simulate

        return simulate(self, nsim=nsim, rng=rng, re=re)
