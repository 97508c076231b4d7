"""The same fit at other seeds: an empirical check of the Monte Carlo standard errors.

An MCSE says how far the estimate would move if the Monte Carlo sample were drawn
again. :func:`seed_check` draws it again: it repeats a fit (same data, model and
settings) at ``n_seeds`` other seeds and compares, per parameter, the spread of the
estimates over the seeds with the MCSE the fits report. A ratio near 1 says the MCSE is
honest; well above 1 that it is too small (R's glmm was 58-121 times too small on its
own salamander example). The refits are independent, so they run in parallel on the
backend of ``n_jobs`` or ``client``, one refit per task; each refit's numbers depend
only on its seed, never on where it ran.

The seeds are children of the fit's own root seed under a fixed spawn key
(:data:`SPAWN_KEY`), disjoint from the streams of the fit's chunks; with ``seed`` given,
they are the children of that seed instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .backends import get_backend
from .errors import ArgumentError, ArgumentTypeError

#: Spawn key under the fit's root seed from which the replicate seeds descend.
SPAWN_KEY = 0x5EED


@dataclass(frozen=True)
class _Refit:
    """One replicate's task: everything to repeat the fit at one seed (pickles)."""

    design: Any
    family: Any
    settings: Any


def _refit(task: _Refit) -> tuple[np.ndarray, np.ndarray]:
    """Run one replicate serially where it lands; return its estimate and MCSE."""
    from .fitting import run_fit

    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the replicates' own warnings repeat the fit's
        fit = run_fit(task.design, task.family, task.settings)
    theta = np.concatenate([fit.beta, fit.nu])
    return theta, fit.mcse().to_numpy()


def replicate_seeds(fit: Any, n_seeds: int,
                    seed: int | np.random.SeedSequence | None = None,
                    ) -> list[np.random.SeedSequence]:
    """The root seeds of the replicates (see the module's documentation)."""
    if seed is None:
        root = fit.settings.seed_sequence()
        parent = np.random.SeedSequence(root.entropy,
                                        spawn_key=(*root.spawn_key, SPAWN_KEY))
    elif isinstance(seed, np.random.SeedSequence):
        parent = seed
    else:
        parent = np.random.SeedSequence(seed)
    return parent.spawn(n_seeds)


def seed_check(
    fit: Any,
    n_seeds: int = 5,
    n_jobs: int | None = None,
    client: Any = None,
    seed: int | np.random.SeedSequence | None = None,
) -> pd.DataFrame:
    """Refit at ``n_seeds`` other seeds and compare the spread with the reported MCSE.

    Parameters
    ----------
    fit : GLMMResults
        A fit of :func:`pyglmm.glmm` (a fixed ``m``; the replicates use its settings).
    n_seeds : int
        Number of refits (at least 2).
    n_jobs, client
        Where the refits run (as in :func:`pyglmm.glmm`): local processes, a dask
        cluster, or this process.
    seed : int or SeedSequence, optional
        Parent of the replicates' seeds (default: derived from the fit's own seed).

    Returns
    -------
    pandas.DataFrame
        One row per parameter (as in ``fit.mcse()``): ``estimate`` (the fit's), ``mean`` and
        ``spread`` (standard deviation) over the replicates, ``mcse`` (the mean MCSE
        they report), ``ratio`` = spread / mcse (about 1 when the MCSE is honest; with
        ``n`` seeds it scatters by roughly ``1/sqrt(2 (n - 1))``), and ``replicate_k``
        columns with each replicate's estimate. ``attrs["seeds"]`` holds the seeds'
        ``(entropy, spawn_key)``.

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(),
    ...               m=500, rng=1)
    >>> check = pg.seed_check(fit, n_seeds=3)
    >>> list(check.columns[:5])
    ['estimate', 'mean', 'spread', 'mcse', 'ratio']
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)):
        raise ArgumentTypeError(f"n_seeds must be an integer, not {type(n_seeds).__name__}")
    if n_seeds < 2:
        raise ArgumentError(f"n_seeds must be at least 2 to measure a spread, not {n_seeds}")
    backend = get_backend(n_jobs, client)
    seeds = replicate_seeds(fit, int(n_seeds), seed)
    tasks = [_Refit(fit.design, fit.family, fit.settings.with_seed(s)) for s in seeds]
    results = backend.map(_refit, tasks)
    estimates = np.array([theta for theta, _ in results])
    mcses = np.array([mcse for _, mcse in results])
    spread = estimates.std(axis=0, ddof=1)
    mean_mcse = mcses.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mean_mcse > 0, spread / mean_mcse, np.nan)
    frame = pd.DataFrame(
        {"estimate": np.concatenate([fit.beta, fit.nu]), "mean": estimates.mean(axis=0),
         "spread": spread, "mcse": mean_mcse, "ratio": ratio},
        index=pd.Index(list(fit.mcse().index), name="parameter"),
    )
    for k in range(len(seeds)):
        frame[f"replicate_{k + 1}"] = estimates[k]
    frame.attrs["seeds"] = [(s.entropy, tuple(s.spawn_key)) for s in seeds]
    return frame
