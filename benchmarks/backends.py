"""Backends: serial, local processes (``n_jobs=2``) and a 2-worker dask LocalCluster.

``python benchmarks/backends.py`` fits salamander at m = 10^5 and 10^6 and the
simulated crossed Bernoulli design with n = 10^5, q = 1,000 at m = 10^4 (the scaling
case of ``benchmarks/run.py``) on each backend, every (case, backend) in a fresh
process so that its peak memory is its own, and prints a markdown table:

* wall seconds of the fit (after a small warm-up fit on the same backend, which starts
  the workers and loads numba's compiled kernel there), and the speed-up over serial;
* peak resident memory of the main process and of the largest worker (``ru_maxrss``);
* bytes sent and received per MCLA evaluation: for processes the pickled messages
  counted by the pool, for dask the pickled payload of the evaluations' tasks and
  results (dask adds each task's metadata, well under a KB per task); each round's
  work, sent once, is reported apart;
* whether the estimates are identical to the serial fit's (``np.array_equal``).

Serial runs numba's kernel on every core (its threads); ``n_jobs=k`` gives each worker
``cores // k`` kernel threads and one BLAS thread, and the dask workers of this script
have one thread each, so no backend oversubscribes the cores. The row "serial, 1
thread" (``NUMBA_NUM_THREADS=1``) is the one-core baseline.

Options: ``--quick`` runs salamander at m = 10^5 only; ``--timeout`` bounds each
case (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "BACKEND "
BACKENDS = ("serial-1", "serial", "processes", "dask")
LABELS = {"serial-1": "serial, 1 thread", "serial": "serial", "processes": "n_jobs=2",
          "dask": "LocalCluster(2)"}
CASES = (
    {"dataset": "salamander", "m": 100_000},
    {"dataset": "salamander", "m": 1_000_000},
    {"dataset": "scaling", "n": 100_000, "q": 1_000, "m": 10_000},
)


def _mib(kib: float) -> float:
    return kib / 1024.0


class Traffic:
    """Bytes per evaluation, from the backend's counters read at every iteration event."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.last: tuple[int, int] | None = None
        self.per_evaluation: list[tuple[int, int]] = []
        self.round_opened: list[tuple[int, int]] = []
        self.round_start: tuple[int, int] | None = None

    def __call__(self, event: Any) -> None:
        now = self.read()
        if event.stage == "round":
            self.round_start = now
        elif event.stage == "sampled" and self.round_start is not None:
            # the round's work, its shards' sampling and the first evaluation
            self.round_opened.append((now[0] - self.round_start[0],
                                      now[1] - self.round_start[1]))
        elif event.stage == "iteration" and self.last is not None:
            self.per_evaluation.append((now[0] - self.last[0], now[1] - self.last[1]))
        self.last = now if event.stage in ("sampled", "iteration") else None


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit one case on one backend in this process; return what was measured."""
    sys.path.insert(0, HERE)
    from bench_cases import case_data

    import pyglmm as pg

    case = case_data(spec)
    backend = spec["backend"]
    options: dict[str, Any] = {}
    client = cluster = None
    if backend == "processes":
        options["n_jobs"] = 2
    elif backend == "dask":
        import distributed

        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        options["client"] = client
        from pyglmm.backends.dask_cluster import DaskRound

        DaskRound.count_payload = True  # the bytes per evaluation of the table

    def fit(m: int, callback: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pg.glmm(case.fixed, random=case.random, data=case.data,
                           family=case.family, m=m, rng=case.seed, callback=callback,
                           **case.kwargs, **options)

    fit(2_000)  # warm-up: workers started, kernel loaded
    if backend == "processes":
        from pyglmm.backends.processes import worker_pool

        pool = worker_pool(2)
        traffic = Traffic(lambda: (pool.bytes_sent, pool.bytes_received))
    elif backend == "dask":
        from pyglmm.backends.dask_cluster import DaskRound

        traffic = Traffic(lambda: (DaskRound.payload_sent, DaskRound.payload_received))
    else:
        traffic = Traffic(lambda: (0, 0))
    started = time.perf_counter()
    result = fit(int(spec["m"]), callback=traffic)
    wall = time.perf_counter() - started
    worker_peaks: list[float] = []
    if backend == "processes":
        replies = pool.exchange({slot: ("call", resource.getrusage, resource.RUSAGE_SELF)
                                 for slot in range(pool.n_workers)})
        worker_peaks = [_mib(r.ru_maxrss) for r in replies.values()]
    elif backend == "dask":
        replies = client.run(resource.getrusage, resource.RUSAGE_SELF)
        worker_peaks = [_mib(r.ru_maxrss) for r in replies.values()]
        client.close()
        cluster.close()
    per_eval = np.median(np.array(traffic.per_evaluation or [(0, 0)]), axis=0)
    opened = np.array(traffic.round_opened or [(0, 0)])
    return {
        "wall_s": wall,
        "evaluations": int(sum(len(r.trace) for r in result.rounds)),
        "rounds": [(r.m, r.iterations) for r in result.rounds],
        "main_peak_mib": _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "worker_peak_mib": max(worker_peaks) if worker_peaks else None,
        "sent_per_eval": float(per_eval[0]), "received_per_eval": float(per_eval[1]),
        "round_sent": [int(v) for v in opened[:, 0]],
        "estimates": [float(v) for v in np.concatenate([result.beta, result.nu])],
        "backend": result.backend,
    }


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one (case, backend) in a fresh process."""
    env = dict(os.environ)
    if spec["backend"] == "serial-1":
        env["NUMBA_NUM_THREADS"] = "1"
    try:
        done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(PREFIX):
            out: dict[str, Any] = json.loads(line[len(PREFIX):])
            return out
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}


def case_name(spec: dict[str, Any]) -> str:
    if spec["dataset"] == "salamander":
        return "salamander"
    return f"crossed Bernoulli, n = {spec['n']:,}, q = {spec['q']:,}"


def cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="salamander, m = 10^5 only")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--cases", default=None, help="comma-separated case numbers (0-2)")
    args = parser.parse_args(argv)
    if args.one:
        print(PREFIX + json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    cases = CASES[:1] if args.quick else CASES
    if args.cases:
        cases = tuple(CASES[int(i)] for i in args.cases.split(","))
    print(f"pyglmm backends benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    print()
    print("| case | m | backend | wall s | speed-up vs serial (1 thread) | evaluations "
          "| main peak MiB | worker peak MiB | bytes sent / received per evaluation "
          "| bytes sent at each round's start (work + first evaluation) | same estimates |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        results = {b: spawn({**case, "backend": b}, args.timeout) for b in BACKENDS}
        base = results["serial"].get("wall_s")
        one = results["serial-1"].get("wall_s")
        reference = results["serial"].get("estimates")
        for b in BACKENDS:
            r = results[b]
            if "error" in r:
                print(f"| {case_name(case)} | {case['m']:,} | {LABELS[b]} | {r['error']} "
                      "| | | | | | | |", flush=True)
                continue
            speed = (f"{base / r['wall_s']:.2f}x" if base else "-") + (
                f" ({one / r['wall_s']:.2f}x)" if one else "")
            traffic = ("-" if b.startswith("serial") else
                       f"{r['sent_per_eval']:,.0f} / {r['received_per_eval']:,.0f}")
            work = "-" if b.startswith("serial") else ", ".join(
                f"{v:,}" for v in r["round_sent"])
            same = "-" if reference is None else (
                "yes" if np.array_equal(r["estimates"], reference) else "NO")
            print(f"| {case_name(case)} | {case['m']:,} | {LABELS[b]} | "
                  f"{cell(r['wall_s'], 2)} | {speed} | {r['evaluations']} | "
                  f"{cell(r['main_peak_mib'], 0)} | {cell(r['worker_peak_mib'], 0)} | "
                  f"{traffic} | {work} | {same} |", flush=True)


if __name__ == "__main__":
    main()
