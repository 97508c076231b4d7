"""Checks of the arguments of :func:`pyglmm.glmm`, each naming the argument at fault."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ArgumentError, ArgumentTypeError

FloatArray = NDArray[np.float64]


def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            raise ArgumentTypeError(
                f"{name} must be an integer, got the float {value!r}; write {int(value)}"
            )
        raise ArgumentTypeError(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _positive_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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
) -> dict[str, Any]:
    """Validate the Monte Carlo and optimiser settings; return them normalised."""
    if blocks not in ("independent", "joint"):
        raise ArgumentError(f"blocks must be 'independent' or 'joint', not {blocks!r}")
    if importance not in ("laplace", "glmm"):
        raise ArgumentError(f"importance must be 'laplace' or 'glmm', not {importance!r}")
    probs = []
    for name, value in zip(("p1", "p2", "p3"), p, strict=True):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ArgumentTypeError(f"{name} must be a number, not {type(value).__name__}")
        if not 0.0 <= float(value) <= 1.0:
            raise ArgumentError(f"{name} must lie in [0, 1], got {value!r}")
        probs.append(float(value))
    if probs[0] <= 0:
        raise ArgumentError("p1 must be positive: the heavy-tailed t component bounds the weights")
    if abs(sum(probs) - 1.0) > 1e-8:
        raise ArgumentError(f"p1 + p2 + p3 must equal 1 (within 1e-8), got {sum(probs)!r}")
    total = sum(probs)
    return {
        "m": _integer(m, "m", 1),
        "blocks": blocks,
        "importance": importance,
        "recentre": -1 if recentre == "auto" else _integer(recentre, "recentre", 0),
        "pilot_m": _integer(pilot_m, "pilot_m", 1),
        "p": tuple(x / total for x in probs),
        "zeta": _positive_real(zeta, "zeta"),
        "rmax": _positive_real(rmax, "rmax"),
        "iterlim": _integer(iterlim, "iterlim", 1),
        "chunk_size": None if chunk_size is None else _integer(chunk_size, "chunk_size", 1),
    }


def seed_sequence(rng: Any) -> np.random.SeedSequence:
    """The root seed sequence of a fit from ``rng`` (int, SeedSequence, Generator, None)."""
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(rng.integers(0, 2**63, size=4).tolist())
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ArgumentError(f"rng must be a non-negative integer seed, got {rng}")
        return np.random.SeedSequence(int(rng))
    raise ArgumentTypeError(
        f"rng must be an int seed, a numpy SeedSequence or Generator, or None, "
        f"not {type(rng).__name__}"
    )


def check_par_init(
    par_init: Sequence[float] | None, names: Sequence[str], n_fixed: int
) -> FloatArray | None:
    """Validate a starting point ``(beta, nu)``."""
    if par_init is None:
        return None
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
    bad = [names[n_fixed + int(j)] for j in np.flatnonzero(theta[n_fixed:] <= 1e-9)]
    if bad:
        raise ArgumentError(
            f"par_init gives variance component(s) {bad} a non-positive value; "
            "variance components must be positive"
        )
    return theta
