"""The fitted model: estimates, their standard errors and Monte Carlo errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from .design import Design
from .families import Family
from .mcla import Evaluation
from .optimize import TrustStep
from .problem import Problem

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

    # -- accessors named as in R -------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of all parameters: fixed effects, then variance components."""
        return self.fixed_names + self.varcomps_names

    def coef(self) -> pd.Series:
        """Fixed-effect estimates, named as R names them (``CrossR/R``)."""
        return pd.Series(self.beta, index=list(self.fixed_names), name="estimate")

    def varcomps(self) -> pd.Series:
        """Variance-component estimates, named by ``varcomps_names``."""
        return pd.Series(self.nu, index=list(self.varcomps_names), name="estimate")

    def params(self) -> pd.Series:
        """All estimates: fixed effects first, then variance components."""
        return pd.Series(
            np.concatenate([self.beta, self.nu]), index=list(self.param_names), name="estimate"
        )

    def vcov(self) -> pd.DataFrame:
        """Inverse of the negative MCLA Hessian (the sampling covariance of the MLE)."""
        names = list(self.param_names)
        return pd.DataFrame(_inverse(-self.loglike_hessian), index=names, columns=names)

    def se(self) -> pd.Series:
        """Standard errors from the observed information."""
        return pd.Series(
            np.sqrt(np.diag(self.vcov().to_numpy())), index=list(self.param_names), name="se"
        )

    def mcvcov(self) -> pd.DataFrame:
        """Monte Carlo covariance of the estimates: ``U^{-1} V U^{-1}`` over blocks."""
        inverse = _inverse(self.loglike_hessian)
        names = list(self.param_names)
        return pd.DataFrame(
            inverse @ self.score_mc_covariance @ inverse, index=names, columns=names
        )

    def mcse(self) -> pd.Series:
        """Monte Carlo standard errors of the estimates."""
        return pd.Series(
            np.sqrt(np.clip(np.diag(self.mcvcov().to_numpy()), 0.0, None)),
            index=list(self.param_names),
            name="mcse",
        )

    def loglik(self) -> float:
        """The maximised log-likelihood approximation (constants included)."""
        return self.loglike_value

    def summary(self) -> str:
        """A plain text table of estimates, standard errors and Monte Carlo errors."""
        table = pd.DataFrame(
            {"Estimate": self.params(), "Std. Error": self.se(), "MCSE": self.mcse()}
        )
        lines = [
            f"Call: glmm({self.fixed_formula!r}, random={list(self.random_formulas)!r}, "
            f"family={self.family.name!r}, m={self.m})",
            f"Link is: {self.family.link!r}",
            "",
            table.to_string(float_format=lambda v: f"{v:.4f}"),
            "",
            f"log-likelihood {self.loglike_value:.4f}; converged {self.trust_converged}; "
            f"{self.n_blocks} block(s); smallest block ESS {self.block_ess.min():.1f}",
        ]
        return "\n".join(lines)


def _inverse(matrix: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    except np.linalg.LinAlgError:
        return np.full_like(matrix, np.nan)
