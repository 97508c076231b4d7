"""Block-diagonal symmetric positive definite matrices over the independent blocks.

The precision of a block-wise proposal, ``Z_b^T diag(v) Z_b + D_b^{-1}``, is
block-diagonal over the blocks of :mod:`pyglmm.blocks`. Blocks of equal size are
stacked into one 3-d array so that Cholesky factors, solves, log-determinants and
quadratic forms are batched numpy calls whatever the number of blocks (a nested
design has one block per group). Nothing here forms an inverse of a precision:
draws use the inverse of the triangular Cholesky factor of each block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blocks import BlockStructure

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class SizeGroup:
    """Blocks that have the same number ``d`` of random effects."""

    blocks: IntArray  # (G,) block ids
    index: IntArray  # (G, d) block-order effect positions


def size_groups(blocks: BlockStructure) -> tuple[SizeGroup, ...]:
    """Group the blocks by their number of random effects."""
    sizes = blocks.block_sizes
    groups = []
    for d in np.unique(sizes):
        ids = np.flatnonzero(sizes == d).astype(np.intp)
        index = blocks.effect_starts[ids][:, None] + np.arange(d)[None, :]
        groups.append(SizeGroup(ids, index.astype(np.intp)))
    return tuple(groups)


@dataclass(frozen=True)
class BlockCholesky:
    """Cholesky factors ``L_b`` (lower, ``P_b = L_b L_b^T``) of a block-diagonal SPD matrix.

    Attributes
    ----------
    groups : tuple of SizeGroup
    factors : tuple of ndarray, shapes (G, d, d)
        The lower Cholesky factors, one stack per size group.
    inverse_factors : tuple of ndarray, shapes (G, d, d)
        ``L_b^{-1}``, used to draw ``x = L_b^{-T} z`` as the row vector ``z L_b^{-1}``.
    half_log_det : ndarray, shape (B,)
        ``sum_j log (L_b)_{jj}`` = half the log-determinant of each block.
    """

    groups: tuple[SizeGroup, ...]
    factors: tuple[FloatArray, ...]
    inverse_factors: tuple[FloatArray, ...]
    half_log_det: FloatArray

    @classmethod
    def from_blocks(
        cls, groups: tuple[SizeGroup, ...], matrices: tuple[FloatArray, ...], n_blocks: int
    ) -> BlockCholesky:
        """Factor stacked SPD block matrices (one (G, d, d) array per size group)."""
        factors: list[FloatArray] = []
        inverses: list[FloatArray] = []
        half_log_det = np.zeros(n_blocks)
        for group, matrix in zip(groups, matrices, strict=True):
            factor: FloatArray = np.asarray(np.linalg.cholesky(matrix), dtype=np.float64)
            d = factor.shape[-1]
            identity = np.broadcast_to(np.eye(d), factor.shape)
            inverse: FloatArray = np.asarray(np.linalg.solve(factor, identity), np.float64)
            factors.append(factor)
            inverses.append(np.tril(inverse))
            half_log_det[group.blocks] = np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(1)
        return cls(groups, tuple(factors), tuple(inverses), half_log_det)

    def draw_transform(self, z: FloatArray) -> FloatArray:
        """Map standard normal rows ``z`` (m, q) to rows with covariance ``P^{-1}``."""
        out = np.empty_like(z)
        for group, inverse in zip(self.groups, self.inverse_factors, strict=True):
            zg = np.moveaxis(z[:, group.index], 0, 1)  # (G, m, d)
            out[:, group.index] = np.moveaxis(zg @ inverse, 0, 1)
        return out

    def quadratic_form(self, r: FloatArray, n_blocks: int) -> FloatArray:
        """Return ``r_b^T P_b r_b`` for rows ``r`` (m, q): shape (m, B)."""
        out = np.zeros((r.shape[0], n_blocks))
        for group, factor in zip(self.groups, self.factors, strict=True):
            rg = np.moveaxis(r[:, group.index], 0, 1)  # (G, m, d)
            s = rg @ factor  # rows of (L^T r)^T
            out[:, group.blocks] = np.einsum("gmd,gmd->mg", s, s)
        return out

    def solve(self, rhs: FloatArray) -> FloatArray:
        """Solve ``P x = rhs`` for a block-ordered q-vector."""
        out = np.empty_like(rhs)
        for group, inverse in zip(self.groups, self.inverse_factors, strict=True):
            rg = rhs[group.index][..., None]  # (G, d, 1)
            y = inverse @ rg  # L^{-1} r
            out[group.index] = (np.swapaxes(inverse, 1, 2) @ y)[..., 0]
        return out


def block_precision(
    groups: tuple[SizeGroup, ...],
    blocks: BlockStructure,
    z_columns: IntArray,
    obs_weights: FloatArray,
    diagonal: FloatArray,
) -> tuple[FloatArray, ...]:
    """Assemble ``Z_b^T diag(obs_weights) Z_b + diag(diagonal)`` block by block.

    Parameters
    ----------
    groups : tuple of SizeGroup
    blocks : BlockStructure
    z_columns : ndarray of int, shape (n, K)
        Block-order effect positions of each observation (observations in block order).
    obs_weights : ndarray, shape (n,)
        Non-negative weights of the observations, in block order.
    diagonal : ndarray, shape (q,)
        Added to the diagonal (block order).

    Returns
    -------
    tuple of ndarray
        One (G, d, d) stack per size group.
    """
    position = np.empty(blocks.n_blocks, dtype=np.intp)
    group_of = np.empty(blocks.n_blocks, dtype=np.intp)
    for g, group in enumerate(groups):
        position[group.blocks] = np.arange(group.blocks.size)
        group_of[group.blocks] = g
    matrices = [np.zeros((g.blocks.size, g.index.shape[1], g.index.shape[1])) for g in groups]
    obs_group = group_of[blocks.obs_block]
    starts = blocks.effect_starts
    for g, group in enumerate(groups):
        rows = np.flatnonzero(obs_group == g)
        pos = position[blocks.obs_block[rows]]
        local = z_columns[rows] - starts[blocks.obs_block[rows]][:, None]
        for k1 in range(z_columns.shape[1]):
            for k2 in range(z_columns.shape[1]):
                np.add.at(matrices[g], (pos, local[:, k1], local[:, k2]), obs_weights[rows])
        d = group.index.shape[1]
        matrices[g][:, np.arange(d), np.arange(d)] += diagonal[group.index]
    return tuple(matrices)


def solve_columns(chol: BlockCholesky, rhs: FloatArray) -> FloatArray:
    """Solve ``P X = rhs`` for a block-ordered (q, r) matrix of right-hand sides."""
    out = np.empty_like(rhs)
    for group, inverse in zip(chol.groups, chol.inverse_factors, strict=True):
        rg = rhs[group.index]  # (G, d, r)
        out[group.index] = np.swapaxes(inverse, 1, 2) @ (inverse @ rg)
    return out
