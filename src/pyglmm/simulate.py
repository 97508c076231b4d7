"""Seeded simulation of GLMM data with known parameters (for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import ArgumentError
from .families import Family, get_family


def simulate_glmm(
    family: str | Family,
    n_obs: int,
    groups: Mapping[str, int],
    beta: Sequence[float],
    nu: Sequence[Any],
    *,
    trials: int = 10,
    exposure: bool = False,
    rng: int | np.random.Generator | None = None,
) -> pd.DataFrame:
    """Simulate data from a GLMM with an intercept, one covariate and crossed factors.

    Each observation gets a covariate ``x ~ Uniform(-1, 1)`` and, for every grouping
    factor, a level drawn uniformly at random (so the factors are crossed); the
    canonical parameter is ``beta[0] + beta[1] * x + sum_g u_g[level]`` with
    ``u_g ~ N(0, nu_g)``. The fitting formula is ``"y ~ x"`` (``"cbind(y, fail) ~ x"``
    for the binomial) with random ``["~ 0 + g" for g in groups]``.

    A grouping factor whose ``nu`` is a 2 x 2 covariance matrix gets a random
    intercept and a random slope on ``x`` per level, ``(u_0, u_1) ~ N_2(0, nu_g)``,
    adding ``u_0 + u_1 x`` (fitted with ``"y ~ x + (1 + x | g)"``). With ``exposure``
    every observation gets an exposure ``t ~ Uniform(0.5, 5)`` (column ``t``) and
    ``log t`` is added to the canonical parameter (fitted with ``offset(log(t))``).

    Parameters
    ----------
    family : str or Family
        ``"bernoulli"``, ``"poisson"`` or ``"binomial"``.
    n_obs : int
        Number of observations.
    groups : mapping of str to int
        Name and number of levels of every grouping factor.
    beta : (intercept, slope)
    nu : sequence of float or 2 x 2 arrays
        Variance of each grouping factor's effects (or covariance of its intercept
        and slope), in the order of ``groups``.
    trials : int
        Binomial number of trials of every observation.
    rng : int or Generator, optional
        Seed.

    Returns
    -------
    pandas.DataFrame
        Columns ``y`` (and ``fail`` for the binomial), ``x`` and one categorical column
        per grouping factor.

    Examples
    --------
    >>> from pyglmm.simulate import simulate_glmm
    >>> df = simulate_glmm("poisson", 200, {"a": 10}, beta=(1.0, 0.5), nu=[0.4], rng=1)
    >>> df.shape
    (200, 3)
    """
    fam = get_family(family)
    if len(beta) != 2 or len(nu) != len(groups):
        raise ArgumentError("beta needs (intercept, slope) and nu one variance per group")
    generator = np.random.default_rng(rng)
    x = generator.uniform(-1.0, 1.0, n_obs)
    eta = beta[0] + beta[1] * x
    columns: dict[str, object] = {}
    for (name, n_levels), variance in zip(groups.items(), nu, strict=True):
        if np.ndim(variance) == 2:
            chol = np.linalg.cholesky(np.asarray(variance, dtype=np.float64))
            pair = generator.standard_normal((n_levels, 2)) @ chol.T
            level = generator.integers(0, n_levels, n_obs)
            eta = eta + pair[level, 0] + pair[level, 1] * x
        else:
            effects = generator.normal(0.0, np.sqrt(variance), n_levels)
            level = generator.integers(0, n_levels, n_obs)
            eta = eta + effects[level]
        columns[name] = pd.Categorical(
            [f"{name}{j + 1}" for j in level],
            categories=[f"{name}{j + 1}" for j in range(n_levels)],
        )
    frame: dict[str, object] = {}
    if exposure:
        t = generator.uniform(0.5, 5.0, n_obs)
        eta = eta + np.log(t)
    if fam.name == "bernoulli":
        frame["y"] = generator.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    elif fam.name == "binomial":
        successes = generator.binomial(trials, 1.0 / (1.0 + np.exp(-eta)))
        frame["y"] = successes
        frame["fail"] = trials - successes
    else:
        frame["y"] = generator.poisson(np.exp(eta))
    frame["x"] = x
    if exposure:
        frame["t"] = t
    frame.update(columns)
    return pd.DataFrame(frame)
