"""Checks of the arguments of the post-estimation functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ArgumentError, ArgumentTypeError


def as_generator(rng: Any) -> np.random.Generator:
    """A numpy Generator from a seed, SeedSequence or Generator (None: seed 0)."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ArgumentTypeError(f"rng must be an int seed or a numpy Generator, not "
                            f"{type(rng).__name__}")


def choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``; else an error naming ``name`` and the options."""
    if not isinstance(value, str) or value not in allowed:
        raise ArgumentError(f"{name} must be one of {list(allowed)}, not {value!r}")
    return value
