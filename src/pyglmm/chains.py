"""Markov chain draws of the random effects: the sampler of the MCMC likelihood.

Importance sampling degenerates when a block holds hundreds of crossed random effects:
the weights of a proposal that is a little off in each of ``d`` dimensions vary
exponentially in ``d``. The MCMC likelihood (Geyer and Thompson 1992; Geyer 1994; see
docs/method.md) draws instead from the conditional distribution of the random effects
given the data at a reference point ``psi``,

.. math:: u_k \\sim f_\\psi(u \\mid y) = f_\\psi(y, u) / L(\\psi),

and estimates ``L(theta) / L(psi)`` by the mean of ``f_theta(y, u_k) / f_psi(y, u_k)``.
That is the importance-sampling estimator of :mod:`pyglmm.mcla` with the "proposal
density" ``log h(u) = log f_psi(y, u) - log L(psi)``, so :class:`ChainSampler` plugs into
the same chunks, records, trust region and rounds; ``log L(psi)`` itself (the level) is
estimated by bridge sampling (:mod:`pyglmm.bridge`).

The chains are Hamiltonian Monte Carlo with the Laplace curvature at the conditional
mode as mass matrix, ``H = Z^T diag(c''(eta)) Z + D^{-1}``: in the coordinates where
``H`` is the identity the target is close to a standard normal, so one step size fits
every direction, crossed designs included, and a trajectory of about 1.5 time units
gives nearly independent draws. Each chunk runs :attr:`ChainSampler.n_chains` chains
from its own seed stream, started at draws of the Laplace normal and run
:attr:`ChainSampler.burn_in` iterations before they are kept; rows ``t * n_chains + c``
hold chain ``c`` at iteration ``t``. The chains are the independent batches of the
Monte Carlo errors (:mod:`pyglmm.chunks`).

The chains may run in some blocks only (:attr:`ChainSampler.chained`; with
``sampler="auto"`` the blocks of at least :data:`MCMC_MIN_BLOCK` effects). The other
blocks are drawn independently from the Laplace t, and their "proposal density" is
that t's, so their weights are ordinary importance weights. The blocks are
independent given ``theta``, so each block's likelihood estimate stands alone. The
chains leave the other blocks where they started: their momentum and gradient are
masked. The spread between the batches is an honest MCSE for independent draws too
(rows ``t * n_chains + c`` make ``n_chains`` batches of independent draws).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from math import exp, log1p

import numba
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from .blocklinalg import BlockCholesky, solve_columns
from .families import Family
from .importance import ImportanceSampler
from .kernels import KERNEL_CODES, LANES, fused_pass
from .prior import PriorAt
from .problem import Problem

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: ``sampler="auto"`` uses the chains when the largest block holds at least this many
#: random effects (BENCHMARKS.md: importance sampling keeps an ESS above 10% of m up to
#: blocks of about a hundred crossed effects, and falls to about 1% at 340).
MCMC_MIN_BLOCK = 200
#: Chains run in each chunk (vectorised together; each is one batch of the MCSE).
DEFAULT_CHAINS = 32
#: Iterations each chain runs from its Laplace-normal start before its draws are kept.
DEFAULT_BURN_IN = 10
#: Draws kept per chain in a chunk (so a chunk holds ``n_chains * DRAWS_PER_CHAIN`` rows).
DRAWS_PER_CHAIN = 64
#: Integration time of one trajectory, in the coordinates where ``H`` is the identity.
TRAJECTORY = 1.5
_POISSON_ETA_MAX = 300.0


@numba.njit(inline="always", nogil=True)
def _mean_and_term(
    eta: float, y_i: float, n_i: float, family_code: int, with_loglik: bool
) -> tuple[float, float]:  # pragma: no cover - compiled (inlined)
    """``c'(eta)`` (times the trials) and the log-density term (0 without loglik)."""
    if family_code == 2:
        if eta > _POISSON_ETA_MAX:
            eta = _POISSON_ETA_MAX
        mean = exp(eta)
        return mean, (y_i * eta - mean) if with_loglik else 0.0
    if with_loglik:
        e = exp(-abs(eta))
        mean = 1.0 / (1.0 + e) if eta >= 0.0 else e / (1.0 + e)
        positive = eta if eta > 0.0 else 0.0
        return mean * n_i, y_i * eta - n_i * (positive + log1p(e))
    # exp(-eta) = inf gives mean 0, as it should
    return (1.0 / (1.0 + exp(-eta))) * n_i, 0.0


@numba.njit(parallel=True, cache=True, nogil=True)
def _data_gradient_kernel(
    u: FloatArray,
    columns: IntArray,
    values: FloatArray,
    obs_weights: FloatArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    obs_block: IntArray,
    family_code: int,
    with_loglik: bool,
    loglik: FloatArray,
    grad: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to the numpy path by the tests
    """:data:`~pyglmm.kernels.LANES` (four) rows at a time (their sums overlap in the
    processor, as in :mod:`pyglmm.kernels`); the outputs have a multiple of four rows, and the last
    group's lanes past the last row repeat it into rows the caller drops. Every row's
    arithmetic is that of a sweep over it alone."""
    n_rows = u.shape[0]
    n, n_columns = columns.shape
    last = n_rows - 1
    for h in numba.prange((n_rows + LANES - 1) // LANES):
        k0 = LANES * h
        k1, k2, k3 = min(k0 + 1, last), min(k0 + 2, last), min(k0 + 3, last)
        for row in range(k0, k0 + LANES):
            loglik[row, :] = 0.0
            grad[row, :] = 0.0
        for i in range(n):
            xb_i = xb[i]
            eta0 = eta1 = eta2 = eta3 = xb_i
            for c in range(n_columns):
                col, v = columns[i, c], values[i, c]
                eta0 += v * u[k0, col]
                eta1 += v * u[k1, col]
                eta2 += v * u[k2, col]
                eta3 += v * u[k3, col]
            w, y_i = obs_weights[i], y[i]
            n_i = 1.0 if family_code == 0 else trials[i]
            mean0, term0 = _mean_and_term(eta0, y_i, n_i, family_code, with_loglik)
            mean1, term1 = _mean_and_term(eta1, y_i, n_i, family_code, with_loglik)
            mean2, term2 = _mean_and_term(eta2, y_i, n_i, family_code, with_loglik)
            mean3, term3 = _mean_and_term(eta3, y_i, n_i, family_code, with_loglik)
            if with_loglik:
                b = obs_block[i]
                loglik[k0, b] += w * term0
                loglik[k0 + 1, b] += w * term1
                loglik[k0 + 2, b] += w * term2
                loglik[k0 + 3, b] += w * term3
            r0, r1 = w * (y_i - mean0), w * (y_i - mean1)
            r2, r3 = w * (y_i - mean2), w * (y_i - mean3)
            for c in range(n_columns):
                col, v = columns[i, c], values[i, c]
                grad[k0, col] += r0 * v
                grad[k0 + 1, col] += r1 * v
                grad[k0 + 2, col] += r2 * v
                grad[k0 + 3, col] += r3 * v


def data_loglik_gradient(
    problem: Problem, u: FloatArray, xb: FloatArray, with_loglik: bool = True
) -> tuple[FloatArray, FloatArray]:
    """Per-block data log-likelihood (m, B) and its gradient in ``u`` (m, q).

    ``sum_{i in I_b} w_i [y_i eta_i - c(eta_i)]`` (no family constant) and
    ``Z^T diag(w) (y - c'(eta))`` for every row of ``u``, ``eta = xb + Z u``. Compiled
    for the built-in families (:data:`pyglmm.kernels.KERNEL_CODES`); numpy otherwise.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    n_blocks = problem.blocks.n_blocks
    code = KERNEL_CODES.get(type(problem.family))
    weights = np.ones(problem.y.size) if problem.weights is None else problem.weights
    if code is not None:
        values = (np.ones(problem.z_columns.shape) if problem.z_values is None
                  else np.ascontiguousarray(problem.z_values, dtype=np.float64))
        m = u.shape[0]
        rows = -(-m // LANES) * LANES  # the kernel's last lanes write rows dropped here
        loglik = np.zeros((rows, n_blocks))
        grad = np.empty((rows, u.shape[1]))
        if m:
            _data_gradient_kernel(u, np.ascontiguousarray(problem.z_columns, dtype=np.intp),
                                  values, np.ascontiguousarray(weights, dtype=np.float64),
                                  xb, problem.y, problem.trials, problem.blocks.obs_block,
                                  code, with_loglik, loglik, grad)
        return loglik[:m], grad[:m]
    return _data_loglik_gradient_numpy(problem.family, problem, u, xb, weights)


def _data_loglik_gradient_numpy(
    family: Family, problem: Problem, u: FloatArray, xb: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray]:
    eta = xb + problem.z_times(u)
    terms, mean, _ = family.all_terms(eta, problem.y, problem.trials)
    loglik = np.add.reduceat(terms * weights, problem.blocks.obs_starts, axis=1)
    resid = weights * (problem.y - mean)
    return loglik, np.asarray((z_sparse(problem).T @ resid.T).T)


def z_sparse(problem: Problem) -> sp.csr_matrix:
    """``Z`` (n x q) in block order as a sparse matrix."""
    n, k = problem.z_columns.shape
    data = np.ones(n * k) if problem.z_values is None else problem.z_values.ravel()
    return sp.csr_matrix((data, (np.repeat(np.arange(n), k), problem.z_columns.ravel())),
                         shape=(n, problem.n_effects))


def default_step(n_effects: int) -> float:
    """The leapfrog step: ``1.2 d^(-1/4)``, capped at 1 (``d`` effects in the chain).

    The energy error of a leapfrog trajectory on a ``d``-dimensional standard normal
    grows like ``d eps^4``; this keeps the acceptance rate near 85% (measured on
    VerbAgg, 340 effects: step 0.25-0.35 accepted 77-89% of the trajectories).
    """
    return float(min(1.0, 1.2 * max(n_effects, 1) ** -0.25))


@dataclass(frozen=True)
class ChainSampler:
    """Hamiltonian Monte Carlo draws of every block at the reference point ``(beta, psi)``.

    Has the interface of :class:`pyglmm.importance.ImportanceSampler` (``kind``,
    ``draw``, ``log_density``) that chunks, stores and backends use.

    Attributes
    ----------
    laplace : ImportanceSampler
        The Laplace t at ``(beta, psi)``; its mode and curvature factor are the chains'
        start and mass matrix.
    beta, psi : ndarray
        The reference point.
    curvature : ndarray, shape (n,)
        ``w c''(eta)`` at the mode (block order): the data part of the mass matrix.
    step : float
        Leapfrog step (jittered by a factor in [0.8, 1.2] at every iteration).
    n_steps : int
        Leapfrog steps per trajectory.
    n_chains, burn_in : int
        Chains per chunk and iterations discarded by each.
    level, level_variance : ndarray, shape (B,)
        ``log L_b(psi)`` of every block (without the family constant) and the variance
        of its estimate (:func:`pyglmm.bridge.bridge_level`; zeros until set; 0 in the
        blocks the chains do not draw).
    chained : ndarray of bool, shape (B,), optional
        The blocks the chains draw; the others are drawn independently from
        ``laplace``. None: every block.
    """

    laplace: ImportanceSampler
    beta: FloatArray
    psi: FloatArray
    curvature: FloatArray
    step: float
    n_steps: int
    n_chains: int = DEFAULT_CHAINS
    burn_in: int = DEFAULT_BURN_IN
    level: FloatArray | None = None
    level_variance: FloatArray | None = None
    chained: NDArray[np.bool_] | None = None
    kind: str = "mcmc"
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def at(
        cls, laplace: ImportanceSampler, problem: Problem, beta: FloatArray, psi: FloatArray,
        n_chains: int = DEFAULT_CHAINS, chained: NDArray[np.bool_] | None = None,
    ) -> ChainSampler:
        """The sampler at ``(beta, psi)`` with the mode and curvature of ``laplace``.

        ``chained``: the blocks the chains draw (None or all True: every block).
        """
        mode = laplace.components[0].location
        curvature = problem.residual_variance(problem.eta(beta, mode))[1]
        if chained is not None:
            chained = np.asarray(chained, dtype=bool)
            if chained.shape != (problem.blocks.n_blocks,):
                raise ValueError(f"chained needs one entry per block "
                                 f"({problem.blocks.n_blocks}), not {chained.shape}")
            if chained.all():
                chained = None
        d = (problem.n_effects if chained is None
             else int(problem.blocks.block_sizes[chained].sum()))
        step = default_step(d)
        return cls(laplace=laplace, beta=np.asarray(beta, np.float64),
                   psi=np.asarray(psi, np.float64), curvature=curvature, step=step,
                   n_steps=int(np.ceil(TRAJECTORY / step)), n_chains=int(n_chains),
                   chained=chained)

    @property
    def n_batches(self) -> int:
        """Independent batches per chunk for the Monte Carlo errors: the chains."""
        return self.n_chains

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def with_level(self, level: FloatArray, variance: FloatArray) -> ChainSampler:
        """The same sampler with the level ``log L_b(psi)`` and its variance set (0 in
        the blocks the chains do not draw, whose weights need no level)."""
        level = np.asarray(level, np.float64)
        variance = np.asarray(variance, np.float64)
        if self.chained is not None:
            level = np.where(self.chained, level, 0.0)
            variance = np.where(self.chained, variance, 0.0)
        return dataclasses.replace(self, level=level, level_variance=variance)

    def _effect_mask(self, problem: Problem) -> FloatArray | None:
        """1.0 for the effects of the chained blocks, 0.0 elsewhere (None: all chained)."""
        if self.chained is None:
            return None
        if "mask" not in self._cache:
            self._cache["mask"] = self.chained[problem.blocks.effect_block].astype(np.float64)
        return self._cache["mask"]  # type: ignore[return-value]

    def laplace_level(self, problem: Problem) -> FloatArray:
        """The Laplace approximation of ``log L_b(psi)`` (B,): at the mode, with the
        curvature ``H`` of :attr:`factor` (no family constant)."""
        d = problem.blocks.block_sizes.astype(np.float64)
        return (self.log_target(self.mode[None, :], problem)[0]
                + 0.5 * d * np.log(2.0 * np.pi) - self.factor.half_log_det)

    @property
    def mode(self) -> FloatArray:
        """The conditional mode at the reference point (block order)."""
        return self.laplace.components[0].location

    @property
    def factor(self) -> BlockCholesky:
        """Cholesky factors of the mass matrix ``H``."""
        chol = self.laplace.components[0].cholesky
        assert chol is not None
        return chol

    def _pieces(self, problem: Problem) -> tuple[PriorAt, FloatArray, sp.csr_matrix]:
        """The prior at ``psi``, ``X beta + offset`` and the sparse ``Z`` (kept)."""
        if "pieces" not in self._cache:
            self._cache["pieces"] = (problem.prior_at(self.psi),
                                     problem.offset + problem.x @ self.beta, z_sparse(problem))
        return self._cache["pieces"]  # type: ignore[return-value]

    def log_target(self, u: FloatArray, problem: Problem) -> FloatArray:
        """``log f_psi(y_b, u_b)`` of every block of every row (m, B), no constant.

        Computed by the same kernel as the MCLA's pass, so that at ``theta = psi`` the
        log weights ``log f_theta - log h`` are the level to rounding.
        """
        prior, xb, _ = self._pieces(problem)
        loglik = fused_pass(problem.family, u, xb, problem.y, problem.trials, problem.x,
                            problem.blocks.obs_block, problem.blocks.obs_starts,
                            problem.z_columns, problem.z_values, problem.weights)[0]
        return loglik + prior.const - 0.5 * (problem.prior.statistics(u) @ prior.pi)

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """The "proposal" log density of the MCLA: ``log f_psi(y_b, u_b) - level_b`` in
        the chained blocks, the Laplace t's log density in the others."""
        out = self.log_target(u, problem)
        if self.level is not None:
            out = out - self.level
        if self.chained is not None:
            independent = ~self.chained
            out[:, independent] = self.laplace.log_density(u, problem)[:, independent]
        return out

    def _energy_parts(
        self, problem: Problem, u: FloatArray, with_loglik: bool = True
    ) -> tuple[FloatArray, FloatArray]:
        """Total log target (m,) and its gradient (m, q) for rows ``u``.

        Without ``with_loglik`` the first is not computed (garbage).
        """
        prior, xb, _ = self._pieces(problem)
        loglik, grad = data_loglik_gradient(problem, u, xb, with_loglik)
        precision_u = prior.times(problem.prior, u)
        log_prior = -0.5 * np.einsum("kq,kq->k", u, precision_u)
        grad = grad - precision_u
        mask = self._effect_mask(problem)
        return loglik.sum(axis=1) + log_prior, grad if mask is None else grad * mask

    def _mass_times(self, problem: Problem, v: FloatArray) -> FloatArray:
        """``H v`` for rows ``v`` (m, q)."""
        prior, _, z = self._pieces(problem)
        zv = (z @ v.T)  # (n, m)
        return np.asarray((z.T @ (self.curvature[:, None] * zv)).T) + prior.times(
            problem.prior, v)

    def draw(self, rng: np.random.Generator, n_draws: int, problem: Problem) -> FloatArray:
        """``n_draws`` rows from :attr:`n_chains` chains (row ``t * n_chains + c``).

        The blocks the chains do not draw (:attr:`chained`) are then drawn from the
        Laplace t, from the same stream.
        """
        n_chains = self.n_chains
        factor = self.factor
        n_iter = -(-n_draws // n_chains)
        mask = self._effect_mask(problem)
        start = rng.standard_normal((n_chains, problem.n_effects))
        u = self.mode + factor.draw_transform(start if mask is None else start * mask)
        log_p, grad = self._energy_parts(problem, u)
        out = np.empty((n_iter * n_chains, problem.n_effects))
        for it in range(self.burn_in + n_iter):
            u, log_p, grad = self._transition(rng, problem, u, log_p, grad)
            t = it - self.burn_in
            if t >= 0:
                out[t * n_chains:(t + 1) * n_chains] = u
        out = out[:n_draws]
        if mask is not None:
            independent = mask == 0.0
            out[:, independent] = self.laplace.draw(rng, n_draws, problem)[:, independent]
        return out

    def _transition(
        self, rng: np.random.Generator, problem: Problem, u: FloatArray, log_p: FloatArray,
        grad: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """One Hamiltonian trajectory per chain, accepted or not by Metropolis."""
        factor = self.factor
        z = rng.standard_normal(u.shape)
        mask = self._effect_mask(problem)
        if mask is not None:
            z = z * mask  # the other blocks stay where they are
        eps = self.step * rng.uniform(0.8, 1.2, size=(u.shape[0], 1))
        momentum = self._mass_times(problem, factor.draw_transform(z))  # ~ N(0, H)
        start_energy = log_p - 0.5 * np.einsum("kq,kq->k", z, z)
        position = u
        new_grad = grad
        momentum = momentum + 0.5 * eps * new_grad
        for s in range(self.n_steps):
            position = position + eps * solve_columns(factor, momentum.T).T
            new_log_p, new_grad = self._energy_parts(problem, position,
                                                     s == self.n_steps - 1)
            momentum = momentum + (eps if s < self.n_steps - 1 else 0.5 * eps) * new_grad
        velocity = solve_columns(factor, momentum.T).T
        end_energy = new_log_p - 0.5 * np.einsum("kq,kq->k", momentum, velocity)
        with np.errstate(invalid="ignore"):
            accept = np.log(rng.random(u.shape[0])) < end_energy - start_energy
        accept &= np.isfinite(end_energy)
        keep = accept[:, None]
        return (np.where(keep, position, u), np.where(accept, new_log_p, log_p),
                np.where(keep, new_grad, grad))
