"""The seam between the fit and the backends: a round's work, its shards, the protocol.

A sampling round is fully described by :class:`RoundWork`: the model in block order,
the proposal, the shift, and one seed stream and size per chunk. A backend splits the
runs of :func:`pyglmm.chunks.merge_groups` into consecutive :class:`Shard` s, one per
worker; each shard draws its chunks from their seeds where it lives, keeps them there
for the whole round (within its memory budget) and, for every ``theta`` the optimiser
asks about, returns the record of each of its runs. The driver folds those records in
run order. Because the runs and their order depend only on the number of chunks, the
numbers are the same bit for bit whatever the backend and the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..chunks import ChunkMath, ChunkRecord, EffectShift
from ..importance import Sampler
from ..mcla import RoundRecords
from ..parallel import DEFAULT_CACHE_BYTES, ChunkStore
from ..problem import Problem

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RoundWork:
    """Everything a worker needs to draw and evaluate chunks of one sampling round.

    Attributes
    ----------
    problem : Problem
    sampler : Sampler
    shift : EffectShift or None
    seeds : tuple of SeedSequence
        One stream per chunk.
    sizes : tuple of int
        Rows of each chunk.
    n_top : int
        Largest log weights each record keeps per block.
    cache_bytes : int
        Memory budget of each shard (per worker) for keeping its chunks.
    """

    problem: Problem
    sampler: Sampler
    shift: EffectShift | None
    seeds: tuple[np.random.SeedSequence, ...]
    sizes: tuple[int, ...]
    n_top: int
    cache_bytes: int = DEFAULT_CACHE_BYTES


class Shard:
    """Consecutive runs of chunks of one round, held where they are evaluated.

    The chunks are drawn on first use from their own seed streams and kept as the
    memory budget allows (:class:`pyglmm.parallel.ChunkStore`). A shard pickles
    without its chunks, so moving or rebuilding it elsewhere (a lost worker) only
    costs drawing them again.

    Parameters
    ----------
    work : RoundWork
    runs : sequence of range
        The runs of chunk indices this shard evaluates, consecutive and in order.
    """

    def __init__(self, work: RoundWork, runs: Sequence[range]) -> None:
        self.work = work
        self.runs = [range(r.start, r.stop) for r in runs]
        self._store: ChunkStore | None = None
        self._math: ChunkMath | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"work": self.work, "runs": self.runs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["work"], state["runs"])  # type: ignore[misc]

    def _ready(self) -> tuple[ChunkStore, ChunkMath]:
        if self._store is None or self._math is None:
            w = self.work
            self._store = ChunkStore(
                w.problem, w.sampler, w.seeds, w.sizes, cache_bytes=w.cache_bytes,
                shift=w.shift, owned=[j for run in self.runs for j in run],
            )
            self._math = ChunkMath(w.problem, w.shift, w.n_top)
        return self._store, self._math

    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """The record of each of this shard's runs at ``theta`` (chunks folded in order)."""
        store, math = self._ready()
        theta = np.asarray(theta, dtype=np.float64)
        return [math.fold([math.chunk_record(store(j), theta) for j in run])
                for run in self.runs]


def split_runs(runs: Sequence[range], n_shards: int) -> list[list[range]]:
    """Split ``runs`` into at most ``n_shards`` consecutive, non-empty, balanced parts."""
    n_shards = max(1, min(n_shards, len(runs)))
    bounds = np.linspace(0, len(runs), n_shards + 1).round().astype(int)
    return [list(runs[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            if hi > lo]


class Backend(Protocol):
    """Where the chunks of a sampling round live and who computes their records.

    ``open_round`` returns None when the records are computed in this process (the
    serial backend: the objective then evaluates its own chunk store).
    """

    #: How the backend describes itself in a fit's record (``fit.backend``).
    description: str

    def open_round(self, work: RoundWork) -> OpenRound | None:
        """Place the chunks of one round on the workers."""
        ...

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]``, spread over the workers, in order."""
        ...


class OpenRound(RoundRecords, Protocol):
    """A round placed on a backend's workers: records at each ``theta``, then release."""

    def close(self) -> None:
        """Release the round's chunks on the workers."""
        ...
