"""The serial backend: every chunk lives and is evaluated in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .base import RoundWork


class SerialBackend:
    """Compute everything here (the default, ``n_jobs=1``).

    The objective evaluates its own chunk store; the numba kernel runs its threads
    over the draws of each chunk.
    """

    description = "serial"

    def open_round(self, work: RoundWork) -> None:
        """Nothing to place: the objective's own store holds the chunks."""
        return None

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]``."""
        return [function(item) for item in items]
