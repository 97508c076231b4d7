"""Checks of the arguments of :func:`pyglmm.glmm`, each naming the argument at fault.

The checks of the data and formulas live in :mod:`pyglmm.design`; here are the Monte
Carlo and optimiser settings (docs/method.md, including what R's glmm leaves
unchecked: ``m``, ``zeta``, ``rmax``, ``iterlim``), the seed and the starting point.
Every failure is an exception of :mod:`pyglmm.errors` that is also a ``ValueError``
or ``TypeError``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import ArgumentError, ArgumentTypeError
from .layout import ParameterLayout
from .settings import FitSettings

FloatArray = NDArray[np.float64]


def _integer(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; integer-valued floats are refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            raise ArgumentTypeError(
                f"{name} must be an integer, got the float {value!r}; write {int(value)}"
            )
        raise ArgumentTypeError(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _positive_real(value: Any, name: str) -> float:
    """``value`` as a positive finite float."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, not {type(value).__name__}")
    if not np.isfinite(float(value)) or float(value) <= 0:
        raise ArgumentError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_settings(
    *,
    m: Any,
    blocks: Any,
    importance: Any,
    recentre: Any,
    pilot_m: Any,
    p: tuple[Any, Any, Any],
    zeta: Any,
    rmax: Any,
    iterlim: Any,
    chunk_size: Any,
    shift: Any = True,
    do_pql: Any = True,
    zeta_per_block: bool = False,
    na_action: str = "raise",
    rng: Any = None,
    sampler: Any = "auto",
) -> FitSettings:
    """Validate the Monte Carlo and optimiser settings; return them as a FitSettings.

    Parameters
    ----------
    m, blocks, importance, recentre, pilot_m, zeta, rmax, iterlim, chunk_size, rng, sampler
        The arguments of :func:`pyglmm.glmm` of the same names (``zeta`` resolved to a
        number); ``rng`` becomes the seed's entropy and spawn key
        (:func:`seed_sequence`).
    p : (p1, p2, p3)
        The mixture probabilities of the ``"glmm"`` proposal.
    shift, do_pql
        The arguments of :func:`pyglmm.glmm`; ``shift`` is kept as its effective value
        (false unless ``importance="laplace"``).
    zeta_per_block : bool
        Whether ``zeta`` is the default Laplace t's base value, grown with the block.
    na_action : str
        Kept as given (the design checks it, :func:`pyglmm.design.build_design`).

    Returns
    -------
    FitSettings
        The settings, with ``p`` rescaled to sum to 1 and no ``par_init`` (set it with
        ``dataclasses.replace`` once the design names the parameters,
        :func:`check_par_init`).

    Raises
    ------
    pyglmm.errors.ArgumentError
        A value out of range (``m < 1``, ``p1 + p2 + p3 != 1``, ``p1 <= 0``,
        ``zeta <= 0``, ``rmax <= 0``, ``iterlim < 1``, an unknown option).
    pyglmm.errors.ArgumentTypeError
        A value of the wrong type (``m=1e4`` or ``m="100"``).

    Examples
    --------
    >>> from pyglmm.validation import check_settings
    >>> check_settings(m=100, blocks="joint", importance="glmm", recentre=0, pilot_m=50,
    ...                p=(0.5, 0.25, 0.25), zeta=5, rmax=1000, iterlim=100,
    ...                chunk_size=None).p
    (0.5, 0.25, 0.25)
    """
    if not isinstance(blocks, str) or blocks not in ("independent", "joint"):
        raise ArgumentError(f"blocks must be 'independent' or 'joint', not {blocks!r}")
    if not isinstance(importance, str) or importance not in ("laplace", "glmm"):
        raise ArgumentError(f"importance must be 'laplace' or 'glmm', not {importance!r}")
    if not isinstance(sampler, str) or sampler not in ("auto", "importance", "qmc", "mcmc"):
        raise ArgumentError(
            f"sampler must be 'auto', 'importance', 'qmc' or 'mcmc', not {sampler!r}")
    if sampler in ("mcmc", "qmc") and importance != "laplace":
        raise ArgumentError(
            f"sampler={sampler!r} draws from the Laplace approximation and needs "
            f"importance='laplace', not {importance!r}")
    if isinstance(recentre, str) and recentre != "auto":
        raise ArgumentError(
            f"recentre must be 'auto' or a non-negative integer, not {recentre!r}"
        )
    probs = []
    for name, value in zip(("p1", "p2", "p3"), p, strict=True):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            raise ArgumentTypeError(f"{name} must be a number, not {type(value).__name__}")
        if not 0.0 <= float(value) <= 1.0:
            raise ArgumentError(f"{name} must lie in [0, 1], got {value!r}")
        probs.append(float(value))
    if probs[0] <= 0:
        raise ArgumentError("p1 must be positive: the heavy-tailed t component bounds the weights")
    if abs(sum(probs) - 1.0) > 1e-8:
        raise ArgumentError(
            f"p1 + p2 + p3 must equal 1 (within 1e-8), got {probs[0]!r} + {probs[1]!r} + "
            f"{probs[2]!r} = {sum(probs)!r}"
        )
    total = sum(probs)
    p1, p2, p3 = (x / total for x in probs)
    checked = FitSettings(
        m=_integer(m, "m", 1),
        blocks=blocks,
        importance=importance,
        recentre="auto" if isinstance(recentre, str) else _integer(recentre, "recentre", 0),
        pilot_m=_integer(pilot_m, "pilot_m", 1),
        shift=bool(shift) and importance == "laplace",
        do_pql=bool(do_pql),
        p=(p1, p2, p3),
        zeta=_positive_real(zeta, "zeta"),
        zeta_per_block=bool(zeta_per_block),
        rmax=_positive_real(rmax, "rmax"),
        iterlim=_integer(iterlim, "iterlim", 1),
        chunk_size=None if chunk_size is None else _integer(chunk_size, "chunk_size", 1),
        na_action=na_action,
        par_init=None,
        rng_entropy=0,
        rng_spawn_key=(),
        sampler=sampler,
    )
    return checked.with_seed(seed_sequence(rng))


def seed_sequence(rng: Any) -> np.random.SeedSequence:
    """The root seed sequence of a fit from ``rng`` (int, SeedSequence, Generator, None).

    Parameters
    ----------
    rng : int, numpy.random.SeedSequence, numpy.random.Generator or None
        A non-negative integer seed, a seed sequence (used as is), a generator (four
        integers are drawn from it) or None (fresh entropy).

    Returns
    -------
    numpy.random.SeedSequence
    """
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(rng.integers(0, 2**63, size=4).tolist())
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool | np.bool_):
        if rng < 0:
            raise ArgumentError(f"rng must be a non-negative integer seed, got {rng}")
        return np.random.SeedSequence(int(rng))
    raise ArgumentTypeError(
        f"rng must be an int seed, a numpy SeedSequence or Generator, or None, "
        f"not {type(rng).__name__}"
    )


def check_par_init(
    par_init: Sequence[float] | None,
    names: Sequence[str],
    n_fixed: int,
    layout: ParameterLayout | None = None,
) -> FloatArray | None:
    """Validate a starting point ``(beta, nu)``.

    Parameters
    ----------
    par_init : sequence of float, pandas.Series or None
        The start: fixed effects first, then variance components. A Series whose
        index holds exactly the parameter names (as ``fit.params()`` returns) is
        aligned by name, whatever its order.
    names : sequence of str
        The parameter names of the model.
    n_fixed : int
        Number of fixed effects.
    layout : ParameterLayout, optional
        The model's parameter layout: only its variances must be positive, and every
        covariance matrix positive definite (default: every random parameter is a
        variance).

    Returns
    -------
    ndarray or None
        The start as floats, or None if ``par_init`` is None.

    Raises
    ------
    pyglmm.errors.ArgumentError
        Wrong length or names, a non-finite value, or a variance component that is
        not positive (at most 1e-9).
    pyglmm.errors.ArgumentTypeError
        Values that are not numbers.
    """
    if par_init is None:
        return None
    if isinstance(par_init, str | bytes):
        raise ArgumentTypeError("par_init must be a sequence of numbers, not a string")
    if isinstance(par_init, pd.Series) and not isinstance(par_init.index, pd.RangeIndex):
        given = [str(label) for label in par_init.index]
        if sorted(given) != sorted(names) or len(set(given)) != len(given):
            raise ArgumentError(
                f"par_init is named {given} but the model's parameters are {list(names)}; "
                "give the values in that order, or a Series with exactly these names"
            )
        par_init = par_init.set_axis(given).loc[list(names)]
    try:
        theta = np.asarray(par_init, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ArgumentTypeError("par_init must be a sequence of numbers") from None
    if theta.size != len(names):
        raise ArgumentError(
            f"par_init has {theta.size} values but the model has {len(names)} parameters "
            f"{list(names)} (fixed effects first, then variance components)"
        )
    if not np.all(np.isfinite(theta)):
        raise ArgumentError("par_init must hold finite numbers")
    psi = theta[n_fixed:] if layout is None else layout.psi(theta)
    is_variance = np.ones(psi.size, dtype=bool) if layout is None else layout.is_variance
    bad = [names[n_fixed + int(j)] for j in np.flatnonzero(is_variance & (psi <= 1e-9))]
    if bad:
        raise ArgumentError(
            f"par_init gives variance component(s) {bad} a non-positive value; "
            "variance components must be positive"
        )
    if layout is not None and not layout.feasible(psi):
        raise ArgumentError(
            f"par_init's variances and covariances {psi.tolist()} do not make positive "
            "definite covariance matrices (a correlation of 1 or more); make the "
            "covariances smaller"
        )
    return theta
