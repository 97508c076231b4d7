"""Independent blocks of the random-effect design (docs/method.md).

Random-effect levels that appear together in an observation are linked; the
connected components of that graph split the observations and the random effects
into blocks that are independent given the parameters, so the likelihood factorises
over blocks and each factor gets its own importance sample. Everything downstream
works in *block order*: random effects sorted by (block, variance component), and
observations sorted by block, so that per-block sums are contiguous segment sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components

from .design import Design

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BlockStructure:
    """The partition of effects and observations into independent blocks.

    Attributes
    ----------
    n_blocks : int
        Number of blocks ``B``.
    effect_order : ndarray of int, shape (q,)
        Design-order index of each effect in block order.
    effect_starts : ndarray of int, shape (B,)
        First block-order position of each block's effects.
    effect_block : ndarray of int, shape (q,)
        Block of each effect, in block order.
    obs_order : ndarray of int, shape (n,)
        Original row of each observation in block order.
    obs_starts : ndarray of int, shape (B,)
        First block-order position of each block's observations.
    obs_block : ndarray of int, shape (n,)
        Block of each observation, in block order.
    segment_starts : ndarray of int
        Starts of the (block, component) segments of the block-ordered effects.
    segment_block, segment_component : ndarray of int
        Block and variance component of each segment.
    component_counts : ndarray of int, shape (B, T)
        Number of effects of each variance component in each block, ``q_{bt}``.
    """

    n_blocks: int
    effect_order: IntArray
    effect_starts: IntArray
    effect_block: IntArray
    obs_order: IntArray
    obs_starts: IntArray
    obs_block: IntArray
    segment_starts: IntArray
    segment_block: IntArray
    segment_component: IntArray
    component_counts: IntArray
    joint: bool

    @property
    def block_sizes(self) -> IntArray:
        """Number of random effects in each block."""
        return np.bincount(self.effect_block, minlength=self.n_blocks)

    @property
    def block_n_obs(self) -> IntArray:
        """Number of observations in each block."""
        return np.bincount(self.obs_block, minlength=self.n_blocks)

    def effects_to_design_order(self, u_block_order: FloatArray) -> FloatArray:
        """Reorder the last axis of a block-ordered effect array to design order."""
        out = np.empty_like(u_block_order)
        out[..., self.effect_order] = u_block_order
        return out

    def effects_to_block_order(self, u_design_order: FloatArray) -> FloatArray:
        """Reorder the last axis of a design-ordered effect array to block order."""
        return np.asarray(u_design_order)[..., self.effect_order]

    def block_sum(self, per_effect: FloatArray) -> FloatArray:
        """Sum a block-ordered (..., q) array over each block's effects: (..., B)."""
        return np.add.reduceat(per_effect, self.effect_starts, axis=-1)

    def component_sums(self, per_effect: FloatArray) -> FloatArray:
        """Sum a block-ordered (m, q) array by (block, component): shape (m, B, T)."""
        m = per_effect.shape[0]
        seg = np.add.reduceat(per_effect, self.segment_starts, axis=-1)
        out = np.zeros((m, self.n_blocks, self.component_counts.shape[1]))
        out[:, self.segment_block, self.segment_component] = seg
        return out


def find_blocks(design: Design, joint: bool = False) -> BlockStructure:
    """Find the independent blocks of a design.

    Parameters
    ----------
    design : Design
        The model design.
    joint : bool
        If true, put every effect and observation in one block (R glmm's single
        joint importance sample).

    Returns
    -------
    BlockStructure
    """
    q, n = design.n_effects, design.n_obs
    cols = design.z_columns
    if joint:
        labels = np.zeros(q, dtype=np.intp)
    else:
        # link every effect of a row to the row's first effect
        first = np.repeat(cols[:, :1], cols.shape[1], axis=1).ravel()
        graph = sp.coo_matrix((np.ones(first.size), (first, cols.ravel())), shape=(q, q))
        _, raw = connected_components(graph, directed=False)
        # number blocks by first appearance in design order
        _, first_pos = np.unique(raw, return_index=True)
        rank = np.empty(first_pos.size, dtype=np.intp)
        rank[np.argsort(first_pos)] = np.arange(first_pos.size)
        labels = rank[raw].astype(np.intp)
    n_blocks = int(labels.max()) + 1
    component = design.effect_component
    n_groups = int(component.max()) + 1
    effect_order = np.lexsort((np.arange(q), component, labels)).astype(np.intp)
    effect_block = labels[effect_order]
    effect_starts = np.searchsorted(effect_block, np.arange(n_blocks)).astype(np.intp)

    obs_labels = labels[cols[:, 0]]
    obs_order = np.argsort(obs_labels, kind="stable").astype(np.intp)
    obs_block = obs_labels[obs_order]
    obs_starts = np.searchsorted(obs_block, np.arange(n_blocks)).astype(np.intp)

    sorted_component = component[effect_order]
    key = effect_block * n_groups + sorted_component
    change = np.flatnonzero(np.diff(key)) + 1
    segment_starts = np.concatenate([[0], change]).astype(np.intp)
    counts = np.zeros((n_blocks, n_groups), dtype=np.intp)
    np.add.at(counts, (effect_block, sorted_component), 1)
    del n
    return BlockStructure(
        n_blocks=n_blocks,
        effect_order=effect_order,
        effect_starts=effect_starts,
        effect_block=effect_block,
        obs_order=obs_order,
        obs_starts=obs_starts,
        obs_block=obs_block,
        segment_starts=segment_starts,
        segment_block=effect_block[segment_starts],
        segment_component=sorted_component[segment_starts],
        component_counts=counts,
        joint=joint,
    )
