"""The Monte Carlo likelihood approximation: value, gradient and Hessian.

For a fixed importance sample the block-wise MCLA (docs/method.md) is

.. math::

    l_m(\\theta) = \\sum_b \\Big[\\log \\sum_k e^{b_{bk}(\\theta)} - \\log m\\Big],\\quad
    b_{bk} = \\log f_\\theta(u_{(b)k}) + \\log f_\\theta(y_{I_b} \\mid u_{(b)k})
             - \\log h_b(u_{(b)k}).

The sample lives in chunks of rows. Each chunk keeps what does not depend on
``theta`` (``Z u_k``, the per-block sums of squares of ``u_k`` and ``log h``) and
returns a small *record* per evaluation: per block the maximum log-weight, the
scaled weight sums, the weighted mean score and its centred second moment, the
weighted variance-function sums and the squared-weight moments needed by the MCSE.
Records merge associatively (rescaling to the common maximum, pairwise update of
centred moments), always in chunk order, so the result does not depend on how many
workers computed them (:mod:`pyglmm.chunks`). Where the chunks live and who computes
their records is a backend's business (:mod:`pyglmm.backends`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .chunks import (
    ChunkMath,
    ChunkPass,
    ChunkRecord,
    ChunkSample,
    EffectShift,
    chunk_from_draws,
    draw_chunk,
    draw_effects,
    merge_groups,
    tail_size,
)
from .prior import PriorAt
from .problem import Problem

__all__ = [
    "ChunkPass", "ChunkRecord", "ChunkSample", "EffectShift", "Evaluation", "MCLAObjective",
    "RoundRecords", "chunk_from_draws", "draw_chunk", "draw_effects", "tail_size",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Evaluation:
    """The MCLA and what inference needs, at one ``theta``."""

    value: float
    gradient: FloatArray
    hessian: FloatArray
    block_values: FloatArray  # (B,) per-block log-likelihood contributions
    block_ess: FloatArray  # (B,) Kish effective sample size per block
    score_mc_covariance: FloatArray  # sum_b sum_k v^2 (g - gbar)(g - gbar)^T
    n_draws: int
    top_log_weights: FloatArray  # (B, n_top) largest log importance weights per block
    #: With Markov chains or randomised QMC (else None): ``score_mc_covariance`` is then
    #: the covariance
    #: from the spread between batches (chains or point sets), this the one that treats
    #: the draws
    #: as independent (their ratio is the chains' autocorrelation time) ...
    score_iid_covariance: FloatArray | None = None
    #: ... the variance of each block's value from the spread between chains plus that
    #: of the level (:mod:`pyglmm.bridge`) ...
    block_value_variance: FloatArray | None = None
    #: ... and the number of chains (or randomised point sets, ``sampler="qmc"``).
    n_batches: int = 0


class RoundRecords(Protocol):
    """A round's chunks held by a backend: their merged runs' records at ``theta``."""

    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """The record of every run of :func:`pyglmm.chunks.merge_groups`, in order."""
        ...


class MCLAObjective:
    """The MCLA of one importance sample, evaluated chunk by chunk.

    Parameters
    ----------
    problem : Problem
        The model in block order.
    chunk_source : callable
        ``chunk_source(j)`` returns :class:`ChunkSample` ``j``; it may draw it afresh
        (bounded memory) or return a cached one.
    chunk_sizes : sequence of int
        Number of rows in each chunk; their sum is the sample size ``m``.
    shift : EffectShift, optional
        The draws follow the fixed effects.
    remote : RoundRecords, optional
        Where the chunks are held and their records computed during the fit (a
        parallel backend); without it, and once :meth:`detach` drops it, records are
        computed here from ``chunk_source``. Both give the same numbers.
    level_variance : ndarray, optional
        With Markov chains: the variance of each block's level ``log L_b(psi)``
        (:attr:`pyglmm.chains.ChainSampler.level_variance`).
    """

    def __init__(
        self,
        problem: Problem,
        chunk_source: Callable[[int], ChunkSample],
        chunk_sizes: Iterable[int],
        shift: EffectShift | None = None,
        remote: RoundRecords | None = None,
        level_variance: FloatArray | None = None,
    ) -> None:
        self.problem = problem
        self.level_variance = level_variance
        self.shift = shift
        self.chunk_source = chunk_source
        self.chunk_sizes = tuple(int(s) for s in chunk_sizes)
        self.n_draws = sum(self.chunk_sizes)
        self.n_top = max(tail_size(self.n_draws), 1)
        self.math = ChunkMath(problem, shift, self.n_top)
        self.remote = remote
        self.n_evaluations = 0

    def detach(self) -> None:
        """Compute records here from now on (the backend's round has been released)."""
        self.remote = None

    # -- one chunk (ChunkMath) ---------------------------------------------------------
    def prior_at(self, theta: FloatArray) -> PriorAt:
        """The prior's coefficients at ``theta`` (kept for the last ``theta``)."""
        return self.math.prior_at(theta)

    def chunk_pass(self, chunk: ChunkSample, theta: FloatArray) -> ChunkPass:
        """The per-draw quantities of one chunk at ``theta`` (which must be feasible)."""
        return self.math.chunk_pass(chunk, theta)

    def chunk_record(self, chunk: ChunkSample, theta: FloatArray) -> ChunkRecord:
        """Compute the record of one chunk at ``theta`` (which must be feasible)."""
        return self.math.chunk_record(chunk, theta)

    def merge(self, first: ChunkRecord, second: ChunkRecord) -> ChunkRecord:
        """Merge two records into the record of their union (associative)."""
        return self.math.merge(first, second)

    # -- the objective -----------------------------------------------------------------
    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """The record of every run of chunks (:func:`pyglmm.chunks.merge_groups`) at ``theta``.

        Each run's chunks are folded left to right; computed by the backend holding the
        chunks if there is one, else here. Their left fold is the sample's record.
        """
        if self.remote is not None:
            return self.remote.records(theta)
        math, source = self.math, self.chunk_source
        return [math.fold([math.chunk_record(source(j), theta) for j in run])
                for run in merge_groups(len(self.chunk_sizes))]

    def weighted_draws(self, theta: FloatArray) -> Iterator[tuple[FloatArray, FloatArray]]:
        """Every chunk's draws at ``theta`` with their log importance weights.

        Yields, in chunk order and one chunk at a time (so that a caller accumulating
        sums holds one chunk in memory), ``(u, log_weight)``: the block-ordered random effects
        (m_j, q), moved with the fixed effects when the draws are shifted
        (``u = w + A (beta - beta0)``), and their per-block log weights (m_j, B). The
        chunk source must be able to give the draws (``draws(j)``, as
        :class:`pyglmm.parallel.ChunkStore` does).
        """
        theta = np.asarray(theta, dtype=np.float64)
        draws = self.chunk_source.draws  # type: ignore[attr-defined]
        move = (None if self.shift is None
                else self.shift.slope @ (self.problem.params.beta(theta) - self.shift.beta0))
        for j in range(len(self.chunk_sizes)):
            u = draws(j) if move is None else draws(j) + move
            yield u, self.chunk_pass(self.chunk_source(j), theta).log_weight

    def evaluate(self, theta: FloatArray) -> Evaluation:
        """Evaluate the MCLA, its gradient and Hessian at ``theta = (beta, psi)``.

        Outside the parameter space (a variance not positive, a covariance matrix not
        positive definite) the value is ``-inf`` with zero placeholders for the
        derivatives (docs/method.md).
        """
        theta = np.asarray(theta, dtype=np.float64)
        problem = self.problem
        n_par = theta.size
        n_blocks = problem.blocks.n_blocks
        if not np.all(np.isfinite(theta)) or not problem.params.feasible(
                problem.params.psi(theta)):
            return Evaluation(
                value=-np.inf,
                gradient=np.zeros(n_par),
                hessian=np.zeros((n_par, n_par)),
                block_values=np.full(n_blocks, -np.inf),
                block_ess=np.zeros(n_blocks),
                score_mc_covariance=np.zeros((n_par, n_par)),
                n_draws=self.n_draws,
                top_log_weights=np.zeros((n_blocks, 0)),
            )
        self.n_evaluations += 1
        return self.finish(self.math.fold(self.records(theta)), theta)

    def finish(self, total: ChunkRecord, theta: FloatArray) -> Evaluation:
        """Turn the merged record of the whole sample into an :class:`Evaluation`."""
        problem = self.problem
        p = problem.n_fixed
        s0 = total.weight_sum
        block_values = total.max_log_weight + np.log(s0) - np.log(total.n_draws)
        value = float(block_values.sum()) + problem.loglik_constant
        mean_scores = total.score_sum / s0[:, None]
        gradient = mean_scores.sum(axis=0)
        hessian = (total.score_scatter / s0[:, None, None]).sum(axis=0)
        row_weights = total.variance_sum / s0[problem.blocks.obs_block]
        x_fit = problem.x if self.shift is None else self.shift.x_tilde
        hessian[:p, :p] -= x_fit.T @ (row_weights[:, None] * x_fit)
        prior = self.prior_at(theta)
        mean_stats = (total.stat_sum / s0[:, None]).sum(axis=0)  # (S,)
        hessian[p:, p:] += prior.hess_const + np.einsum("s,sij->ij", mean_stats, prior.hess_stat)
        if self.shift is not None and total.beta_stat_sum is not None:
            hessian[:p, :p] -= np.einsum("bsij,s->ij", self.shift.gram, prior.pi)
            mean_grad = (total.beta_stat_sum / s0[:, None, None]).sum(axis=0)  # (p, S)
            cross = -(mean_grad @ prior.dpi)  # (p, R)
            hessian[:p, p:] += cross
            hessian[p:, :p] += cross.T
        hessian = 0.5 * (hessian + hessian.T)
        sq = total.sq_weight_sum
        cross = total.sq_score_sum[:, :, None] * mean_scores[:, None, :]
        centred_sq = (
            total.sq_score_outer
            - cross
            - np.swapaxes(cross, 1, 2)
            + sq[:, None, None] * mean_scores[:, :, None] * mean_scores[:, None, :]
        )
        score_mc_cov = (centred_sq / (s0**2)[:, None, None]).sum(axis=0)
        chains: dict[str, object] = {}
        if total.batch_weight_sq is not None:
            chains = self._between_chains(total, mean_scores)
            chains["score_iid_covariance"] = 0.5 * (score_mc_cov + score_mc_cov.T)
            score_mc_cov = chains.pop("between")  # type: ignore[assignment]
        return Evaluation(
            value=value,
            gradient=gradient,
            hessian=hessian,
            block_values=block_values,
            block_ess=s0**2 / sq,
            score_mc_covariance=0.5 * (score_mc_cov + score_mc_cov.T),
            n_draws=total.n_draws,
            top_log_weights=np.sort(total.top_log_weights, axis=1),
            **chains,  # type: ignore[arg-type]
        )

    def _between_chains(self, total: ChunkRecord, mean_scores: FloatArray) -> dict[str, object]:
        """The Monte Carlo covariance of the gradient and the value's variance per block
        from the spread between chains (each chain one batch; see :class:`ChunkRecord`).

        Per block, with ``W_c``, ``S_c`` the weight and score sums of chain ``c`` and
        ``gbar`` the mean score, ``sum_c (S_c - W_c gbar)(S_c - W_c gbar)^T / W^2``
        (the delta method for a ratio of sums over independent batches); the value
        ``log(W / m)`` has variance ``sum_c (W_c - n_c W / m)^2 / W^2``.
        """
        assert total.batch_score_cross is not None and total.batch_score_outer is not None
        assert total.batch_weight_len is not None and total.batch_weight_sq is not None
        s0 = total.weight_sum
        cross = total.batch_score_cross[:, :, None] * mean_scores[:, None, :]
        centred = (total.batch_score_outer - cross - np.swapaxes(cross, 1, 2)
                   + total.batch_weight_sq[:, None, None]
                   * mean_scores[:, :, None] * mean_scores[:, None, :])
        between = (centred / (s0**2)[:, None, None]).sum(axis=0)
        mean_weight = s0 / total.n_draws
        value_var = (total.batch_weight_sq - 2.0 * mean_weight * total.batch_weight_len
                     + mean_weight**2 * total.batch_len_sq) / s0**2
        value_var = np.maximum(value_var, 0.0)
        if self.level_variance is not None:
            value_var = value_var + self.level_variance
        return {"between": 0.5 * (between + between.T), "block_value_variance": value_var,
                "n_batches": total.n_batches}

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        """Value, gradient and Hessian, the signature the optimiser expects."""
        ev = self.evaluate(theta)
        return ev.value, ev.gradient, ev.hessian
