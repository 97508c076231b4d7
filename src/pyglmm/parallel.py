"""Where the chunks of the importance sample live and how their records are computed.

Chunk ``j`` of round ``r`` is drawn from its own stream
``SeedSequence(entropy, spawn_key=base_key + (r, j))``; its boundaries depend only on
``m`` and ``chunk_size``. So a chunk can be drawn wherever it is evaluated, and the
merged result is the same bit for bit whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .chunks import ChunkSample, EffectShift, chunk_from_draws, draw_effects
from .importance import Sampler
from .problem import Problem

FloatArray = NDArray[np.float64]

#: Default budget for keeping the theta-free chunk arrays in memory between
#: evaluations; beyond it chunks are redrawn from their seeds at every evaluation,
#: so memory stays bounded whatever ``m`` is.
DEFAULT_CACHE_BYTES = 768 * 2**20


def chunk_sizes(m: int, chunk_size: int) -> list[int]:
    """Split ``m`` draws into chunks of ``chunk_size`` (the last may be smaller)."""
    full, rest = divmod(m, chunk_size)
    return [chunk_size] * full + ([rest] if rest else [])


def default_chunk_size(n_obs: int) -> int:
    """Rows per chunk so that one chunk's ``m_j x n`` array is about 2 MiB of float64."""
    return int(np.clip(2**18 // max(n_obs, 1), 64, 65536))


def chunk_seeds(
    base: np.random.SeedSequence, round_index: int, n_chunks: int
) -> list[np.random.SeedSequence]:
    """The independent seed stream of every chunk of one sampling round."""
    return [
        np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, round_index, j))
        for j in range(n_chunks)
    ]


class ChunkStore:
    """Serves the chunks of one importance sample, cached while memory allows.

    Parameters
    ----------
    problem : Problem
    sampler : Sampler
    seeds : sequence of SeedSequence
        One per chunk.
    sizes : sequence of int
        Rows of each chunk.
    cache_bytes : int
        Memory budget. If every chunk's ``Z u`` (m x n) fits, chunks are kept whole
        (not for Markov chains, whose draws are kept instead);
        else, if the draws ``u`` (m x q, usually much smaller) fit, those are kept and
        the kernel gathers ``Z u`` from them as it evaluates; otherwise each chunk is
        drawn again from its seed whenever it is needed (bounded memory for any m).
    shift : EffectShift, optional
        The draws follow the fixed effects.
    owned : sequence of int, optional
        The chunks this store will serve (a backend's worker holds some of them); the
        memory budget is applied to these. Default: all.
    """

    def __init__(
        self,
        problem: Problem,
        sampler: Sampler,
        seeds: Sequence[np.random.SeedSequence],
        sizes: Sequence[int],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        shift: EffectShift | None = None,
        owned: Sequence[int] | None = None,
    ) -> None:
        self.problem = problem
        self.shift = shift
        self.sampler = sampler
        self.seeds = list(seeds)
        self.sizes = list(sizes)
        small = problem.blocks.n_blocks * (problem.prior.n_stats + 1)
        if shift is not None:
            small += problem.blocks.n_blocks * problem.prior.n_stats * problem.n_fixed
        m = sum(self.sizes) if owned is None else sum(self.sizes[j] for j in owned)
        # Markov chains: the kernel's gather of Z u from the draws beats storing and
        # reading Z u (VerbAgg: the m x n array's construction alone took 3.8 of 39 s)
        chains = sampler.kind == "mcmc"
        if m * 8 * (problem.y.size + small) <= cache_bytes and not chains:
            self.mode = "chunks"
        elif m * 8 * (problem.n_effects + small) <= cache_bytes:
            self.mode = "draws"
        else:
            self.mode = "redraw"
        self._cache: dict[int, ChunkSample] = {}
        self._draws: dict[int, ChunkSample] = {}

    @property
    def cached(self) -> bool:
        """Whether whole chunks are kept between evaluations."""
        return self.mode == "chunks"

    def draws(self, j: int) -> FloatArray:
        """The block-ordered draws ``u`` (m_j, q) of chunk ``j`` (kept, or drawn again)."""
        kept = self._draws.get(j)
        if kept is not None and kept.u is not None:
            return kept.u
        return draw_effects(self.problem, self.sampler, self.seeds[j], self.sizes[j])

    def __call__(self, j: int) -> ChunkSample:
        """Return chunk ``j``."""
        if j in self._cache:
            return self._cache[j]
        if j in self._draws:
            return self._draws[j]
        u = draw_effects(self.problem, self.sampler, self.seeds[j], self.sizes[j])
        if self.mode == "chunks":
            chunk = chunk_from_draws(self.problem, self.sampler, u, self.shift)
            self._cache[j] = chunk
            return chunk
        # Z u is gathered by the kernel at each evaluation: no m x n array is formed
        small = chunk_from_draws(self.problem, self.sampler, u, self.shift, with_zu=False)
        chunk = dataclasses.replace(small, u=u)
        if self.mode == "draws":
            self._draws[j] = chunk
        return chunk
