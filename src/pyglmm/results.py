"""The fitted model: estimates, standard errors, Monte Carlo errors, tests and records.

:class:`GLMMResults` is what :func:`pyglmm.glmm` returns. Its accessors are named as in R
glmm (``coef``, ``varcomps``, ``vcov``, ``se``, ``mcse``, ``confint``, ``loglik``) and all
read one table, :meth:`GLMMResults.tidy`; ``summary()`` prints R's layout plus the Monte
Carlo checks (ALGORITHM.md 6 and 12.3); ``to_json``/``from_json`` store a fit as plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import scipy
import scipy.linalg
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from .design import Design
from .diagnostics import BOUNDARY_NU, ImportanceDiagnostics, diagnose
from .errors import ArgumentError, ArgumentTypeError
from .families import Family, get_family
from .mcla import Evaluation
from .optimize import TrustStep
from .problem import Problem
from .summary import Summary, WaldTest, wald_test

FloatArray = NDArray[np.float64]

#: ``format`` of the records written by :meth:`GLMMResults.to_dict`.
RECORD_FORMAT = "pyglmm.GLMMResults"
#: Version of that record layout (raise on incompatible changes).
RECORD_VERSION = 1
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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


@dataclass(frozen=True)
class GLMMResults:
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
    m: int
    n_draws: int
    rng_entropy: Any
    rng_spawn_key: tuple[int, ...]
    p1: float
    p2: float
    p3: float
    zeta: float
    blocks: str
    importance: str
    recentre: int
    n_blocks: int
    block_sizes: NDArray[np.intp]
    rounds: tuple[FitRound, ...]
    timings: dict[str, float]
    design: Design | None = field(default=None, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_fit(
        cls,
        *,
        design: Design,
        problem: Problem,
        family: Family,
        evaluation: Evaluation,
        theta: FloatArray,
        rounds: tuple[FitRound, ...],
        beta_pql: FloatArray,
        nu_pql: FloatArray,
        u_pql: FloatArray,
        settings: dict[str, Any],
        seed: np.random.SeedSequence,
        timings: dict[str, float],
    ) -> GLMMResults:
        """Assemble the results of a fit (used by :func:`pyglmm.glmm`)."""
        p = design.n_fixed
        p1, p2, p3 = settings["p"]
        return cls(
            beta=theta[:p].copy(),
            nu=theta[p:].copy(),
            loglike_value=evaluation.value,
            loglike_gradient=evaluation.gradient,
            loglike_hessian=evaluation.hessian,
            trust_converged=rounds[-1].converged,
            iterations=rounds[-1].iterations,
            beta_pql=np.asarray(beta_pql, dtype=np.float64),
            nu_pql=np.asarray(nu_pql, dtype=np.float64),
            u_pql=np.asarray(u_pql, dtype=np.float64),
            block_ess=evaluation.block_ess,
            score_mc_covariance=evaluation.score_mc_covariance,
            top_log_weights=evaluation.top_log_weights,
            fixed_names=design.fixed_names,
            varcomps_names=design.varcomps_names,
            varcomps_equal=design.varcomps_equal,
            fixed_formula=design.fixed_formula,
            random_formulas=design.random_formulas,
            family=family,
            m=settings["m"],
            n_draws=evaluation.n_draws,
            rng_entropy=seed.entropy,
            rng_spawn_key=tuple(seed.spawn_key),
            p1=p1,
            p2=p2,
            p3=p3,
            zeta=settings["zeta"],
            blocks=settings["blocks"],
            importance=settings["importance"],
            recentre=settings["recentre"],
            n_blocks=problem.blocks.n_blocks,
            block_sizes=problem.blocks.block_sizes,
            rounds=rounds,
            timings=timings,
            design=design,
        )

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
        covariance = self._covariance()
        variances = np.diag(covariance)
        se = np.sqrt(np.where(variances > 0, variances, np.nan))
        se[self.beta.size :][self.nu < BOUNDARY_NU] = np.nan
        mc_variances = np.diag(covariance @ self.score_mc_covariance @ covariance)
        estimate = np.concatenate([self.beta, self.nu])
        with np.errstate(divide="ignore", invalid="ignore"):
            z = estimate / se
        two_sided = 2.0 * stats.norm.sf(np.abs(z))
        is_fixed = np.arange(estimate.size) < self.beta.size
        return pd.DataFrame({
            "term": list(self.param_names),
            "kind": np.where(is_fixed, "fixed", "varcomp"),
            "estimate": estimate,
            "se": se,
            "mcse": np.sqrt(np.clip(mc_variances, 0.0, None)),
            "z": z,
            "p": np.where(is_fixed, two_sided, 0.5 * two_sided),
        })

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
        """Monte Carlo standard errors of the estimates (ALGORITHM.md 6.4 and 12.1).

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

    def information_min_eigenvalue(self) -> float:
        """Smallest eigenvalue of the observed information ``-loglike_hessian``.

        Positive at a proper maximum; otherwise ``vcov`` and the SEs are unreliable.
        """
        return float(np.linalg.eigvalsh(-self.loglike_hessian).min())

    def _covariance(self) -> FloatArray:
        information = -np.asarray(self.loglike_hessian, dtype=np.float64)
        try:
            factor = scipy.linalg.cho_factor(information, lower=True)
            inverse = scipy.linalg.cho_solve(factor, np.eye(information.shape[0]))
        except np.linalg.LinAlgError:
            inverse = _inverse(information)
        return np.asarray(0.5 * (inverse + inverse.T), dtype=np.float64)

    # -- intervals and tests -------------------------------------------------------------
    def confint(
        self,
        level: float = 0.95,
        parm: str | int | Sequence[str | int] | None = None,
        method: str = "wald",
    ) -> pd.DataFrame:
        """Wald confidence intervals, as R glmm's ``confint`` (ALGORITHM.md 6.3).

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
        method : {"wald", "log"}
            Interval for the variance components (fixed effects are always Wald).

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
        if isinstance(level, bool) or not isinstance(level, numbers.Real):
            raise ArgumentTypeError(f"level must be a number, not {type(level).__name__}")
        if not 0.0 < float(level) < 1.0:
            raise ArgumentError(
                f"level must be strictly between 0 and 1 (e.g. 0.95), got {level!r}"
            )
        if method not in ("wald", "log"):
            raise ArgumentError(f"method must be 'wald' or 'log', got {method!r}")
        alpha = 1.0 - float(level)
        quantile = stats.norm.ppf(1.0 - alpha / 2.0)
        table = self.tidy().iloc[self._positions(parm)]
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

    def _positions(self, parm: Any) -> list[int]:
        names = list(self.param_names)
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

    # -- summary and diagnostics -------------------------------------------------------
    def diagnostics(self) -> ImportanceDiagnostics:
        """Block ESS, Pareto k-hat per block and MCSE/SE, with warnings (ALGORITHM.md 12.3).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.diagnostics().block_pareto_k.shape
        (10,)
        """
        table = self.tidy()
        return diagnose(
            m=self.m, block_ess=self.block_ess, top_log_weights=self.top_log_weights,
            mcse=table["mcse"].to_numpy(), se=table["se"].to_numpy(),
            parameter_names=self.param_names, importance=self.importance, zeta=self.zeta,
        )

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
            f"{len(self.varcomps_names)} variance component(s), m={self.m}: "
            f"loglik {self.loglike_value:.4f}, {status}; .summary() for the tables>"
        )

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    # -- a plain record of the fit -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready record of the fit (no pickle; the design is not kept).

        ``format`` (``"pyglmm.GLMMResults"``), ``format_version`` and ``versions``
        (pyglmm, Python, numpy, scipy, pandas), then the attributes of the fit, each under
        its own name, in sections: ``model`` (formulas, family name, parameter names,
        ``varcomps_equal``), ``settings`` (``m``, ``n_draws``, ``p1``-``p3``, ``zeta``,
        ``blocks``, ``importance``, ``recentre``, the seed's ``rng_entropy`` and
        ``rng_spawn_key``), ``estimates`` (``beta``, ``nu``), ``loglike``
        (``loglike_value``, ``loglike_gradient``, ``loglike_hessian``), ``convergence``
        (``trust_converged``, ``iterations``), ``pql`` (``beta_pql``, ``nu_pql``,
        ``u_pql``), ``importance_sampling`` (``n_blocks``, ``block_sizes``,
        ``block_ess``, ``score_mc_covariance``, ``top_log_weights``) and ``run``
        (``rounds``, with their trust traces, and ``timings`` in seconds). Derived, for
        readers, and recomputed on loading: ``model.link`` and ``inference`` (``names``,
        ``se``, ``mcse``, ``vcov``, ``block_pareto_k``). Vectors are lists in parameter
        order, matrices lists of rows; NaN and infinities are the strings ``"NaN"``,
        ``"Infinity"`` and ``"-Infinity"``, so the record is strict JSON and every float
        round-trips exactly.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> fit.to_dict()["estimates"]["beta"] == fit.beta.tolist()
        True
        """
        record: dict[str, Any] = {"format": RECORD_FORMAT, "format_version": RECORD_VERSION,
                                  "versions": _versions()}
        for section, names in _RECORD_LAYOUT:
            record[section] = {name: getattr(self, name) for name in names}
        record["model"]["family"] = self.family.name
        record["model"]["link"] = self.family.link
        record["run"]["rounds"] = [dataclasses.asdict(r) for r in self.rounds]
        table = self.tidy()
        record["inference"] = {
            "names": self.param_names, "se": table["se"].to_numpy(),
            "mcse": table["mcse"].to_numpy(), "vcov": self._covariance(),
            "block_pareto_k": self.diagnostics().block_pareto_k,
        }
        return dict(_encode(record))

    def to_json(self, indent: int | None = None) -> str:
        """The record of :meth:`to_dict` as strict JSON text.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> back = pg.GLMMResults.from_json(fit.to_json())
        >>> bool((back.params() == fit.params()).all())
        True
        """
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> GLMMResults:
        """Rebuild a fit from :meth:`to_dict`'s record (without its design: no ``x``/``z``).

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> pg.GLMMResults.from_dict(fit.to_dict()).nu.tolist() == fit.nu.tolist()
        True
        """
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
            raise ArgumentError(f"not a {RECORD_FORMAT} record")
        if record.get("format_version", 0) > RECORD_VERSION:
            raise ArgumentError(
                f"record format version {record['format_version']} is newer than this "
                f"pyglmm reads ({RECORD_VERSION}); upgrade pyglmm"
            )
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for section, names in _RECORD_LAYOUT:
            stored = record[section] if section == "model" else _restore(record[section])
            for name in names:
                values[name] = _decode(types[name], stored[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> GLMMResults:
        """Rebuild a fit from :meth:`to_json`'s text.

        Examples
        --------
        >>> import pyglmm as pg
        >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
        >>> pg.GLMMResults.from_json(fit.to_json()).loglik() == fit.loglik()
        True
        """
        return cls.from_dict(json.loads(text))


#: Sections of the record of :meth:`GLMMResults.to_dict` and the attributes in each.
_RECORD_LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("fixed_formula", "random_formulas", "family", "fixed_names",
               "varcomps_names", "varcomps_equal")),
    ("settings", ("m", "n_draws", "p1", "p2", "p3", "zeta", "blocks", "importance",
                  "recentre", "rng_entropy", "rng_spawn_key")),
    ("estimates", ("beta", "nu")),
    ("loglike", ("loglike_value", "loglike_gradient", "loglike_hessian")),
    ("convergence", ("trust_converged", "iterations")),
    ("pql", ("beta_pql", "nu_pql", "u_pql")),
    ("importance_sampling", ("n_blocks", "block_sizes", "block_ess",
                             "score_mc_covariance", "top_log_weights")),
    ("run", ("rounds", "timings")),
)


def _decode(kind: str, value: Any) -> Any:
    """Rebuild an attribute of annotated type ``kind`` from its JSON value."""
    if kind == "FloatArray":
        return np.asarray(value, dtype=np.float64)
    if kind.startswith("NDArray"):
        return np.asarray(value, dtype=np.intp)
    if kind == "Family":
        return get_family(value)
    if kind == "tuple[FitRound, ...]":
        return tuple(_round_from_dict(r) for r in value)
    if kind.startswith("tuple"):
        return tuple(value)
    scalar: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
    return scalar[kind](value) if kind in scalar else value


def _versions() -> dict[str, str]:
    try:
        ours = metadata.version("pyglmm")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return {"pyglmm": ours, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pandas": pd.__version__}


def _encode(value: Any) -> Any:
    """Turn arrays, numpy scalars and non-finite floats into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return _encode(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return value


def _restore(value: Any) -> Any:
    """Inverse of :func:`_encode` for the non-finite floats."""
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return _SPECIAL.get(value, value) if isinstance(value, str) else value


def _round_from_dict(data: dict[str, Any]) -> FitRound:
    trace = tuple(
        TrustStep(**(step | {"argument": np.asarray(step["argument"], dtype=np.float64),
                             "trial": np.asarray(step["trial"], dtype=np.float64)}))
        for step in data["trace"]
    )
    return FitRound(**(data | {"estimate": np.asarray(data["estimate"], dtype=np.float64),
                               "trace": trace}))


def _inverse(matrix: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    except np.linalg.LinAlgError:
        return np.full_like(matrix, np.nan)
