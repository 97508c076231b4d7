"""The model in block order: what the sampler and the objective compute with."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sparse
from numpy.typing import NDArray

from .blocklinalg import BlockMatrices, PrecisionLayout, SizeGroup, crossed_layouts, size_groups
from .blocks import BlockStructure, find_blocks
from .crossed import CROSSED_MIN_SIZE
from .design import Design
from .families import Family
from .kernels import gather_rows
from .layout import ParameterLayout
from .prior import PriorAt, PriorLayout

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
    prior: PriorLayout
    offset: FloatArray  # (n,) block order
    z_values: FloatArray | None = None  # (n, K) block order; None: all ones
    weights: FloatArray | None = None  # (n,) block order; None: all ones

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
        z_values = None if design.z_values is None else np.ascontiguousarray(
            design.z_values[rows])
        prior = PriorLayout.build(
            design.layout,
            tuple(inverse_effect[design.level_effects(t)]
                  for t in range(len(design.random_terms))),
            blocks.effect_block, blocks.n_blocks,
        )
        crossed = crossed_layouts(blocks, z_columns, crossed_min_size, z_values, prior)
        groups = size_groups(blocks, alone=np.array(sorted(crossed), dtype=np.intp))
        weights = None if design.weights is None else design.weights[rows]
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
            loglik_constant=family.loglik_constant(design.y, design.trials, design.weights),
            layout=PrecisionLayout.build(groups, blocks, z_columns, crossed, z_values, prior),
            prior=prior,
            offset=design.offset[rows],
            z_values=z_values,
            weights=weights,
        )

    @property
    def n_fixed(self) -> int:
        """Number of fixed effects ``p``."""
        return int(self.x.shape[1])

    @property
    def n_components(self) -> int:
        """Number of random-effect parameters (``theta[p:]``)."""
        return self.design.n_components

    @property
    def params(self) -> ParameterLayout:
        """The parameter layout of ``theta``."""
        return self.design.layout

    @property
    def n_effects(self) -> int:
        """Number of random effects ``q``."""
        return int(self.effect_component.size)

    @property
    def has_crossed_blocks(self) -> bool:
        """Whether some block is factored by its Schur complement (:mod:`pyglmm.crossed`):
        a large block, whose factorisation is dear (PQL then prefers chord steps)."""
        return any(crossed is not None for crossed in self.layout.crossed)

    def z_times(self, u: FloatArray) -> FloatArray:
        """Return ``Z u`` for block-ordered ``u`` (..., q): shape (..., n) in block order."""
        return gather_rows(self.z_columns, u, self.z_values)

    def zt_times(self, r: FloatArray) -> FloatArray:
        """Return ``Z^T r`` for a block-ordered n-vector ``r`` (a q-vector) or (n, c)
        matrix (a (q, c) matrix), by the sparse :attr:`zt_matrix`."""
        return np.asarray(self.zt_matrix @ r, dtype=np.float64)

    @cached_property
    def zt_matrix(self) -> sparse.csr_matrix:
        """``Z^T`` as a sparse (q, n) matrix in block order (built once): one call for
        any number of columns, where a scatter per column and term cost ten times more
        in the PQL and conditional-mode iterations."""
        n, n_cols = self.z_columns.shape
        values = np.ones((n, n_cols)) if self.z_values is None else self.z_values
        rows = np.repeat(np.arange(n), n_cols)
        z = sparse.csr_matrix((values.ravel(), (rows, self.z_columns.ravel())),
                              shape=(n, self.n_effects))
        zt = z.T.tocsr()
        zt.sort_indices()
        return zt

    def precision(
        self,
        obs_weights: FloatArray,
        diagonal: FloatArray,
        scale: FloatArray | None = None,
        off_diagonal: FloatArray | None = None,
    ) -> tuple[BlockMatrices, ...]:
        """Blocks of ``S Z^T diag(obs_weights) Z S + D`` by size group.

        ``D`` has diagonal ``diagonal`` and, where given, the off-diagonal entries
        ``off_diagonal`` of the prior precision (:attr:`PriorAt.off_precision`);
        ``scale`` is the diagonal of ``S`` (per effect, block order; None: identity).
        """
        return self.layout.assemble(obs_weights, diagonal, scale, off_diagonal)

    def prior_at(self, psi: FloatArray) -> PriorAt:
        """The prior's coefficients at ``psi`` (raises ValueError if ``psi`` is infeasible)."""
        prior = self.prior.at(psi)
        if prior is None:
            raise ValueError(f"random-effect parameters {np.asarray(psi).tolist()} are not "
                             "a positive definite covariance")
        return prior

    def effect_variances(self, psi: FloatArray) -> FloatArray:
        """Variance of every random effect (block order): the diagonal of ``D(psi)``.

        For R glmm's model (one variance per term) this is ``psi`` at each effect's
        variance component; it also maps PQL's signed standard deviations per slot.
        """
        return np.asarray(psi, dtype=np.float64)[self.variance_slot]

    @cached_property
    def variance_slot(self) -> IntArray:
        """Position in ``psi`` of the variance of every block-ordered effect."""
        lay = self.design.layout
        out = np.empty(self.n_effects, dtype=np.intp)
        for t, structure in enumerate(lay.structures):
            mine = self.prior.term_effects[t]
            out[mine] = lay.term_index[t][structure.variance_index()][
                self.prior.effect_column[mine]]
        return out

    # -- the data part, with offsets and weights --------------------------------------
    def eta(self, beta: FloatArray, u: FloatArray) -> FloatArray:
        """Linear predictor ``offset + X beta + Z u`` (block order)."""
        return self.offset + self.x @ beta + self.z_times(u)

    def data_loglik(self, eta: FloatArray) -> float:
        """``sum_i w_i [y_i eta_i - c(eta_i)]`` (without the family constant)."""
        terms = self.family.loglik_terms(eta, self.y, self.trials)
        if self.weights is not None:
            terms = terms * self.weights
        return float(terms.sum())

    def residual_variance(self, eta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``w (y - c'(eta))`` and ``w c''(eta)``: the data part's score and curvature."""
        mean, variance = self.family.mean_variance(eta, self.trials)
        resid = self.y - mean
        if self.weights is not None:
            return resid * self.weights, variance * self.weights
        return resid, variance
