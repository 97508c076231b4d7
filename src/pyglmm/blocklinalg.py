"""Block-diagonal symmetric positive definite matrices over the independent blocks.

The precision of a block-wise proposal, ``Z_b^T diag(v) Z_b + D_b^{-1}``, is
block-diagonal over the blocks of :mod:`pyglmm.blocks`. Blocks of equal size are
stacked into one 3-d array so that Cholesky factors, solves, log-determinants and
quadratic forms are batched calls whatever the number of blocks (a nested design has
one block per group; stacks of small blocks are factored and inverted by the compiled
loops of :mod:`pyglmm.smallblocks`). Nothing here forms an inverse of a precision:
draws use the inverse of the triangular Cholesky factor of each block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import cho_solve, solve_triangular

from .blocks import BlockStructure
from .crossed import CROSSED_MIN_SIZE, CrossedFactor, CrossedLayout, CrossedMatrix
from .smallblocks import cholesky_stack, lower_inverse_stack

if TYPE_CHECKING:
    from .prior import PriorLayout

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class SizeGroup:
    """Blocks that have the same number ``d`` of random effects."""

    blocks: IntArray  # (G,) block ids
    index: IntArray  # (G, d) block-order effect positions
    #: the effects as one run of block-order positions (consecutive blocks), else None
    span: slice | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        flat = self.index.ravel()
        run = flat.size > 0 and bool(np.all(np.diff(flat) == 1))
        object.__setattr__(self, "span",
                           slice(int(flat[0]), int(flat[0]) + flat.size) if run else None)

    def view(self, rows: FloatArray) -> FloatArray | None:
        """The group's columns of ``rows`` (m, q) as an (m, G, d) view (writable through),
        or None when they are not one run of a C-ordered ``rows``."""
        if self.span is None or not rows.flags.c_contiguous:
            return None
        return rows[:, self.span].reshape(rows.shape[0], *self.index.shape)

    def columns(self, rows: FloatArray) -> FloatArray:
        """The group's columns of ``rows`` (m, q) as (m, G, d): :meth:`view` where there
        is one (no copy), else gathered. The two lie differently in memory, so a product
        of either may differ in the last bits."""
        view = self.view(rows)
        return rows[:, self.index] if view is None else view


def size_groups(blocks: BlockStructure, alone: IntArray | None = None) -> tuple[SizeGroup, ...]:
    """Group the blocks by their number of random effects.

    Blocks listed in ``alone`` get a group of their own each (after the others).
    """
    sizes = blocks.block_sizes
    single = np.zeros(blocks.n_blocks, dtype=bool)
    if alone is not None:
        single[alone] = True
    groups = []
    for d in np.unique(sizes[~single]):
        ids = np.flatnonzero((sizes == d) & ~single).astype(np.intp)
        index = blocks.effect_starts[ids][:, None] + np.arange(d)[None, :]
        groups.append(SizeGroup(ids, index.astype(np.intp)))
    for b in np.flatnonzero(single):
        index = blocks.effect_starts[b] + np.arange(sizes[b])[None, :]
        groups.append(SizeGroup(np.array([b], dtype=np.intp), index.astype(np.intp)))
    return tuple(groups)


def crossed_layouts(
    blocks: BlockStructure,
    z_columns: IntArray,
    min_size: int = CROSSED_MIN_SIZE,
    z_values: FloatArray | None = None,
    prior: PriorLayout | None = None,
) -> dict[int, CrossedLayout]:
    """Layouts of the blocks of at least ``min_size`` effects that have a pivot set."""
    off = None if prior is None else (prior.off_a, prior.off_b)
    out: dict[int, CrossedLayout] = {}
    sizes = blocks.block_sizes
    ends = np.append(blocks.obs_starts[1:], blocks.obs_block.size)
    for b in np.flatnonzero(sizes >= min_size):
        index = blocks.effect_starts[b] + np.arange(sizes[b])
        obs = np.arange(blocks.obs_starts[b], ends[b])
        layout = CrossedLayout.build(int(b), index, obs, z_columns, z_values, off)
        if layout is not None:
            out[int(b)] = layout
    return out


#: Blocks of at most this many effects are handled as stacks with explicit triangular
#: inverses (batched products); larger ones one by one with triangular solves, which
#: cost ``d^2`` per right-hand side and never ``d^3`` beyond the factorisation itself.
SMALL_BLOCK = 48


#: A stack of dense blocks (G, d, d), or one large crossed block.
BlockMatrices = FloatArray | CrossedMatrix
BlockFactor = FloatArray | CrossedFactor


@dataclass(frozen=True)
class BlockCholesky:
    """Cholesky factors ``L_b`` (lower, ``P_b = L_b L_b^T``) of a block-diagonal SPD matrix.

    Attributes
    ----------
    groups : tuple of SizeGroup
    factors : tuple
        Per size group, the lower Cholesky factors as a (G, d, d) array, or for a
        large crossed block a :class:`~pyglmm.crossed.CrossedFactor` (Schur complement).
    half_log_det : ndarray, shape (B,)
        ``sum_j log (L_b)_{jj}`` = half the log-determinant of each block.
    """

    groups: tuple[SizeGroup, ...]
    factors: tuple[BlockFactor, ...]
    half_log_det: FloatArray
    _inverses: dict[int, FloatArray] = field(default_factory=dict, repr=False, compare=False)
    _covariances: dict[int, FloatArray] = field(default_factory=dict, repr=False,
                                                compare=False)
    _slots: list[IntArray] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_blocks(
        cls, groups: tuple[SizeGroup, ...], matrices: tuple[BlockMatrices, ...], n_blocks: int
    ) -> BlockCholesky:
        """Factor stacked SPD block matrices (as :meth:`PrecisionLayout.assemble` gives)."""
        factors: list[BlockFactor] = []
        half_log_det = np.zeros(n_blocks)
        for group, matrix in zip(groups, matrices, strict=True):
            if isinstance(matrix, CrossedMatrix):
                crossed = matrix.factor()
                factors.append(crossed)
                half_log_det[group.blocks] = crossed.half_log_det
                continue
            factor: FloatArray = (cholesky_stack(matrix) if matrix.shape[-1] <= SMALL_BLOCK
                                  else np.asarray(np.linalg.cholesky(matrix), np.float64))
            factors.append(factor)
            half_log_det[group.blocks] = np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(1)
        return cls(groups, tuple(factors), half_log_det)

    def inverse_factor(self, g: int) -> FloatArray:
        """``L_b^{-1}`` for the blocks of small size group ``g`` (computed once)."""
        if g not in self._inverses:
            factor = self.factors[g]
            assert isinstance(factor, np.ndarray)
            if factor.shape[-1] <= SMALL_BLOCK:
                self._inverses[g] = lower_inverse_stack(factor)
            else:
                identity = np.broadcast_to(np.eye(factor.shape[-1]), factor.shape)
                self._inverses[g] = np.tril(np.linalg.solve(factor, identity))
        return self._inverses[g]

    def inverse_entries(self, rows: IntArray, cols: IntArray) -> FloatArray:
        """Entries ``(P^{-1})[rows[k], cols[k]]`` for pairs of effects of the same block.

        The inverse of each dense block, ``L_b^{-T} L_b^{-1}``, is formed once; a large
        crossed block gives its entries from the inverse of its Schur complement
        (:meth:`pyglmm.crossed.CrossedFactor.inverse_entries`).
        """
        rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
        where = self._effect_slots()
        out = np.empty(rows.size)
        for g in range(len(self.groups)):
            mine = np.flatnonzero(where[0, rows] == g)
            if not mine.size:
                continue
            crossed = self.factors[g]
            if isinstance(crossed, CrossedFactor):
                out[mine] = crossed.inverse_entries(where[2, rows[mine]], where[2, cols[mine]])
                continue
            if g not in self._covariances:
                inverse = self.inverse_factor(g)
                self._covariances[g] = np.swapaxes(inverse, 1, 2) @ inverse
            r, c = rows[mine], cols[mine]
            out[mine] = self._covariances[g][where[1, r], where[2, r], where[2, c]]
        return out

    def _effect_slots(self) -> IntArray:
        """Per block-ordered effect: its size group, its block's place in the group and
        its position in the block, (3, q) (computed once)."""
        if not self._slots:
            n_effects = sum(group.index.size for group in self.groups)
            where = np.empty((3, n_effects), dtype=np.intp)
            for g, group in enumerate(self.groups):
                n_in, d = group.index.shape
                where[0, group.index] = g
                where[1, group.index] = np.arange(n_in)[:, None]
                where[2, group.index] = np.arange(d)[None, :]
            self._slots.append(where)
        return self._slots[0]

    def _small(self, g: int) -> bool:
        factor = self.factors[g]
        return isinstance(factor, np.ndarray) and factor.shape[-1] <= SMALL_BLOCK

    def draw_transform(self, z: FloatArray) -> FloatArray:
        """Map standard normal rows ``z`` (m, q) to rows with covariance ``P^{-1}``."""
        out = np.empty_like(z)
        for g, group in enumerate(self.groups):
            factors = self.factors[g]
            if isinstance(factors, CrossedFactor):
                index = group.index[0]
                out[:, index] = factors.solve_transposed(z[:, index].T).T
            elif self._small(g):
                zg = np.moveaxis(group.columns(z), 0, 1)  # (G, m, d)
                mapped = np.moveaxis(zg @ self.inverse_factor(g), 0, 1)
                target = group.view(out)
                if target is None:
                    out[:, group.index] = mapped
                else:
                    target[...] = mapped
            else:
                for factor, index in zip(factors, group.index, strict=True):
                    out[:, index] = solve_triangular(factor, z[:, index].T, lower=True,
                                                     trans="T").T
        return out

    def quadratic_form(self, r: FloatArray, n_blocks: int) -> FloatArray:
        """Return ``r_b^T P_b r_b`` for rows ``r`` (m, q): shape (m, B)."""
        out = np.zeros((r.shape[0], n_blocks))
        for group, factor in zip(self.groups, self.factors, strict=True):
            if isinstance(factor, CrossedFactor):
                s = factor.transposed_times(r[:, group.index[0]].T)  # (d, m)
                out[:, group.blocks[0]] = np.einsum("dm,dm->m", s, s)
                continue
            rg = np.moveaxis(group.columns(r), 0, 1)  # (G, m, d)
            t = rg @ factor  # rows of (L^T r)^T
            out[:, group.blocks] = np.einsum("gmd,gmd->mg", t, t)
        return out

    def solve(self, rhs: FloatArray) -> FloatArray:
        """Solve ``P x = rhs`` for a block-ordered q-vector."""
        return solve_columns(self, rhs[:, None])[:, 0]


@dataclass(frozen=True)
class PrecisionLayout:
    """Where each observation's ``Z^T diag(w) Z`` contributions land in the block stacks.

    Built once per design; :meth:`assemble` is then one ``bincount`` per size group
    (large crossed blocks: a :class:`~pyglmm.crossed.CrossedLayout` each).
    """

    groups: tuple[SizeGroup, ...]
    entry_obs: tuple[IntArray, ...]  # per group: observation of every contribution
    entry_flat: tuple[IntArray, ...]  # per group: flat index into the (G, d, d) stack
    diag_flat: tuple[IntArray, ...]  # per group: flat indices of the diagonals
    diag_effect: tuple[IntArray, ...]  # per group: block-order effect of each diagonal
    crossed: tuple[CrossedLayout | None, ...]  # per group: its layout if crossed
    entry_value: tuple[FloatArray | None, ...] = ()  # per group: Z entry products
    off_flat: tuple[IntArray, ...] = ()  # per group: flat indices of prior off-diagonals
    off_entry: tuple[IntArray, ...] = ()  # per group: their index in the prior's list

    @classmethod
    def build(
        cls,
        groups: tuple[SizeGroup, ...],
        blocks: BlockStructure,
        z_columns: IntArray,
        crossed: dict[int, CrossedLayout] | None = None,
        z_values: FloatArray | None = None,
        prior: PriorLayout | None = None,
    ) -> PrecisionLayout:
        """Precompute the layout for a block-ordered ``z_columns`` (n, K).

        ``crossed`` maps block ids to their layouts; each such block must be alone in
        its size group (:func:`size_groups` with ``alone``). ``z_values`` are the
        entries of ``Z`` (None: ones); ``prior`` places the prior precision's
        off-diagonal entries.
        """
        crossed = crossed or {}
        position = np.empty(blocks.n_blocks, dtype=np.intp)
        group_of = np.empty(blocks.n_blocks, dtype=np.intp)
        for g, group in enumerate(groups):
            position[group.blocks] = np.arange(group.blocks.size)
            group_of[group.blocks] = g
        obs_group = group_of[blocks.obs_block]
        n_formulas = z_columns.shape[1]
        entry_obs, entry_flat, diag_flat, diag_effect = [], [], [], []
        entry_value: list[FloatArray | None] = []
        off_flat: list[IntArray] = []
        off_entry: list[IntArray] = []
        group_crossed: list[CrossedLayout | None] = []
        empty = np.zeros(0, dtype=np.intp)
        off_a = np.zeros(0, dtype=np.intp) if prior is None else prior.off_a
        off_b = np.zeros(0, dtype=np.intp) if prior is None else prior.off_b
        off_group = group_of[blocks.effect_block[off_a]] if off_a.size else empty
        for g, group in enumerate(groups):
            layout = crossed.get(int(group.blocks[0])) if group.blocks.size == 1 else None
            group_crossed.append(layout)
            if layout is not None:
                entry_obs.append(empty)
                entry_flat.append(empty)
                diag_flat.append(empty)
                diag_effect.append(empty)
                entry_value.append(None)
                off_flat.append(empty)
                off_entry.append(empty)
                continue
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
            if z_values is None:
                entry_value.append(None)
            else:
                vals = z_values[rows]
                entry_value.append(np.concatenate([
                    vals[:, k1] * vals[:, k2]
                    for k1 in range(n_formulas) for k2 in range(n_formulas)
                ]))
            mine = np.flatnonzero(off_group == g) if off_a.size else empty
            if mine.size:
                eb = blocks.effect_block[off_a[mine]]
                la = off_a[mine] - blocks.effect_starts[eb]
                lb = off_b[mine] - blocks.effect_starts[eb]
                pb = position[eb]
                off_flat.append(np.concatenate([(pb * d + la) * d + lb,
                                                (pb * d + lb) * d + la]).astype(np.intp))
                off_entry.append(np.concatenate([mine, mine]).astype(np.intp))
            else:
                off_flat.append(empty)
                off_entry.append(empty)
            block_pos = np.arange(group.blocks.size)[:, None]
            diag_flat.append(((block_pos * d + np.arange(d)) * d + np.arange(d)).ravel())
            diag_effect.append(group.index.ravel())
        return cls(groups, tuple(entry_obs), tuple(entry_flat), tuple(diag_flat),
                   tuple(diag_effect), tuple(group_crossed), tuple(entry_value),
                   tuple(off_flat), tuple(off_entry))

    def assemble(
        self,
        obs_weights: FloatArray,
        diagonal: FloatArray,
        scale: FloatArray | None = None,
        off_diagonal: FloatArray | None = None,
    ) -> tuple[BlockMatrices, ...]:
        """Return ``S Z_b^T diag(obs_weights) Z_b S + D`` by size group.

        ``D`` has diagonal ``diagonal`` and the prior's off-diagonal entries
        ``off_diagonal`` (:attr:`pyglmm.prior.PriorAt.off_precision`; None: none).

        Parameters
        ----------
        obs_weights : ndarray, shape (n,)
            Weights of the observations, in block order.
        diagonal : ndarray, shape (q,)
            Added to the diagonal (block order).
        scale : ndarray, shape (q,), optional
            The diagonal of ``S`` (block order); None means the identity.

        Returns
        -------
        tuple
            Per size group a (G, d, d) stack, or a :class:`~pyglmm.crossed.CrossedMatrix`
            for a large crossed block.
        """
        out: list[BlockMatrices] = []
        for g, group in enumerate(self.groups):
            layout = self.crossed[g]
            if layout is not None:
                out.append(layout.assemble(obs_weights, diagonal, scale, off_diagonal))
                continue
            n_group, d = group.index.shape
            weights = obs_weights[self.entry_obs[g]]
            values = self.entry_value[g] if self.entry_value else None
            if values is not None:
                weights = weights * values
            flat: FloatArray = np.bincount(
                self.entry_flat[g], weights=weights, minlength=n_group * d * d,
            ).astype(np.float64, copy=False)
            stack = flat.reshape(n_group, d, d)
            if scale is not None:
                sc = scale[group.index]  # (G, d)
                stack *= sc[:, :, None] * sc[:, None, :]
            flat[self.diag_flat[g]] += diagonal[self.diag_effect[g]]
            if off_diagonal is not None and self.off_flat and self.off_flat[g].size:
                np.add.at(flat, self.off_flat[g], off_diagonal[self.off_entry[g]])
            out.append(stack)
        return tuple(out)


def solve_columns(chol: BlockCholesky, rhs: FloatArray) -> FloatArray:
    """Solve ``P X = rhs`` for a block-ordered (q, r) matrix of right-hand sides."""
    out = np.empty_like(rhs)
    for g, group in enumerate(chol.groups):
        factors = chol.factors[g]
        if isinstance(factors, CrossedFactor):
            out[group.index[0]] = factors.solve(rhs[group.index[0]])
        elif chol._small(g):
            inverse = chol.inverse_factor(g)
            rg = rhs[group.index]  # (G, d, r)
            out[group.index] = np.swapaxes(inverse, 1, 2) @ (inverse @ rg)
        else:
            for factor, index in zip(factors, group.index, strict=True):
                out[index] = cho_solve((factor, True), rhs[index])
    return out
