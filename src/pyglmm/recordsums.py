"""The weighted sums of a chunk's record, block by block, in one compiled pass.

A chunk's record (:class:`pyglmm.chunks.ChunkRecord`) holds, per block ``b``, sums over
the chunk's draws ``k`` of the importance weights ``w_kb = exp(l_kb - max_k l_kb)`` and
of the draws' scores ``g_kb = (fixed scores, prior score at the draw's statistics)``:
``sum w``, ``sum w g``, ``sum w (g - gbar)(g - gbar)^T`` (``gbar`` the chunk's weighted
mean), ``sum w^2``, ``sum w^2 g``, ``sum w^2 g g^T``, ``sum w s`` (statistics), per
observation ``sum w c''(eta)``, and per batch (draw ``k`` in batch ``k % C``) the weight
and score sums. In numpy these are a dozen passes over ``(B, m_j, P)`` arrays with
transposed copies (1.7-3.7 ms a salamander or cbpp chunk, more than the kernel's own
pass there, BENCHMARKS.md section 7). :func:`record_sums` takes them in one pass per
block, parallel over the blocks; the tests pin it to a plain numpy version.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import exp

import numba
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class RecordSums:
    """The per-block sums of one chunk (see the module docstring); ``P = p + R``."""

    max_log_weight: FloatArray  # (B,)
    weight_sum: FloatArray  # (B,)
    score_sum: FloatArray  # (B, P)
    score_scatter: FloatArray  # (B, P, P), about the chunk's weighted mean
    sq_weight_sum: FloatArray  # (B,)
    sq_score_sum: FloatArray  # (B, P)
    sq_score_outer: FloatArray  # (B, P, P)
    stat_sum: FloatArray  # (B, S)
    variance_sum: FloatArray  # (n,)
    batch_weight: FloatArray  # (B, C)
    batch_score: FloatArray  # (B, C, P)


@numba.njit(parallel=True, cache=True, nogil=True)
def _record_sums_kernel(
    log_weight: FloatArray,
    fixed: FloatArray,
    stats: FloatArray,
    score_stat: FloatArray,
    score_const: FloatArray,
    variance: FloatArray,
    obs_starts: IntArray,
    obs_ends: IntArray,
    n_batches: int,
    top: FloatArray,
    weight_sum: FloatArray,
    score_sum: FloatArray,
    score_scatter: FloatArray,
    sq_weight_sum: FloatArray,
    sq_score_sum: FloatArray,
    sq_score_outer: FloatArray,
    stat_sum: FloatArray,
    variance_sum: FloatArray,
    batch_weight: FloatArray,
    batch_score: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to a numpy version by the tests
    m, n_blocks = log_weight.shape
    p = fixed.shape[2]
    n_stats = stats.shape[2]
    n_random = score_stat.shape[1]
    n_par = p + n_random
    for b in numba.prange(n_blocks):
        largest = -np.inf
        for k in range(m):
            if log_weight[k, b] > largest:
                largest = log_weight[k, b]
        top[b] = largest
        weights = np.empty(m)
        scores = np.empty((m, n_par))
        total = 0.0
        total_sq = 0.0
        for j in range(n_par):
            score_sum[b, j] = 0.0
            sq_score_sum[b, j] = 0.0
            for q in range(n_par):
                sq_score_outer[b, j, q] = 0.0
                score_scatter[b, j, q] = 0.0
        for s in range(n_stats):
            stat_sum[b, s] = 0.0
        for c in range(n_batches):
            batch_weight[b, c] = 0.0
            for j in range(n_par):
                batch_score[b, c, j] = 0.0
        for k in range(m):
            w = exp(log_weight[k, b] - largest)
            w2 = w * w
            weights[k] = w
            total += w
            total_sq += w2
            for j in range(p):
                scores[k, j] = fixed[k, b, j]
            for r in range(n_random):
                acc = score_const[b, r]
                for s in range(n_stats):
                    acc += stats[k, b, s] * score_stat[s, r]
                scores[k, p + r] = acc
            c = k % n_batches
            batch_weight[b, c] += w
            for j in range(n_par):
                g = scores[k, j]
                score_sum[b, j] += w * g
                sq_score_sum[b, j] += w2 * g
                batch_score[b, c, j] += w * g
                for q in range(j + 1):
                    sq_score_outer[b, j, q] += w2 * g * scores[k, q]
            for s in range(n_stats):
                stat_sum[b, s] += w * stats[k, b, s]
        weight_sum[b] = total
        sq_weight_sum[b] = total_sq
        mean = np.empty(n_par)
        for j in range(n_par):
            mean[j] = score_sum[b, j] / total
        centred = np.empty(n_par)
        for k in range(m):
            w = weights[k]
            for j in range(n_par):
                centred[j] = scores[k, j] - mean[j]
            for j in range(n_par):
                wc = w * centred[j]
                for q in range(j + 1):
                    score_scatter[b, j, q] += wc * centred[q]
        for j in range(n_par):
            for q in range(j):
                score_scatter[b, q, j] = score_scatter[b, j, q]
                sq_score_outer[b, q, j] = sq_score_outer[b, j, q]
        lo, hi = obs_starts[b], obs_ends[b]
        for i in range(lo, hi):
            variance_sum[i] = 0.0
        for k in range(m):
            w = weights[k]
            for i in range(lo, hi):
                variance_sum[i] += w * variance[k, i]


def record_sums(
    log_weight: FloatArray,
    fixed: FloatArray,
    stats: FloatArray,
    score_stat: FloatArray,
    score_const: FloatArray,
    variance: FloatArray,
    obs_starts: IntArray,
    n_batches: int,
) -> RecordSums:
    """The per-block sums of one chunk (see the module docstring).

    Parameters
    ----------
    log_weight : ndarray, shape (m, B)
        Log importance weights of every draw and block.
    fixed : ndarray, shape (m, B, p)
        The fixed-effect scores.
    stats : ndarray, shape (m, B, S)
        The prior's statistics of every draw (:class:`pyglmm.prior.PriorLayout`).
    score_stat, score_const : ndarray, shapes (S, R) and (B, R)
        The prior's score in ``psi`` is ``score_const + stats @ score_stat``.
    variance : ndarray, shape (m, n)
        ``c''(eta)`` of every draw and observation (block order).
    obs_starts : ndarray of int, shape (B,)
        First observation of every block.
    n_batches : int
        Batches for the Monte Carlo errors (0: none; the batch sums are then empty).
    """
    m, n_blocks = log_weight.shape
    n_par = fixed.shape[2] + score_stat.shape[1]
    n_obs = variance.shape[1]
    batches = max(n_batches, 1)
    out = RecordSums(
        max_log_weight=np.empty(n_blocks), weight_sum=np.empty(n_blocks),
        score_sum=np.empty((n_blocks, n_par)),
        score_scatter=np.empty((n_blocks, n_par, n_par)),
        sq_weight_sum=np.empty(n_blocks), sq_score_sum=np.empty((n_blocks, n_par)),
        sq_score_outer=np.empty((n_blocks, n_par, n_par)),
        stat_sum=np.empty((n_blocks, stats.shape[2])), variance_sum=np.empty(n_obs),
        batch_weight=np.empty((n_blocks, batches)),
        batch_score=np.empty((n_blocks, batches, n_par)),
    )
    obs_ends = np.append(obs_starts[1:], n_obs).astype(np.intp)
    _record_sums_kernel(
        np.ascontiguousarray(log_weight), np.ascontiguousarray(fixed),
        np.ascontiguousarray(stats), np.ascontiguousarray(score_stat),
        np.ascontiguousarray(score_const), np.ascontiguousarray(variance),
        np.ascontiguousarray(obs_starts, dtype=np.intp), obs_ends, batches,
        out.max_log_weight, out.weight_sum, out.score_sum, out.score_scatter,
        out.sq_weight_sum, out.sq_score_sum, out.sq_score_outer, out.stat_sum,
        out.variance_sum, out.batch_weight, out.batch_score,
    )
    return out
