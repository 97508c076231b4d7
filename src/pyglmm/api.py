"""``glmm()``: fit a generalized linear mixed model by Monte Carlo maximum likelihood."""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from . import validation
from .blocklinalg import BlockCholesky
from .design import Design, build_design
from .diagnostics import BOUNDARY_NU, LARGE_BLOCK
from .errors import (
    BoundaryWarning,
    ConvergenceError,
    ConvergenceWarning,
    ImportanceSamplingWarning,
)
from .families import Family, get_family
from .importance import (
    ImportanceSampler,
    block_degrees_of_freedom,
    conditional_mode,
    glmm_mixture,
    laplace_t,
)
from .laplace import laplace_fit
from .mcla import EffectShift, Evaluation, MCLAObjective
from .optimize import TrustStep, trust_maximize
from .parallel import ChunkStore, chunk_seeds, chunk_sizes, default_chunk_size
from .pql import SIGMA_FLOOR, pql_centre
from .problem import Problem
from .results import FitRound, GLMMResults
from .settings import FitSettings

FloatArray = NDArray[np.float64]

#: Default degrees of freedom of the Laplace-centred t proposal, chosen by measurement
#: (benchmarks/defaults.py): against 5, 10 and 50 it gave the smallest spread of the
#: maximised log-likelihood over seeds on salamander and Booth-Hobert.
LAPLACE_ZETA = 20.0

#: With ``recentre="auto"``: pilot rounds continue until the smallest per-block ESS at
#: the round's estimate is at least this fraction of the pilot size ...
AUTO_ESS_FRACTION = 0.1
#: ... and the round's maximum is a stationary point of its MCLA (Newton decrement,
#: in units of squared standard errors, below this) ...
AUTO_DECREMENT = 1e-3
#: ... or this many pilot rounds have been done. In the measured cases (BENCHMARKS.md)
#: every fit that settled did so by the second pilot; those that did not (one block of
#: hundreds of effects) never did, so more pilots only cost time before the warning.
AUTO_MAX_PILOTS = 4
#: Final rounds (at ``m`` draws) are repeated, re-centred, until settled, at most this often.
AUTO_MAX_FINALS = 2
#: With ``recentre="auto"`` a point whose smallest block ESS is below this fraction of
#: the round's draws (or below half the ESS at the round's start, if that is smaller)
#: is infeasible for the optimiser (see ``_CachingObjective``).
AUTO_ESS_GATE = 0.02
#: With ``recentre="auto"`` a round ends after this many trial points below the gate:
#: its maximum over the informative region is at the region's edge, and the next round
#: re-centres there (without it, such rounds took 30-45 trust iterations).
AUTO_MAX_GATED = 8
#: A degenerate round: its smallest block ESS at its estimate is below the gate. Pilots
#: stop after a degenerate pilot that did not at least double the previous pilot's ESS
#: (re-centring is not improving the proposal), and a degenerate final round is not
#: repeated: only a larger ``m`` or a better proposal helps then, which the warning says.
AUTO_IMPROVEMENT = 2.0


def glmm(
    fixed: str,
    random: str | Sequence[str],
    data: Any,
    family: str | Family = "bernoulli",
    m: int = 10_000,
    *,
    varcomps_names: Sequence[str] | None = None,
    varcomps_equal: Sequence[int] | None = None,
    rng: int | np.random.SeedSequence | np.random.Generator | None = None,
    blocks: str = "independent",
    importance: str = "laplace",
    recentre: int | str = "auto",
    pilot_m: int = 2_000,
    shift: bool = True,
    do_pql: bool = True,
    p1: float = 1 / 3,
    p2: float = 1 / 3,
    p3: float = 1 / 3,
    zeta: float | None = None,
    par_init: Sequence[float] | None = None,
    rmax: float = 1000.0,
    iterlim: int = 1000,
    chunk_size: int | None = None,
    na_action: str = "raise",
    progress: bool = False,
) -> GLMMResults:
    r"""Fit a GLMM by maximising the Monte Carlo likelihood approximation (MCLA).

    The model (ALGORITHM.md 1): given random effects
    :math:`u \sim N_q(0, D(\nu))`, with one variance :math:`\nu_t` per variance
    component, the responses are independent with canonical parameter

    .. math:: \eta = X\beta + Zu,

    and the likelihood :math:`f_\theta(y) = \int f_\theta(y\mid u) f_\theta(u)\,du` is
    approximated by importance sampling and maximised over
    :math:`\theta = (\beta, \nu)` with a trust-region method using the exact gradient
    and Hessian of the approximation.

    Parameters
    ----------
    fixed : str
        Fixed-effects formula with the response on the left, e.g. ``"Mate ~ 0 + Cross"``.
        Binomial responses are written ``"cbind(successes, failures) ~ x"``.
    random : str or sequence of str
        Random-effects formulas, one grouping factor each: ``["~ 0 + Female",
        "~ 0 + Male"]``. Grouping columns are factors whatever their dtype.
    data : pandas.DataFrame or mapping
        The data (never modified).
    family : {"bernoulli", "poisson", "binomial"} or Family
        Response family, with its canonical link.
    m : int
        Monte Carlo sample size (per block).
    varcomps_names : sequence of str, optional
        Names of the variance components (default: the grouping factors' names).
    varcomps_equal : sequence of int, optional
        Variance component (1..T in order of first appearance) of each random formula;
        ``[1, 1]`` ties two formulas to one variance.
    rng : int, SeedSequence or Generator, optional
        Seed of every random draw; the same seed gives the same fit.
    blocks : {"independent", "joint"}
        ``"independent"`` factorises the MCLA over the independent blocks of the
        random-effect design (ALGORITHM.md 12.1); ``"joint"`` uses one joint sample as
        R's glmm does.
    importance : {"laplace", "glmm"}
        Proposal: a per-block Student t centred at the conditional mode
        (ALGORITHM.md 12.2), or R glmm's three-part mixture (3.1) per block.
    recentre : int or "auto"
        Number of pilot rounds before the final one. Each round maximises the MCLA of
        a fresh sample drawn from a proposal rebuilt at the previous round's estimate
        (Geyer 1994); the last round uses ``m`` draws. ``"auto"`` runs pilot rounds
        until the smallest per-block ESS at a pilot's estimate is at least 10% of its
        draws and the estimate is a stationary point of the pilot's MCLA (at most 4
        pilots, then at most 2 final rounds). Where the sample is degenerate (ESS below
        2% of the draws, typical of blocks of thousands of effects) re-centring stops
        as soon as it stops doubling the ESS, and the final round is not repeated; the
        fit then warns. ``0`` samples once, from the centre, as R does.
    pilot_m : int
        Sample size of every pilot round (at most ``m``).
    shift : bool
        With ``importance="laplace"``, let the draws move with the fixed effects,
        ``u_k(beta) = w_k + A (beta - beta_0)`` with ``A`` the slope of the conditional
        mode (an exact change of variables; see :class:`pyglmm.mcla.EffectShift`). This
        removes most of the Monte Carlo error where fixed and random effects are
        confounded. ``False`` keeps the draws fixed as R's glmm does.
    do_pql : bool
        Centre the first proposal at PQL estimates; if false at ``beta = 0, nu = 1``.
    p1, p2, p3 : float
        Mixture probabilities of the ``"glmm"`` proposal (sum 1, ``p1 > 0``).
    zeta : float, optional
        Degrees of freedom of the t proposals (real, positive), the same for every
        block. Default: 5 for ``importance="glmm"`` (R's default); for
        ``importance="laplace"``, ``max(20, d)`` for a block of ``d`` random effects
        (chosen by measurement, BENCHMARKS.md: heavy tails help small blocks and cost
        large ones).
    par_init : sequence of float, optional
        Start ``(beta, nu)``; skips PQL and centres the first proposal there.
    rmax : float
        Largest trust-region radius.
    iterlim : int
        Largest number of trust-region iterations per round.
    chunk_size : int, optional
        Rows of the Monte Carlo sample processed at once (memory is bounded by
        ``chunk_size x n``).
    na_action : {"raise", "drop"}
        Missing values in a used column raise an error, or their rows are dropped
        with a warning.
    progress : bool
        Print each stage to standard error: the PQL and Laplace centres (with their
        times), the start of each sampling round and every trust-region iteration.
        The full iteration trace of every round is kept in ``fit.rounds[i].trace``
        (R's ``debug`` output).

    Returns
    -------
    GLMMResults

    Examples
    --------
    >>> import pyglmm as pg
    >>> sal = pg.datasets.load_salamander()
    >>> fit = pg.glmm("Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
    ...               data=sal, family="bernoulli", m=2_000, rng=1234,
    ...               varcomps_names=["F", "M"])
    >>> fit.trust_converged
    True
    """
    started = time.perf_counter()
    fam = get_family(family)
    settings = validation.check_settings(
        m=m, blocks=blocks, importance=importance, recentre=recentre, pilot_m=pilot_m,
        p=(p1, p2, p3), zeta=_default_zeta(importance) if zeta is None else zeta, rmax=rmax,
        iterlim=iterlim, chunk_size=chunk_size, shift=shift, do_pql=do_pql,
        # the default Laplace t grows its degrees of freedom with the block
        zeta_per_block=zeta is None and importance == "laplace",
        na_action=na_action, rng=rng,
    )
    design = build_design(
        fixed, random, data, fam, varcomps_names=varcomps_names,
        varcomps_equal=varcomps_equal, na_action=na_action,
    )
    theta_init = validation.check_par_init(par_init, design.param_names, design.n_fixed)
    if theta_init is not None:
        settings = dataclasses.replace(settings, par_init=tuple(theta_init.tolist()))

    try:
        with threadpool_limits(limits=1, user_api="blas"):
            fit = _fit(design, fam, settings, progress, started)
    except np.linalg.LinAlgError as exc:
        raise ConvergenceError(
            f"a curvature matrix became numerically singular ({exc}); the linear predictor "
            "is probably extreme at the start. Give par_init with moderate fixed effects "
            "and positive variance components, or rescale the covariates."
        ) from None
    _warn_after_fit(fit)
    return fit


def _fit(
    design: Design,
    fam: Family,
    settings: FitSettings,
    progress: bool,
    started: float,
) -> GLMMResults:
    """The fit proper: centre, sampling rounds, results (see :func:`glmm`)."""
    n_fixed = design.n_fixed
    seed = settings.seed_sequence()
    theta_init = (None if settings.par_init is None
                  else np.asarray(settings.par_init, dtype=np.float64))
    t0 = time.perf_counter()
    problem = Problem.build(design, fam, joint=(settings.blocks == "joint"))
    if theta_init is not None:
        beta_pql, nu_pql = theta_init[:n_fixed], theta_init[n_fixed:]
        variances = np.maximum(nu_pql, SIGMA_FLOOR**2)
        u_pql = np.zeros(problem.n_effects)
    elif settings.do_pql:
        _say(progress, f"PQL centre: {problem.n_effects} random effects in "
             f"{problem.blocks.n_blocks} blocks (largest {problem.blocks.block_sizes.max()})")
        pql = pql_centre(problem)
        beta_pql, nu_pql, variances, u_pql = pql.beta, pql.nu, pql.variances, pql.u
        _say(progress, f"PQL centre done ({time.perf_counter() - t0:.1f} s)")
    else:
        beta_pql = np.zeros(n_fixed)
        nu_pql = np.ones(design.n_components)
        variances, u_pql = nu_pql.copy(), np.zeros(problem.n_effects)
    theta = np.concatenate([beta_pql, variances])
    if settings.importance == "laplace" and theta_init is None:
        # centre the first proposal at the Laplace estimate (ALGORITHM.md 12.2)
        laplace = laplace_fit(problem, beta_pql, variances)
        theta = np.concatenate([laplace.beta, np.maximum(laplace.nu, SIGMA_FLOOR**2)])
        _say(progress, f"Laplace centre done ({time.perf_counter() - t0:.1f} s), "
             f"Laplace loglik {laplace.loglik:.6f}")
    timings = {"design_pql": time.perf_counter() - t0}

    size = settings.chunk_size or default_chunk_size(design.n_obs)
    rounds: list[FitRound] = []
    mode: FloatArray | None = None
    mode_factor: BlockCholesky | None = None  # curvature factor at ``mode``
    final_eval: Evaluation | None = None
    auto = settings.auto_recentre
    n_pilots = AUTO_MAX_PILOTS if auto else int(settings.recentre)
    n_finals = AUTO_MAX_FINALS if auto else 1
    r = 0
    pilots_done = finals_done = 0
    while True:
        final = pilots_done >= n_pilots
        m_round = settings.m if final else min(settings.m, settings.pilot_m)
        t_sample = time.perf_counter()
        _say(progress, f"round {r + 1} ({'final' if final else 'pilot'}): m = {m_round:,}")
        beta_c = theta[:n_fixed]
        nu_c = np.maximum(theta[n_fixed:], SIGMA_FLOOR**2)
        theta = np.concatenate([beta_c, nu_c])  # start where the proposal is centred
        sampler: ImportanceSampler
        shift: EffectShift | None = None
        if settings.importance == "laplace":
            df = (block_degrees_of_freedom(settings.zeta, problem.blocks.block_sizes)
                  if settings.zeta_per_block else settings.zeta)
            sampler, mode, slope = laplace_t(
                problem, beta_c, nu_c, df, start=mode, factor=mode_factor
            )
            mode_factor = sampler.components[0].cholesky
            if settings.shift:
                shift = EffectShift.build(problem, slope, beta_c)
        elif r == 0:
            sampler = glmm_mixture(
                problem, beta_pql, variances, u_pql, settings.p, settings.zeta
            )
        else:
            mode, _ = conditional_mode(problem, beta_c, nu_c, start=mode)
            sampler = glmm_mixture(
                problem, beta_c, nu_c, mode, settings.p, settings.zeta
            )
        sizes = chunk_sizes(m_round, size)
        store = ChunkStore(
            problem, sampler, chunk_seeds(seed, r, len(sizes)), sizes, shift=shift
        )
        objective = _CachingObjective(
            MCLAObjective(problem, store, sizes, shift=shift),
            ess_floor=AUTO_ESS_GATE * m_round if auto else 0.0,
            start=theta,
        )
        if auto:  # a start that is itself below the gate lowers the gate
            start_ess = float(objective.evaluation_at(theta).block_ess.min())
            objective.ess_floor = min(objective.ess_floor, 0.5 * start_ess)
        t_opt = time.perf_counter()
        callback = _progress_printer(r, final) if progress else None
        _say(progress, f"round {r + 1} proposal built and sample drawn "
             f"({t_opt - t_sample:.1f} s)")
        try:
            result = trust_maximize(
                objective, theta, rinit=10.0, rmax=settings.rmax,
                iterlim=settings.iterlim, callback=callback,
                max_infeasible=AUTO_MAX_GATED if auto else None,
            )
        except ValueError as exc:
            raise ConvergenceError(
                f"the Monte Carlo likelihood is not finite at the start {theta.tolist()}; "
                "give par_init with positive variance components"
            ) from exc
        theta = result.argument
        final_eval = objective.evaluation_at(theta)
        min_ess = float(final_eval.block_ess.min())
        settled = _newton_decrement(final_eval) < AUTO_DECREMENT and (
            min_ess >= AUTO_ESS_FRACTION * m_round
        )
        rounds.append(FitRound(
            sampler=sampler.kind, m=m_round, converged=result.converged,
            iterations=result.iterations, n_evaluations=objective.inner.n_evaluations,
            estimate=theta.copy(), value=result.value, min_ess=min_ess, settled=settled,
            seconds_sampling=t_opt - t_sample,
            seconds_optimising=time.perf_counter() - t_opt,
            trace=result.trace,
            at_gate_edge=result.at_feasible_edge,
        ))
        r += 1
        degenerate = min_ess < AUTO_ESS_GATE * m_round
        if final:
            finals_done += 1
            if settled or finals_done >= n_finals or (auto and degenerate):
                break
        else:
            pilots_done += 1
            stalled = degenerate and len(rounds) >= 2 and (
                min_ess < AUTO_IMPROVEMENT * rounds[-2].min_ess
            )
            if auto and (settled or stalled):
                pilots_done = n_pilots  # the proposal fits, or re-centring does not help
    assert final_eval is not None
    timings["sampling"] = sum(rd.seconds_sampling for rd in rounds)
    timings["optimisation"] = sum(rd.seconds_optimising for rd in rounds)

    return GLMMResults.from_fit(
        design=design, problem=problem, family=fam, evaluation=final_eval,
        theta=theta, rounds=tuple(rounds), beta_pql=beta_pql, nu_pql=nu_pql,
        u_pql=problem.blocks.effects_to_design_order(u_pql), settings=settings,
        timings=timings | {"total": time.perf_counter() - started},
    )


class _CachingObjective:
    """Wraps the MCLA for the optimiser and keeps the last full evaluation.

    Points where some block's effective sample size is below ``ess_floor`` are
    reported as infeasible (value ``-inf``): there the importance sample says nothing
    reliable about the likelihood, and a maximum found there is an artefact of a few
    draws. The optimiser then stays where the sample is informative, and re-centring
    moves the proposal on.
    """

    def __init__(
        self, inner: MCLAObjective, ess_floor: float = 0.0, start: FloatArray | None = None
    ) -> None:
        self.inner = inner
        self.ess_floor = ess_floor
        self._start = None if start is None else np.asarray(start, np.float64).tobytes()
        self._last: tuple[bytes, Evaluation] | None = None

    def evaluation_at(self, theta: FloatArray) -> Evaluation:
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ev = self.inner.evaluate(theta)
        self._last = (key, ev)
        return ev

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        ev = self.evaluation_at(theta)
        at_start = np.asarray(theta, np.float64).tobytes() == self._start
        gated = np.isfinite(ev.value) and float(ev.block_ess.min()) < self.ess_floor
        if gated and not at_start:
            return -np.inf, ev.gradient, ev.hessian
        return ev.value, ev.gradient, ev.hessian


def _default_zeta(importance: str) -> float:
    """R glmm's 5 for its mixture; 20 for the Laplace-centred t (measured, BENCHMARKS.md)."""
    return LAPLACE_ZETA if importance == "laplace" else 5.0


def _newton_decrement_of(fit: GLMMResults) -> float:
    """Newton decrement at the returned estimate (inf if the Hessian is not negative definite)."""
    try:
        np.linalg.cholesky(-fit.loglike_hessian)
        step = np.linalg.solve(-fit.loglike_hessian, fit.loglike_gradient)
    except np.linalg.LinAlgError:
        return np.inf
    return float(abs(fit.loglike_gradient @ step))


def _newton_decrement(evaluation: Evaluation) -> float:
    """``g^T (-H)^{-1} g``: how far the MCLA maximum is, in squared standard errors."""
    if not np.isfinite(evaluation.value):
        return np.inf
    try:
        step = np.linalg.solve(-evaluation.hessian, evaluation.gradient)
    except np.linalg.LinAlgError:
        return np.inf
    return float(abs(evaluation.gradient @ step))


def _say(progress: bool, message: str) -> None:
    """Print a progress line to stderr when ``progress`` is on."""
    if progress:
        print(f"[pyglmm] {message}", file=sys.stderr, flush=True)


def _progress_printer(round_index: int, final: bool) -> Any:
    label = "final round" if final else f"pilot round {round_index + 1}"

    def show(step: TrustStep) -> None:
        status = "accepted" if step.accepted else "rejected"
        print(
            f"[pyglmm] {label}, iteration {step.iteration}: "
            f"loglik {step.value:.6f} -> {step.trial_value:.6f} ({status}, "
            f"{step.step_type}, radius {step.radius:.3g})",
            file=sys.stderr,
            flush=True,
        )

    return show


def _warn_after_fit(fit: GLMMResults) -> None:
    if fit.trust_converged and not fit.rounds[-1].settled and fit.settings.auto_recentre:
        warnings.warn(
            "the Monte Carlo likelihood has no reliable maximum at this m: the optimiser "
            "kept reaching points where few draws carry the weight, and re-centring did "
            "not settle. The estimates are approximate; raise m (e.g. tenfold) or compare "
            "with a Laplace fit (lme4's glmer).",
            ImportanceSamplingWarning,
            stacklevel=3,
        )
    if not fit.trust_converged:
        warnings.warn(
            f"the trust-region optimiser stopped after {fit.iterations} iterations without "
            "converging; the estimates are not the Monte Carlo MLE. Refit with "
            "par_init=fit.params() (and perhaps a larger iterlim).",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif _newton_decrement_of(fit) > 1e-2 and not fit.rounds[-1].at_gate_edge:
        # (at the gate's edge the warning above already says why it is no maximum)
        warnings.warn(
            "the trust-region optimiser stopped, but not at a maximum of the Monte Carlo "
            "likelihood (its Hessian is not negative definite or its gradient is not "
            "small there); the estimates are unreliable. Refit with par_init set to "
            "sensible values, or raise m.",
            ConvergenceWarning,
            stacklevel=3,
        )
    smallest = float(np.min(fit.block_ess))
    if smallest < 0.01 * fit.m:
        size = int(fit.block_sizes[int(np.argmin(fit.block_ess))])
        if size >= LARGE_BLOCK:
            remedy = (f"its block has {size} random effects, too many dimensions for "
                      "importance sampling at any practical m: treat the estimates as "
                      "approximate")
        elif fit.importance == "glmm":
            remedy = "raise m, or change p1, p2, p3 (or use importance='laplace')"
        else:
            remedy = "raise m, or re-centre (recentre='auto')"
        warnings.warn(
            f"the smallest per-block effective sample size is {smallest:.1f} of m = {fit.m} "
            "draws (< 1%): the importance weights are degenerate and the Monte Carlo "
            f"errors unreliable; {remedy}.",
            ImportanceSamplingWarning,
            stacklevel=3,
        )
    at_boundary = [name for name, nu in zip(fit.varcomps_names, fit.nu, strict=True)
                   if nu < BOUNDARY_NU]
    if at_boundary:
        warnings.warn(
            f"variance component(s) {at_boundary} are at the boundary 0 of the parameter "
            "space: their standard errors are not available (NaN) and Wald tests and "
            "intervals do not apply to them",
            BoundaryWarning,
            stacklevel=3,
        )
