"""Confidence intervals and Wald tests of a fitted model (a mixin of GLMMResults).

:class:`IntervalMethods` gives :class:`pyglmm.GLMMResults` its ``confint`` (Wald,
log-scale and profile intervals: :mod:`pyglmm.intervals`, :mod:`pyglmm.profiles`) and
``wald_test`` (:mod:`pyglmm.hypotheses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from .errors import ArgumentError
from .hypotheses import WaldTest, wald_test
from .intervals import interval_alpha, parameter_positions, wald_intervals

FloatArray = NDArray[np.float64]


class IntervalMethods:
    """``confint`` and ``wald_test`` of :class:`pyglmm.GLMMResults`."""

    beta: FloatArray
    nu: FloatArray

    @property
    def param_names(self) -> tuple[str, ...]:  # pragma: no cover - GLMMResults' own
        raise NotImplementedError

    def tidy(self) -> pd.DataFrame:  # pragma: no cover - GLMMResults' own
        raise NotImplementedError

    def _covariance(self) -> FloatArray:  # pragma: no cover - GLMMResults' own
        raise NotImplementedError

    # -- intervals and tests -------------------------------------------------------------
    def confint(
        self,
        level: float = 0.95,
        parm: str | int | Sequence[str | int] | None = None,
        method: str = "wald",
        n_jobs: int | None = None,
        client: Any = None,
        recentre: int | None = None,
    ) -> pd.DataFrame:
        """Wald confidence intervals, as R glmm's ``confint`` (docs/method.md).

        Fixed effects: :math:`\\hat\\beta_j \\pm z_{1-\\alpha/2}\\,\\mathrm{se}_j`.
        Variance components: with ``method="wald"`` the same interval with its lower
        limit truncated at 0 (R does not truncate); with ``method="log"`` the Wald
        interval of :math:`\\log\\nu` (delta-method SE :math:`\\mathrm{se}/\\hat\\nu`)
        mapped back, :math:`\\hat\\nu\\exp(\\pm z_{1-\\alpha/2}\\,\\mathrm{se}/\\hat\\nu)`,
        which is positive and asymmetric.

        Parameters
        ----------
        level : float
            Confidence level, strictly between 0 and 1.
        parm : str, int or sequence of them, optional
            Parameters by name or by **0-based** position among :attr:`param_names`
            (fixed effects first); default all.
        method : {"wald", "log", "profile"}
            Interval for the variance components (fixed effects are Wald), or
            profile-likelihood intervals for every parameter on the fit's own sample,
            with the Monte Carlo SE of each end point (columns ``mcse_lower``,
            ``mcse_upper``; :mod:`pyglmm.profiles`). The profile table also has a row
            for each correlation of an unstructured term, named as in
            :meth:`varcorr` (``"cor (Intercept),x|g"``; ``parm`` may name them), its
            ends within [-1, 1].
        n_jobs, client : optional
            With ``method="profile"``: compute the interval ends on local processes or
            a dask cluster, as :func:`pyglmm.glmm` takes them (same numbers).
        recentre : int, optional
            With ``method="profile"``: at most this many fresh samples per end, each
            centred at the previous end, until the end stops moving (default
            :data:`pyglmm.profile_ends.RECENTRE_ROUNDS`, 3; 0 solves on the fit's own
            sample alone). The fit's sample is centred at the estimate, so at the ends
            it is noisy and biased; re-centring removes that. A fit
            with Markov chains (``sampler="mcmc"``) defaults to 0: there a fresh chain
            sample informs the likelihood only at its own centre, so the re-centred
            ends wander, and the warning about degenerate ends applies either way.

        Returns
        -------
        pandas.DataFrame
            One row per parameter; columns named by the quantiles as R names them,
            e.g. ``"0.025"`` and ``"0.975"``.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.confint(level=0.9, parm=["x1"]).columns.tolist()
        ['0.05', '0.95']
        """
        alpha = interval_alpha(level, method)
        if recentre is not None and method != "profile":
            raise ArgumentError(f"recentre applies to method='profile', not {method!r}")
        if method == "profile":
            from .profile_ends import profile_intervals

            return profile_intervals(self, float(level), parm, n_jobs, client, recentre)
        positions = parameter_positions(self.param_names, parm)
        table = self.tidy().iloc[positions]
        return wald_intervals(table, alpha, method)

    def wald_test(
        self, hypothesis: str | Sequence[str] | ArrayLike, rhs: ArrayLike | None = None
    ) -> WaldTest:
        """Wald test of linear hypotheses :math:`L\\theta = r` with :meth:`vcov`.

        The statistic :math:`(L\\hat\\theta-r)^\\top(LVL^\\top)^{-1}(L\\hat\\theta-r)` is
        referred to a chi-square distribution with ``rank(L)`` degrees of freedom; for one
        hypothesis it is the square of the vignette's z statistic, with the same two-sided
        p-value. Hypotheses about a variance component at 0 sit on the boundary of the
        parameter space, where this reference distribution is conservative.

        Parameters
        ----------
        hypothesis : str, sequence of str, or array_like
            Equations in the parameter names, e.g. ``"CrossR/R - CrossW/W = 0"`` or
            ``"2 * F = M + 0.5"`` (several separated by ``;`` or given as a list; a
            missing ``= ...`` means ``= 0``; write a name that could be misread in
            backticks), or a contrast vector of length P / matrix with P columns.
        rhs : array_like, optional
            Right-hand side ``r`` for a contrast given as numbers (default 0).

        Returns
        -------
        WaldTest

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> test = fit.wald_test("x1 = 5")
        >>> test.df
        1
        """
        return wald_test(
            self.param_names, np.concatenate([self.beta, self.nu]), self._covariance(),
            hypothesis, rhs,
        )
