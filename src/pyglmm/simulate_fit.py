"""Responses simulated from a fitted GLMM on its own rows (lme4's ``simulate``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .covariance import sqrt_covariance
from .errors import ArgumentError
from .newdata import SLAB, fit_design, fit_index
from .postargs import as_generator, choice
from .ranef import resample_conditional
from .scales import LOGIT, inverse_link

FloatArray = NDArray[np.float64]


def _new_effects(design: Any, nu: FloatArray, n: int, rng: np.random.Generator) -> FloatArray:
    """``n`` design-ordered random-effect vectors from ``N(0, D(psi))``."""
    out = np.empty((n, design.n_effects))
    for t, sigma in enumerate(design.layout.covariances(nu)):
        effects = design.level_effects(t)  # (levels, k)
        z = rng.standard_normal((n,) + effects.shape)
        out[:, effects] = z @ sqrt_covariance(sigma).T
    return out


def simulate(
    fit: Any,
    nsim: int = 1,
    rng: int | np.random.Generator | None = None,
    re: str = "new",
) -> pd.DataFrame:
    """Simulate responses on the fit's rows from the fitted model (lme4's ``simulate``).

    Parameters
    ----------
    fit : GLMMResults
    nsim : int
        Number of simulated responses per row.
    rng : int or numpy.random.Generator, optional
        Seed (default 0: reproducible).
    re : {"new", "conditional"}
        ``"new"``: every simulation draws new random effects from ``N(0, D(psi))`` at
        the estimate (lme4's ``use.u = FALSE``). ``"conditional"``: every simulation
        draws the random effects from their conditional distribution given the data, by
        resampling the fit's importance sample with its normalised weights, block by
        block (:func:`pyglmm.ranef.resample_conditional`).

    Returns
    -------
    pandas.DataFrame
        Columns ``sim_1`` ... ``sim_nsim``: responses (successes out of the rows'
        trials for the binomial), indexed by the 0-based positions of the fit's rows in
        the data as given.
    """
    choice(re, "re", ("new", "conditional"))
    if not isinstance(nsim, int | np.integer) or isinstance(nsim, bool) or nsim < 1:
        raise ArgumentError(f"nsim must be a positive integer, not {nsim!r}")
    design = fit_design(fit)
    generator = as_generator(rng)
    nsim = int(nsim)
    if re == "new":
        u = _new_effects(design, np.asarray(fit.nu, dtype=np.float64), nsim, generator)
    else:
        u = resample_conditional(fit, nsim, generator)
    name = fit.family.name
    if name not in LOGIT and name != "poisson":
        raise ArgumentError(f"simulate is not available for family {name!r}")
    fixed = design.offset + design.x @ np.asarray(fit.beta, np.float64)
    trials = design.trials.astype(np.int64)
    out = np.empty((design.n_obs, nsim))
    step = max(1, (SLAB * 256) // max(design.n_obs, 1))  # simulations per slab
    for start in range(0, nsim, step):
        stop = min(start + step, nsim)
        p = inverse_link(fit, fixed[None, :] + design.z_times(u[start:stop]))
        y = generator.binomial(trials, p) if name in LOGIT else generator.poisson(p)
        out[:, start:stop] = y.T
    return pd.DataFrame(out, index=fit_index(design),
                        columns=[f"sim_{k + 1}" for k in range(nsim)])
