"""Randomised quasi-Monte Carlo draws of the Laplace t proposal (``sampler="qmc"``).

A draw of block ``b`` of the Laplace t (:func:`pyglmm.importance.laplace_t`) is a
function of ``d_b + 1`` independent uniforms: ``d_b`` normals ``z = Phi^{-1}(p)`` and one
chi-square ``chi2_zeta = F^{-1}(p')`` by the inverse of its distribution function, then
``u_b = mode_b + L_b^{-T} z / sqrt(chi2_zeta / zeta)``. Here the uniforms are scrambled
Sobol points (:class:`scipy.stats.qmc.Sobol`, Owen-type linear matrix scrambling with a
digital shift), block ``b`` taking ``d_b + 1`` consecutive coordinates. Every point is
still a draw from the proposal, so the MCLA is unchanged and unbiased, but the points
fill the cube more evenly than independent ones and the error of a smooth integrand
falls faster than ``1/sqrt(m)``.

Such points are not independent, so their spread says nothing about the error. Each
chunk therefore holds :attr:`QMCSampler.n_sets` independently scrambled point sets,
interleaved as rows ``t * n_chains + r`` exactly as Markov chains are
(:mod:`pyglmm.chains`), and the records' batch moments (:mod:`pyglmm.chunks`) give the
Monte Carlo errors from the spread between the randomisations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaincinv, ndtri
from scipy.stats import qmc

from .importance import ImportanceSampler
from .problem import Problem

FloatArray = NDArray[np.float64]

#: ``sampler="auto"`` draws scrambled Sobol points when the largest block holds at most
#: this many random effects (BENCHMARKS.md section 8: at equal m they cut the spread of
#: the estimates over seeds 4-5x in blocks of one effect, 1.6x in blocks of 20 and 1.4x
#: in crossed blocks of 48, for 1.4x the time; in blocks of 96 the spread fell 1.1x for
#: 1.1-1.4x the time, no gain per second, and in a block of 192 the QMC fits were worse).
QMC_MAX_BLOCK = 48
#: The most coordinates a Sobol sequence of :class:`scipy.stats.qmc.Sobol` has: a
#: sample of more effects and blocks than this is drawn independently.
MAX_DIMENSION = 21_201
#: Independently scrambled point sets per chunk (the batches of the Monte Carlo error).
DEFAULT_RANDOMISATIONS = 8
#: Points of each set in a chunk of a ``sampler="qmc"`` round: a power of two, where
#: Sobol points are balanced (a chunk holds ``DEFAULT_RANDOMISATIONS`` times as many).
POINTS_PER_SET = 256
#: Uniforms are kept this far inside (0, 1) so that the inverse distribution functions
#: stay finite.
_EDGE = 2.0**-53


def qmc_dimension(problem: Problem, heavy: bool = True) -> int:
    """Coordinates of one point: every effect, plus one per block for a t proposal."""
    return int(problem.n_effects + (problem.blocks.n_blocks if heavy else 0))


def qmc_chunk_size(n_obs: int, n_sets: int = DEFAULT_RANDOMISATIONS) -> int:
    """Rows of a chunk of a ``sampler="qmc"`` round: ``n_sets`` sets of a power of two.

    :data:`POINTS_PER_SET` points per set, fewer (down to 16) where a chunk's ``m_j x n``
    array would exceed 8 MiB.
    """
    room = max(16, 2**20 // max(n_sets * n_obs, 1))
    return n_sets * min(POINTS_PER_SET, 2 ** int(np.floor(np.log2(room))))


@dataclass(frozen=True)
class QMCSampler:
    """Scrambled Sobol draws of a one-component Laplace t (or normal) proposal.

    Has the interface of :class:`pyglmm.importance.ImportanceSampler` (``kind``,
    ``draw``, ``log_density``); the density is the proposal's own.

    Attributes
    ----------
    proposal : ImportanceSampler
        The Laplace t of :func:`pyglmm.importance.laplace_t` (one component).
    n_sets : int
        Independently scrambled point sets per chunk (rows ``t * n_sets + r``), the
        batches of the Monte Carlo errors (:attr:`n_batches`).
    """

    proposal: ImportanceSampler
    n_sets: int = DEFAULT_RANDOMISATIONS
    kind: str = "qmc"

    @property
    def n_batches(self) -> int:
        """Independent batches per chunk for the Monte Carlo errors: the point sets."""
        return self.n_sets

    def __post_init__(self) -> None:
        if len(self.proposal.components) != 1:
            raise ValueError("randomised QMC draws a one-component proposal")

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """The proposal's log density of every block of every row: (m, B)."""
        return self.proposal.log_density(u, problem)

    def draw(self, rng: np.random.Generator, n_draws: int, problem: Problem) -> FloatArray:
        """``n_draws`` rows from :attr:`n_sets` scrambled Sobol sets (row ``t * n_sets + r``)."""
        component = self.proposal.components[0]
        blocks = problem.blocks
        n_sets = self.n_sets
        per_set = -(-n_draws // n_sets)
        heavy = component.df is not None
        effect_dim = np.arange(problem.n_effects) + (blocks.effect_block if heavy else 0)
        chi_dim = blocks.effect_starts + np.arange(blocks.n_blocks) + blocks.block_sizes
        n_dims = qmc_dimension(problem, heavy)
        z = np.empty((per_set * n_sets, problem.n_effects))
        scale = np.ones((per_set * n_sets, blocks.n_blocks))
        df = None if component.df is None else np.broadcast_to(
            np.asarray(component.df, dtype=np.float64), (blocks.n_blocks,))
        for r in range(n_sets):
            # scipy spawns from the seed sequence of the generator it is given, which
            # would change the chunk's own stream for its next redraw: give it a new one
            own = np.random.default_rng(rng.integers(0, 2**63, size=2))
            engine = qmc.Sobol(d=n_dims, scramble=True, seed=own)
            with warnings.catch_warnings():  # a last, shorter chunk: not a power of two
                warnings.simplefilter("ignore", UserWarning)
                points = np.clip(engine.random(per_set), _EDGE, 1.0 - _EDGE)
            z[r::n_sets] = ndtri(points[:, effect_dim])
            if df is not None:
                chi2 = 2.0 * gammaincinv(0.5 * df, points[:, chi_dim])
                scale[r::n_sets] = np.sqrt(chi2 / df)
        u = component.transform(z)
        if heavy:
            u /= scale[:, blocks.effect_block]
        u += component.location
        return u[:n_draws]
