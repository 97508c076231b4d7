"""Regenerate the golden master of pyglmm's own fits: ``tests/golden/fits.json``.

Run from anywhere::

    python tests/golden/regenerate.py

It runs every case of :data:`CASES` (small, fast fits with fixed seeds) and writes, for
each, the exact call and its numbers: the estimates, the MCLA value, gradient and
Hessian, the standard errors, the Monte Carlo standard errors, the per-block ESS, every
sampling round's estimate and value, and the ``varcorr()`` table. ``tests/test_golden.py``
re-runs the cases and compares against the file with ``rtol=1e-10`` (on another CPU
``1e-5``: see its docstring).

Regenerate only when a change of pyglmm's numbers is intended, and say why in
CHANGELOG.md. The data of every case are referred to by name (:data:`DATA`); a name is
a recipe (a bundled data set, a CSV of ``tests/reference``, a call of
:func:`pyglmm.simulate.simulate_glmm`, or a fixed weight vector), written into the file
too.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy

import pyglmm as pg
from pyglmm.simulate import simulate_glmm

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
GOLDEN_FILE = HERE / "fits.json"
FORMAT_VERSION = 1

#: Named data: every recipe is plain JSON and fully determines its data.
DATA: dict[str, dict[str, Any]] = {
    "salamander": {"dataset": "load_salamander"},
    "booth_hobert": {"dataset": "load_booth_hobert"},
    "poisson_slopes": {"csv": "reference/poisson_slopes.csv"},
    "sim_poisson": {"simulate": {
        "family": "poisson", "n_obs": 300, "groups": {"g": 20},
        "beta": [0.5, 0.3], "nu": [0.4], "rng": 3,
    }},
    "sim_binomial_crossed": {"simulate": {
        "family": "binomial", "n_obs": 200, "groups": {"a": 15, "b": 10},
        "beta": [0.2, 0.5], "nu": [0.5, 0.3], "rng": 6,
    }},
    "sim_poisson_slope": {"simulate": {
        "family": "poisson", "n_obs": 300, "groups": {"g": 20},
        "beta": [0.5, 0.3], "nu": [[[0.3, 0.05], [0.05, 0.2]]], "rng": 4,
    }},
    "sim_poisson_exposure": {"simulate": {
        "family": "poisson", "n_obs": 300, "groups": {"g": 20},
        "beta": [0.2, 0.3], "nu": [0.3], "exposure": True, "rng": 5,
    }},
    # np.arange(n_rows) % period + 1, n_rows the number of rows of the named data
    "booth_hobert_weights": {"cycle": {"of": "booth_hobert", "period": 3}},
}

#: Keyword arguments of :func:`pyglmm.glmm` whose value is a name of :data:`DATA`.
BY_NAME = ("data", "weights", "offset")

_SALAMANDER = {
    "fixed": "Mate ~ 0 + Cross", "random": ["~ 0 + Female", "~ 0 + Male"],
    "data": "salamander", "family": "bernoulli", "m": 1000, "rng": 1234,
}

#: The golden cases: a name and the keyword arguments of :func:`pyglmm.glmm`.
CASES: list[dict[str, Any]] = [
    {"name": "salamander_independent", "call": dict(_SALAMANDER)},
    {"name": "salamander_independent_draws",
     "call": {**_SALAMANDER, "sampler": "importance"}},
    {"name": "salamander_markov_chains",
     "call": {**_SALAMANDER, "m": 512, "sampler": "mcmc"}},
    {"name": "salamander_joint_glmm_recentre0",
     "call": {**_SALAMANDER, "blocks": "joint", "importance": "glmm", "recentre": 0}},
    {"name": "salamander_varcomps_equal", "call": {**_SALAMANDER, "varcomps_equal": [1, 1]}},
    {"name": "poisson_no_shift", "call": {
        "fixed": "y ~ x", "random": "~ 0 + g", "data": "sim_poisson", "family": "poisson",
        "m": 1000, "rng": 2, "shift": False,
    }},
    {"name": "binomial_crossed", "call": {
        "fixed": "cbind(y, fail) ~ x", "random": ["~ 0 + a", "~ 0 + b"],
        "data": "sim_binomial_crossed", "family": "binomial", "m": 1000, "rng": 5,
    }},
    {"name": "poisson_correlated_slope_bars", "call": {
        "fixed": "y ~ x + (1 + x | g)", "data": "poisson_slopes", "family": "poisson",
        "m": 1000, "rng": 1,
    }},
    {"name": "poisson_random_slope_list", "call": {
        "fixed": "y ~ x", "random": ["~ 0 + g", "~ 0 + x:g"], "data": "sim_poisson_slope",
        "family": "poisson", "m": 1000, "rng": 4,
    }},
    {"name": "poisson_offset", "call": {
        "fixed": "y ~ x + offset(log(t))", "random": ["~ 0 + g"],
        "data": "sim_poisson_exposure", "family": "poisson", "m": 1000, "rng": 8,
    }},
    {"name": "bernoulli_weights", "call": {
        "fixed": "y ~ 0 + x1", "random": "~ 0 + z1", "data": "booth_hobert",
        "weights": "booth_hobert_weights", "family": "bernoulli", "m": 1000, "rng": 7,
    }},
]


def load_data(name: str, data: dict[str, dict[str, Any]] | None = None) -> Any:
    """The data set, or array, named ``name`` in ``data`` (default :data:`DATA`), fresh."""
    data = DATA if data is None else data
    recipe = data[name]
    if "dataset" in recipe:
        return getattr(pg.datasets, recipe["dataset"])()
    if "csv" in recipe:
        return pd.read_csv(TESTS / recipe["csv"])
    if "simulate" in recipe:
        args = dict(recipe["simulate"])
        return simulate_glmm(args.pop("family"), args.pop("n_obs"), args.pop("groups"),
                             beta=tuple(args.pop("beta")), nu=args.pop("nu"), **args)
    if "cycle" in recipe:
        n_rows = len(load_data(recipe["cycle"]["of"], data))
        return np.arange(n_rows) % recipe["cycle"]["period"] + 1
    raise ValueError(f"unknown data recipe {recipe!r}")


def build_call(call: dict[str, Any], data: dict[str, dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    """The keyword arguments of :func:`pyglmm.glmm`, data names replaced by the data."""
    return {key: load_data(value, data) if key in BY_NAME else value
            for key, value in call.items()}


def _series(series: pd.Series) -> dict[str, list[Any]]:
    return {"names": [str(k) for k in series.index], "values": series.to_numpy().tolist()}


def _frame(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A table, column by column: labels as strings (None if missing), numbers as floats."""
    out: dict[str, list[Any]] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            out[str(column)] = values.to_numpy(dtype=np.float64).tolist()
        else:
            out[str(column)] = [None if pd.isna(v) else str(v) for v in values]
    return out


def _floats(values: Any) -> Any:
    return np.asarray(values, dtype=np.float64).tolist()


def fit_results(fit: Any) -> dict[str, Any]:
    """The numbers of a fit that the golden master pins."""
    return {
        "params": _series(fit.params()),
        "loglike_value": float(fit.loglike_value),
        "loglike_gradient": _floats(fit.loglike_gradient),
        "loglike_hessian": _floats(fit.loglike_hessian),
        "se": _series(fit.se()),
        "mcse": _series(fit.mcse()),
        "block_ess": _floats(fit.block_ess),
        "n_rounds": len(fit.rounds),
        "rounds": [
            {"sampler": r.sampler, "m": int(r.m), "iterations": int(r.iterations),
             "estimate": _floats(r.estimate), "value": float(r.value),
             "min_ess": float(r.min_ess)}
            for r in fit.rounds
        ],
        "varcorr": _frame(fit.varcorr()),
    }


def run_case(call: dict[str, Any], data: dict[str, dict[str, Any]] | None = None
             ) -> tuple[dict[str, Any], list[list[str]], float]:
    """Fit one call: its results, the warnings it raised and its time in seconds."""
    kwargs = build_call(call, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        fit = pg.glmm(**kwargs)
        seconds = time.perf_counter() - start
    raised = [[w.category.__name__, str(w.message)] for w in caught]
    return fit_results(fit), raised, seconds


def arithmetic() -> str:
    """What decides the last bits of a fit: numba's target CPU and OpenBLAS's kernels.

    On another CPU the same code rounds differently (vector widths, fused multiply-add),
    and the optimisers' stopping rules carry that into the estimates at about 1e-7
    relative; tests/test_golden.py compares bit-near (1e-10) only on the same arithmetic.
    """
    import llvmlite.binding as llvm
    from threadpoolctl import threadpool_info

    blas = sorted(f"{i['internal_api']}:{i.get('architecture')}" for i in threadpool_info()
                  if i.get("user_api") == "blas")
    return f"cpu:{llvm.get_host_cpu_name()} " + " ".join(blas)


def header() -> dict[str, Any]:
    return {
        "arithmetic": arithmetic(),
        "format_version": FORMAT_VERSION,
        "pyglmm": pg.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "regenerate": "python tests/golden/regenerate.py",
        "note": (
            "Golden master of pyglmm's own fits, checked by tests/test_golden.py "
            "(rtol=1e-10 on the same arithmetic, 1e-5 on another CPU). Regenerate only "
            "when a change of the numbers is intended, "
            "and say why in CHANGELOG.md. Data are referred to by name: see 'data'; "
            "call keys " + ", ".join(BY_NAME) + " hold such names."
        ),
    }


def main() -> int:
    cases = []
    total = 0.0
    for case in CASES:
        results, raised, seconds = run_case(case["call"])
        total += seconds
        flag = f"  warnings: {raised}" if raised else ""
        print(f"{case['name']:<36s} {seconds:6.2f} s{flag}")
        cases.append({"name": case["name"], "call": case["call"], "warnings": raised,
                      "results": results})
    record = {"header": header(), "by_name": list(BY_NAME), "data": DATA, "cases": cases}
    GOLDEN_FILE.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(cases)} cases in {total:.2f} s -> {GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
