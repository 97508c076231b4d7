"""Coverage of confidence intervals and size of the null LRT, on the salamander design.

Usage::

    python benchmarks/interval_coverage.py [--n-data 200] [--m 2000] [--seed 20261202]
                                  [--n-jobs 1] [--parts AB] [--csv ROWS.csv]
                                  [--indices 4,10,...]
    python benchmarks/interval_coverage.py --from-csv ROWS.csv   # the tables of a (partial) run

Part A simulates ``--n-data`` data sets from the salamander design (Bernoulli,
``Mate ~ 0 + Cross`` with crossed random effects ``~ 0 + Female`` and ``~ 0 + Male``)
at the maximum-likelihood estimate of the real data (:data:`TRUTH`), fits each at
``m = --m`` and records whether the true value of every parameter lies in its 95%
Wald interval, its Wald interval of ``log(nu)`` mapped back (``method="log"``; the
same as Wald for a fixed effect) and its profile-likelihood interval, with each end
re-centred once (the default) and on the fit's own sample alone. The table gives
each coverage with its binomial standard error ``sqrt(c (1 - c) / n)``.

Part B simulates ``--n-data`` data sets with the ``M`` variance set to 0 (the other
parameters as in part A), fits the null model (``~ 0 + Female`` only) and the
alternative (both terms), and runs :func:`pyglmm.lrt`: the rejection rate at 5% with
the chi-bar-square mixture ``0.5 chi2(0) + 0.5 chi2(1)`` and with the naive
``chi2(1)``.

Data set ``i`` draws everything (its data and the seeds of its fits) from child ``i``
of ``numpy.random.SeedSequence(--seed).spawn(--n-data)``, so a run is reproducible and
does not depend on ``--n-jobs``. Data sets are spread over ``--n-jobs`` local worker
processes with :func:`pyglmm.backends.get_backend`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from tables import markdown

import pyglmm as pg
from pyglmm.backends import get_backend

#: The MLE of the salamander data (this repository's reference value: the mean of nine
#: large-sample MCLA fits, MCSE at most 0.002; Booth and Hobert's 1999 MCEM estimate
#: agrees to 3 significant figures). Fixed effects, then the variances of F and M.
TRUTH = {
    "CrossR/R": 1.0199, "CrossR/W": 0.3223, "CrossW/R": -1.942, "CrossW/W": 0.9969,
    "F": 1.3861, "M": 1.243,
}
FIXED = ("CrossR/R", "CrossR/W", "CrossW/R", "CrossW/W")
#: ``profile`` re-centres each end (the default of ``confint(method="profile")``);
#: ``profile_own`` solves on the fit's own sample alone (``recentre=0``).
METHODS = ("wald", "log", "profile_own", "profile")
LEVEL = 0.95
#: Data sets handed to the workers between two writes of ``--csv``.
BATCH = 10


@dataclass(frozen=True)
class Job:
    """One data set: which part, its index and its seed sequence, and the MCLA size."""

    part: str
    index: int
    seed: np.random.SeedSequence
    m: int


def simulate_mate(seed: np.random.SeedSequence, nu_f: float, nu_m: float) -> pd.DataFrame:
    """The salamander data with ``Mate`` redrawn from the model at :data:`TRUTH`.

    ``nu_f`` and ``nu_m`` are the variances of the female and male effects.
    """
    data = pg.datasets.load_salamander().copy()
    rng = np.random.default_rng(seed)
    female = data["Female"].cat.codes.to_numpy()
    male = data["Male"].cat.codes.to_numpy()
    u_f = rng.standard_normal(data["Female"].cat.categories.size) * math.sqrt(nu_f)
    u_m = rng.standard_normal(data["Male"].cat.categories.size) * math.sqrt(nu_m)
    cross = data["Cross"].astype(str).to_numpy()
    beta = np.array([TRUTH[f"Cross{c}"] for c in cross])
    eta = beta + u_f[female] + u_m[male]
    data["Mate"] = rng.binomial(1, expit(eta)).astype(np.int64)
    return data


def _fit(data: pd.DataFrame, random: list[str], names: list[str], m: int,
         seed: np.random.SeedSequence) -> pg.GLMMResults:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted through the results below
        return pg.glmm("Mate ~ 0 + Cross", random, data, family="bernoulli", m=m,
                       rng=seed, varcomps_names=names)


def run_job(job: Job) -> dict[str, object]:
    """Fit one data set of part ``A`` (intervals) or ``B`` (null LRT); one row of results."""
    start = time.perf_counter()
    data_seed, fit_seed, null_seed = job.seed.spawn(3)
    row: dict[str, object] = {"part": job.part, "index": job.index}
    if job.part == "A":
        data = simulate_mate(data_seed, TRUTH["F"], TRUTH["M"])
        fit = _fit(data, ["~ 0 + Female", "~ 0 + Male"], ["F", "M"], job.m, fit_seed)
        row["converged"] = bool(fit.trust_converged)
        for method in METHODS:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ci = (fit.confint(level=LEVEL, method="profile", recentre=0)
                      if method == "profile_own" else fit.confint(level=LEVEL, method=method))
            if method == "profile":  # ends that had not settled after the last round
                row["profile:unsettled"] = sum("still moving" in str(w.message)
                                               for w in caught)
            for name, truth in TRUTH.items():
                lower, upper = float(ci.iloc[ci.index.get_loc(name), 0]), float(
                    ci.iloc[ci.index.get_loc(name), 1])
                row[f"{method}:{name}:lower"] = lower
                row[f"{method}:{name}:upper"] = upper
                row[f"{method}:{name}"] = (float(lower <= truth <= upper)
                                           if np.isfinite(lower) and np.isfinite(upper)
                                           else math.nan)
    else:
        data = simulate_mate(data_seed, TRUTH["F"], 0.0)
        alt = _fit(data, ["~ 0 + Female", "~ 0 + Male"], ["F", "M"], job.m, fit_seed)
        null = _fit(data, ["~ 0 + Female"], ["F"], job.m, null_seed)
        test = pg.lrt(null, alt)
        row.update({
            "converged": bool(alt.trust_converged and null.trust_converged),
            "statistic": test.statistic, "mcse": test.mcse, "p_mixture": test.p_value,
            "p_naive": test.naive_p_value, "null_distribution": test.null_distribution,
            "nu_M": float(alt.nu[1]),
        })
    row["seconds"] = time.perf_counter() - start
    return row


def _rate(values: np.ndarray) -> tuple[float, float, int]:
    """Mean of 0/1 values (NaN ignored), its binomial SE and the number used."""
    used = values[np.isfinite(values)]
    n = used.size
    if n == 0:
        return math.nan, math.nan, 0
    c = float(used.mean())
    return c, math.sqrt(c * (1.0 - c) / n), n


def coverage_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Part A: coverage (and its binomial SE) of each method for each parameter."""
    out = []
    for name in TRUTH:
        line: dict[str, object] = {"parameter": name, "truth": TRUTH[name]}
        for method in METHODS:
            c, se, n = _rate(rows[f"{method}:{name}"].to_numpy(dtype=float))
            line[method] = f"{100 * c:.1f} ({100 * se:.1f})"
            if n < len(rows):
                line[method] += f" [n={n}]"
        out.append(line)
    return pd.DataFrame(out)


def lrt_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Part B: rejection rates at 5% of the mixture and naive p-values."""
    out = []
    for label, column in (("chi-bar-square 0.5 chi2(0) + 0.5 chi2(1)", "p_mixture"),
                          ("naive chi2(1)", "p_naive")):
        rejected = (rows[column].to_numpy(dtype=float) < 0.05).astype(float)
        c, se, n = _rate(rejected)
        out.append({"reference": label, "rejection rate at 5% (%)": f"{100 * c:.1f}",
                    "binomial SE (%)": f"{100 * se:.1f}", "data sets": n})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-data", type=int, default=200, help="data sets per part")
    parser.add_argument("--m", type=int, default=2000, help="Monte Carlo sample size")
    parser.add_argument("--seed", type=int, default=20261202, help="root seed")
    parser.add_argument("--n-jobs", type=int, default=1, help="local worker processes")
    parser.add_argument("--parts", default="AB", help="which parts to run: A, B or AB")
    parser.add_argument("--indices", default=None,
                        help="only these data sets (comma-separated 0-based indices among "
                             "--n-data), e.g. to refit some at a larger --m")
    parser.add_argument("--csv", default=None,
                        help="also write every data set's row here (after every batch)")
    parser.add_argument("--from-csv", default=None,
                        help="print the tables of the rows in this CSV (from --csv), "
                             "fitting nothing")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    children = np.random.SeedSequence(args.seed).spawn(args.n_data)
    per_part = [child.spawn(2) for child in children]  # (part A's, part B's) seeds
    indices = (range(args.n_data) if args.indices is None
               else [int(i) for i in args.indices.split(",")])
    jobs = [Job(part, i, per_part[i][k], args.m)  # A0, B0, A1, B1, ...
            for i in indices
            for k, part in enumerate(("A", "B")) if part in args.parts.upper()]
    if args.from_csv:
        rows = pd.read_csv(args.from_csv)
    else:
        backend = get_backend(n_jobs=args.n_jobs)
        results: list[dict[str, object]] = []
        try:
            for lo in range(0, len(jobs), BATCH):  # the CSV is rewritten after each batch
                results.extend(backend.map(run_job, jobs[lo:lo + BATCH]))
                if args.csv:
                    pd.DataFrame(results).to_csv(args.csv, index=False)
        finally:
            shutdown = getattr(backend, "shutdown", None)
            if shutdown is not None:
                shutdown()
        rows = pd.DataFrame(results)
    print(f"# pyglmm {pg.__version__}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
          f"n-data {args.n_data}, m {args.m}, seed {args.seed}, n-jobs {args.n_jobs}, "
          f"wall {time.perf_counter() - started:.0f} s"
          + (f" (rows read from {args.from_csv})" if args.from_csv else ""))
    for part, table in (("A", coverage_table), ("B", lrt_table)):
        sub = rows[rows["part"] == part]
        if sub.empty:
            continue
        print(f"\nPart {part}: {len(sub)} data sets, {int(sub['converged'].sum())} with "
              f"every fit converged, median {sub['seconds'].median():.1f} s per data set")
        print(markdown(table(sub.reset_index(drop=True))))
        if part == "B":
            print(f"statistic: {int((sub['statistic'] <= 1e-8).sum())} of {len(sub)} at "
                  f"or below 0; largest MCSE {sub['mcse'].max():.3f}")


if __name__ == "__main__":
    main()
