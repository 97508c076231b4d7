"""Block-diagonal symmetric positive definite matrices over the independent blocks.

The precision of a block-wise proposal, ``Z_b^T diag(v) Z_b + D_b^{-1}``, is
block-diagonal over the blocks of :mod:`pyglmm.blocks`. Blocks of equal size are
stacked into one 3-d array so that Cholesky factors, solves, log-determinants and
quadratic forms are batched numpy calls whatever the number of blocks (a nested
design has one block per group). Nothing here forms an inverse of a precision:
draws use the inverse of the triangular Cholesky factor of each block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, solve_triangular

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


#: Blocks of at most this many effects are handled as stacks with explicit triangular
#: inverses (batched products); larger ones one by one with triangular solves, which
#: cost ``d^2`` per right-hand side and never ``d^3`` beyond the factorisation itself.
SMALL_BLOCK = 48


@dataclass(frozen=True)
class BlockCholesky:
    """Cholesky factors ``L_b`` (lower, ``P_b = L_b L_b^T``) of a block-diagonal SPD matrix.

    Attributes
    ----------
    groups : tuple of SizeGroup
    factors : tuple of ndarray, shapes (G, d, d)
        The lower Cholesky factors, one stack per size group.
    half_log_det : ndarray, shape (B,)
        ``sum_j log (L_b)_{jj}`` = half the log-determinant of each block.
    """

    groups: tuple[SizeGroup, ...]
    factors: tuple[FloatArray, ...]
    half_log_det: FloatArray
    _inverses: dict[int, FloatArray] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_blocks(
        cls, groups: tuple[SizeGroup, ...], matrices: tuple[FloatArray, ...], n_blocks: int
    ) -> BlockCholesky:
        """Factor stacked SPD block matrices (one (G, d, d) array per size group)."""
        factors: list[FloatArray] = []
        half_log_det = np.zeros(n_blocks)
        for group, matrix in zip(groups, matrices, strict=True):
            factor: FloatArray = np.asarray(np.linalg.cholesky(matrix), dtype=np.float64)
            factors.append(factor)
            half_log_det[group.blocks] = np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(1)
        return cls(groups, tuple(factors), half_log_det)

    def inverse_factor(self, g: int) -> FloatArray:
        """``L_b^{-1}`` for the blocks of small size group ``g`` (computed once)."""
        if g not in self._inverses:
            factor = self.factors[g]
            identity = np.broadcast_to(np.eye(factor.shape[-1]), factor.shape)
            self._inverses[g] = np.tril(np.linalg.solve(factor, identity))
        return self._inverses[g]

    def _small(self, g: int) -> bool:
        return self.factors[g].shape[-1] <= SMALL_BLOCK

    def draw_transform(self, z: FloatArray) -> FloatArray:
        """Map standard normal rows ``z`` (m, q) to rows with covariance ``P^{-1}``."""
        out = np.empty_like(z)
        for g, group in enumerate(self.groups):
            if self._small(g):
                zg = np.moveaxis(z[:, group.index], 0, 1)  # (G, m, d)
                out[:, group.index] = np.moveaxis(zg @ self.inverse_factor(g), 0, 1)
                continue
            for factor, index in zip(self.factors[g], group.index, strict=True):
                out[:, index] = solve_triangular(factor, z[:, index].T, lower=True,
                                                 trans="T").T
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
        return solve_columns(self, rhs[:, None])[:, 0]


@dataclass(frozen=True)
class PrecisionLayout:
    """Where each observation's ``Z^T diag(w) Z`` contributions land in the block stacks.

    Built once per design; :meth:`assemble` is then one ``bincount`` per size group.
    """

    groups: tuple[SizeGroup, ...]
    entry_obs: tuple[IntArray, ...]  # per group: observation of every contribution
    entry_flat: tuple[IntArray, ...]  # per group: flat index into the (G, d, d) stack
    diag_flat: tuple[IntArray, ...]  # per group: flat indices of the diagonals
    diag_effect: tuple[IntArray, ...]  # per group: block-order effect of each diagonal

    @classmethod
    def build(
        cls, groups: tuple[SizeGroup, ...], blocks: BlockStructure, z_columns: IntArray
    ) -> PrecisionLayout:
        """Precompute the layout for a block-ordered ``z_columns`` (n, K)."""
        position = np.empty(blocks.n_blocks, dtype=np.intp)
        group_of = np.empty(blocks.n_blocks, dtype=np.intp)
        for g, group in enumerate(groups):
            position[group.blocks] = np.arange(group.blocks.size)
            group_of[group.blocks] = g
        obs_group = group_of[blocks.obs_block]
        n_formulas = z_columns.shape[1]
        entry_obs, entry_flat, diag_flat, diag_effect = [], [], [], []
        for g, group in enumerate(groups):
            d = group.index.shape[1]
            rows = np.flatnonzero(obs_group == g)
            pos = position[blocks.obs_block[rows]]
            local = z_columns[rows] - blocks.effect_starts[blocks.obs_block[rows]][:, None]
            flats = [
                (pos * d + local[:, k1]) * d + local[:, k2]
                for k1 in range(n_formulas)
                for k2 in range(n_formulas)
            ]
            entry_obs.append(np.tile(rows, n_formulas * n_formulas).astype(np.intp))
            entry_flat.append(np.concatenate(flats).astype(np.intp))
            block_pos = np.arange(group.blocks.size)[:, None]
            diag_flat.append(((block_pos * d + np.arange(d)) * d + np.arange(d)).ravel())
            diag_effect.append(group.index.ravel())
        return cls(groups, tuple(entry_obs), tuple(entry_flat), tuple(diag_flat),
                   tuple(diag_effect))

    def assemble(self, obs_weights: FloatArray, diagonal: FloatArray) -> tuple[FloatArray, ...]:
        """Return ``Z_b^T diag(obs_weights) Z_b + diag(diagonal)`` stacked by size group.

        Parameters
        ----------
        obs_weights : ndarray, shape (n,)
            Weights of the observations, in block order.
        diagonal : ndarray, shape (q,)
            Added to the diagonal (block order).
        """
        out: list[FloatArray] = []
        for g, group in enumerate(self.groups):
            n_group, d = group.index.shape
            flat: FloatArray = np.bincount(
                self.entry_flat[g], weights=obs_weights[self.entry_obs[g]],
                minlength=n_group * d * d,
            ).astype(np.float64, copy=False)
            flat[self.diag_flat[g]] += diagonal[self.diag_effect[g]]
            out.append(flat.reshape(n_group, d, d))
        return tuple(out)


def solve_columns(chol: BlockCholesky, rhs: FloatArray) -> FloatArray:
    """Solve ``P X = rhs`` for a block-ordered (q, r) matrix of right-hand sides."""
    out = np.empty_like(rhs)
    for g, group in enumerate(chol.groups):
        if chol.factors[g].shape[-1] <= SMALL_BLOCK:
            inverse = chol.inverse_factor(g)
            rg = rhs[group.index]  # (G, d, r)
            out[group.index] = np.swapaxes(inverse, 1, 2) @ (inverse @ rg)
            continue
        for factor, index in zip(chol.factors[g], group.index, strict=True):
            out[index] = cho_solve((factor, True), rhs[index])
    return out
