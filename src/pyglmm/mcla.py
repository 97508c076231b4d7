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
workers computed them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .importance import ImportanceSampler
from .kernels import fused_pass
from .prior import PriorAt
from .problem import Problem

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ChunkSample:
    """The theta-free part of one chunk of the importance sample."""

    zu: FloatArray  # (m_j, n) Z u_k, observations in block order; or, with ``u``, empty
    stats: FloatArray  # (m_j, B, S) per block the prior's statistics (sums of u_a u_b)
    log_h: FloatArray  # (m_j, B) log proposal density per block
    proj: FloatArray | None = None  # (m_j, B, S, p) their projections on the shift
    u: FloatArray | None = None  # (m_j, q) the draws, when Z u is gathered in the kernel

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
        )

    def projections(self, problem: Problem, u: FloatArray) -> FloatArray:
        """Projections of every draw's statistics on the shift: shape (m, B, S, p)."""
        return problem.prior.projections(u, self.slope)


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


@dataclass(frozen=True)
class ChunkPass:
    """What one pass over a chunk gives at one ``theta``, per draw (m_j rows)."""

    log_weight: FloatArray  # (m_j, B) log importance weights
    fixed_scores: FloatArray  # (m_j, B, p)
    variance: FloatArray  # (m_j, n) c''(eta), weighted
    stats: FloatArray  # (m_j, B, S) the prior's statistics of the (shifted) draws
    prior_grad: FloatArray | None  # (m_j, B, S, p) with shifted draws


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


def tail_size(n_draws: int) -> int:
    """Number of largest weights used for the Pareto tail fit (Vehtari et al. 2024)."""
    return int(min(0.2 * n_draws, 3.0 * np.sqrt(n_draws)))


def _largest(values: FloatArray, count: int) -> FloatArray:
    """The ``count`` largest entries of each row of ``values`` (B, k), unsorted."""
    if values.shape[1] <= count:
        return values
    return np.partition(values, values.shape[1] - count, axis=1)[:, -count:]


def draw_effects(
    problem: Problem,
    sampler: ImportanceSampler,
    seed: np.random.SeedSequence,
    n_draws: int,
) -> FloatArray:
    """Draw one chunk of block-ordered random effects from its own seed stream."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return sampler.draw(rng, n_draws, problem)


def draw_chunk(
    problem: Problem,
    sampler: ImportanceSampler,
    seed: np.random.SeedSequence,
    n_draws: int,
    shift: EffectShift | None = None,
) -> ChunkSample:
    """Draw one chunk from its own seed stream and precompute its theta-free part."""
    return chunk_from_draws(problem, sampler, draw_effects(problem, sampler, seed, n_draws),
                            shift)


def chunk_from_draws(
    problem: Problem,
    sampler: ImportanceSampler,
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
    )


def _weighted_outer_sum(weight: FloatArray, vectors: FloatArray) -> FloatArray:
    """``sum_k weight[k, b] v[k, b] v[k, b]^T`` for every block: (B, P, P), as batched GEMM."""
    by_block = np.ascontiguousarray(vectors.transpose(1, 0, 2))  # (B, m, P)
    weighted = by_block * weight.T[:, :, None]
    return np.swapaxes(by_block, 1, 2) @ weighted


class _BlockReducer:
    """Per-block matrix products over observations, vectorised for few or many blocks."""

    def __init__(self, problem: Problem) -> None:
        blocks = problem.blocks
        self.n_blocks = blocks.n_blocks
        self.obs_block = blocks.obs_block
        self.bounds = np.append(blocks.obs_starts, problem.y.size)
        self.few = self.n_blocks <= 32

    def weighted_column_sums(self, weights: FloatArray, values: FloatArray) -> FloatArray:
        """Return ``sum_k weights[k, block(i)] values[k, i]`` for every observation i."""
        if self.few:
            out = np.empty(values.shape[1])
            for b in range(self.n_blocks):
                lo, hi = self.bounds[b], self.bounds[b + 1]
                out[lo:hi] = weights[:, b] @ values[:, lo:hi]
            return out
        return np.einsum("ki,ki->i", weights[:, self.obs_block], values)


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
    """

    def __init__(
        self,
        problem: Problem,
        chunk_source: Callable[[int], ChunkSample],
        chunk_sizes: Iterable[int],
        shift: EffectShift | None = None,
    ) -> None:
        self.problem = problem
        self.shift = shift
        self.chunk_source = chunk_source
        self.chunk_sizes = tuple(int(s) for s in chunk_sizes)
        self.n_draws = sum(self.chunk_sizes)
        self.n_top = max(tail_size(self.n_draws), 1)
        self._reducer = _BlockReducer(problem)
        self._prior_at: tuple[bytes, PriorAt] | None = None
        self.n_evaluations = 0
        self.fused_pass = fused_pass

    # -- one chunk -------------------------------------------------------------------
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
            stats = chunk.stats + 2.0 * (chunk.proj @ d) + (gram_d @ d)[None]
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
        p = problem.n_fixed
        prior = self.prior_at(theta)
        one = self.chunk_pass(chunk, theta)
        log_weight, fixed_scores, variance = one.log_weight, one.fixed_scores, one.variance
        stats, prior_grad = one.stats, one.prior_grad
        top = log_weight.max(axis=0)
        weight = np.exp(log_weight - top)
        weight_sum = weight.sum(axis=0)

        n_random = prior.score_stat.shape[1]
        scores = np.empty((chunk.n_draws, problem.blocks.n_blocks, p + n_random))
        scores[:, :, :p] = fixed_scores
        if prior_grad is not None:
            scores[:, :, :p] -= np.einsum("kbsp,s->kbp", prior_grad, prior.pi)
        scores[:, :, p:] = stats @ prior.score_stat + prior.score_const
        score_sum = np.einsum("kb,kbi->bi", weight, scores)
        centred = scores - score_sum / weight_sum[:, None]
        score_scatter = _weighted_outer_sum(weight, centred)
        sq_weight = weight * weight
        return ChunkRecord(
            n_draws=chunk.n_draws,
            max_log_weight=top,
            weight_sum=weight_sum,
            score_sum=score_sum,
            score_scatter=score_scatter,
            variance_sum=self._reducer.weighted_column_sums(weight, variance),
            stat_sum=np.einsum("kb,kbs->bs", weight, stats),
            sq_weight_sum=sq_weight.sum(axis=0),
            sq_score_sum=np.einsum("kb,kbi->bi", sq_weight, scores),
            sq_score_outer=_weighted_outer_sum(sq_weight, scores),
            top_log_weights=_largest(log_weight.T, self.n_top),
            beta_stat_sum=None if prior_grad is None
            else np.einsum("kb,kbsp->bps", weight, prior_grad),
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
        )

    # -- the objective -----------------------------------------------------------------
    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """Return the record of every chunk at ``theta``, in chunk order.

        Chunks are independent given ``theta``; a parallel backend would compute these
        records where the chunks live and merge them in this same order.
        """
        return [self.chunk_record(self.chunk_source(j), theta)
                for j in range(len(self.chunk_sizes))]

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
        recs = self.records(theta)
        total = recs[0]
        for rec in recs[1:]:
            total = self.merge(total, rec)
        return self.finish(total, theta)

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
        return Evaluation(
            value=value,
            gradient=gradient,
            hessian=hessian,
            block_values=block_values,
            block_ess=s0**2 / sq,
            score_mc_covariance=0.5 * (score_mc_cov + score_mc_cov.T),
            n_draws=total.n_draws,
            top_log_weights=np.sort(total.top_log_weights, axis=1),
        )

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        """Value, gradient and Hessian, the signature the optimiser expects."""
        ev = self.evaluate(theta)
        return ev.value, ev.gradient, ev.hessian
