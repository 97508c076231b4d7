"""Choose pyglmm's default proposal settings by measurement (docs/method.md).

For each candidate setting (blocks, importance sampler, zeta, re-centring rounds) it
fits each case with 20 seeds at m = 10,000 and prints, per case and setting: the
largest |mean estimate - reference MLE| in SE units, the largest spread (sd over
seeds) in SE units, the mean of the smallest per-block ESS as a fraction of m, the
median largest MCSE/SE, the sd of the maximised log-likelihood over seeds and the
median wall time. Cases: salamander (Bernoulli, crossed, reference MLE in
shared/reference), Booth-Hobert (Bernoulli, 10 one-dimensional blocks, exact MLE)
and a simulated small-count Poisson case (reference = truth of the simulation; its
spread is what matters). radish2 (Poisson, counts in the hundreds) can be added with
--cases; see BENCHMARKS.md for why it is not a default case.

Usage: python benchmarks/defaults.py [--seeds 20] [--m 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import pyglmm as pg
from pyglmm.simulate import simulate_glmm

SALAMANDER_MLE = np.array([1.0199, 0.3223, -1.942, 0.9969, 1.3861, 1.243])
SALAMANDER_SE = np.array([0.413, 0.395, 0.471, 0.412, 0.631, 0.586])
RADISH_MLE = np.array([5.9176, 0.2620, -0.4147, 0.50705, 0.50412, 0.01241])

SETTINGS = {
    "R glmm: mixture, joint, no re-centring": dict(
        importance="glmm", blocks="joint", recentre=0, zeta=5),
    "mixture, blocks, no re-centring": dict(importance="glmm", recentre=0, zeta=5),
    "mixture, blocks, auto re-centring": dict(importance="glmm", recentre="auto", zeta=5),
    "laplace t5, blocks, no re-centring, fixed draws": dict(
        importance="laplace", recentre=0, zeta=5, shift=False),
    "laplace t5, blocks, auto, fixed draws": dict(
        importance="laplace", recentre="auto", zeta=5, shift=False),
    "laplace t5, blocks, auto, shifted draws": dict(
        importance="laplace", recentre="auto", zeta=5, shift=True),
    "laplace t10, blocks, auto, shifted draws": dict(
        importance="laplace", recentre="auto", zeta=10, shift=True),
    "laplace t20, blocks, auto, shifted draws": dict(
        importance="laplace", recentre="auto", zeta=20, shift=True),
    "laplace t50, blocks, auto, shifted draws": dict(
        importance="laplace", recentre="auto", zeta=50, shift=True),
    "laplace t max(20, d), blocks, auto, shifted draws (default)": dict(
        importance="laplace", recentre="auto", shift=True),
}


def cases() -> dict[str, dict]:
    sim = simulate_glmm("poisson", 300, {"a": 15, "b": 12}, beta=(0.3, 0.6), nu=[0.5, 0.3],
                        rng=20261125)
    return {
        "salamander": dict(
            args=("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"],
                  pg.datasets.load_salamander(), "bernoulli"),
            kw=dict(varcomps_names=["F", "M"]), ref=SALAMANDER_MLE),
        "booth_hobert": dict(
            args=("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), "bernoulli"),
            kw={}, ref=np.array([6.132, 1.766])),
        "radish2": dict(
            args=("resp ~ Site*Region", ["~ 0 + Block", "~ 0 + Pop"],
                  pg.datasets.load_radish2(), "poisson"),
            kw={}, ref=RADISH_MLE),
        "poisson-sim": dict(
            args=("y ~ x", ["~ 0 + a", "~ 0 + b"], sim, "poisson"),
            kw={}, ref=np.array([0.3, 0.6, 0.5, 0.3])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--cases", default="salamander,booth_hobert,poisson-sim")
    parser.add_argument("--settings", default=None, help="comma-separated setting numbers")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    lines = [
        f"m = {args.m}, {args.seeds} seeds per row; bias and spread in units of each "
        "parameter's SE (largest over parameters)",
        "",
        "| case | setting | max bias/SE | max sd/SE | min ESS/m | MCSE/SE | sd loglik "
        "| median s | converged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    all_cases = cases()
    for case_name in args.cases.split(","):
        case = all_cases[case_name]
        chosen = list(SETTINGS.items())
        if args.settings:
            chosen = [chosen[int(i)] for i in args.settings.split(",")]
        for name, setting in chosen:
            est, ses, lls, ess, ratio, secs, conv = [], [], [], [], [], [], 0
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                try:
                    fit = pg.glmm(*case["args"], m=args.m, rng=seed, **case["kw"], **setting)
                except Exception as exc:  # a failed fit is a result too
                    print(f"  {case_name} {name} seed {seed}: {exc}", flush=True)
                    continue
                secs.append(time.perf_counter() - t0)
                est.append(fit.params().to_numpy())
                ses.append(fit.se().to_numpy())
                lls.append(fit.loglike_value)
                ess.append(fit.block_ess.min() / fit.m)
                ratio.append(np.nanmax(fit.mcse().to_numpy() / fit.se().to_numpy()))
                conv += fit.trust_converged
            est_a = np.array(est)
            # salamander: the reference SE; elsewhere the median SE of the fits
            se = SALAMANDER_SE if case_name == "salamander" else np.nanmedian(ses, axis=0)
            bias = np.abs(est_a.mean(0) - case["ref"]) / se
            spread = est_a.std(0, ddof=1) / se
            row = (f"| {case_name} | {name} | {bias.max():.3f} | {spread.max():.3f} | "
                   f"{np.mean(ess):.3f} | {np.median(ratio):.3f} | {np.std(lls, ddof=1):.4f} | "
                   f"{np.median(secs):.2f} | {conv}/{len(est)} |")
            lines.append(row)
            print(row, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
