"""The model in block order: what the sampler and the objective compute with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .blocklinalg import BlockMatrices, PrecisionLayout, SizeGroup, crossed_layouts, size_groups
from .blocks import BlockStructure, find_blocks
from .crossed import CROSSED_MIN_SIZE
from .design import Design, z_gather, zt_scatter
from .families import Family

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class Problem:
    """A design permuted to block order, with its family and blocks.

    Observations are sorted by block and random effects by (block, component), so
    that per-block sums are contiguous segment sums (:mod:`pyglmm.blocks`).
    """

    design: Design
    family: Family
    blocks: BlockStructure
    groups: tuple[SizeGroup, ...]
    x: FloatArray  # (n, p), rows in block order
    y: FloatArray
    trials: FloatArray
    z_columns: IntArray  # (n, K) block-order effect positions
    effect_component: IntArray  # (q,) block order
    loglik_constant: float
    layout: PrecisionLayout

    @classmethod
    def build(
        cls,
        design: Design,
        family: Family,
        joint: bool = False,
        crossed_min_size: int = CROSSED_MIN_SIZE,
    ) -> Problem:
        """Permute ``design`` into block order (one block if ``joint``).

        Blocks of at least ``crossed_min_size`` crossed effects are factored by a Schur
        complement (:mod:`pyglmm.crossed`); the others densely.
        """
        blocks = find_blocks(design, joint=joint)
        inverse_effect = np.empty_like(blocks.effect_order)
        inverse_effect[blocks.effect_order] = np.arange(blocks.effect_order.size)
        rows = blocks.obs_order
        z_columns = inverse_effect[design.z_columns[rows]]
        crossed = crossed_layouts(blocks, z_columns, crossed_min_size)
        groups = size_groups(blocks, alone=np.array(sorted(crossed), dtype=np.intp))
        return cls(
            design=design,
            family=family,
            blocks=blocks,
            groups=groups,
            x=np.ascontiguousarray(design.x[rows]),
            y=design.y[rows],
            trials=design.trials[rows],
            z_columns=z_columns,
            effect_component=design.effect_component[blocks.effect_order],
            loglik_constant=family.loglik_constant(design.y, design.trials),
            layout=PrecisionLayout.build(groups, blocks, z_columns, crossed),
        )

    @property
    def n_fixed(self) -> int:
        """Number of fixed effects ``p``."""
        return int(self.x.shape[1])

    @property
    def n_components(self) -> int:
        """Number of variance components ``T``."""
        return self.design.n_components

    @property
    def n_effects(self) -> int:
        """Number of random effects ``q``."""
        return int(self.effect_component.size)

    def z_times(self, u: FloatArray) -> FloatArray:
        """Return ``Z u`` for block-ordered ``u`` (..., q): shape (..., n) in block order."""
        return z_gather(self.z_columns, u)

    def zt_times(self, r: FloatArray) -> FloatArray:
        """Return ``Z^T r`` for a block-ordered n-vector ``r``: a block-ordered q-vector."""
        return zt_scatter(self.z_columns, r, self.n_effects)

    def precision(
        self, obs_weights: FloatArray, diagonal: FloatArray, scale: FloatArray | None = None
    ) -> tuple[BlockMatrices, ...]:
        """Blocks of ``S Z^T diag(obs_weights) Z S + diag(diagonal)`` by size group.

        ``scale`` is the diagonal of ``S`` (per effect, block order; None: identity).
        """
        return self.layout.assemble(obs_weights, diagonal, scale)

    def effect_variances(self, nu: FloatArray) -> FloatArray:
        """Variance of every random effect (block order) for components ``nu``."""
        return np.asarray(nu, dtype=np.float64)[self.effect_component]
