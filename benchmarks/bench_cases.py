"""The measurements behind ``benchmarks/run.py``, one case per fresh process.

``python benchmarks/bench_cases.py '<json spec>'`` runs one case and prints its results
as lines ``BENCH {json}`` as soon as each stage is done; the runner merges them, so a
case stopped by its time limit still reports the stages it finished. Peak memory is the
process's own ``ru_maxrss`` (the case runs alone in it).

Cases (``spec["kind"]``):

* ``fit``: fits of a named data set (salamander, the simulated Poisson, binomial and
  crossed Bernoulli designs), the median of ``repeats`` runs, the time of
  ``se() + mcse()``, peak memory after the fits, and a direct timing of
  ``MCLAObjective.evaluate`` on the final round's sample as ``glmm()`` built it
  (:func:`pyglmm.fitting.build_round`);
* ``bound``: one bare vectorised numpy pass of ``c``, ``c'``, ``c''`` over an ``m x n``
  array;
* ``kernels``: :func:`pyglmm.kernels.fused_pass` (numba) against
  :func:`pyglmm.kernels.fused_pass_numpy` on the same salamander chunks;
* ``probe``: the pieces of a simulated crossed Bernoulli fit timed one by one (the
  third mixture component, the Laplace-t proposal, one MCLA evaluation, PQL + Laplace),
  so that the runner can decide whether the whole fit fits in its time budget.

Every timed section runs with BLAS limited to one thread, as ``glmm()`` does inside.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

PREFIX = "BENCH "
FloatArray = NDArray[np.float64]
T = TypeVar("T")

SALAMANDER_SEED = 1234
#: The simulated designs of the Poisson and binomial rows (500 observations, two crossed
#: factors of 30 and 20 levels, intercept and one Uniform(-1, 1) covariate).
POISSON_DESIGN: dict[str, Any] = {
    "family": "poisson", "n_obs": 500, "groups": {"a": 30, "b": 20},
    "beta": (0.5, 0.5), "nu": (0.5, 0.3), "trials": 10, "seed": 20240401,
}
BINOMIAL_DESIGN: dict[str, Any] = {
    "family": "binomial", "n_obs": 500, "groups": {"a": 30, "b": 20},
    "beta": (-0.3, 0.8), "nu": (0.5, 0.3), "trials": 10, "seed": 20240402,
}
#: The scaling designs: Bernoulli, two crossed factors with q/2 levels each.
SCALING_BETA = (-0.3, 0.5)
SCALING_NU = (0.5, 0.5)
SCALING_SEED = 20240403
#: Mixture probabilities of R glmm's proposal (glmm() defaults).
MIXTURE_P = (1 / 3, 1 / 3, 1 / 3)
#: t degrees of freedom where glmm() has no default of its own (it does not change
#: the cost of a draw or a density).
ZETA = 5.0


def default_zeta(importance: str) -> float:
    """``glmm()``'s default degrees of freedom for the ``importance`` proposal."""
    from pyglmm.fitting import default_zeta as fit_default

    return float(fit_default(importance))


# -- small utilities ------------------------------------------------------------------
def emit(**fields: Any) -> None:
    """Print one result line for the runner (flushed at once)."""
    print(PREFIX + json.dumps(fields, default=_jsonable), flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """Run ``function`` once; return (seconds, result)."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(np.median(np.asarray(values, dtype=np.float64)))


def repeat_timing(
    function: Callable[[], object], repeats: int, slow_after: float = 10.0
) -> list[float]:
    """Time ``function`` up to ``repeats`` times; stop repeating once a run is slow."""
    times: list[float] = []
    for _ in range(repeats):
        seconds, _ = timed(function)
        times.append(seconds)
        if seconds > slow_after:
            break
    return times


# -- the data of each case ------------------------------------------------------------
@dataclass
class CaseData:
    """Arguments of ``pyglmm.glmm`` for one case, and how the case is described."""

    fixed: str
    random: list[str]
    data: Any
    family: str
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = SALAMANDER_SEED


def _simulated(design: dict[str, Any]) -> CaseData:
    from pyglmm.simulate import simulate_glmm

    frame = simulate_glmm(
        design["family"], design["n_obs"], design["groups"], beta=design["beta"],
        nu=design["nu"], trials=design["trials"], rng=design["seed"],
    )
    fixed = "cbind(y, fail) ~ x" if design["family"] == "binomial" else "y ~ x"
    levels = " x ".join(str(v) for v in design["groups"].values())
    trials = f", {design['trials']} trials" if design["family"] == "binomial" else ""
    description = (
        f"simulate_glmm({design['family']!r}): n = {design['n_obs']}, crossed {levels} "
        f"levels{trials}, beta = {design['beta']}, nu = {design['nu']}, "
        f"seed {design['seed']}; {fixed!r}"
    )
    return CaseData(fixed, [f"~ 0 + {g}" for g in design["groups"]], frame,
                    design["family"], description)


def case_data(spec: dict[str, Any]) -> CaseData:
    """The data and formulas of the case named by ``spec["dataset"]``."""
    import pyglmm as pg

    name = spec["dataset"]
    if name == "salamander":
        return CaseData(
            "Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"],
            pg.datasets.load_salamander(), "bernoulli", "salamander (n = 360, q = 120)",
            {"varcomps_names": ["F", "M"]},
        )
    if name == "poisson":
        return _simulated(POISSON_DESIGN)
    if name == "binomial":
        return _simulated(BINOMIAL_DESIGN)
    if name == "scaling":
        n, q = int(spec["n"]), int(spec["q"])
        design = {
            "family": "bernoulli", "n_obs": n, "groups": {"a": q // 2, "b": q // 2},
            "beta": SCALING_BETA, "nu": SCALING_NU, "trials": 1, "seed": SCALING_SEED,
        }
        return _simulated(design)
    raise ValueError(f"unknown dataset {name!r}")


def warm_up() -> float:
    """One small salamander fit: loads numba's compiled kernel and every code path."""
    import pyglmm as pg

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg.glmm(
            "Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
            data=pg.datasets.load_salamander(), family="bernoulli", m=300, rng=1,
        )
    return time.perf_counter() - start


# -- fits -------------------------------------------------------------------------------
def run_fit_case(spec: dict[str, Any]) -> None:
    """Fits of one case at one ``m`` (median of ``repeats``), SE + MCSE, s/eval, memory."""
    import pyglmm as pg

    case = case_data(spec)
    m = int(spec["m"])
    emit(description=case.description)
    emit(warm_up_s=warm_up(), rss_after_warm_up_mib=peak_rss_mib())
    walls: list[float] = []
    fits: list[Any] = []
    recorder = _Recorder()
    recorder.install()
    for _ in range(int(spec.get("repeats", 1))):
        recorder.round = None  # hold no earlier fit's sample
        gc.collect()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seconds, fit = timed(lambda: pg.glmm(
                case.fixed, random=case.random, data=case.data, family=case.family, m=m,
                rng=case.seed, **case.kwargs,
            ))
        walls.append(seconds)
        fits.append(fit)
        emit(walls=walls, warnings=sorted({type(w.message).__name__ for w in caught}))
    recorder.uninstall()
    order = int(np.argsort(walls)[len(walls) // 2])
    fit = fits[order]
    rounds = fit.rounds
    final = rounds[-1]
    emit(
        completed=True,
        wall_s=walls[order],
        peak_fit_mib=peak_rss_mib(),
        timings=dict(fit.timings),
        n_evaluations=sum(r.n_evaluations for r in rounds),
        evaluation_equivalents=sum(r.n_evaluations * r.m for r in rounds) / m,
        rounds=[[r.m, r.iterations, r.n_evaluations] for r in rounds],
        iterations_final=int(final.iterations),
        iterations_total=sum(r.iterations for r in rounds),
        converged=bool(fit.trust_converged),
        final_round_opt_per_eval_s=final.seconds_optimising / max(final.n_evaluations, 1),
        loglik=float(fit.loglike_value),
        min_block_ess=float(np.min(fit.block_ess)),
    )
    with threadpool_limits(limits=1, user_api="blas"):
        se_times = [timed(lambda: (fit.se(), fit.mcse()))[0] for _ in range(3)]
    emit(se_mcse_s=median(se_times))
    for m_eval in spec.get("eval_ms", []):
        try:
            emit(**{f"direct_{m_eval}": time_final_evaluation(recorder, fits[-1],
                                                              int(m_eval))})
        except Exception as exc:  # an internal API changed: report, keep the rest
            emit(**{f"direct_{m_eval}": {"error": f"{type(exc).__name__}: {exc}"}})
    emit(peak_end_mib=peak_rss_mib())


class _Recorder:
    """Keeps the last sampling round that ``glmm()`` built.

    ``pyglmm.fitting.run_fit`` looks ``build_round`` up in its module namespace; while
    installed, it is a wrapper that remembers the newest round (its proposal, sample
    and MCLA). The final round's objective is then timed as the fit built it.
    """

    def __init__(self) -> None:
        self.round: Any = None
        self._saved: Any = None

    def install(self) -> None:
        """Replace ``pyglmm.fitting.build_round`` by a recording wrapper."""
        from pyglmm import fitting

        recorder = self
        build = self._saved = fitting.build_round

        def recording_build_round(*args: Any, **kwargs: Any) -> Any:
            built = build(*args, **kwargs)
            recorder.round = built
            return built

        fitting.build_round = recording_build_round  # type: ignore[assignment]

    def uninstall(self) -> None:
        """Restore ``pyglmm.fitting.build_round``."""
        from pyglmm import fitting

        if self._saved is not None:
            fitting.build_round = self._saved


def time_final_evaluation(
    recorder: _Recorder, fit: Any, m_eval: int, repeats: int = 3
) -> dict[str, Any]:
    """Time ``MCLAObjective.evaluate`` at the estimate on the final round's sample.

    With ``m_eval`` equal to the fit's ``m`` the objective is the final round's own
    (recorded while ``glmm()`` ran; its value at the estimate is compared with the
    fit's log-likelihood as a check). With another ``m_eval`` a new sample of that size
    is drawn from the same proposal (same sampler and shift, chunks of the same size).
    The first evaluation of a new sample draws it (and caches what the memory budget
    allows); the reported time is the median of the evaluations after it, or of all of
    them when every evaluation redraws the sample or the sample is the fit's own.
    """
    from pyglmm.fitting import round_sample
    from pyglmm.parallel import chunk_seeds, chunk_sizes

    built = recorder.round
    if built is None:
        raise RuntimeError("glmm() built no recorded round (pyglmm.fitting changed?)")
    theta = np.concatenate([fit.beta, fit.nu])
    if m_eval != fit.m:
        sizes = chunk_sizes(m_eval, built.sizes[0])
        seeds = chunk_seeds(np.random.SeedSequence(SALAMANDER_SEED), 9999, len(sizes))
        store, objective = round_sample(built.objective.problem, built.sampler, seeds, sizes,
                                        shift=built.shift)
    else:
        store, objective = built.store, built.objective
    with threadpool_limits(limits=1, user_api="blas"):
        first, evaluation = timed(lambda: objective.evaluate(theta))
        times = repeat_timing(lambda: objective.evaluate(theta), repeats)
    mode = str(store.mode)
    # the fit's own objective has its sample already; a new one is drawn by the first
    # evaluation, which is then a steady one only if every evaluation redraws anyway
    steady = [first, *times] if m_eval == fit.m or mode == "redraw" else times
    result: dict[str, Any] = {
        "m": m_eval,
        "first_eval_s": first,
        "s_per_eval": median(steady),
        "eval_times": steady,
        "cached": bool(store.cached),
        "store_mode": mode,
        "shift": store.shift is not None,
        "chunk_rows": int(store.sizes[0]),
        "n_chunks": len(store.sizes),
    }
    if m_eval == fit.m:
        # the recorded objective had already drawn (and possibly cached) its sample
        result["value_minus_fit_loglik"] = float(evaluation.value - fit.loglike_value)
    return result


# -- the bound --------------------------------------------------------------------------
def bare_pass(eta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``c = log(1 + e^eta)``, ``c' = expit(eta)``, ``c'' = c'(1 - c')`` (Bernoulli)."""
    from scipy.special import expit

    c = np.logaddexp(0.0, eta)
    mean = expit(eta)
    return c, mean, mean * (1.0 - mean)


def run_bound_case(spec: dict[str, Any]) -> None:
    """Time the bare pass over an ``m x n`` float64 array for every ``m`` in the spec."""
    n = int(spec["n"])
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1, user_api="blas"):
        for m in spec["ms"]:
            times = _bare_pass_times(rng.normal(0.0, 2.0, size=(int(m), n)))
            emit(**{f"bound_{m}": {
                "m": int(m), "n": n, "seconds": median(times), "times": times,
                "ns_per_element": median(times) / (m * n) * 1e9,
            }})
            gc.collect()


def _bare_pass_times(eta: FloatArray) -> list[float]:
    bare_pass(eta)  # first touch of the output pages
    repeats = 7 if eta.size <= 5_000_000 else 3
    return [timed(lambda: bare_pass(eta))[0] for _ in range(repeats)]


# -- numba against numpy ----------------------------------------------------------------
def run_kernel_case(spec: dict[str, Any]) -> None:
    """Time fused_pass (numba) and fused_pass_numpy on the same salamander chunks."""
    import numba

    from pyglmm.design import build_design
    from pyglmm.families import get_family
    from pyglmm.importance import laplace_t
    from pyglmm.kernels import fused_pass, fused_pass_numpy
    from pyglmm.laplace import laplace_fit
    from pyglmm.mcla import draw_chunk
    from pyglmm.parallel import chunk_seeds, chunk_sizes, default_chunk_size
    from pyglmm.pql import SIGMA_FLOOR, pql_centre
    from pyglmm.problem import Problem

    case = case_data({"dataset": "salamander"})
    family = get_family(case.family)
    m_total = int(spec["m"])
    with threadpool_limits(limits=1, user_api="blas"):
        design = build_design(case.fixed, case.random, case.data, family, **case.kwargs)
        problem = Problem.build(design, family)
        pql = pql_centre(problem)
        laplace = laplace_fit(problem, pql.beta, pql.variances)
        beta, nu = laplace.beta, np.maximum(laplace.nu, SIGMA_FLOOR**2)
        sampler = laplace_t(problem, beta, nu, default_zeta("laplace"))[0]
        sizes = chunk_sizes(m_total, default_chunk_size(design.n_obs))
        seeds = chunk_seeds(np.random.SeedSequence(SALAMANDER_SEED), 0, len(sizes))
        chunks = [draw_chunk(problem, sampler, s, k) for s, k in zip(seeds, sizes, strict=True)]
        xb = problem.x @ beta
        blocks = problem.blocks

        def numba_all() -> list[FloatArray]:
            return [
                fused_pass(problem.family, c.zu, xb, problem.y, problem.trials, problem.x,
                           blocks.obs_block, blocks.obs_starts)[0]
                for c in chunks
            ]

        def numpy_all() -> list[FloatArray]:
            return [
                fused_pass_numpy(problem.family, c.zu, xb, problem.y, problem.trials,
                                 problem.x, blocks.obs_starts)[0]
                for c in chunks
            ]

        first_numba = numba_all()  # warm (compiled or loaded from numba's cache)
        first_numpy = numpy_all()
        difference = max(
            float(np.max(np.abs(a - b))) for a, b in zip(first_numba, first_numpy, strict=True)
        )
        threads = numba.get_num_threads()
        t_numba = [timed(numba_all)[0] for _ in range(3)]
        numba.set_num_threads(1)
        t_numba_1 = [timed(numba_all)[0] for _ in range(3)]
        numba.set_num_threads(threads)
        t_numpy = [timed(numpy_all)[0] for _ in range(3)]
    emit(
        m=m_total, n=int(design.n_obs), chunk_rows=sizes[0], n_chunks=len(sizes),
        numba_threads=threads, numba_s=median(t_numba), numba_1thread_s=median(t_numba_1),
        numpy_s=median(t_numpy), max_abs_loglik_difference=difference,
    )


# -- the scaling probe ------------------------------------------------------------------
def predict_pql(points: Sequence[Sequence[float]], n_obs: float, cubic: float) -> float | None:
    """Extrapolate the PQL + Laplace time from measured ``(n, work, seconds)`` points.

    Model ``t = c + a n + b work`` (linear work over observations plus the cubic work
    of the dense factorisations, :func:`factorisation_work`), fitted by non-negative
    least squares on relative errors; with fewer than three points, the nearest point
    scaled by the larger of the two ratios.
    """
    from scipy.optimize import nnls

    if not points:
        return None
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[0] >= 3:
        design = np.column_stack([np.ones(len(pts)), pts[:, 0], pts[:, 1]]) / pts[:, 2:3]
        coef, _ = nnls(design, np.ones(len(pts)))
        if np.any(coef[1:] > 0):
            return float(coef @ np.array([1.0, n_obs, cubic]))
    ratios = np.maximum(n_obs / pts[:, 0], cubic / pts[:, 1])
    nearest = int(np.argmin(np.abs(np.log(ratios))))
    return float(pts[nearest, 2] * max(ratios[nearest], 1.0))


def factorisation_work(problem: Any) -> float:
    """``sum d^3`` over the dense factorisations of one curvature factor of ``problem``.

    A block factored densely counts ``d^3``; a large crossed block factored through
    its Schur complement (:mod:`pyglmm.crossed`, if this version has it) counts the
    cube of the complement's size.
    """
    crossed = getattr(problem.layout, "crossed", ()) or (None,) * len(problem.groups)
    work = 0.0
    for group, layout in zip(problem.groups, crossed, strict=True):
        if layout is not None:
            work += float(layout.rest.size) ** 3
        else:
            work += group.index.shape[0] * float(group.index.shape[1]) ** 3
    return work


def _default_shift(problem: Any, built: tuple[Any, ...], beta: FloatArray) -> Any:
    """The ``EffectShift`` that ``glmm()`` builds by default, if this version has one."""
    import inspect

    import pyglmm as pg
    from pyglmm import mcla

    parameter = inspect.signature(pg.glmm).parameters.get("shift")
    if parameter is None or not parameter.default or len(built) < 3:
        return None
    if not hasattr(mcla, "EffectShift"):
        return None
    return mcla.EffectShift.build(problem, built[2], beta)


def _time_probe_evaluations(
    problem: Any, sampler: Any, theta: FloatArray, m: int, shift: Any
) -> None:
    """Time MCLA evaluations at ``theta`` on a fresh sample of ``m`` draws (emitted)."""
    from pyglmm.fitting import round_sample
    from pyglmm.parallel import chunk_seeds, chunk_sizes, default_chunk_size

    n_obs = int(problem.y.size)
    sizes = chunk_sizes(m, default_chunk_size(n_obs))
    seeds = chunk_seeds(np.random.SeedSequence(SCALING_SEED), 0, len(sizes))
    store, objective = round_sample(problem, sampler, seeds, sizes, shift=shift)
    first, _ = timed(lambda: objective.evaluate(theta))
    mode = str(store.mode)
    emit(first_eval_s=first, cached=bool(store.cached), store_mode=mode,
         chunk_rows=sizes[0], n_chunks=len(sizes))
    # cached: the first evaluation also drew the sample, time the next ones;
    # not cached: every evaluation redraws its chunks, as in the fit
    steady = repeat_timing(lambda: objective.evaluate(theta), 3 if first < 10 else 1)
    if mode == "redraw":
        steady = [first, *steady]
    s_eval = median(steady)
    emit(s_per_eval=s_eval, eval_times=steady, ns_per_element=s_eval / (n_obs * m) * 1e9)


def run_probe_case(spec: dict[str, Any]) -> None:
    """Time the pieces of a crossed Bernoulli fit at the true parameters, one by one."""
    from pyglmm.design import build_design
    from pyglmm.families import get_family
    from pyglmm.importance import glmm_mixture, laplace_t
    from pyglmm.laplace import laplace_fit
    from pyglmm.pql import pql_centre
    from pyglmm.problem import Problem

    started = time.perf_counter()
    budget = spec.get("budget_s")
    m = int(spec["m"])
    emit(warm_up_s=warm_up())
    simulate_s, case = timed(lambda: case_data({**spec, "dataset": "scaling"}))
    family = get_family(case.family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unused levels of a sparse design are dropped
        design_s, design = timed(lambda: build_design(case.fixed, case.random, case.data,
                                                      family))
    with threadpool_limits(limits=1, user_api="blas"):
        problem_s, problem = timed(lambda: Problem.build(design, family))
        sizes_b = problem.blocks.block_sizes.astype(np.float64)
        cubic = factorisation_work(problem)
        emit(
            description=case.description, simulate_s=simulate_s, build_design_s=design_s,
            problem_build_s=problem_s, n_obs=int(design.n_obs), q=int(problem.n_effects),
            n_blocks=int(problem.blocks.n_blocks), largest_block=int(sizes_b.max()),
            cubic=cubic,
        )
        beta = np.asarray(SCALING_BETA)
        nu = np.asarray(SCALING_NU)
        u0 = np.zeros(problem.n_effects)
        mixture_times = repeat_timing(
            lambda: glmm_mixture(problem, beta, nu, u0, MIXTURE_P, default_zeta("glmm")), 3,
            slow_after=5.0,
        )
        emit(mixture_s=median(mixture_times), mixture_times=mixture_times)
        laplace_t_s, built = timed(
            lambda: laplace_t(problem, beta, nu, default_zeta("laplace"))
        )
        shift = _default_shift(problem, built, beta)
        emit(laplace_t_s=laplace_t_s, shift=shift is not None)
        _time_probe_evaluations(problem, built[0], np.concatenate([beta, nu]), m, shift)
        gc.collect()
        predicted = predict_pql(spec.get("pql_points", []), design.n_obs, cubic)
        remaining = None if budget is None else budget - (time.perf_counter() - started)
        if remaining is not None and predicted is not None and predicted > remaining:
            emit(pql_skipped=f"predicted {predicted:.0f} s > {remaining:.0f} s left",
                 pql_predicted_s=predicted)
        else:
            def design_pql() -> object:
                prob = Problem.build(design, family)
                pql = pql_centre(prob)
                return laplace_fit(prob, pql.beta, pql.variances)

            pql_s, _ = timed(design_pql)
            emit(design_pql_s=pql_s, pql_predicted_s=predicted)
    emit(peak_mib=peak_rss_mib())


CASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "fit": run_fit_case,
    "bound": run_bound_case,
    "kernels": run_kernel_case,
    "probe": run_probe_case,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the case given as a JSON spec in the first argument."""
    args = sys.argv[1:] if argv is None else list(argv)
    spec = json.loads(args[0])
    CASES[spec["kind"]](spec)


if __name__ == "__main__":
    main()
