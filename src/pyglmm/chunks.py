"""One chunk of the importance sample: its theta-free part, its pass and its record.

A chunk is a run of consecutive draws with its own seed stream
(:mod:`pyglmm.parallel`). What does not depend on ``theta`` is computed once
(:class:`ChunkSample`: ``Z u_k``, the prior's statistics, ``log h``); at each ``theta``
one pass over it (:meth:`ChunkMath.chunk_pass`) gives the per-draw log weights and
scores, and :meth:`ChunkMath.chunk_record` reduces them to a small mergeable
:class:`ChunkRecord`. :class:`ChunkMath` holds everything this needs and nothing that
is tied to a process, so a backend can build it where the chunks live
(:mod:`pyglmm.backends`).

Records merge associatively up to rounding. So that a fit gives the same numbers bit
for bit whatever the number of workers, they are always merged in one order, which
depends only on the number of chunks: :func:`merge_groups` splits the chunks into at
most :data:`MAX_GROUPS` runs of consecutive chunks, each run is folded left to right
where its chunks live, and the runs' records are folded left to right by the caller.
With at most :data:`MAX_GROUPS` chunks that is the plain left fold over the chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .importance import Sampler
from .kernels import fused_pass
from .prior import PriorAt
from .problem import Problem
from .recordsums import record_sums

FloatArray = NDArray[np.float64]

#: The chunks of a sample are merged in at most this many runs of consecutive chunks
#: (the unit of work of a backend): enough to balance 64 workers, few enough that the
#: records sent per evaluation stay small.
MAX_GROUPS = 64


def merge_groups(n_chunks: int) -> list[range]:
    """The runs of consecutive chunks whose records are folded together.

    Depends only on ``n_chunks``: one chunk per run up to :data:`MAX_GROUPS` chunks,
    else ``ceil(n_chunks / MAX_GROUPS)`` chunks per run.
    """
    size = max(1, -(-n_chunks // MAX_GROUPS))
    return [range(lo, min(lo + size, n_chunks)) for lo in range(0, n_chunks, size)]

@dataclass(frozen=True)
class ChunkSample:
    """The theta-free part of one chunk of the importance sample."""

    zu: FloatArray  # (m_j, n) Z u_k, observations in block order; or, with ``u``, empty
    stats: FloatArray  # (m_j, B, S) per block the prior's statistics (sums of u_a u_b)
    log_h: FloatArray  # (m_j, B) log proposal density per block
    proj: FloatArray | None = None  # (m_j, B, S, p) their projections on the shift
    u: FloatArray | None = None  # (m_j, q) the draws, when Z u is gathered in the kernel
    n_batches: int = 0  # independent batches (chains, point sets) in rows t * n_batches + c

    @property
    def n_draws(self) -> int:
        """Number of rows in the chunk."""
        return int((self.zu if self.u is None else self.u).shape[0])


@dataclass(frozen=True)
class EffectShift:
    """Draws that move with the fixed effects: ``u_k(beta) = w_k + A (beta - beta0)``.

    ``A`` is the derivative of the conditional mode with respect to ``beta`` at the
    proposal's centre, ``-H^{-1} Z^T diag(c''(eta)) X``. Substituting ``u = w + A d`` is
    a change of variables with unit Jacobian, so
    ``f_theta(y) = E_h[f_theta(y, w + A d) / h(w)]`` holds exactly for every ``theta``:
    the approximation is still unbiased, but when ``beta`` moves the draws follow the
    posterior of the random effects instead of staying behind. This removes most of
    the Monte Carlo error in directions where fixed and random effects are confounded
    (an intercept against the mean of the random effects). With ``A = 0`` everything
    reduces to docs/method.md. Derivatives stay in closed form: ``eta`` gains
    ``Z A d``, the fixed design becomes ``X + Z A``, and every statistic of the prior
    (a sum of products ``u_a u_b``) is quadratic in ``d`` through the per-chunk
    projections (:meth:`pyglmm.prior.PriorLayout.projections`).
    """

    slope: FloatArray  # (q, p) block order
    beta0: FloatArray  # (p,)
    x_tilde: FloatArray  # (n, p) X + Z A, observations in block order
    z_slope: FloatArray  # (n, p) Z A
    gram: FloatArray  # (B, S, p, p) quadratic part of each statistic
    operator: Any  # the projections as a sparse map of the draws (scipy.sparse)

    @classmethod
    def build(cls, problem: Problem, slope: FloatArray, beta0: FloatArray) -> EffectShift:
        """Precompute the theta-free pieces of a shift with slope ``A`` at ``beta0``."""
        z_slope = problem.z_times(slope.T).T
        return cls(
            slope=slope,
            beta0=np.asarray(beta0, dtype=np.float64),
            x_tilde=problem.x + z_slope,
            z_slope=z_slope,
            gram=problem.prior.gram(slope),
            operator=problem.prior.projection_operator(slope),
        )

    def projections(self, problem: Problem, u: FloatArray) -> FloatArray:
        """Projections of every draw's statistics on the shift: shape (m, B, S, p)."""
        return problem.prior.projections_by(u, self.operator)


@dataclass(frozen=True)
class ChunkRecord:
    """Per-block sufficient summaries of one chunk at one ``theta`` (mergeable)."""

    n_draws: int
    max_log_weight: FloatArray  # (B,)
    weight_sum: FloatArray  # (B,)  sum e^{b-a}
    score_sum: FloatArray  # (B, P) sum e^{b-a} g
    score_scatter: FloatArray  # (B, P, P) sum e^{b-a} (g - gbar)(g - gbar)^T
    variance_sum: FloatArray  # (n,) sum e^{b-a} c''(eta), scaled by each row's block
    stat_sum: FloatArray  # (B, S) sum e^{b-a} s (the prior's statistics)
    sq_weight_sum: FloatArray  # (B,) sum e^{2(b-a)}
    sq_score_sum: FloatArray  # (B, P)
    sq_score_outer: FloatArray  # (B, P, P)
    top_log_weights: FloatArray  # (B, <= n_top) largest log-weights, for Pareto k
    beta_stat_sum: FloatArray | None = None  # (B, p, S) sum e^{b-a} d(s/2)/d beta
    #: With Markov chains: the same second moments over batches (one per chain), with a
    #: batch's weight sum W_c and score sum S_c in place of a draw's weight and
    #: weighted score: sum W_c^2, sum W_c S_c, sum S_c S_c^T, sum n_c W_c, sum n_c^2
    #: (n_c the chain's draws) and the number of batches.
    batch_weight_sq: FloatArray | None = None  # (B,)
    batch_score_cross: FloatArray | None = None  # (B, P)
    batch_score_outer: FloatArray | None = None  # (B, P, P)
    batch_weight_len: FloatArray | None = None  # (B,)
    batch_len_sq: float = 0.0
    n_batches: int = 0


@dataclass(frozen=True)
class ChunkPass:
    """What one pass over a chunk gives at one ``theta``, per draw (m_j rows)."""

    log_weight: FloatArray  # (m_j, B) log importance weights
    fixed_scores: FloatArray  # (m_j, B, p)
    variance: FloatArray  # (m_j, n) c''(eta), weighted
    stats: FloatArray  # (m_j, B, S) the prior's statistics of the (shifted) draws
    prior_grad: FloatArray | None  # (m_j, B, S, p) with shifted draws




def tail_size(n_draws: int) -> int:
    """Number of largest weights used for the Pareto tail fit (Vehtari et al. 2024)."""
    return int(min(0.2 * n_draws, 3.0 * np.sqrt(n_draws)))


def _rows_times(stack: FloatArray, vector: FloatArray) -> FloatArray:
    """``stack @ vector`` for a stack (..., k) of many short rows, as one matrix-vector
    product: numpy's stacked ``@`` makes one call per row of the stack (12 times slower
    for a salamander chunk's (2000, 6, 2, 4) projections; the same numbers)."""
    rows = int(np.prod(stack.shape[:-1]))
    return (stack.reshape(rows, stack.shape[-1]) @ vector).reshape(stack.shape[:-1])


def _largest(values: FloatArray, count: int) -> FloatArray:
    """The ``count`` largest entries of each row of ``values`` (B, k), unsorted."""
    if values.shape[1] <= count:
        return values
    return np.partition(values, values.shape[1] - count, axis=1)[:, -count:]


def _batch_moments(
    batch_weight: FloatArray, batch_score: FloatArray, n_rows: int
) -> dict[str, Any]:
    """The batch fields of a :class:`ChunkRecord` from each batch's weight sum (B, C)
    and score sum (B, C, P): one batch per chain or randomised point set (row % C)."""
    n_chains = batch_weight.shape[1]
    lengths = np.bincount(np.arange(n_rows) % n_chains, minlength=n_chains).astype(float)
    return dict(
        batch_weight_sq=(batch_weight**2).sum(axis=1),
        batch_score_cross=(batch_weight[:, None, :] @ batch_score)[:, 0, :],
        batch_score_outer=np.swapaxes(batch_score, 1, 2) @ batch_score,
        batch_weight_len=batch_weight @ lengths,
        batch_len_sq=float(lengths @ lengths),
        n_batches=n_chains,
    )


def draw_effects(
    problem: Problem,
    sampler: Sampler,
    seed: np.random.SeedSequence,
    n_draws: int,
) -> FloatArray:
    """Draw one chunk of block-ordered random effects from its own seed stream."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return sampler.draw(rng, n_draws, problem)


def draw_chunk(
    problem: Problem,
    sampler: Sampler,
    seed: np.random.SeedSequence,
    n_draws: int,
    shift: EffectShift | None = None,
) -> ChunkSample:
    """Draw one chunk from its own seed stream and precompute its theta-free part."""
    return chunk_from_draws(problem, sampler, draw_effects(problem, sampler, seed, n_draws),
                            shift)


def chunk_from_draws(
    problem: Problem,
    sampler: Sampler,
    u: FloatArray,
    shift: EffectShift | None = None,
    with_zu: bool = True,
) -> ChunkSample:
    """The theta-free part of a chunk of block-ordered draws ``u``."""
    return ChunkSample(
        zu=problem.z_times(u) if with_zu else np.empty((0, 0)),
        stats=problem.prior.statistics(u),
        log_h=sampler.log_density(u, problem),
        proj=None if shift is None else shift.projections(problem, u),
        n_batches=int(getattr(sampler, "n_batches", 0)),
    )


def _merge_batches(
    first: ChunkRecord, second: ChunkRecord, f1: FloatArray, f2: FloatArray
) -> dict[str, Any]:
    """The merged batch fields of two records (none unless both have them)."""
    if first.batch_weight_sq is None or second.batch_weight_sq is None:
        return {}
    assert first.batch_score_cross is not None and second.batch_score_cross is not None
    assert first.batch_score_outer is not None and second.batch_score_outer is not None
    assert first.batch_weight_len is not None and second.batch_weight_len is not None
    g1, g2 = f1**2, f2**2
    return dict(
        batch_weight_sq=g1 * first.batch_weight_sq + g2 * second.batch_weight_sq,
        batch_score_cross=g1[:, None] * first.batch_score_cross
        + g2[:, None] * second.batch_score_cross,
        batch_score_outer=g1[:, None, None] * first.batch_score_outer
        + g2[:, None, None] * second.batch_score_outer,
        batch_weight_len=f1 * first.batch_weight_len + f2 * second.batch_weight_len,
        batch_len_sq=first.batch_len_sq + second.batch_len_sq,
        n_batches=first.n_batches + second.n_batches,
    )


class ChunkMath:
    """The per-chunk computations of the MCLA at one ``theta``, and record merging.

    Parameters
    ----------
    problem : Problem
        The model in block order.
    shift : EffectShift, optional
        The draws follow the fixed effects.
    n_top : int
        Largest log weights kept per block (for the Pareto tail fit of the whole sample).
    """

    def __init__(self, problem: Problem, shift: EffectShift | None, n_top: int) -> None:
        self.problem = problem
        self.shift = shift
        self.n_top = n_top
        self._prior_at: tuple[bytes, PriorAt] | None = None
        self.fused_pass = fused_pass

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_prior_at"] = None
        return state

    def prior_at(self, theta: FloatArray) -> PriorAt:
        """The prior's coefficients at ``theta`` (kept for the last ``theta``)."""
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if self._prior_at is None or self._prior_at[0] != key:
            self._prior_at = (key, self.problem.prior_at(self.problem.params.psi(theta)))
        return self._prior_at[1]

    def chunk_pass(self, chunk: ChunkSample, theta: FloatArray) -> ChunkPass:
        """The per-draw quantities of one chunk at ``theta`` (which must be feasible)."""
        problem = self.problem
        beta = problem.params.beta(theta)
        prior = self.prior_at(theta)
        shift = self.shift
        prior_grad = None
        if shift is None:
            x_fit, offset, stats = problem.x, problem.offset + problem.x @ beta, chunk.stats
        else:
            assert chunk.proj is not None
            d = beta - shift.beta0
            gram_d = shift.gram @ d  # (B, S, p)
            x_fit = shift.x_tilde
            offset = problem.offset + problem.x @ beta + shift.z_slope @ d
            stats = chunk.stats + 2.0 * _rows_times(chunk.proj, d) + (gram_d @ d)[None]
            prior_grad = chunk.proj + gram_d[None]  # d(s / 2) / d beta, (m, B, S, p)
        gather = chunk.u is not None
        loglik, fixed_scores, variance = self.fused_pass(
            problem.family, chunk.u if chunk.u is not None else chunk.zu, offset,
            problem.y, problem.trials, x_fit, problem.blocks.obs_block,
            problem.blocks.obs_starts, problem.z_columns if gather else None,
            problem.z_values if gather else None, problem.weights,
        )
        log_prior = prior.const - 0.5 * (stats @ prior.pi)
        return ChunkPass(
            log_weight=loglik + log_prior - chunk.log_h, fixed_scores=fixed_scores,
            variance=variance, stats=stats, prior_grad=prior_grad,
        )

    def chunk_record(self, chunk: ChunkSample, theta: FloatArray) -> ChunkRecord:
        """Compute the record of one chunk at ``theta`` (which must be feasible)."""
        problem = self.problem
        prior = self.prior_at(theta)
        one = self.chunk_pass(chunk, theta)
        log_weight, prior_grad = one.log_weight, one.prior_grad
        fixed = one.fixed_scores
        if prior_grad is not None:
            fixed = fixed - np.einsum("kbsp,s->kbp", prior_grad, prior.pi)
        sums = record_sums(log_weight, fixed, one.stats, prior.score_stat,
                           prior.score_const, one.variance, problem.blocks.obs_starts,
                           chunk.n_batches)
        beta_stat_sum = None
        if prior_grad is not None:
            weight = np.exp(log_weight - sums.max_log_weight)
            beta_stat_sum = np.einsum("kb,kbsp->bps", weight, prior_grad)
        batches = ({} if not chunk.n_batches
                   else _batch_moments(sums.batch_weight, sums.batch_score, chunk.n_draws))
        return ChunkRecord(
            n_draws=chunk.n_draws,
            max_log_weight=sums.max_log_weight,
            weight_sum=sums.weight_sum,
            score_sum=sums.score_sum,
            score_scatter=sums.score_scatter,
            variance_sum=sums.variance_sum,
            stat_sum=sums.stat_sum,
            sq_weight_sum=sums.sq_weight_sum,
            sq_score_sum=sums.sq_score_sum,
            sq_score_outer=sums.sq_score_outer,
            top_log_weights=_largest(log_weight.T, self.n_top),
            beta_stat_sum=beta_stat_sum,
            **batches,
        )

    # -- merging ---------------------------------------------------------------------
    def merge(self, first: ChunkRecord, second: ChunkRecord) -> ChunkRecord:
        """Merge two records into the record of their union (associative)."""
        top = np.maximum(first.max_log_weight, second.max_log_weight)
        f1 = np.exp(first.max_log_weight - top)
        f2 = np.exp(second.max_log_weight - top)
        w1 = f1 * first.weight_sum
        w2 = f2 * second.weight_sum
        total = w1 + w2
        delta = first.score_sum / first.weight_sum[:, None] - (
            second.score_sum / second.weight_sum[:, None]
        )
        between = (w1 * w2 / total)[:, None, None] * delta[:, :, None] * delta[:, None, :]
        obs_block = self.problem.blocks.obs_block
        g1, g2 = f1**2, f2**2
        return ChunkRecord(
            n_draws=first.n_draws + second.n_draws,
            max_log_weight=top,
            weight_sum=total,
            score_sum=f1[:, None] * first.score_sum + f2[:, None] * second.score_sum,
            score_scatter=f1[:, None, None] * first.score_scatter
            + f2[:, None, None] * second.score_scatter
            + between,
            variance_sum=f1[obs_block] * first.variance_sum
            + f2[obs_block] * second.variance_sum,
            stat_sum=f1[:, None] * first.stat_sum + f2[:, None] * second.stat_sum,
            sq_weight_sum=g1 * first.sq_weight_sum + g2 * second.sq_weight_sum,
            sq_score_sum=g1[:, None] * first.sq_score_sum + g2[:, None] * second.sq_score_sum,
            sq_score_outer=g1[:, None, None] * first.sq_score_outer
            + g2[:, None, None] * second.sq_score_outer,
            top_log_weights=_largest(
                np.concatenate([first.top_log_weights, second.top_log_weights], axis=1),
                self.n_top,
            ),
            beta_stat_sum=None if first.beta_stat_sum is None or second.beta_stat_sum is None
            else f1[:, None, None] * first.beta_stat_sum
            + f2[:, None, None] * second.beta_stat_sum,
            **_merge_batches(first, second, f1, f2),
        )


    def fold(self, records: Sequence[ChunkRecord]) -> ChunkRecord:
        """Merge ``records`` left to right: ``merge(merge(r0, r1), r2) ...``."""
        total = records[0]
        for rec in records[1:]:
            total = self.merge(total, rec)
        return total
