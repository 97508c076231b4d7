"""The random effects' prior ``log f_psi(u)`` in block order, for every term at once.

Each term contributes, per block ``b``, ``-L_bt/2 log det Sigma_t - 1/2 tr(P_t S_bt)``
with ``L_bt`` its levels in the block and ``S_bt`` the sum of ``u_l u_l^T`` over them
(:mod:`pyglmm.covariance`). So per draw and block the prior is an affine function of
a few *statistics*: sums of products ``u_a u_b`` over the pairs of effects of each
statistic of each term. :class:`PriorLayout` holds those pairs in block order (built
once per problem); :meth:`PriorLayout.at` gives, at one ``psi``, the constants and
coefficients that turn statistics into the log-density, its gradient and Hessian in
``psi`` (ties of the parameter layout already summed), and the prior precision
``D^{-1}`` for the conditional modes and the Laplace approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sparse
from numpy.typing import NDArray

from .covariance import PriorTerms
from .layout import ParameterLayout

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class PriorDerivatives:
    """The derivatives of the prior in ``psi`` (see :class:`PriorAt`)."""

    score_const: FloatArray  # (B, R)
    score_stat: FloatArray  # (S, R)
    hess_const: FloatArray  # (R, R), summed over blocks
    hess_stat: FloatArray  # (S, R, R)
    dpi: FloatArray  # (S, R)


@dataclass(frozen=True)
class PriorAt:
    """The prior's coefficients at one ``psi`` (see :meth:`PriorLayout.at`).

    With ``s`` a draw's statistics (B, S): log-density per block
    ``const - 0.5 * s @ pi``; gradient in ``psi`` ``score_const + s @ score_stat``;
    Hessian ``hess_const + sum_b s_b . hess_stat`` (summed over blocks). The
    derivatives are computed when first asked for (the conditional modes and the
    Laplace fit need only the density and ``D^{-1}``).
    """

    const: FloatArray  # (B,)
    pi: FloatArray  # (S,)
    diag_precision: FloatArray  # (q,) block order
    off_precision: FloatArray  # (n_off,)
    variances: FloatArray  # (q,) diagonal of D, block order
    log_det: float  # log det D
    make_derivatives: Callable[[], PriorDerivatives] | None = field(
        default=None, repr=False, compare=False)

    @cached_property
    def derivatives(self) -> PriorDerivatives:
        """The derivatives in ``psi`` (computed once)."""
        if self.make_derivatives is None:
            raise ValueError("this PriorAt was made without its derivatives")
        return self.make_derivatives()

    @property
    def score_const(self) -> FloatArray:
        """Gradient of the per-block constant, (B, R)."""
        return self.derivatives.score_const

    @property
    def score_stat(self) -> FloatArray:
        """Gradient coefficients of the statistics, (S, R)."""
        return self.derivatives.score_stat

    @property
    def hess_const(self) -> FloatArray:
        """Hessian of the constant, summed over blocks, (R, R)."""
        return self.derivatives.hess_const

    @property
    def hess_stat(self) -> FloatArray:
        """Hessian coefficients of the statistics, (S, R, R)."""
        return self.derivatives.hess_stat

    @property
    def dpi(self) -> FloatArray:
        """Derivatives of the statistics' coefficients ``pi``, (S, R)."""
        return self.derivatives.dpi

    def times(self, layout: PriorLayout, v: FloatArray) -> FloatArray:
        """``D^{-1} v`` for block-ordered ``v`` (..., q)."""
        out = self.diag_precision * v
        if layout.off_a.size:
            np.add.at(out.T, layout.off_a, (self.off_precision * v[..., layout.off_b]).T)
            np.add.at(out.T, layout.off_b, (self.off_precision * v[..., layout.off_a]).T)
        return out

    def quadratic(self, layout: PriorLayout, v: FloatArray) -> float:
        """``v^T D^{-1} v`` for one block-ordered q-vector."""
        value = float(np.dot(v * self.diag_precision, v))
        if layout.off_a.size:
            value += 2.0 * float(np.dot(self.off_precision * v[layout.off_a], v[layout.off_b]))
        return value


@dataclass(frozen=True)
class PriorLayout:
    """Where every term's statistics and precision entries live in block order.

    Attributes
    ----------
    layout : ParameterLayout
    n_blocks, n_effects : int
    block_sizes : ndarray, shape (B,)
        Random effects per block.
    term_levels : ndarray, shape (B, T)
        Levels of each term in each block.
    stat_start : ndarray of int, shape (T + 1,)
        The statistics of term ``t`` are ``stat_start[t]:stat_start[t + 1]``.
    pair_a, pair_b : ndarray of int
        Block-order effects of every product ``u_a u_b``, sorted by (block, statistic).
    seg_starts, seg_block, seg_stat : ndarray of int
        The (block, statistic) segments of the pairs.
    effect_term, effect_column : ndarray of int, shape (q,)
        Term and column of every block-ordered effect.
    off_a, off_b, off_term, off_row, off_col : ndarray of int
        The off-diagonal entries ``(a, b)`` of ``D^{-1}`` (one per unordered pair, within a
        level of a non-diagonal term) and their term and ``(row, col)`` in ``P_t``.
    """

    layout: ParameterLayout
    n_blocks: int
    n_effects: int
    block_sizes: FloatArray
    term_levels: FloatArray
    stat_start: IntArray
    pair_a: IntArray
    pair_b: IntArray
    seg_starts: IntArray
    seg_block: IntArray
    seg_stat: IntArray
    effect_term: IntArray
    effect_column: IntArray
    off_a: IntArray
    off_b: IntArray
    off_term: IntArray
    off_row: IntArray
    off_col: IntArray
    squares_in_order: bool = False  # pairs are (j, j) for j = 0..q-1: u * u itself
    term_effects: tuple[IntArray, ...] = ()  # per term: its block-order effects
    term_off: tuple[IntArray, ...] = ()  # per term: its entries of the off-diagonal list
    _last: dict[bytes, PriorAt | None] = field(default_factory=dict, repr=False,
                                               compare=False)

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the kept coefficients (a backend sends the layout to workers)."""
        state = dict(self.__dict__)
        state["_last"] = {}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    @classmethod
    def build(
        cls,
        layout: ParameterLayout,
        level_effects: tuple[IntArray, ...],
        effect_block: IntArray,
        n_blocks: int,
    ) -> PriorLayout:
        """Build from each term's block-order effect positions ``(L_t, k_t)``."""
        q = effect_block.size
        n_terms = len(level_effects)
        term_levels = np.zeros((n_blocks, n_terms))
        stat_start = [0]
        keys_block: list[IntArray] = []
        keys_stat: list[IntArray] = []
        pa: list[IntArray] = []
        pb: list[IntArray] = []
        effect_term = np.empty(q, dtype=np.intp)
        effect_column = np.empty(q, dtype=np.intp)
        off: dict[str, list[IntArray]] = {"a": [], "b": [], "t": [], "r": [], "c": []}
        for t, (structure, pos) in enumerate(zip(layout.structures, level_effects, strict=True)):
            level_block = effect_block[pos[:, 0]]
            np.add.at(term_levels[:, t], level_block, 1.0)
            effect_term[pos] = t
            effect_column[pos] = np.arange(pos.shape[1])[None, :]
            for s, pairs in enumerate(structure.stat_pairs()):
                for c1, c2 in pairs:
                    pa.append(pos[:, c1])
                    pb.append(pos[:, c2])
                    keys_block.append(level_block)
                    keys_stat.append(np.full(pos.shape[0], stat_start[-1] + s, dtype=np.intp))
            stat_start.append(stat_start[-1] + len(structure.stat_pairs()))
            if not structure.is_diagonal:
                for r in range(pos.shape[1]):
                    for c in range(r):
                        off["a"].append(pos[:, r])
                        off["b"].append(pos[:, c])
                        off["t"].append(np.full(pos.shape[0], t, dtype=np.intp))
                        off["r"].append(np.full(pos.shape[0], r, dtype=np.intp))
                        off["c"].append(np.full(pos.shape[0], c, dtype=np.intp))
        a = np.concatenate(pa).astype(np.intp)
        b = np.concatenate(pb).astype(np.intp)
        kb = np.concatenate(keys_block).astype(np.intp)
        ks = np.concatenate(keys_stat).astype(np.intp)
        order = np.lexsort((a, ks, kb))
        a, b, kb, ks = a[order], b[order], kb[order], ks[order]
        key = kb * stat_start[-1] + ks
        starts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1]).astype(np.intp)

        def cat(name: str) -> IntArray:
            return (np.concatenate(off[name]).astype(np.intp) if off[name]
                    else np.zeros(0, dtype=np.intp))

        off_term = cat("t")
        return cls(
            squares_in_order=bool(np.array_equal(a, b) and np.array_equal(a, np.arange(q))),
            term_effects=tuple(np.flatnonzero(effect_term == t) for t in range(n_terms)),
            term_off=tuple(np.flatnonzero(off_term == t) for t in range(n_terms)),
            layout=layout, n_blocks=n_blocks, n_effects=q,
            block_sizes=np.bincount(effect_block, minlength=n_blocks).astype(np.float64),
            term_levels=term_levels, stat_start=np.asarray(stat_start, dtype=np.intp),
            pair_a=a, pair_b=b, seg_starts=starts, seg_block=kb[starts], seg_stat=ks[starts],
            effect_term=effect_term, effect_column=effect_column,
            off_a=cat("a"), off_b=cat("b"), off_term=off_term, off_row=cat("r"),
            off_col=cat("c"),
        )

    @property
    def n_stats(self) -> int:
        """Number of statistics per block ``S``."""
        return int(self.stat_start[-1])

    # -- per draw ------------------------------------------------------------------------
    def _by_segment(self, per_segment: FloatArray) -> FloatArray:
        """Scatter (m, n_seg, ...) segment sums into (m, B, S, ...)."""
        out = np.zeros((per_segment.shape[0], self.n_blocks, self.n_stats,
                        *per_segment.shape[2:]))
        out[:, self.seg_block, self.seg_stat] = per_segment
        return out

    def statistics(self, u: FloatArray) -> FloatArray:
        """The statistics of every draw: shape (m, B, S) for block-ordered ``u`` (m, q)."""
        if self.squares_in_order:
            products = u * u
        else:
            products = u[:, self.pair_a] * u[:, self.pair_b]
        return self._by_segment(np.add.reduceat(products, self.seg_starts, axis=1))

    def pair_statistics(self, products: FloatArray) -> FloatArray:
        """The statistics (m, B, S) from given products of the pairs, (m, n_pairs).

        :meth:`statistics` of ``u`` is this of ``u[:, pair_a] * u[:, pair_b]``; with the
        entries of a covariance matrix at the pairs it gives the statistics' expectation.
        """
        return self._by_segment(np.add.reduceat(products, self.seg_starts, axis=1))

    def projections(self, u: FloatArray, slope: FloatArray) -> FloatArray:
        """Half the derivative of the statistics of ``u + slope d`` in ``d`` at 0.

        Shape (m, B, S, p); a statistic of ``w + A d`` is ``s + 2 proj d + d^T gram d``.
        """
        a, b = self.pair_a, self.pair_b
        if self.squares_in_order:
            prod = u[:, :, None] * slope[None, :, :]
        else:
            prod = 0.5 * (u[:, a, None] * slope[None, b, :] + u[:, b, None] * slope[None, a, :])
        return self._by_segment(np.add.reduceat(prod, self.seg_starts, axis=1))

    def projection_operator(self, slope: FloatArray) -> sparse.csr_matrix:
        """:meth:`projections` as one sparse linear map of the draws.

        A projection is linear in ``u``: segment ``g``'s column ``j`` is
        ``sum_{(a, b) in g} (u_a A_bj + u_b A_aj) / 2``. The returned ``(n_seg * p, q)``
        matrix ``P`` gives every draw's per-segment projections as ``P u`` (about 7x
        faster than forming the products, at a few ``q x p`` entries).
        """
        p = slope.shape[1]
        n_pairs = self.pair_a.size
        segment = np.repeat(np.arange(self.seg_starts.size),
                            np.diff(np.append(self.seg_starts, n_pairs)))
        cols = (segment[:, None] * p + np.arange(p)[None, :]).ravel()
        rows = np.concatenate([np.repeat(self.pair_a, p), np.repeat(self.pair_b, p)])
        values = 0.5 * np.concatenate([slope[self.pair_b].ravel(), slope[self.pair_a].ravel()])
        return sparse.csr_matrix(
            (values, (np.concatenate([cols, cols]), rows)),
            shape=(self.seg_starts.size * p, self.n_effects))

    def projections_by(self, u: FloatArray, operator: sparse.csr_matrix) -> FloatArray:
        """:meth:`projections` of ``u`` (m, q) through :meth:`projection_operator`."""
        per_segment = np.asarray((operator @ u.T).T)
        return self._by_segment(per_segment.reshape(u.shape[0], self.seg_starts.size, -1))

    def gram(self, slope: FloatArray) -> FloatArray:
        """The quadratic part of the statistics of ``w + A d``: shape (B, S, p, p)."""
        a, b = self.pair_a, self.pair_b
        if self.squares_in_order:
            outer = slope[:, :, None] * slope[:, None, :]
        else:
            outer = 0.5 * (slope[a, :, None] * slope[b, None, :]
                           + slope[b, :, None] * slope[a, None, :])
        return self._by_segment(np.add.reduceat(outer, self.seg_starts, axis=0)[None])[0]

    # -- at one psi ------------------------------------------------------------------------
    def at(self, psi: FloatArray) -> PriorAt | None:
        """The prior's coefficients at ``psi``; None where some ``Sigma`` is not definite.

        The result for the last ``psi`` is kept (the conditional mode and the Laplace
        value ask for it in turn).
        """
        psi = np.asarray(psi, dtype=np.float64)
        key = psi.tobytes()
        if key not in self._last:
            self._last.clear()
            self._last[key] = self._at(psi)
        return self._last[key]

    def _at_scalar(self, psi: FloatArray) -> PriorAt | None:
        """:meth:`at` when every term is one column with one variance (R glmm's model)."""
        lay = self.layout
        index = np.array([ix[0] for ix in lay.term_index], dtype=np.intp)
        nu = psi[index]  # (T,): one statistic per term
        if not np.all(nu > 0.0):
            return None
        r, n_terms = lay.n_random, index.size
        inv = 1.0 / nu
        total_levels = self.term_levels.sum(axis=0)
        logdet = np.log(nu)

        def derivatives() -> PriorDerivatives:
            terms = np.arange(n_terms)  # one entry per term: (term, index) pairs distinct
            dpi = np.zeros((n_terms, r))
            dpi[terms, index] = -(inv**2)
            d2pi = np.zeros((n_terms, r, r))
            d2pi[terms, index, index] = 2.0 * inv**3
            dlogdet = np.zeros((n_terms, r))
            dlogdet[terms, index] = inv
            # tied terms share an index: their curvatures add
            hess_const = np.diag(np.bincount(index, weights=0.5 * total_levels * inv**2,
                                             minlength=r).astype(np.float64))
            return PriorDerivatives(
                score_const=-0.5 * (self.term_levels @ dlogdet), score_stat=-0.5 * dpi,
                hess_const=hess_const, hess_stat=-0.5 * d2pi, dpi=dpi,
            )

        return PriorAt(
            const=-0.5 * (self.block_sizes * _LOG_2PI + self.term_levels @ logdet),
            pi=inv,
            diag_precision=inv[self.effect_term],
            off_precision=np.zeros(0),
            variances=nu[self.effect_term],
            log_det=float(total_levels @ logdet),
            make_derivatives=derivatives,
        )

    def _at(self, psi: FloatArray) -> PriorAt | None:
        lay = self.layout
        if all(s.k == 1 and s.n_params == 1 for s in lay.structures):
            return self._at_scalar(psi)
        r = lay.n_random
        s_total = self.n_stats
        n_terms = len(lay.structures)
        terms: list[PriorTerms] = []
        for t, structure in enumerate(lay.structures):
            pt = structure.prior_terms(lay.term_params(psi, t))
            if pt is None:
                return None
            terms.append(pt)
        logdet = np.array([pt.logdet for pt in terms])
        pi = np.empty(s_total)
        dpi = np.zeros((s_total, r))
        d2pi = np.zeros((s_total, r, r))
        dlogdet = np.zeros((n_terms, r))
        hess_const = np.zeros((r, r))
        total_levels = self.term_levels.sum(axis=0)
        diag = np.empty(self.n_effects)
        variances = np.empty(self.n_effects)
        off = np.empty(self.off_a.size)
        for t, pt in enumerate(terms):
            index = lay.term_index[t]
            lo, hi = self.stat_start[t], self.stat_start[t + 1]
            stats = np.arange(lo, hi)
            pi[lo:hi] = pt.pi
            np.add.at(dpi, (stats[:, None], index[None, :]), pt.dpi)
            np.add.at(d2pi, (stats[:, None, None], index[None, :, None], index[None, None, :]),
                      pt.d2pi)
            np.add.at(dlogdet[t], index, pt.dlogdet)
            np.add.at(hess_const, (index[:, None], index[None, :]),
                      -0.5 * total_levels[t] * pt.d2logdet)
            mine = self.term_effects[t]
            cols = self.effect_column[mine]
            diag[mine] = np.diagonal(pt.precision)[cols]
            variances[mine] = np.diagonal(
                lay.structures[t].covariance(lay.term_params(psi, t)))[cols]
            if self.term_off[t].size:
                entries = self.term_off[t]
                off[entries] = pt.precision[self.off_row[entries], self.off_col[entries]]
        derivatives = PriorDerivatives(
            score_const=-0.5 * (self.term_levels @ dlogdet), score_stat=-0.5 * dpi,
            hess_const=hess_const, hess_stat=-0.5 * d2pi, dpi=dpi,
        )
        return PriorAt(
            const=-0.5 * (self.block_sizes * _LOG_2PI + self.term_levels @ logdet),
            pi=pi,
            make_derivatives=lambda: derivatives,
            diag_precision=diag,
            off_precision=off,
            variances=variances,
            log_det=float(total_levels @ logdet),
        )
