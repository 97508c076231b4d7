"""Independent draws against randomised quasi-Monte Carlo (``sampler="qmc"``) at equal m.

``python benchmarks/qmc.py [--seeds 20] [--m 1000,10000] [--cases ...]`` prints a
markdown table: for each case, sampler and ``m``, over ``--seeds`` seeds, the spread of
the estimates (the largest over the parameters, in units of each parameter's SE), the
mean reported MCSE/SE and spread/MCSE (for the same parameter), the mean distance of
the estimates from the exact MLE (in SEs; one-factor cases, by Gauss-Hermite
quadrature) and the median time of a fit. Cases:

* ``booth_hobert``: ``y ~ 0 + x1``, ``~ 0 + z1`` (10 clusters of 15, Bernoulli);
* ``bacteria``: R glmm's ``bacteria``, ``y2 ~ trt + week_gt_2``, ``~ 0 + ID`` (50 children,
  4-5 Bernoulli responses each);
* ``poisson``: a simulated one-factor Poisson (80 groups of 5);
* ``salamander``: ``Mate ~ 0 + Cross``, crossed ``Female`` and ``Male`` (6 blocks of 20);
* ``crossed48``, ``crossed96``, ``crossed192``: simulated crossed Bernoulli, 4 blocks of
  32 x 16, 2 blocks of 64 x 32 and one block of 128 x 64 levels (blocks of 48, 96 and
  192 effects), 400 responses per block: the sizes where ``sampler="auto"`` draws
  independently.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import gammaln, logsumexp
from tables import markdown

import pyglmm as pg
from pyglmm.simulate import simulate_glmm


def crossed_blocks(n_blocks: int, n_a: int, n_b: int, seed: int) -> pd.DataFrame:
    """``n_blocks`` independent crossed blocks of ``n_a x n_b`` levels, 400 Bernoulli
    responses each (``y ~ x``, variances 0.8 and 0.5)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_blocks):
        a, b = rng.integers(0, n_a, 400), rng.integers(0, n_b, 400)
        x = rng.uniform(-1, 1, 400)
        eta = (-0.2 + 0.7 * x + rng.normal(0, np.sqrt(0.8), n_a)[a]
               + rng.normal(0, np.sqrt(0.5), n_b)[b])
        frames.append(pd.DataFrame({
            "y": (rng.random(400) < 1 / (1 + np.exp(-eta))).astype(int), "x": x,
            "a": [f"{k}a{i}" for i in a], "b": [f"{k}b{j}" for j in b]}))
    return pd.concat(frames, ignore_index=True)


def cases() -> dict[str, dict[str, Any]]:
    bacteria = pg.datasets.load_bacteria()
    bacteria = bacteria.assign(week_gt_2=(bacteria["week"] > 2).astype(float))
    return {
        "booth_hobert": dict(fixed="y ~ 0 + x1", random="~ 0 + z1", family="bernoulli",
                             data=pg.datasets.load_booth_hobert(), factor="z1"),
        "bacteria": dict(fixed="y2 ~ trt + week_gt_2", random="~ 0 + ID",
                         family="bernoulli", data=bacteria, factor="ID"),
        "poisson": dict(fixed="y ~ x", random="~ 0 + g", family="poisson",
                        data=simulate_glmm("poisson", 400, {"g": 80}, (0.3, 0.5), [0.5],
                                           rng=11), factor="g"),
        "salamander": dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
                           family="bernoulli", data=pg.datasets.load_salamander(),
                           factor=None),
    } | {
        f"crossed{(n_a + n_b)}": dict(fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"],
                                      family="bernoulli", factor=None,
                                      data=crossed_blocks(n_blocks, n_a, n_b, 40 + n_a))
        for n_blocks, n_a, n_b in ((4, 32, 16), (2, 64, 32), (1, 128, 64))
    }


def exact_mle(case: dict[str, Any], start: np.ndarray) -> np.ndarray | None:
    """The exact MLE of a one-factor model by 60-node Gauss-Hermite quadrature."""
    if case["factor"] is None:
        return None
    fit = pg.glmm(case["fixed"], case["random"], case["data"], case["family"], m=200,
                  rng=1, progress=False)
    x, y = fit.x, fit.y
    codes = pd.Categorical(case["data"][case["factor"]]).codes
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)  # for N(0, 1)
    log_w = np.log(weights / np.sqrt(2 * np.pi))
    poisson = case["family"] == "poisson"
    constant = -gammaln(y + 1).sum() if poisson else 0.0

    def negative_loglik(theta: np.ndarray) -> float:
        beta, nu = theta[:-1], theta[-1]
        if nu <= 0:
            return np.inf
        eta = (x @ beta)[:, None] + np.sqrt(nu) * nodes[None, :]
        terms = y[:, None] * eta - (np.exp(eta) if poisson else np.logaddexp(0, eta))
        per_group = np.zeros((codes.max() + 1, nodes.size))
        np.add.at(per_group, codes, terms)
        return -float(logsumexp(per_group + log_w, axis=1).sum() + constant)

    found = optimize.minimize(negative_loglik, start, method="Nelder-Mead",
                              options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20_000,
                                       "maxfev": 40_000})
    return np.asarray(found.x)


def study(name: str, case: dict[str, Any], sampler: str, m: int, seeds: int,
          mle: np.ndarray | None) -> dict[str, Any]:
    estimates, ratios, seconds, se = [], [], [], None
    for seed in range(1, seeds + 1):
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = pg.glmm(case["fixed"], case["random"], case["data"], case["family"], m=m,
                          rng=seed, sampler=sampler, progress=False)
        seconds.append(time.perf_counter() - started)
        estimates.append(fit.params().to_numpy())
        se = fit.se().to_numpy()
        ratios.append(fit.mcse().to_numpy() / se)
    values, mcse_se = np.array(estimates), np.array(ratios).mean(axis=0)
    spread = values.std(axis=0, ddof=1) / se
    worst = int(np.argmax(spread))
    row = {"case": name, "sampler": sampler, "m": m,
           "spread/SE (largest)": spread[worst], "parameter": fit.param_names[worst],
           "mean MCSE/SE": mcse_se[worst], "spread/MCSE": spread[worst] / mcse_se[worst],
           "median seconds": statistics.median(seconds)}
    if mle is not None:
        row["mean |estimate - MLE|/SE (largest)"] = float(
            np.max(np.abs(values - mle).mean(axis=0) / se))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--m", default="1000,10000")
    parser.add_argument("--cases", default="booth_hobert,bacteria,poisson,salamander")
    args = parser.parse_args()
    table = []
    all_cases = cases()
    for name in args.cases.split(","):
        case = all_cases[name]
        start = pg.glmm(case["fixed"], case["random"], case["data"], case["family"],
                        m=10_000, rng=99, progress=False).params().to_numpy()
        mle = exact_mle(case, start)
        for m in (int(v) for v in args.m.split(",")):
            for sampler in ("importance", "qmc"):
                table.append(study(name, case, sampler, m, args.seeds, mle))
                print(f"  {name} {sampler} m={m} done", flush=True)
    print(markdown(pd.DataFrame(table)))


if __name__ == "__main__":
    main()
