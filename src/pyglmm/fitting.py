"""The fit driver: the centre, the sampling rounds and when to re-centre.

:func:`run_fit` is the fit proper behind :func:`pyglmm.glmm`: the PQL and Laplace
centre, then sampling rounds, each a proposal built at the previous round's estimate,
a fresh sample and a trust-region maximisation of its MCLA (docs/method.md), until
the policy of ``recentre`` (the ``AUTO_*`` constants for ``"auto"``) ends the fit.
One round's proposal, sample and MCLA are built by :func:`pyglmm.rounds.build_round`
(re-exported here, with ``round_sample`` and ``default_zeta``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from .backends import Backend, SerialBackend
from .blocklinalg import BlockCholesky
from .design import Design
from .errors import ConvergenceError
from .events import FitEvent, FitReporter
from .families import Family
from .laplace import laplace_fit
from .mcla import Evaluation, MCLAObjective
from .optimize import TrustResult, TrustStep, trust_maximize
from .pql import SIGMA_FLOOR, pql_centre
from .problem import Problem
from .results import FitRound, GLMMResults
from .rounds import (  # noqa: F401 - re-exported: tests and benchmarks build rounds here
    LAPLACE_ZETA,
    MIXTURE_ZETA,
    Round,
    build_round,
    default_zeta,
    release_round,
    round_sample,
)
from .settings import FitSettings

FloatArray = NDArray[np.float64]

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


def run_fit(
    design: Design,
    family: Family,
    settings: FitSettings,
    progress: bool | None = False,
    started: float | None = None,
    backend: Backend | None = None,
    callback: Callable[[FitEvent], object] | None = None,
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
    progress : bool or None
        Show the fit's progress on standard error (:class:`pyglmm.events.FitReporter`).
    started : float, optional
        ``time.perf_counter()`` when the fit began (for ``timings["total"]``;
        default: now).
    backend : Backend, optional
        Where the sampling rounds' chunks live and are evaluated
        (:func:`pyglmm.backends.get_backend`; default: serial). The numbers do not
        depend on it.
    callback : callable, optional
        Called with every :class:`pyglmm.events.FitEvent` of the fit.

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
    backend = SerialBackend() if backend is None else backend
    report = FitReporter(callback, progress, started)
    try:
        return _run_fit(design, family, settings, report, backend)
    finally:
        report.close()


def _run_fit(
    design: Design, family: Family, settings: FitSettings, report: FitReporter,
    backend: Backend,
) -> GLMMResults:
    """:func:`run_fit` once its reporter is made."""
    started = report.started
    n_fixed = design.n_fixed
    t0 = time.perf_counter()
    problem = Problem.build(design, family, joint=(settings.blocks == "joint"))
    if settings.par_init is not None:
        theta_init = np.asarray(settings.par_init, dtype=np.float64)
        beta_pql, nu_pql = problem.params.beta(theta_init), problem.params.psi(theta_init)
        variances = problem.params.floor_variances(nu_pql, SIGMA_FLOOR**2)
        u_pql = np.zeros(problem.n_effects)
    elif settings.do_pql:
        report.emit("centre", f"PQL centre: {problem.n_effects} random effects in "
                    f"{problem.blocks.n_blocks} blocks (largest "
                    f"{problem.blocks.block_sizes.max()})")
        pql = pql_centre(problem)
        beta_pql, nu_pql, variances, u_pql = pql.beta, pql.nu, pql.variances, pql.u
        report.emit("centre", f"PQL centre done ({time.perf_counter() - t0:.1f} s)")
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
        report.emit("centre", f"Laplace centre done ({time.perf_counter() - t0:.1f} s), "
                    f"Laplace loglik {laplace.loglik:.6f}", value=float(laplace.loglik))
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
        report.emit("round", f"round {r + 1} ({'final' if final else 'pilot'}): "
                    f"m = {m_round:,} on {backend.description}", round_index=r, final=final,
                    m=m_round)
        built = build_round(
            problem, settings, r, theta, m_round, mode=mode, mode_factor=mode_factor,
            centre_effects=u_pql if r == 0 else None, backend=backend,
            on_chunk=_chunk_reporter(report, r, final, m_round) if report.active else None,
            level="bridge" if final else "laplace",
        )
        try:
            result, final_eval, t_opt = _maximise_round(built, settings, report, final, auto,
                                                        t_sample)
        finally:
            release_round(built.objective)
        mode, mode_factor = built.mode, built.mode_factor
        theta = result.argument
        min_ess = float(final_eval.block_ess.min())
        settled = _newton_decrement(final_eval) < AUTO_DECREMENT and (
            min_ess >= AUTO_ESS_FRACTION * m_round
        )
        rounds.append(FitRound(
            sampler=built.sampler.kind, m=m_round, converged=result.converged,
            iterations=result.iterations, n_evaluations=built.objective.n_evaluations,
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
    report.emit("done", f"fit done in {time.perf_counter() - started:.1f} s "
                f"({len(rounds)} sampling rounds)", value=float(final_eval.value))
    return GLMMResults.from_fit(
        design=design, problem=problem, family=family, evaluation=final_eval,
        theta=theta, rounds=tuple(rounds), beta_pql=beta_pql, nu_pql=nu_pql,
        u_pql=problem.blocks.effects_to_design_order(u_pql), settings=settings,
        timings=timings | {"total": time.perf_counter() - started},
        sample=built.objective, backend=backend.description,
    )


def _maximise_round(
    built: Round, settings: FitSettings, report: FitReporter, final: bool, auto: bool,
    t_sample: float,
) -> tuple[TrustResult, Evaluation, float]:
    """Maximise one round's MCLA from its centre (gated by ESS with ``auto``).

    Returns the optimiser's result, the evaluation at its argument and the time
    the optimisation started.
    """
    r, m_round = built.index, built.m
    theta = built.theta  # start where the proposal is centred
    objective = _CachingObjective(
        built.objective, ess_floor=AUTO_ESS_GATE * m_round if auto else 0.0, start=theta
    )
    if auto:  # a start that is itself below the gate lowers the gate
        start_ess = float(objective.evaluation_at(theta).block_ess.min())
        objective.ess_floor = min(objective.ess_floor, 0.5 * start_ess)
    t_opt = time.perf_counter()
    callback = (_iteration_reporter(report, r, final, m_round, objective)
                if report.active else None)
    report.emit("sampled", f"round {r + 1} proposal built and sample drawn "
                f"({t_opt - t_sample:.1f} s)", round_index=r, final=final, m=m_round,
                n_chunks=len(built.sizes))
    try:
        result = trust_maximize(
            objective, theta, rinit=10.0, rmax=settings.rmax,
            iterlim=settings.iterlim, callback=callback,
            max_infeasible=AUTO_MAX_GATED if auto else None, stop_before_small_step=True,
        )
    except ValueError as exc:
        raise ConvergenceError(
            f"the Monte Carlo likelihood is not finite at the start {theta.tolist()}; "
            "give par_init with positive variance components"
        ) from exc
    report.emit("round_done", f"round {r + 1} maximised in {result.iterations} iterations "
                f"({time.perf_counter() - t_opt:.1f} s): loglik {result.value:.6f}",
                round_index=r, final=final, m=m_round, value=float(result.value))
    return result, objective.evaluation_at(result.argument), t_opt


class _CachingObjective:
    """Wraps the MCLA for the optimiser and keeps its last two full evaluations.

    Two, because the optimiser's result is its current point, which is the trial
    before last when the last trial was rejected (or not evaluated): the round's
    closing evaluation there is then a lookup, not another pass over the sample.

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
        self._recent: list[tuple[bytes, Evaluation]] = []  # the last two, newest last
        #: The gradient norm at every point evaluated (for the progress display).
        self.gradient_norms: dict[bytes, float] = {}

    def evaluation_at(self, theta: FloatArray) -> Evaluation:
        """The MCLA's full evaluation at ``theta`` (the last two are kept)."""
        key = np.asarray(theta, dtype=np.float64).tobytes()
        for kept, ev in self._recent:
            if kept == key:
                return ev
        ev = self.inner.evaluate(theta)
        self._recent = [*self._recent[-1:], (key, ev)]
        self.gradient_norms[key] = float(np.linalg.norm(ev.gradient))
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


def _chunk_reporter(
    report: FitReporter, round_index: int, final: bool, m_round: int
) -> Callable[[int, int], None]:
    """Reports each chunk of a round's sample as it is first drawn here."""

    def show(drawn: int, n_chunks: int) -> None:
        report.emit("chunk", f"round {round_index + 1}: chunk {drawn} of {n_chunks} drawn",
                    round_index=round_index, final=final, m=m_round, chunk=drawn,
                    n_chunks=n_chunks)

    return show


def _iteration_reporter(
    report: FitReporter, round_index: int, final: bool, m_round: int,
    objective: _CachingObjective,
) -> Callable[[TrustStep], None]:
    """The optimiser's callback that reports each trust-region iteration."""
    label = "final round" if final else f"pilot round {round_index + 1}"

    def show(step: TrustStep) -> None:
        status = "accepted" if step.accepted else "rejected"
        here = np.asarray(step.argument, np.float64)
        report.emit(
            "iteration",
            f"{label}, iteration {step.iteration}: loglik {step.value:.6f} -> "
            f"{step.trial_value:.6f} ({status}, {step.step_type}, radius {step.radius:.3g})",
            round_index=round_index, final=final, m=m_round, iteration=step.iteration,
            value=float(step.value), step_norm=float(step.step_norm),
            accepted=bool(step.accepted),
            grad_norm=objective.gradient_norms.get(here.tobytes()),
        )

    return show
