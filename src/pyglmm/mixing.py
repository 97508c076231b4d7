"""How well the Markov chains of the MCMC likelihood mixed: ESS and R-hat per parameter.

A fit with ``sampler="mcmc"`` (:mod:`pyglmm.chains`) keeps two Monte Carlo covariances
of the MCLA gradient at the estimate: ``score_mc_covariance`` from the spread between its
independent chains (batch means, what the MCSEs use) and ``score_iid_covariance``,
which treats the draws as independent. Carried to the estimates by the inverse
information ``C``, their ratio for parameter ``a`` is the chains' integrated
autocorrelation time for that estimate,

.. math:: \\tau_a = \\frac{(C V_{\\mathrm{between}} C)_{aa}}{(C V_{\\mathrm{iid}} C)_{aa}},
          \\qquad \\mathrm{ESS}_a = m / \\tau_a .

With ``T`` draws per chain, the variance of a chain's mean is ``tau_a / T`` times the
within-chain variance, so Gelman and Rubin's potential scale reduction is

.. math:: \\hat R_a = \\sqrt{(T - 1)/T + \\tau_a / T},

which exceeds 1 when the chains disagree more than their autocorrelation explains
(chains stuck in different places, or too short a burn-in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .diagnostics import Check
from .errors import ImportanceSamplingWarning
from .intervals import observed_covariance

if TYPE_CHECKING:
    from .results import GLMMResults

FloatArray = NDArray[np.float64]

#: Warn when some parameter's R-hat exceeds this ...
RHAT_MAX = 1.05
#: ... or its chain effective sample size is below this.
CHAIN_ESS_MIN = 400.0


@dataclass(frozen=True)
class ChainDiagnostics:
    """Effective sample size and R-hat of every estimate (see the module doc).

    Attributes
    ----------
    n_chains : int
        Independent chains of the final round.
    draws_per_chain : float
        Their average length ``m / n_chains`` (after burn-in).
    parameter_names : tuple of str
    ess, rhat : ndarray
        Per parameter (NaN where the information is not positive definite).
    """

    n_chains: int
    draws_per_chain: float
    parameter_names: tuple[str, ...]
    ess: FloatArray
    rhat: FloatArray

    @property
    def min_ess(self) -> float:
        """The smallest effective sample size (NaN if none is finite)."""
        finite = self.ess[np.isfinite(self.ess)]
        return float(finite.min()) if finite.size else float("nan")

    @property
    def max_rhat(self) -> float:
        """The largest R-hat (NaN if none is finite)."""
        finite = self.rhat[np.isfinite(self.rhat)]
        return float(finite.max()) if finite.size else float("nan")

    def table(self) -> pd.DataFrame:
        """One row per parameter: ``term``, ``ess``, ``rhat``."""
        return pd.DataFrame({"term": list(self.parameter_names), "ess": self.ess,
                             "rhat": self.rhat})

    def checks(self) -> list[Check]:
        """The failed chain checks, each with what to do."""
        out: list[Check] = []
        worst = self.parameter_names[int(np.nanargmax(self.rhat))] if np.isfinite(
            self.max_rhat) else ""
        if np.isfinite(self.max_rhat) and self.max_rhat > RHAT_MAX:
            out.append(Check("rhat", ImportanceSamplingWarning, (
                f"the Markov chains disagree: R-hat is {self.max_rhat:.3f} for {worst} "
                f"(above {RHAT_MAX}), so the MCSEs may be too small. Refit with a larger m "
                "or more re-centring rounds (recentre='auto' or larger).")))
        if np.isfinite(self.min_ess) and self.min_ess < CHAIN_ESS_MIN:
            low = self.parameter_names[int(np.nanargmin(self.ess))]
            out.append(Check("chain_ess", ImportanceSamplingWarning, (
                f"the Markov chains' effective sample size is {self.min_ess:.0f} for {low} "
                f"(below {CHAIN_ESS_MIN:.0f}): the chains mix slowly and the MCSEs are "
                "themselves uncertain. Refit with a larger m.")))
        return out


def chain_diagnostics(
    hessian: FloatArray, between: FloatArray, iid: FloatArray, m: int, n_chains: int,
    parameter_names: Sequence[str],
) -> ChainDiagnostics:
    """ESS and R-hat per parameter from the two Monte Carlo covariances of the gradient.

    Parameters
    ----------
    hessian : ndarray, shape (P, P)
        The MCLA's Hessian at the estimate.
    between, iid : ndarray, shape (P, P)
        The gradient's Monte Carlo covariance from the spread between chains, and
        treating the draws as independent.
    m, n_chains : int
        Draws and chains.
    parameter_names : sequence of str
    """
    covariance = observed_covariance(hessian)
    v_between = np.diag(covariance @ between @ covariance)
    v_iid = np.diag(covariance @ iid @ covariance)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where((v_iid > 0) & (v_between > 0), v_between / v_iid, np.nan)
    length = m / max(n_chains, 1)
    return ChainDiagnostics(
        n_chains=int(n_chains), draws_per_chain=float(length),
        parameter_names=tuple(parameter_names), ess=m / tau,
        rhat=np.sqrt((length - 1.0) / length + tau / length),
    )


def fit_chain_diagnostics(fit: GLMMResults) -> ChainDiagnostics | None:
    """The chain diagnostics of a fit, or None if it did not use Markov chains."""
    if fit.score_iid_covariance is None or fit.rounds[-1].sampler != "mcmc":
        return None
    return chain_diagnostics(fit.loglike_hessian, fit.score_mc_covariance,
                             fit.score_iid_covariance, fit.n_draws, fit.n_batches,
                             fit.param_names)
