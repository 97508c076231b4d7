"""Benchmark runner of issue 4: speed, memory and the hardware bound, in one table.

Usage::

    python benchmarks/run.py [--quick] [--full] [--budget SECONDS] [--out FILE]

Every case runs in a fresh Python process (``benchmarks/bench_cases.py``), so peak
resident memory is that case's own and no case warms another's caches beyond what a
user's process would have; each process first does one small salamander fit (numba's
kernel loaded, every code path touched) and every timed section runs with BLAS limited
to one thread, as ``glmm()`` does inside. Timings on small shared machines are noisy:
fits at ``m <= 10^4`` are the median of 3 runs (1 run above), evaluations and bare
passes medians of 3 to 7, and the bound is measured in the same run as the fits.

``--quick`` (about 2 minutes): salamander at m = 1,000 and 10,000, the bound, numba
against numpy, and the smallest scaling case. Without it, also salamander at
m = 100,000 and 1,000,000, the Poisson and binomial cases and the scaling grid
n in {10^3, 10^4, 10^5} x q in {100, 1,000, 5,000}. A scaling fit whose predicted time
(from its timed pieces and the smaller cases measured before it) exceeds ``--budget``
(default 600 s) is skipped with the reason in its row, and every case is stopped at
the budget, unless ``--full`` is given. The table is written to ``--out`` (default
``benchmarks/results.md``) after every case, and printed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bench_cases.py"
PREFIX = "BENCH "
GIB = 1024.0

COLUMNS = (
    "row", "case", "m", "wall s", "design+PQL s", "sampling s", "optimisation s",
    "MCLA evals", "s/eval", "SE+MCSE s", "peak MiB", "trust its", "notes",
)
SCALING_N = (1_000, 10_000, 100_000)
SCALING_Q = (100, 1_000, 5_000)
SCALING_M = 10_000
TARGET_SCALING = (100_000, 5_000)
BOUND_N = 360
#: Guesses for the first scaling fit's prediction (later ones use the measured fits).
DEFAULT_EVAL_EQUIVALENTS = 25.0
DEFAULT_ROUNDS = 3.0


# -- running one case ---------------------------------------------------------------------
@dataclass
class CaseResult:
    """What one case's process reported, and how it ended."""

    data: dict[str, Any]
    status: str  # "ok", "timeout", "error"
    seconds: float
    message: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        """A reported field."""
        return self.data.get(key, default)


def run_case(spec: dict[str, Any], timeout: float | None) -> CaseResult:
    """Run one case in a fresh process; a quick failure is retried once after a pause.

    (The retry covers a source tree caught in the middle of an edit; the row says so.)
    """
    result = _run_case_once(spec, timeout)
    if result.status == "error" and result.seconds < 120.0:
        time.sleep(20.0)
        retry = _run_case_once(spec, timeout)
        retry.message = (retry.message + " " if retry.message else "") + (
            f"(retried after: {result.message})"
        )
        if retry.status == "ok":
            retry.data["retried_after"] = result.message
        return retry
    return result


def _run_case_once(spec: dict[str, Any], timeout: float | None) -> CaseResult:
    """Run one case in a fresh process and merge its ``BENCH`` lines."""
    label = json.dumps(spec, separators=(",", ":"))
    print(f"[bench] start {label[:160]}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    command = [sys.executable, str(WORKER), json.dumps(spec)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
        out, err, status = proc.stdout, proc.stderr, "ok" if proc.returncode == 0 else "error"
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        status = "timeout"
    seconds = time.perf_counter() - start
    data: dict[str, Any] = {}
    for line in out.splitlines():
        if line.startswith(PREFIX):
            data.update(json.loads(line[len(PREFIX):]))
    message = ""
    if status == "error":
        message = " ".join(err.strip().splitlines()[-1:])[:300]
    elif status == "timeout":
        message = f"stopped after {timeout:.0f} s"
    print(f"[bench] {status} in {seconds:.1f} s {message}", file=sys.stderr, flush=True)
    return CaseResult(data, status, seconds, message)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# -- formatting ---------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (empty when missing)."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_m(m: int) -> str:
    """``10,000`` style."""
    return f"{m:,}"


@dataclass
class Table:
    """The one markdown table: meta rows, measurements and targets."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, **cells: str) -> None:
        """Append a row (columns by name; ``wall_s`` style names map to the headers)."""
        row = {c: "" for c in COLUMNS}
        for key, value in cells.items():
            row[_column(key)] = value
        self.rows.append(row)

    def markdown(self) -> str:
        """The table as markdown."""
        lines = [
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "|".join("---" for _ in COLUMNS) + "|",
        ]
        for row in self.rows:
            cells = [row[c].replace("|", "/").replace("\n", " ") for c in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _column(key: str) -> str:
    names = {
        "row": "row", "case": "case", "m": "m", "wall": "wall s", "pql": "design+PQL s",
        "sampling": "sampling s", "optimisation": "optimisation s", "evals": "MCLA evals",
        "s_eval": "s/eval", "se": "SE+MCSE s", "peak": "peak MiB", "its": "trust its",
        "notes": "notes",
    }
    return names[key]


# -- the machine --------------------------------------------------------------------------
def machine_rows(table: Table) -> None:
    """Machine, versions, date and load as the first rows of the table."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB memory"
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    table.add(row="machine", notes=(
        f"{platform.platform()}; {cpu}; nproc {affinity or os.cpu_count()} "
        f"(os.cpu_count {os.cpu_count()}); {memory}"
    ))
    versions = [f"python {platform.python_version()}"]
    for name in ("numpy", "scipy", "numba", "pyglmm", "threadpoolctl"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    table.add(row="versions", notes="; ".join(versions) + f"; BLAS {_blas()}; git {_git()}")
    table.add(row="date", notes=dt.datetime.now().astimezone().isoformat(timespec="seconds"))


def _blas() -> str:
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl reports)
        from threadpoolctl import threadpool_info

        libs = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"
        ]
        return ", ".join(libs) or "unknown"
    except Exception:  # informational only
        return "unknown"


def _git() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=HERE, capture_output=True, text=True,
                               check=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load() -> str:
    """The 1, 5, 15 minute load averages (other work shares the cores)."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# -- rows ---------------------------------------------------------------------------------
def status_note(result: CaseResult) -> str:
    """``skipped``/``failed`` text for a case that did not finish."""
    if result.status == "timeout":
        return f"did not finish: {result.message}"
    if result.status == "error":
        return f"failed: {result.message}"
    return ""


def fit_row(table: Table, row: str, case: str, m: int, result: CaseResult,
            direct_key: str | None) -> None:
    """One row of a fit case."""
    d = result.data
    if not d.get("completed"):
        table.add(row=row, case=case, m=fmt_m(m), wall="skipped" if not d else "",
                  notes=status_note(result) or "did not complete")
        return
    timings = d["timings"]
    notes = [
        "rounds (m, its, evals): " + ", ".join(f"({a:,}, {b}, {c})" for a, b, c in d["rounds"]),
        f"final round opt s/evals {fmt(d['final_round_opt_per_eval_s'])}",
        f"min block ESS {fmt(d['min_block_ess'])}",
        f"fit walls {', '.join(fmt(w) for w in d['walls'])}",
    ]
    if d.get("warnings"):
        notes.append("warnings: " + ", ".join(d["warnings"]))
    if d.get("retried_after"):
        notes.append(f"first attempt failed ({d['retried_after']}), retried")
    if not d.get("converged", True):
        notes.append("NOT converged")
    s_eval = ""
    direct = d.get(direct_key) if direct_key else None
    if direct and "error" not in direct:
        s_eval = fmt(direct["s_per_eval"])
        notes.append(direct_note(direct))
    elif direct:
        notes.append(f"direct s/eval failed: {direct['error']}")
    if result.status != "ok":
        notes.append(status_note(result))
    table.add(
        row=row, case=case, m=fmt_m(m), wall=fmt(d["wall_s"]), pql=fmt(timings["design_pql"]),
        sampling=fmt(timings["sampling"]), optimisation=fmt(timings["optimisation"]),
        evals=str(d["n_evaluations"]), s_eval=s_eval, se=fmt(d.get("se_mcse_s")),
        peak=fmt(d["peak_fit_mib"], 4),
        its=f"{d['iterations_final']} ({d['iterations_total']})", notes="; ".join(notes),
    )


def direct_note(direct: dict[str, Any]) -> str:
    """How a direct s/eval was measured."""
    text = (
        f"s/eval direct: median of {len(direct['eval_times'])} evaluations at the estimate, "
        f"store mode {direct.get('store_mode', '?')}, shift {direct.get('shift', '?')}"
    )
    if "value_minus_fit_loglik" in direct:
        text += (
            ", on the fit's own final-round objective (value - fit loglik = "
            f"{direct['value_minus_fit_loglik']:.2g})"
        )
    else:
        text += f", new sample (first evaluation, drawing it, {fmt(direct['first_eval_s'])} s)"
    return text


def direct_seconds(result: CaseResult | None, m: int) -> float | None:
    """The direct seconds per evaluation at ``m`` reported by a fit case, if any."""
    if result is None:
        return None
    direct = result.get(f"direct_{m}")
    if not direct or "error" in direct:
        return None
    return float(direct["s_per_eval"])


def pass_fail(ok: bool | None) -> str:
    """PASS, FAIL or not measured."""
    return "not measured" if ok is None else ("PASS" if ok else "FAIL")


# -- the scaling grid ---------------------------------------------------------------------
@dataclass
class ScalingState:
    """What the scaling cases measured so far (for extrapolating the next ones)."""

    pql_points: list[list[float]] = field(default_factory=list)
    eval_equivalents: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)
    target: tuple[CaseResult, CaseResult | None, str] | None = None


def predict_fit(probe: CaseResult, state: ScalingState) -> tuple[float | None, str]:
    """Predicted seconds of the whole fit from its timed pieces, and how."""
    s_eval = probe.get("s_per_eval")
    if s_eval is None:
        return None, "no evaluation timed"
    pql = probe.get("design_pql_s")
    pql_how = "measured"
    if pql is None:
        pql = probe.get("pql_predicted_s")
        pql_how = "extrapolated"
    if pql is None:
        return None, "PQL+Laplace not timed"
    equivalents = _median(state.eval_equivalents) or DEFAULT_EVAL_EQUIVALENTS
    rounds = _median(state.rounds) or DEFAULT_ROUNDS
    total = pql + equivalents * s_eval + rounds * (probe.get("laplace_t_s") or 0.0)
    how = (
        f"PQL+Laplace {fmt(pql)} s ({pql_how}) + {fmt(equivalents)} evaluations x "
        f"{fmt(s_eval)} s + {fmt(rounds)} rounds x Laplace-t build "
        f"{fmt(probe.get('laplace_t_s'))} s"
    )
    return total, how


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def scaling_case(table: Table, n: int, q: int, args: argparse.Namespace,
                 state: ScalingState, out: Path) -> None:
    """Probe one crossed Bernoulli design, then fit it if it fits the budget."""
    budget = None if args.full else float(args.budget)
    probe = run_case(
        {"kind": "probe", "n": n, "q": q, "m": SCALING_M, "budget_s": budget,
         "pql_points": state.pql_points},
        timeout=None if budget is None else budget + 60.0,
    )
    p = probe.data
    if p.get("design_pql_s") is not None:
        state.pql_points.append([p["n_obs"], p["cubic"], p["design_pql_s"]])
    predicted, how = predict_fit(probe, state)
    is_target = (n, q) == TARGET_SCALING
    fit: CaseResult | None = None
    skip_reason = ""
    if probe.status != "ok" and p.get("s_per_eval") is None:
        skip_reason = f"probe {status_note(probe)}"
    if budget is not None and (predicted is None or predicted > budget) and not is_target:
        skip_reason = (
            f"predicted {fmt(predicted)} s > budget {budget:.0f} s ({how})"
            if predicted is not None else f"cannot predict ({how})"
        )
    if not skip_reason or is_target:
        fit = run_case(
            {"kind": "fit", "dataset": "scaling", "n": n, "q": q, "m": SCALING_M,
             "repeats": 1, "eval_ms": []},
            timeout=None if budget is None else budget + 60.0,
        )
        f = fit.data
        if f.get("completed"):
            state.eval_equivalents.append(f["evaluation_equivalents"])
            state.rounds.append(float(len(f["rounds"])))
            if p.get("cubic") is not None:
                state.pql_points.append([p["n_obs"], p["cubic"], f["timings"]["design_pql"]])
    structure = (
        f"n={n:,}, q={q:,} nominal"
        + (f" ({p['q']:,} used; blocks: {p['n_blocks']}, largest {p['largest_block']})"
           if "q" in p else "")
    )
    notes: list[str] = []
    if p.get("ns_per_element") is not None:
        notes.append(f"{fmt(p['ns_per_element'])} ns per n*m element")
    if p.get("mixture_s") is not None:
        notes.append(f"third mixture component (glmm_mixture) {fmt(p['mixture_s'])} s")
    if p.get("laplace_t_s") is not None:
        notes.append(f"Laplace-t proposal build {fmt(p['laplace_t_s'])} s")
    if p.get("first_eval_s") is not None:
        notes.append(f"first eval incl. drawing {fmt(p['first_eval_s'])} s, store mode "
                     f"{p.get('store_mode', '?')}, shift {p.get('shift', '?')}")
    if p.get("design_pql_s") is not None and not (fit and fit.get("completed")):
        notes.append(f"PQL+Laplace alone {fmt(p['design_pql_s'])} s")
    elif p.get("pql_skipped"):
        notes.append(f"PQL+Laplace not run: {p['pql_skipped']}")
    if probe.status != "ok":
        notes.append(f"probe {status_note(probe)}")
    if predicted is not None:
        notes.append(f"predicted fit {fmt(predicted)} s")
    pql_cell = fmt(p.get("design_pql_s"))
    if fit is not None and fit.get("completed"):
        f = fit.data
        t = f["timings"]
        notes.insert(0, "rounds (m, its, evals): "
                     + ", ".join(f"({a:,}, {b}, {c})" for a, b, c in f["rounds"]))
        if f.get("warnings"):
            notes.append("warnings: " + ", ".join(f["warnings"]))
        table.add(
            row="scaling", case=structure, m=fmt_m(SCALING_M), wall=fmt(f["wall_s"]),
            pql=fmt(t["design_pql"]), sampling=fmt(t["sampling"]),
            optimisation=fmt(t["optimisation"]), evals=str(f["n_evaluations"]),
            s_eval=fmt(p.get("s_per_eval")), se=fmt(f.get("se_mcse_s")),
            peak=fmt(f["peak_fit_mib"], 4),
            its=f"{f['iterations_final']} ({f['iterations_total']})", notes="; ".join(notes),
        )
    else:
        wall = f"skipped ({skip_reason})" if skip_reason else ""
        if fit is not None and not fit.get("completed"):
            wall = f"did not complete ({status_note(fit)})"
        table.add(row="scaling", case=structure, m=fmt_m(SCALING_M), wall=wall, pql=pql_cell,
                  s_eval=fmt(p.get("s_per_eval")), peak=fmt(p.get("peak_mib"), 4),
                  notes="; ".join(notes))
    if is_target:
        state.target = (probe, fit, skip_reason)
    out.write_text(table.markdown())


# -- main -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmarks and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="salamander m=1e3, 1e4, the bound, kernels, one scaling case")
    parser.add_argument("--full", action="store_true",
                        help="run every case to the end, whatever its predicted time")
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds a case may take before it is skipped or stopped")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    started = time.perf_counter()
    table = Table()
    machine_rows(table)
    load_start = load()
    table.add(row="method", notes=(
        "each case in a fresh process after one warm-up fit (numba loaded); BLAS limited to "
        "1 thread in every timed section (glmm() does so itself); wall = whole glmm() call, "
        "median of 3 runs for m <= 10^4, 1 run above, its design+PQL/sampling/optimisation "
        "from fit.timings (sampling = proposal built, sample drawn and evaluated once at "
        "the round's start, which recentre='auto' does to set its ESS gate); MCLA evals "
        "= sum over rounds; s/eval = direct timing of MCLAObjective.evaluate at the "
        "estimate on the final round's objective "
        "as glmm() built it (recorded during the fit; median of 3; store mode chunks = "
        "sample cached, draws = u cached and Z u rebuilt, redraw = drawn anew each "
        "evaluation); scaling s/eval on a fresh sample at the true parameters; "
        "SE+MCSE = fit.se() + fit.mcse(), median of 3; peak MiB = the case "
        "process's ru_maxrss after its fits (imports and the warm-up fit included); trust "
        f"its = final round (all rounds); mode {'quick' if args.quick else 'full grid'}, "
        f"budget {'none (--full)' if args.full else f'{args.budget:.0f} s per case'}"
    ))
    budget = None if args.full else float(args.budget)

    def write() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table.markdown())

    # the bound first: it is what the evaluations are compared with
    bound = run_case({"kind": "bound", "n": BOUND_N, "ms": [10_000, 100_000]}, timeout=budget)

    # salamander
    sal: dict[int, CaseResult] = {}
    sal_ms = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    for m in sal_ms:
        eval_ms = [m]
        if args.quick and m == 10_000:
            eval_ms.append(100_000)  # s/eval at 10^5 on the same proposal (no 10^5 fit)
        sal[m] = run_case(
            {"kind": "fit", "dataset": "salamander", "m": m,
             "repeats": 3 if m <= 10_000 else 1, "eval_ms": eval_ms},
            timeout=budget,
        )
        fit_row(table, "salamander", "salamander (n=360, q=120, 6 blocks)", m, sal[m],
                f"direct_{m}")
        write()

    # the bound rows and the ratio
    s_eval_at = {
        10_000: direct_seconds(sal.get(10_000), 10_000),
        100_000: direct_seconds(sal.get(100_000), 100_000)
        or direct_seconds(sal.get(10_000), 100_000),
    }
    ratios: dict[int, float | None] = {}
    for m in (10_000, 100_000):
        b = bound.get(f"bound_{m}")
        if b is None:
            table.add(row="bound", case=f"bare numpy pass, n={BOUND_N}", m=fmt_m(m),
                      notes=status_note(bound) or "not measured")
            ratios[m] = None
            continue
        ratio = s_eval_at[m] / b["seconds"] if s_eval_at[m] is not None else None
        ratios[m] = ratio
        source = (
            "salamander fit at this m" if direct_seconds(sal.get(m), m) is not None
            else "salamander m=10^4 final proposal, sample of this m"
        )
        table.add(
            row="bound", case=f"bare numpy pass c, c', c'' over m x n, n={BOUND_N}",
            m=fmt_m(m), wall=fmt(b["seconds"]), s_eval=fmt(s_eval_at[m]),
            notes=(
                f"{fmt(b['ns_per_element'])} ns per element (logaddexp(0, eta), expit(eta), "
                f"mu*(1-mu), median of {len(b['times'])}); pyglmm s/eval / bare pass = "
                f"{fmt(ratio)} (s/eval: {source})"
            ),
        )
    write()

    # numba against numpy
    kernels = run_case({"kind": "kernels", "m": 100_000}, timeout=budget)
    if kernels.get("numpy_s") is not None:
        k = kernels.data
        speedup = k["numpy_s"] / k["numba_s"]
        table.add(
            row="kernel", case="fused_pass (numba) vs fused_pass_numpy, salamander chunks",
            m=fmt_m(k["m"]), wall=fmt(k["numba_s"]),
            notes=(
                f"numba ({k['numba_threads']} threads) {fmt(k['numba_s'])} s, numba 1 thread "
                f"{fmt(k['numba_1thread_s'])} s, numpy {fmt(k['numpy_s'])} s over "
                f"{k['n_chunks']} chunks of {k['chunk_rows']} rows; numpy/numba = "
                f"{fmt(speedup)}x ({'>=' if speedup >= 2 else '<'} 2x: "
                f"{'adopt numba' if speedup >= 2 else 'numpy would do'}), numpy/numba 1 "
                f"thread = {fmt(k['numpy_s'] / k['numba_1thread_s'])}x; max |loglik "
                f"difference| {k['max_abs_loglik_difference']:.2g}"
            ),
        )
    else:
        table.add(row="kernel", case="fused_pass vs fused_pass_numpy", m="100,000",
                  notes=status_note(kernels) or "not measured")
    write()

    # our own Poisson and binomial cases
    if not args.quick:
        for name in ("poisson", "binomial"):
            result = run_case({"kind": "fit", "dataset": name, "m": 10_000, "repeats": 3,
                               "eval_ms": [10_000]}, timeout=budget)
            fit_row(table, name, result.get("description", name), 10_000, result,
                    "direct_10000")
            write()

    # m = 10^6 on salamander
    big: CaseResult | None = None
    if not args.quick:
        big = run_case({"kind": "fit", "dataset": "salamander", "m": 1_000_000, "repeats": 1,
                        "eval_ms": [1_000_000]},
                       timeout=None if budget is None else max(3 * budget, 1800.0))
        fit_row(table, "salamander", "salamander, m = 10^6 (target: completes, < 2 GiB)",
                1_000_000, big, "direct_1000000")
        write()

    # scaling
    state = ScalingState()
    grid = [(1_000, 100)] if args.quick else [(n, q) for q in SCALING_Q for n in SCALING_N]
    for n, q in grid:
        scaling_case(table, n, q, args, state, out)

    # targets
    s10 = sal.get(10_000)
    if s10 is not None and s10.get("completed"):
        whole = s10.get("wall_s") + (s10.get("se_mcse_s") or 0.0)
        table.add(row="target", case="salamander m=10^4 whole fit incl. SE+MCSE < 2 s",
                  m="10,000", wall=fmt(whole),
                  notes=f"{fmt(whole)} s (fit {fmt(s10.get('wall_s'))} s + SE/MCSE "
                        f"{fmt(s10.get('se_mcse_s'))} s): {pass_fail(whole < 2.0)}")
    else:
        table.add(row="target", case="salamander m=10^4 whole fit incl. SE+MCSE < 2 s",
                  m="10,000", notes="FAIL (fit did not complete)")
    for m in (10_000, 100_000):
        ratio = ratios.get(m)
        table.add(row="target", case="s/eval <= 3x bare pass", m=fmt_m(m),
                  s_eval=fmt(s_eval_at.get(m)),
                  notes=f"ratio {fmt(ratio)}: {pass_fail(None if ratio is None else ratio <= 3)}")
    if big is None:
        table.add(row="target", case="m=10^6 salamander completes, peak < 2 GiB",
                  m="1,000,000", notes="not measured (--quick)")
    else:
        done = bool(big.get("completed"))
        peak = big.get("peak_fit_mib")
        ok = done and peak is not None and peak < 2 * GIB
        table.add(row="target", case="m=10^6 salamander completes, peak < 2 GiB",
                  m="1,000,000", wall=fmt(big.get("wall_s")), peak=fmt(peak, 4),
                  notes=(f"completed {done}, peak {fmt(peak, 4)} MiB: {pass_fail(ok)}"
                         + ("" if done else f" ({status_note(big)})")))
    if state.target is None:
        table.add(row="target", case="n=10^5, q=5000, m=10^4 crossed Bernoulli < 10 min",
                  m="10,000", notes="not measured (--quick)")
    else:
        _, tfit, reason = state.target
        if tfit is not None and tfit.get("completed"):
            wall = float(tfit.get("wall_s"))
            table.add(row="target", case="n=10^5, q=5000, m=10^4 crossed Bernoulli < 10 min",
                      m="10,000", wall=fmt(wall),
                      notes=f"completed in {fmt(wall)} s: {pass_fail(wall < 600)}")
        else:
            why = status_note(tfit) if tfit is not None else reason
            table.add(row="target", case="n=10^5, q=5000, m=10^4 crossed Bernoulli < 10 min",
                      m="10,000", notes=f"FAIL: did not complete ({why})")
    table.add(row="load", notes=(
        f"load average (1/5/15 min) at start {load_start}, at end {load()}; runner total "
        f"{time.perf_counter() - started:.0f} s"
    ))
    write()
    print(table.markdown(), end="")
    print(f"[bench] written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
