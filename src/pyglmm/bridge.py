"""The level of the MCMC likelihood: ``log L(psi)`` by bridge sampling.

Draws from the conditional distribution of the random effects give likelihood *ratios*
only (:mod:`pyglmm.chains`). The level ``log L_b(psi) = log \\int f_psi(y_b, u_b) du_b`` of
every block is estimated by bridge sampling (Meng and Wong 1996) between the chains'
draws and draws of the Laplace normal ``g = N(mode, H^{-1})`` at ``psi``: with
``l(u) = log f_psi(y, u) - log g(u)``, ``n1`` chain draws and ``n2`` normal draws,
``s_i = n_i / (n1 + n2)``, the optimal bridge is the fixed point

.. math::

    r = \\frac{\\frac1{n_2} \\sum_j e^{l(u^{(2)}_j)} / (s_1 e^{l(u^{(2)}_j)} + s_2 r)}
             {\\frac1{n_1} \\sum_i 1 / (s_1 e^{l(u^{(1)}_i)} + s_2 r)} .

It needs only that the two distributions overlap, not that ``g`` covers the target's
tails as an importance proposal must. Its Monte Carlo error comes from independent
groups of whole chains (and of normal draws): the spread of the groups' estimates over
the square root of their number.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray
from scipy.special import logsumexp

from .chains import ChainSampler
from .importance import Component
from .problem import Problem

FloatArray = NDArray[np.float64]

#: Independent groups whose spread gives the level's Monte Carlo error.
LEVEL_GROUPS = 8
#: Iterations of the fixed point (it converges geometrically; this is far more than the
#: measured need, about 20).
_MAX_ITER = 200


def optimal_bridge(l_target: FloatArray, l_normal: FloatArray) -> FloatArray:
    """``log r`` of the optimal bridge for every block (column).

    Parameters
    ----------
    l_target : ndarray, shape (n1, B)
        ``log f(y, u) - log g(u)`` at draws from the target.
    l_normal : ndarray, shape (n2, B)
        The same at draws from ``g``.
    """
    n1, n2 = l_target.shape[0], l_normal.shape[0]
    log_s1, log_s2 = np.log(n1 / (n1 + n2)), np.log(n2 / (n1 + n2))
    log_r = logsumexp(l_normal, axis=0) - np.log(n2)  # the importance estimate to start
    for _ in range(_MAX_ITER):
        top = l_normal - np.logaddexp(log_s1 + l_normal, log_s2 + log_r)
        bottom = -np.logaddexp(log_s1 + l_target, log_s2 + log_r)
        new = (logsumexp(top, axis=0) - np.log(n2)) - (logsumexp(bottom, axis=0) - np.log(n1))
        done = np.max(np.abs(new - log_r)) < 1e-12
        log_r = new
        if done:
            break
    return np.asarray(log_r, dtype=np.float64)


def bridge_level(
    problem: Problem, sampler: ChainSampler, seed: np.random.SeedSequence, n_draws: int,
) -> tuple[FloatArray, FloatArray]:
    """``log L_b(psi)`` of every block (no family constant) and the variance of each.

    ``n_draws`` (rounded up to whole chains) chain draws, run together from one stream
    of ``seed`` and split into ``LEVEL_GROUPS`` groups of whole chains for the Monte
    Carlo error, and as many draws of the Laplace normal from another.
    """
    chain_seed, normal_seed = seed.spawn(2)
    n_chains = LEVEL_GROUPS * max(1, sampler.n_chains // LEVEL_GROUPS)
    chains = dataclasses.replace(sampler, n_chains=n_chains)
    n_draws = n_chains * max(1, -(-n_draws // n_chains))
    normal = Component(sampler.mode, None, sampler.factor, None)
    u1 = chains.draw(np.random.Generator(np.random.PCG64(chain_seed)), n_draws, problem)
    z = np.random.Generator(np.random.PCG64(normal_seed)).standard_normal(
        (n_draws, problem.n_effects))
    u2 = sampler.mode + sampler.factor.draw_transform(z)
    l1 = sampler.log_target(u1, problem) - normal.log_density(u1, problem)
    l2 = sampler.log_target(u2, problem) - normal.log_density(u2, problem)
    group_1 = (np.arange(n_draws) % n_chains) % LEVEL_GROUPS  # whole chains per group
    group_2 = np.arange(n_draws) % LEVEL_GROUPS
    l_target = [l1[group_1 == g] for g in range(LEVEL_GROUPS)]
    l_normal = [l2[group_2 == g] for g in range(LEVEL_GROUPS)]
    level = optimal_bridge(np.concatenate(l_target), np.concatenate(l_normal))
    by_group = np.stack([optimal_bridge(a, b) for a, b in zip(l_target, l_normal,
                                                              strict=True)])
    variance = by_group.var(axis=0, ddof=1) / LEVEL_GROUPS
    return level, variance
