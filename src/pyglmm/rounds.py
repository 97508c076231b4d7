"""One sampling round: its proposal, its chunked sample and its MCLA.

:func:`build_round` builds the proposal at the previous round's estimate (the
Laplace-centred t, or R glmm's mixture), the chunks' seed streams and sizes, and the
round's :class:`pyglmm.mcla.MCLAObjective`, whose chunks a backend may hold
(:func:`round_sample`, closed by :func:`release_round`). The fit driver
(:mod:`pyglmm.fitting`) calls it once per round; tests and benchmarks build their
objectives with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .backends import Backend, RoundWork
from .blocklinalg import BlockCholesky
from .bridge import bridge_level
from .chains import DRAWS_PER_CHAIN, ChainSampler
from .importance import (
    ImportanceSampler,
    Sampler,
    block_degrees_of_freedom,
    conditional_mode,
    glmm_mixture,
    laplace_t,
)
from .mcla import EffectShift, MCLAObjective
from .parallel import (
    DEFAULT_CACHE_BYTES,
    ChunkStore,
    chunk_seeds,
    chunk_sizes,
    default_chunk_size,
)
from .pql import SIGMA_FLOOR
from .problem import Problem
from .qmc import MAX_DIMENSION, QMCSampler, qmc_chunk_size, qmc_dimension
from .settings import FitSettings

FloatArray = NDArray[np.float64]

#: Default degrees of freedom of the Laplace-centred t proposal, chosen by measurement
#: (benchmarks/defaults.py): against 5, 10 and 50 it gave the smallest spread of the
#: maximised log-likelihood over seeds on salamander and Booth-Hobert.
LAPLACE_ZETA = 20.0
#: R glmm's default degrees of freedom of the t component of its mixture.
MIXTURE_ZETA = 5.0
#: Chain draws (and as many Laplace-normal draws) of the bridge estimate of the level
#: ``log L(psi)`` in a round of Markov chains (at most the round's ``m``); measured on
#: VerbAgg: Monte Carlo error about 0.035 of the log-likelihood.
LEVEL_DRAWS = 2048
#: Last entry of the spawn key of a round's level stream (``(round, 0, LEVEL_KEY)``: one
#: entry longer than any chunk's ``(round, chunk)``, so never the same stream).
LEVEL_KEY = 0x1E7E1


def default_zeta(importance: str) -> float:
    """``glmm()``'s default t degrees of freedom for the ``importance`` proposal.

    R glmm's 5 for its mixture; 20 for the Laplace-centred t (measured, BENCHMARKS.md),
    which the fit grows with the block (``zeta_per_block``).
    """
    return LAPLACE_ZETA if importance == "laplace" else MIXTURE_ZETA


@dataclass(frozen=True)
class Round:
    """The proposal, the sample and the MCLA of one sampling round.

    Attributes
    ----------
    index : int
        The round's number from 0 (its chunks' seed streams are spawned with it).
    m : int
        Draws of the round (per block).
    theta : ndarray
        Where the proposal is centred, ``(beta, nu)`` with ``nu`` at least
        ``SIGMA_FLOOR**2``; the optimiser starts there.
    sampler : ImportanceSampler or ChainSampler
        The proposal, or the Markov chains of the MCMC likelihood.
    shift : EffectShift or None
        How the draws follow the fixed effects (``settings.shift``), if they do.
    sizes : tuple of int
        Rows of each chunk of the sample.
    store : ChunkStore
        The chunks of the sample.
    objective : MCLAObjective
        The round's MCLA.
    mode : ndarray or None
        Conditional mode of the random effects at ``theta`` (None if none was
        computed); the next round starts its Newton iterations there.
    mode_factor : BlockCholesky or None
        Curvature factor at ``mode`` of the Laplace t (None for the mixture).
    """

    index: int
    m: int
    theta: FloatArray
    sampler: Sampler
    shift: EffectShift | None
    sizes: tuple[int, ...]
    store: ChunkStore
    objective: MCLAObjective
    mode: FloatArray | None
    mode_factor: BlockCholesky | None


def round_sample(
    problem: Problem,
    sampler: Sampler,
    seeds: Sequence[np.random.SeedSequence],
    sizes: Sequence[int],
    shift: EffectShift | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    backend: Backend | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[ChunkStore, MCLAObjective]:
    """The chunked sample drawn from ``sampler`` and its MCLA.

    With a parallel ``backend`` the chunks are drawn and evaluated on its workers
    while the round is open (``objective.remote``; :func:`release_round` closes it);
    the local store draws them again only if post-estimation asks for them.

    Parameters
    ----------
    problem : Problem
    sampler : ImportanceSampler
    seeds : sequence of SeedSequence
        One stream per chunk (:func:`pyglmm.parallel.chunk_seeds`).
    sizes : sequence of int
        Rows of each chunk.
    shift : EffectShift, optional
        The draws follow the fixed effects.
    cache_bytes : int
        Memory budget of the store (:class:`pyglmm.parallel.ChunkStore`), and of each
        worker's shard.
    backend : Backend, optional
        Where the chunks live during the fit (default: here).
    on_chunk : callable, optional
        ``on_chunk(drawn, n_chunks)`` is called as the objective first draws each chunk
        here (for the progress display; a parallel backend's workers draw theirs).

    Returns
    -------
    (ChunkStore, MCLAObjective)
    """
    store = ChunkStore(problem, sampler, seeds, sizes, cache_bytes=cache_bytes, shift=shift)
    source: Any = store if on_chunk is None else _CountingSource(store, on_chunk)
    objective = MCLAObjective(problem, source, sizes, shift=shift,
                              level_variance=getattr(sampler, "level_variance", None))
    if backend is not None:
        objective.remote = backend.open_round(RoundWork(
            problem=problem, sampler=sampler, shift=shift, seeds=tuple(seeds),
            sizes=tuple(int(s) for s in sizes), n_top=objective.n_top,
            cache_bytes=cache_bytes,
        ))
    return store, objective


class _CountingSource:
    """A chunk store that reports how many of its chunks have been served once.

    Serves exactly the store's chunks (every other attribute is the store's); only
    counts, so the numbers do not change.
    """

    def __init__(self, store: ChunkStore, on_chunk: Callable[[int, int], None]) -> None:
        self.store = store
        self.on_chunk: Callable[[int, int], None] | None = on_chunk
        self.seen: set[int] = set()

    def __call__(self, j: int) -> Any:
        chunk = self.store(j)
        if self.on_chunk is not None and j not in self.seen:
            self.seen.add(j)
            n_chunks = len(self.store.sizes)
            self.on_chunk(len(self.seen), n_chunks)
            if len(self.seen) == n_chunks:
                self.on_chunk = None  # drawn once: later passes are not sampling
        return chunk

    def __getattr__(self, name: str) -> Any:
        if name == "store" or name.startswith("__"):  # copying or unpickling: no store yet
            raise AttributeError(name)
        return getattr(self.store, name)


def release_round(objective: MCLAObjective) -> None:
    """Close the round a backend holds for ``objective``; it evaluates here afterwards."""
    remote = objective.remote
    objective.detach()
    close = getattr(remote, "close", None)
    if close is not None:
        close()


def build_round(
    problem: Problem,
    settings: FitSettings,
    round_index: int,
    theta: FloatArray,
    m_round: int,
    *,
    mode: FloatArray | None = None,
    mode_factor: BlockCholesky | None = None,
    centre_effects: FloatArray | None = None,
    backend: Backend | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    level: str = "bridge",
) -> Round:
    """Build one sampling round as :func:`run_fit` does: proposal, sample and MCLA.

    Parameters
    ----------
    problem : Problem
    settings : FitSettings
        The proposal (``importance``, ``zeta``, ``zeta_per_block``, ``p``, ``shift``),
        ``chunk_size`` and the root seed.
    round_index : int
        The round's number from 0: the chunks' seed streams are
        ``chunk_seeds(settings.seed_sequence(), round_index, n_chunks)``.
    theta : ndarray
        The centre ``(beta, nu)``; ``nu`` is raised to at least ``SIGMA_FLOOR**2``.
    m_round : int
        Draws of the round (per block).
    mode, mode_factor : optional
        The previous round's conditional mode and curvature factor (warm starts).
    centre_effects : ndarray, optional
        With ``importance="glmm"``: the random effects of the mixture's centre (the
        PQL ``u*`` in the first round); without them the conditional mode at
        ``theta`` is computed. The Laplace t is always centred at the mode.
    backend : Backend, optional
        Where the round's chunks live (:func:`round_sample`); close it with
        :func:`release_round`.
    on_chunk : callable, optional
        Told of each chunk drawn here (:func:`round_sample`).
    level : {"bridge", "laplace"}
        With Markov chains: how the level ``log L(psi)`` is found (:func:`chain_sampler`;
        the fit's pilot rounds take the Laplace approximation, which costs nothing).

    Returns
    -------
    Round

    Examples
    --------
    >>> import numpy as np
    >>> import pyglmm as pg
    >>> from pyglmm.problem import Problem
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(), m=500,
    ...               rng=1, recentre=0, par_init=[5.0, 2.0])
    >>> problem = Problem.build(fit.design, fit.family)
    >>> first = build_round(problem, fit.settings, 0, np.array([5.0, 2.0]), fit.m)
    >>> first.objective.evaluate(fit.rounds[0].estimate).value == fit.rounds[0].value
    True
    """
    params = problem.params
    beta_c = params.beta(theta)
    nu_c = params.floor_variances(params.psi(theta), SIGMA_FLOOR**2)
    centre = np.concatenate([beta_c, nu_c])
    sampler: Sampler
    shift: EffectShift | None = None
    largest = int(problem.blocks.block_sizes.max())
    chains = settings.uses_chains(largest)
    if settings.importance == "laplace":
        df = (block_degrees_of_freedom(settings.zeta, problem.blocks.block_sizes)
              if settings.zeta_per_block else settings.zeta)
        sampler, mode, slope = laplace_t(
            problem, beta_c, nu_c, df, start=mode, factor=mode_factor
        )
        mode_factor = sampler.components[0].cholesky
        if settings.shift:
            shift = EffectShift.build(problem, slope, beta_c)
    elif centre_effects is not None:
        sampler = glmm_mixture(problem, beta_c, nu_c, centre_effects, settings.p, settings.zeta)
    else:
        mode, _ = conditional_mode(problem, beta_c, nu_c, start=mode)
        sampler = glmm_mixture(problem, beta_c, nu_c, mode, settings.p, settings.zeta)
    if chains:
        assert isinstance(sampler, ImportanceSampler)
        sampler = chain_sampler(problem, settings, round_index, sampler, beta_c, nu_c,
                                m_round, level)
        size = settings.chunk_size or sampler.n_chains * DRAWS_PER_CHAIN
    elif settings.uses_qmc(largest) and _qmc_possible(problem, settings):
        assert isinstance(sampler, ImportanceSampler)
        points = QMCSampler(sampler)
        size = settings.chunk_size or qmc_chunk_size(problem.design.n_obs, points.n_sets)
        sampler = points
    else:
        size = settings.chunk_size or default_chunk_size(problem.design.n_obs)
    sizes = chunk_sizes(m_round, size)
    seeds = chunk_seeds(settings.seed_sequence(), round_index, len(sizes))
    store, objective = round_sample(problem, sampler, seeds, sizes, shift=shift,
                                    backend=backend, on_chunk=on_chunk)
    return Round(
        index=round_index, m=m_round, theta=centre, sampler=sampler, shift=shift,
        sizes=tuple(sizes), store=store, objective=objective, mode=mode,
        mode_factor=mode_factor,
    )


def _qmc_possible(problem: Problem, settings: FitSettings) -> bool:
    """Whether a Sobol sequence has coordinates enough for one point of the sample.

    Raises ValueError when ``sampler="qmc"`` was asked for and it has not; with
    ``"auto"`` the draws are then independent.
    """
    if qmc_dimension(problem) <= MAX_DIMENSION:
        return True
    if settings.sampler == "qmc":
        raise ValueError(
            f"sampler='qmc' needs {qmc_dimension(problem)} Sobol coordinates (random "
            f"effects plus blocks), more than the {MAX_DIMENSION} scipy has; use "
            "sampler='importance'")
    return False


def chain_sampler(
    problem: Problem, settings: FitSettings, round_index: int, laplace: ImportanceSampler,
    beta: FloatArray, psi: FloatArray, m_round: int, level: str = "bridge",
) -> ChainSampler:
    """The Markov chains of a round at ``(beta, psi)``, with their level.

    With ``level="bridge"`` the level ``log L_b(psi)`` is estimated by bridge sampling
    (:func:`pyglmm.bridge.bridge_level`) from ``min(m_round, LEVEL_DRAWS)`` draws of its
    own stream, spawn key ``(round_index, 0, LEVEL_KEY)`` under the fit's root seed; with
    ``"laplace"`` it is the Laplace approximation (no Monte Carlo error is counted).
    """
    sampler = ChainSampler.at(laplace, problem, beta, psi,
                              chained=settings.chained_blocks(problem.blocks.block_sizes))
    if level == "laplace":
        return sampler.with_level(sampler.laplace_level(problem),
                                  np.zeros(problem.blocks.n_blocks))
    base = settings.seed_sequence()
    seed = np.random.SeedSequence(base.entropy,
                                  spawn_key=(*base.spawn_key, round_index, 0, LEVEL_KEY))
    estimate, variance = bridge_level(problem, sampler, seed, min(m_round, LEVEL_DRAWS))
    return sampler.with_level(estimate, variance)
