"""The fit driver: the centre, the sampling rounds and when to re-centre.

:func:`run_fit` is the fit proper behind :func:`pyglmm.glmm`: the PQL and Laplace
centre, then sampling rounds, each a proposal built at the previous round's estimate,
a fresh sample and a trust-region maximisation of its MCLA (docs/method.md), until
the policy of ``recentre`` (the ``AUTO_*`` constants for ``"auto"``) ends the fit.
:func:`build_round` builds the proposal, the sample and the MCLA of one round, as the
driver does; tests and benchmarks build their objectives with it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blocklinalg import BlockCholesky
from .design import Design
from .errors import ConvergenceError
from .families import Family
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
from .parallel import (
    DEFAULT_CACHE_BYTES,
    ChunkStore,
    chunk_seeds,
    chunk_sizes,
    default_chunk_size,
)
from .pql import SIGMA_FLOOR, pql_centre
from .problem import Problem
from .results import FitRound, GLMMResults
from .settings import FitSettings

FloatArray = NDArray[np.float64]

#: Default degrees of freedom of the Laplace-centred t proposal, chosen by measurement
#: (benchmarks/defaults.py): against 5, 10 and 50 it gave the smallest spread of the
#: maximised log-likelihood over seeds on salamander and Booth-Hobert.
LAPLACE_ZETA = 20.0
#: R glmm's default degrees of freedom of the t component of its mixture.
MIXTURE_ZETA = 5.0

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


def default_zeta(importance: str) -> float:
    """``glmm()``'s default t degrees of freedom for the ``importance`` proposal.

    R glmm's 5 for its mixture; 20 for the Laplace-centred t (measured, BENCHMARKS.md),
    which the fit grows with the block (``zeta_per_block``).
    """
    return LAPLACE_ZETA if importance == "laplace" else MIXTURE_ZETA


@dataclass(frozen=True)
class Round:
    """The proposal, the sample and the MCLA of one sampling round.

    Attributes
    ----------
    index : int
        The round's number from 0 (its chunks' seed streams are spawned with it).
    m : int
        Draws of the round (per block).
    theta : ndarray
        Where the proposal is centred, ``(beta, nu)`` with ``nu`` at least
        ``SIGMA_FLOOR**2``; the optimiser starts there.
    sampler : ImportanceSampler
        The proposal.
    shift : EffectShift or None
        How the draws follow the fixed effects (``settings.shift``), if they do.
    sizes : tuple of int
        Rows of each chunk of the sample.
    store : ChunkStore
        The chunks of the sample.
    objective : MCLAObjective
        The round's MCLA.
    mode : ndarray or None
        Conditional mode of the random effects at ``theta`` (None if none was
        computed); the next round starts its Newton iterations there.
    mode_factor : BlockCholesky or None
        Curvature factor at ``mode`` of the Laplace t (None for the mixture).
    """

    index: int
    m: int
    theta: FloatArray
    sampler: ImportanceSampler
    shift: EffectShift | None
    sizes: tuple[int, ...]
    store: ChunkStore
    objective: MCLAObjective
    mode: FloatArray | None
    mode_factor: BlockCholesky | None


def round_sample(
    problem: Problem,
    sampler: ImportanceSampler,
    seeds: Sequence[np.random.SeedSequence],
    sizes: Sequence[int],
    shift: EffectShift | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> tuple[ChunkStore, MCLAObjective]:
    """The chunked sample drawn from ``sampler`` and its MCLA.

    Parameters
    ----------
    problem : Problem
    sampler : ImportanceSampler
    seeds : sequence of SeedSequence
        One stream per chunk (:func:`pyglmm.parallel.chunk_seeds`).
    sizes : sequence of int
        Rows of each chunk.
    shift : EffectShift, optional
        The draws follow the fixed effects.
    cache_bytes : int
        Memory budget of the store (:class:`pyglmm.parallel.ChunkStore`).

    Returns
    -------
    (ChunkStore, MCLAObjective)
    """
    store = ChunkStore(problem, sampler, seeds, sizes, cache_bytes=cache_bytes, shift=shift)
    return store, MCLAObjective(problem, store, sizes, shift=shift)


def build_round(
    problem: Problem,
    settings: FitSettings,
    round_index: int,
    theta: FloatArray,
    m_round: int,
    *,
    mode: FloatArray | None = None,
    mode_factor: BlockCholesky | None = None,
    centre_effects: FloatArray | None = None,
) -> Round:
    """Build one sampling round as :func:`run_fit` does: proposal, sample and MCLA.

    Parameters
    ----------
    problem : Problem
    settings : FitSettings
        The proposal (``importance``, ``zeta``, ``zeta_per_block``, ``p``, ``shift``),
        ``chunk_size`` and the root seed.
    round_index : int
        The round's number from 0: the chunks' seed streams are
        ``chunk_seeds(settings.seed_sequence(), round_index, n_chunks)``.
    theta : ndarray
        The centre ``(beta, nu)``; ``nu`` is raised to at least ``SIGMA_FLOOR**2``.
    m_round : int
        Draws of the round (per block).
    mode, mode_factor : optional
        The previous round's conditional mode and curvature factor (warm starts).
    centre_effects : ndarray, optional
        With ``importance="glmm"``: the random effects of the mixture's centre (the
        PQL ``u*`` in the first round); without them the conditional mode at
        ``theta`` is computed. The Laplace t is always centred at the mode.

    Returns
    -------
    Round

    Examples
    --------
    >>> import numpy as np
    >>> import pyglmm as pg
    >>> from pyglmm.problem import Problem
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), m=500,
    ...               rng=1, recentre=0, par_init=[5.0, 2.0])
    >>> problem = Problem.build(fit.design, fit.family)
    >>> first = build_round(problem, fit.settings, 0, np.array([5.0, 2.0]), fit.m)
    >>> first.objective.evaluate(fit.rounds[0].estimate).value == fit.rounds[0].value
    True
    """
    params = problem.params
    beta_c = params.beta(theta)
    nu_c = params.floor_variances(params.psi(theta), SIGMA_FLOOR**2)
    centre = np.concatenate([beta_c, nu_c])
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
    elif centre_effects is not None:
        sampler = glmm_mixture(problem, beta_c, nu_c, centre_effects, settings.p, settings.zeta)
    else:
        mode, _ = conditional_mode(problem, beta_c, nu_c, start=mode)
        sampler = glmm_mixture(problem, beta_c, nu_c, mode, settings.p, settings.zeta)
    size = settings.chunk_size or default_chunk_size(problem.design.n_obs)
    sizes = chunk_sizes(m_round, size)
    seeds = chunk_seeds(settings.seed_sequence(), round_index, len(sizes))
    store, objective = round_sample(problem, sampler, seeds, sizes, shift=shift)
    return Round(
        index=round_index, m=m_round, theta=centre, sampler=sampler, shift=shift,
        sizes=tuple(sizes), store=store, objective=objective, mode=mode,
        mode_factor=mode_factor,
    )


def run_fit(
    design: Design,
    family: Family,
    settings: FitSettings,
    progress: bool = False,
    started: float | None = None,
) -> GLMMResults:
    """Fit the model of ``design``: the centre, the sampling rounds, the results.

    The fit proper behind :func:`pyglmm.glmm`, which checks the arguments, builds the
    design and the settings and calls this with BLAS limited to one thread.

    Parameters
    ----------
    design : Design
    family : Family
    settings : FitSettings
        Every setting, the seed and the start ``par_init`` included.
    progress : bool
        Print each stage to standard error.
    started : float, optional
        ``time.perf_counter()`` when the fit began (for ``timings["total"]``;
        default: now).

    Returns
    -------
    GLMMResults

    Raises
    ------
    pyglmm.errors.ConvergenceError
        The MCLA is not finite at a round's start.
    numpy.linalg.LinAlgError
        A curvature matrix is numerically singular (:func:`pyglmm.glmm` says what to do).
    """
    started = time.perf_counter() if started is None else started
    n_fixed = design.n_fixed
    t0 = time.perf_counter()
    problem = Problem.build(design, family, joint=(settings.blocks == "joint"))
    if settings.par_init is not None:
        theta_init = np.asarray(settings.par_init, dtype=np.float64)
        beta_pql, nu_pql = problem.params.beta(theta_init), problem.params.psi(theta_init)
        variances = problem.params.floor_variances(nu_pql, SIGMA_FLOOR**2)
        u_pql = np.zeros(problem.n_effects)
    elif settings.do_pql:
        _say(progress, f"PQL centre: {problem.n_effects} random effects in "
             f"{problem.blocks.n_blocks} blocks (largest {problem.blocks.block_sizes.max()})")
        pql = pql_centre(problem)
        beta_pql, nu_pql, variances, u_pql = pql.beta, pql.nu, pql.variances, pql.u
        _say(progress, f"PQL centre done ({time.perf_counter() - t0:.1f} s)")
    else:
        beta_pql = np.zeros(n_fixed)
        nu_pql = problem.params.start()
        variances, u_pql = nu_pql.copy(), np.zeros(problem.n_effects)
    theta = np.concatenate([beta_pql, variances])
    if settings.importance == "laplace" and settings.par_init is None:
        # centre the first proposal at the Laplace estimate (docs/method.md)
        laplace = laplace_fit(problem, beta_pql, variances)
        theta = np.concatenate(
            [laplace.beta, problem.params.floor_variances(laplace.nu, SIGMA_FLOOR**2)])
        _say(progress, f"Laplace centre done ({time.perf_counter() - t0:.1f} s), "
             f"Laplace loglik {laplace.loglik:.6f}")
    timings = {"design_pql": time.perf_counter() - t0}

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
        built = build_round(
            problem, settings, r, theta, m_round, mode=mode, mode_factor=mode_factor,
            centre_effects=u_pql if r == 0 else None,
        )
        mode, mode_factor = built.mode, built.mode_factor
        theta = built.theta  # start where the proposal is centred
        objective = _CachingObjective(
            built.objective, ess_floor=AUTO_ESS_GATE * m_round if auto else 0.0, start=theta
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
            sampler=built.sampler.kind, m=m_round, converged=result.converged,
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
        design=design, problem=problem, family=family, evaluation=final_eval,
        theta=theta, rounds=tuple(rounds), beta_pql=beta_pql, nu_pql=nu_pql,
        u_pql=problem.blocks.effects_to_design_order(u_pql), settings=settings,
        timings=timings | {"total": time.perf_counter() - started},
        sample=built.objective,
    )


class _CachingObjective:
    """Wraps the MCLA for the optimiser and keeps the last full evaluation.

    Points where some block's effective sample size is below ``ess_floor`` are
    reported as infeasible (value ``-inf``): there the importance sample says nothing
    reliable about the likelihood, and a maximum found there is an artefact of a few
    draws. The optimiser then stays where the sample is informative, and re-centring
    moves the proposal on. The start ``start`` is never infeasible.

    Parameters
    ----------
    inner : MCLAObjective
    ess_floor : float
        The gate (0: none).
    start : ndarray, optional
        The optimiser's start.
    """

    def __init__(
        self, inner: MCLAObjective, ess_floor: float = 0.0, start: FloatArray | None = None
    ) -> None:
        self.inner = inner
        self.ess_floor = ess_floor
        self._start = None if start is None else np.asarray(start, np.float64).tobytes()
        self._last: tuple[bytes, Evaluation] | None = None

    def evaluation_at(self, theta: FloatArray) -> Evaluation:
        """The MCLA's full evaluation at ``theta`` (the last one is kept)."""
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ev = self.inner.evaluate(theta)
        self._last = (key, ev)
        return ev

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        """Value, gradient and Hessian at ``theta`` (value ``-inf`` where gated)."""
        ev = self.evaluation_at(theta)
        at_start = np.asarray(theta, np.float64).tobytes() == self._start
        gated = np.isfinite(ev.value) and float(ev.block_ess.min()) < self.ess_floor
        if gated and not at_start:
            return -np.inf, ev.gradient, ev.hessian
        return ev.value, ev.gradient, ev.hessian


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


def _progress_printer(round_index: int, final: bool) -> Callable[[TrustStep], None]:
    """The optimiser's callback that prints each trust-region iteration to stderr."""
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
