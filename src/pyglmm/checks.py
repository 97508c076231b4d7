"""The post-fit checks: one list, computed once per fit, behind every message about it.

:func:`fit_checks` runs every check of a fitted model: the optimiser's (did it
converge, is the estimate a maximum, is the information positive definite), the
importance sample's (:func:`pyglmm.diagnostics.diagnose`: block ESS, Pareto k,
MCSE/SE), the variance components' (at the boundary 0; weakly identified), and
phrases one :class:`pyglmm.diagnostics.Check` for each that fails. The fit keeps the
result (``fit.diagnostics()``), and the warnings of :func:`pyglmm.glmm`, the WARNING
block of ``fit.summary()``, ``fit.diagnostics().messages`` and ``recommended_m`` all
read it, so they say the same thing. Where a larger ``m`` would not help (a failing
block of at least :data:`pyglmm.diagnostics.LARGE_BLOCK` effects), no message says to
raise it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from .diagnostics import BOUNDARY_NU, Check, ImportanceDiagnostics, diagnose
from .errors import BoundaryWarning, ConvergenceWarning, DataWarning, ImportanceSamplingWarning
from .mixing import fit_chain_diagnostics

if TYPE_CHECKING:
    from .results import GLMMResults

#: The estimate is no maximum when its Newton decrement (in squared standard errors)
#: is above this.
NEWTON_DECREMENT_MAX = 1e-2
#: With more random effects than observations, a variance component is weakly
#: identified when its standard error is above this fraction of its estimate (or not
#: available): an observation-level effect whose variance is well determined is not.
WEAK_RELATIVE_SE = 0.5


def newton_decrement(fit: GLMMResults) -> float:
    """``g^T (-H)^{-1} g`` at the estimate (inf if ``-H`` is not positive definite)."""
    try:
        np.linalg.cholesky(-fit.loglike_hessian)
        step = np.linalg.solve(-fit.loglike_hessian, fit.loglike_gradient)
    except np.linalg.LinAlgError:
        return np.inf
    return float(abs(fit.loglike_gradient @ step))


def fit_checks(fit: GLMMResults) -> ImportanceDiagnostics:
    """Every post-fit check of ``fit``, with the failed ones as messages.

    Parameters
    ----------
    fit : GLMMResults

    Returns
    -------
    ImportanceDiagnostics
        The importance-sampling numbers of :func:`pyglmm.diagnostics.diagnose`, with
        ``checks`` and ``messages`` covering every failed check, in the order the
        summary prints them (the optimiser first).

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), rng=1)
    >>> fit_checks(fit).messages
    ()
    """
    table = fit.tidy()
    chains = fit_chain_diagnostics(fit)
    sampling = diagnose(
        m=fit.m, block_ess=fit.block_ess, top_log_weights=fit.top_log_weights,
        mcse=table["mcse"].to_numpy(), se=table["se"].to_numpy(),
        parameter_names=fit.param_names, importance=fit.importance, zeta=fit.zeta,
        block_sizes=fit.block_sizes, chains=chains is not None,
    )
    helps = sampling.larger_m_helps
    checks = _optimiser_checks(fit, helps)
    boundary = [name for name, nu, variance
                in zip(fit.varcomps_names, fit.nu, fit.is_variance, strict=True)
                if variance and nu < BOUNDARY_NU]
    if boundary:
        checks.append(Check("boundary", BoundaryWarning, (
            f"variance component(s) {', '.join(map(repr, boundary))} at the boundary 0 of "
            "the parameter space: the data show no variation there. Their Wald standard "
            "errors, z values and p-values mean nothing and are shown as NA (Wald tests and "
            "intervals do not apply); consider dropping them."
        )))
    checks.extend(sampling.checks)
    if chains is not None:
        checks.extend(chains.checks())
    weak = _weakly_identified(fit, table["se"].to_numpy()[fit.beta.size:])
    if weak is not None:
        checks.append(weak)
    return dataclasses.replace(
        sampling, checks=tuple(checks), messages=tuple(c.text for c in checks),
        chains=chains)


def _optimiser_checks(fit: GLMMResults, helps: bool) -> list[Check]:
    checks: list[Check] = []
    last = fit.rounds[-1] if fit.rounds else None
    if not fit.trust_converged:
        estimates = ", ".join(f"{v:.6g}" for v in fit.params())
        checks.append(Check("not_converged", ConvergenceWarning, (
            f"the trust-region optimiser did not converge in {fit.iterations} iterations, "
            "so these are not Monte Carlo maximum likelihood estimates. Refit starting from "
            f"them: par_init=fit.params() (= [{estimates}]), perhaps with a larger iterlim."
        )))
    no_maximum = (fit.trust_converged and last is not None and not last.settled
                  and fit.settings.auto_recentre)
    if no_maximum:
        remedy = ("raise m (e.g. tenfold) or compare with a Laplace fit (lme4's glmer)"
                  if helps else "compare them with a Laplace fit (lme4's glmer)")
        checks.append(Check("no_maximum", ImportanceSamplingWarning, (
            "the Monte Carlo likelihood has no reliable maximum at this m: the optimiser "
            "kept reaching points where few draws carry the weight, and re-centring did "
            f"not settle. The estimates are approximate; {remedy}."
        )))
    at_edge = last is not None and last.at_gate_edge
    not_stationary = (fit.trust_converged and not at_edge
                      and newton_decrement(fit) > NEWTON_DECREMENT_MAX)
    if not_stationary:
        # (at the gate's edge the no-maximum warning already says why it is no maximum)
        checks.append(Check("not_stationary", ConvergenceWarning, (
            "the trust-region optimiser stopped, but not at a maximum of the Monte Carlo "
            "likelihood (its Hessian is not negative definite or its gradient is not small "
            "there); the estimates are unreliable. Refit with par_init set to sensible "
            f"values{', or raise m' if helps else ''}."
        )))
    smallest = fit.information_min_eigenvalue()
    if not smallest > 0 and not not_stationary and not (no_maximum and at_edge):
        checks.append(Check("information", ConvergenceWarning, (
            "the observed information (minus the MCLA Hessian) is not positive definite "
            f"(smallest eigenvalue {smallest:.3g}): standard errors, z values and p-values "
            "are unreliable or missing. "
            + ("Refit with a larger m." if helps else
               "A larger m would not help: the sample is degenerate in a large block.")
        )))
    return checks


def _weakly_identified(fit: GLMMResults, se: np.ndarray) -> Check | None:
    """More random effects than observations, and a variance that the data leave vague."""
    if fit.design is None:  # a restored fit keeps no data: the check needs n
        return None
    n_effects, n_obs = int(np.sum(fit.block_sizes)), int(fit.design.n_obs)
    if n_effects <= n_obs:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        vague = [name for name, nu, s, variance
                 in zip(fit.varcomps_names, fit.nu, se, fit.is_variance, strict=True)
                 if variance and nu >= BOUNDARY_NU
                 and not (np.isfinite(s) and s <= WEAK_RELATIVE_SE * nu)]
    if not vague:
        return None
    return Check("weakly_identified", DataWarning, (
        f"the model has {n_effects} random effects (levels of the grouping factors) for "
        f"{n_obs} observations, and the standard error of variance component(s) "
        f"{', '.join(map(repr, vague))} is above {WEAK_RELATIVE_SE:g} times the estimate "
        "(or not available): they are weakly identified and their estimates unreliable."
    ))
