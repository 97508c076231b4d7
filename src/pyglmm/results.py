"""The fitted model: estimates, standard errors, Monte Carlo errors, tests and records.

:class:`GLMMResults` is what :func:`pyglmm.glmm` returns. Its accessors are named as in R
glmm (``coef``, ``varcomps``, ``vcov``, ``se``, ``mcse``, ``confint``, ``loglik``) and all
read one table, :meth:`GLMMResults.tidy`; ``summary()`` prints R's layout plus the Monte
Carlo checks (docs/method.md); ``to_json``/``from_json`` store a fit as plain JSON.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from . import criteria
from .design import Design
from .diagnostics import ImportanceDiagnostics
from .families import Family
from .inference import IntervalMethods
from .intervals import (
    interval_alpha,
    observed_covariance,
    wald_table,
)
from .mcla import MCLAObjective
from .optimize import TrustStep
from .plots import PlotMethods
from .postfit import PostEstimation
from .record import RECORD_FORMAT as RECORD_FORMAT
from .record import RECORD_VERSION as RECORD_VERSION
from .record import RecordMethods, fit_attributes
from .settings import FitSettings, SettingsAttributes
from .summary import Summary
from .terms import TermInfo
from .varcorr import varcorr_table

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FitRound:
    """One sampling round: a proposal, a fresh sample and a maximisation of the MCLA."""

    sampler: str
    m: int
    converged: bool
    iterations: int
    n_evaluations: int
    estimate: FloatArray
    value: float
    min_ess: float
    settled: bool
    seconds_sampling: float
    seconds_optimising: float
    trace: tuple[TrustStep, ...] = ()
    #: The round ended at the edge of the region where its sample is informative
    #: (``recentre="auto"``'s ESS gate), not at a stationary point of its MCLA.
    at_gate_edge: bool = False


@dataclass(frozen=True)
class GLMMResults(SettingsAttributes, RecordMethods, PostEstimation, PlotMethods,
                  IntervalMethods):
    """A GLMM fitted by Monte Carlo maximum likelihood (returned by :func:`pyglmm.glmm`).

    Attributes mirror R glmm's fitted object in snake case.

    Attributes
    ----------
    beta, nu : ndarray
        Estimates of the fixed effects and variance components.
    loglike_value : float
        The MCLA at the estimate: the full log-likelihood approximation, constants
        included (comparable with ``lme4::logLik``).
    loglike_gradient, loglike_hessian : ndarray
        Gradient and Hessian of the MCLA at the estimate.
    trust_converged : bool
        Whether the trust-region convergence test fired in the final round.
    iterations : int
        Trust-region iterations of the final round.
    beta_pql, nu_pql, u_pql : ndarray
        The PQL centre (``nu_pql`` unclamped; ``u_pql`` in design order).
    block_ess : ndarray
        Kish effective sample size of the importance weights in each block.
    score_mc_covariance : ndarray
        Monte Carlo covariance of the MCLA gradient (the middle of the MCSE sandwich).
    top_log_weights : ndarray, shape (B, k)
        The ``k`` largest log importance weights of each block at the estimate, sorted
        ascending (for the Pareto tail diagnostic).
    settings : FitSettings
        Every setting of the fit, the seed included; ``m``, ``blocks``,
        ``importance``, ``recentre``, ``p1``-``p3``, ``zeta``, ``zeta_per_block``,
        ``rng_entropy`` and ``rng_spawn_key`` read it.
    rounds : tuple of FitRound
        Every sampling round (pilots, then the final one).

    Notes
    -----
    Accessors named as in R glmm: :meth:`coef`, :meth:`varcomps`, :meth:`params`,
    :meth:`se`, :meth:`vcov`, :meth:`mcse`, :meth:`mcvcov`, :meth:`confint`,
    :meth:`loglik`; all read :meth:`tidy`. Also :meth:`summary`, :meth:`wald_test`,
    :meth:`diagnostics` and the JSON record :meth:`to_json` / :meth:`from_json`.

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"],
    ...               pg.datasets.load_salamander(), m=10_000, rng=1234,
    ...               varcomps_names=["F", "M"])
    >>> fit.coef().index.tolist()
    ['CrossR/R', 'CrossR/W', 'CrossW/R', 'CrossW/W']
    >>> fit.confint(level=0.9, parm=["CrossR/R", 4]).columns.tolist()
    ['0.05', '0.95']
    >>> print(fit.summary())  # doctest: +SKIP
    """

    beta: FloatArray
    nu: FloatArray
    loglike_value: float
    loglike_gradient: FloatArray
    loglike_hessian: FloatArray
    trust_converged: bool
    iterations: int
    beta_pql: FloatArray
    nu_pql: FloatArray
    u_pql: FloatArray
    block_ess: FloatArray
    score_mc_covariance: FloatArray
    top_log_weights: FloatArray
    fixed_names: tuple[str, ...]
    varcomps_names: tuple[str, ...]
    varcomps_equal: tuple[int, ...]
    fixed_formula: str
    random_formulas: tuple[str, ...]
    family: Family
    settings: FitSettings
    n_draws: int
    n_blocks: int
    block_sizes: NDArray[np.intp]
    rounds: tuple[FitRound, ...]
    timings: dict[str, float]
    terms: tuple[TermInfo, ...] = ()
    #: With ``m="auto"``: every step's (m, seconds, largest MCSE/SE); empty otherwise.
    m_path: tuple[tuple[int, float, float], ...] = ()
    #: Where the Monte Carlo sample was evaluated: "serial", "processes(k)" or
    #: "dask(<scheduler address>)" (the numbers do not depend on it).
    backend: str = "serial"
    #: With Markov chains or randomised QMC (``sampler="mcmc"`` or ``"qmc"``): the
    #: gradient's Monte Carlo covariance treating the draws as independent
    #: (``score_mc_covariance`` is the one from the spread between the independent
    #: batches: chains or point sets), each block's value variance, and the number of
    #: batches.
    score_iid_covariance: FloatArray | None = None
    block_value_variance: FloatArray | None = None
    n_batches: int = 0
    design: Design | None = field(default=None, repr=False, compare=False)
    #: The final round's importance sample and MCLA (for post-estimation; not saved in
    #: the JSON record).
    sample: MCLAObjective | None = field(default=None, repr=False, compare=False)
    round_type: ClassVar[type] = FitRound

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_fit(cls, **pieces: Any) -> GLMMResults:
        """Assemble the results of a fit (used by :func:`pyglmm.glmm`).

        The keyword arguments are those of :func:`pyglmm.record.fit_attributes`
        (design, problem, family, evaluation, theta, rounds, PQL centre, settings,
        timings).
        """
        return cls(**fit_attributes(**pieces))

    # -- the design, as R's glmm returns it --------------------------------------------
    @property
    def x(self) -> FloatArray:
        """Fixed-effects design matrix (n x p)."""
        return self._design().x

    @property
    def y(self) -> FloatArray:
        """Response (successes for the binomial family)."""
        return self._design().y

    @property
    def z(self) -> sp.csr_matrix:
        """Random-effects design matrix (n x q, sparse), columns grouped by component."""
        return self._design().z_matrix()

    def _design(self) -> Design:
        if self.design is None:
            raise AttributeError("this result was restored without its design")
        return self.design

    # -- the one table ---------------------------------------------------------------
    @property
    def is_variance(self) -> NDArray[np.bool_]:
        """Which random-effect parameters (``nu``) are variances (the others covariances)."""
        out = np.ones(self.nu.size, dtype=bool)
        for info in self.terms:
            out[list(info.params)] = info.covariance_structure().variance_params()
        return out

    def varcorr(self, level: float = 0.95) -> pd.DataFrame:
        """Per random term: variances with SDs, covariances with correlations, and SEs.

        As ``as.data.frame(lme4::VarCorr(fit))`` (columns ``grp``, ``var1``, ``var2``,
        ``vcov``, ``sdcor``) plus the standard errors ``se_vcov`` (observed
        information) and ``se_sdcor`` (delta method) and Wald intervals of ``sdcor`` at
        ``level`` (``sdcor_lower``, ``sdcor_upper``); see :mod:`pyglmm.varcorr`.
        """
        interval_alpha(level, "wald")
        p = self.beta.size
        return varcorr_table(self.terms, self.nu, self._covariance()[p:, p:], float(level))

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of all parameters: fixed effects, then variance components."""
        return self.fixed_names + self.varcomps_names

    def tidy(self) -> pd.DataFrame:
        """One row per parameter: the table every other accessor reads from.

        Returns
        -------
        pandas.DataFrame
            Columns ``term`` (name), ``kind`` (``"fixed"`` or ``"varcomp"``),
            ``estimate``, ``se`` (from the observed information, :meth:`vcov`; NaN for a
            variance component at the boundary, below
            :data:`pyglmm.diagnostics.BOUNDARY_NU`), ``mcse`` (:meth:`mcse`), ``z``
            (``estimate / se``) and ``p``: two-sided :math:`2\\bar\\Phi(|z|)` for fixed
            effects, one-sided :math:`\\bar\\Phi(|z|)` (:math:`H_A: \\nu > 0`, half the
            two-sided value, as R glmm) for variance components. Fixed effects come first.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> list(fit.tidy().columns)
        ['term', 'kind', 'estimate', 'se', 'mcse', 'z', 'p']
        """
        return wald_table(
            self.param_names, self.beta, self.nu, self._covariance(), self.score_mc_covariance,
            self.is_variance
        )

    def _column(self, column: str, kind: str | None = None) -> pd.Series:
        table = self.tidy()
        if kind is not None:
            table = table[table["kind"] == kind]
        return pd.Series(table[column].to_numpy(), index=list(table["term"]), name=column)

    # -- accessors named as in R -------------------------------------------------------
    def coef(self) -> pd.Series:
        """Fixed-effect estimates, named as R names them (``CrossR/R``).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.coef().index.tolist()
        ['x1']
        """
        return self._column("estimate", "fixed")

    def varcomps(self) -> pd.Series:
        """Variance-component estimates, named by ``varcomps_names``.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.varcomps().index.tolist()
        ['z1']
        """
        return self._column("estimate", "varcomp")

    def params(self) -> pd.Series:
        """All estimates: fixed effects first, then variance components (``par_init`` order).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.params().index.tolist()
        ['x1', 'z1']
        """
        return self._column("estimate")

    def se(self) -> pd.Series:
        """Standard errors from the observed information.

        NaN where the information gives no positive variance, and for a variance
        component at the boundary 0 (below :data:`pyglmm.diagnostics.BOUNDARY_NU`),
        where a Wald SE means nothing.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> bool((fit.se() > 0).all())
        True
        """
        return self._column("se")

    def mcse(self) -> pd.Series:
        """Monte Carlo standard errors of the estimates (docs/method.md).

        The square roots of the diagonal of :meth:`mcvcov`, the sandwich
        :math:`\\hat U^{-1}\\big(\\sum_b\\sum_k v_{bk}^2 (g_{bk}-\\bar g_b)(g_{bk}-\\bar
        g_b)^\\top\\big)\\hat U^{-1}` with the fit's own importance density, centred scores
        and normalised weights summed over blocks. Trust them only when the checks of
        :meth:`diagnostics` pass (the summary says so).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> bool((fit.mcse() < fit.se()).all())
        True
        """
        return self._column("mcse")

    def vcov(self) -> pd.DataFrame:
        """Inverse of the negative MCLA Hessian: the sampling covariance of the estimates.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.vcov().shape
        (2, 2)
        """
        names = list(self.param_names)
        return pd.DataFrame(self._covariance(), index=names, columns=names)

    def mcvcov(self) -> pd.DataFrame:
        """Monte Carlo covariance of the estimates, ``U^{-1} V U^{-1}`` over blocks.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.mcvcov().shape
        (2, 2)
        """
        covariance = self._covariance()
        names = list(self.param_names)
        middle = covariance @ self.score_mc_covariance @ covariance
        return pd.DataFrame(0.5 * (middle + middle.T), index=names, columns=names)

    def loglik(self) -> float:
        """The maximised log-likelihood approximation (constants included).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.loglik() < 0
        True
        """
        return float(self.loglike_value)

    def loglik_df(self) -> int:
        """Number of estimated parameters (fixed effects and random-effect parameters)."""
        return criteria.loglik_df(self)

    def loglik_mcse(self) -> float:
        """Monte Carlo standard error of :meth:`loglik` (:func:`pyglmm.criteria.loglik_mcse`)."""
        return criteria.loglik_mcse(self)

    @property
    def nobs(self) -> int:
        """Number of observations (rows) the model was fitted to."""
        return criteria.nobs(self)

    def aic(self) -> float:
        """Akaike's information criterion, ``-2 loglik + 2 df``."""
        return criteria.aic(self)

    def bic(self) -> float:
        """Schwarz's criterion, ``-2 loglik + log(nobs) df``."""
        return criteria.bic(self)

    def names(self) -> list[str]:
        """Names of the fields of the fitted object (R's ``names(fit)``)."""
        return [f.name for f in dataclasses.fields(self)]

    def information_min_eigenvalue(self) -> float:
        """Smallest eigenvalue of the observed information ``-loglike_hessian``.

        Positive at a proper maximum; otherwise ``vcov`` and the SEs are unreliable.
        """
        return float(np.linalg.eigvalsh(-self.loglike_hessian).min())

    def _covariance(self) -> FloatArray:
        return observed_covariance(self.loglike_hessian)


    # -- summary and diagnostics -------------------------------------------------------
    def diagnostics(self) -> ImportanceDiagnostics:
        """Block ESS, Pareto k-hat per block and MCSE/SE, with every post-fit warning.

        ``messages`` holds every failed check of :mod:`pyglmm.checks` (the optimiser's,
        the importance sample's, the variance components'), as :func:`pyglmm.glmm`
        warns and the summary prints them; computed once per fit (docs/method.md).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.diagnostics().block_pareto_k.shape
        (10,)
        """
        return self._checks

    @functools.cached_property
    def _checks(self) -> ImportanceDiagnostics:
        from .checks import fit_checks

        return fit_checks(self)

    def summary(self) -> Summary:
        """R glmm's summary tables with MCSEs and the Monte Carlo checks (print it).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.summary().fixed.columns.tolist()
        ['Estimate', 'Std. Error', 'MCSE', 'z value', 'Pr(>|z|)']
        """
        return Summary.from_results(self)

    def __repr__(self) -> str:
        status = "converged" if self.trust_converged else "NOT converged"
        return (
            f"<GLMMResults {self.family.name} {self.fixed_formula!r} + "
            f"{len(self.varcomps_names)} random-effect parameter(s), m={self.m}: "
            f"loglik {self.loglike_value:.4f}, {status}; .summary() for the tables>"
        )

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    # -- a plain record of the fit -------------------------------------------------------
