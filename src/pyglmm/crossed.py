"""Cholesky factors of large blocks of crossed random effects, by a Schur complement.

In a block of crossed effects (``~ 0 + a`` and ``~ 0 + b``), every observation has
exactly one effect of each random formula, so ``Z_k^T W Z_k`` is diagonal for each
formula ``k``. Ordering the block's effects as a *pivot* set ``P`` (the formula with
the most effects in the block, plus effects seen in no observation) followed by the
rest ``R``, the precision is

.. math:: H = \\begin{pmatrix} A & C \\\\ C^\\top & B \\end{pmatrix},
          \\quad A \\text{ diagonal},\\; C \\text{ sparse},

and its lower Cholesky factor is, exactly,

.. math:: L = \\begin{pmatrix} A^{1/2} & 0 \\\\ M & L_S \\end{pmatrix},\\quad
          M = C^\\top A^{-1/2},\\quad L_S L_S^\\top = S = B - C^\\top A^{-1} C .

Only the Schur complement ``S`` (``|R| x |R|``) is dense, so a block of ``q`` effects
split evenly costs ``(q/2)^3/3`` flops to factor instead of ``q^3/3`` (8x less), and
draws and quadratic forms cost ``(q/2)^2`` per row plus a sparse product with ``M``.
``L`` is the dense Cholesky factor of the permuted matrix ``H[perm][:, perm]``
(``perm = P`` then ``R``): the tests pin every operation to that dense path.
The symmetric system is solved with ``L`` and ``L^T``. Entries of ``H^{-1}`` (for the
Laplace gradient) come from the inverse of ``S`` alone, which costs what the factor
does (:meth:`CrossedFactor.inverse_entries`):

.. math:: H^{-1} = \\begin{pmatrix} A^{-1} + A^{-1/2} M^\\top S^{-1} M A^{-1/2}
          & -A^{-1/2} M^\\top S^{-1} \\\\ \\cdot & S^{-1} \\end{pmatrix}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.linalg import cholesky, solve_triangular
from scipy.linalg.lapack import dpotri

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Most entries of a dense row panel ``M^T S^{-1}`` formed at once by
#: :meth:`CrossedFactor.inverse_entries` (32 MiB).
PANEL_ENTRIES = 1 << 22

#: Blocks with at least this many effects are factored by :class:`CrossedFactor` when
#: their pivot set holds at least :data:`MIN_PIVOT_SHARE` of them (below that the dense
#: factor of :mod:`pyglmm.blocklinalg` is as cheap).
CROSSED_MIN_SIZE = 256
MIN_PIVOT_SHARE = 0.25


def _empty() -> IntArray:
    return np.zeros(0, dtype=np.intp)


@dataclass(frozen=True)
class CrossedLayout:
    """Where the observations of one large block land in ``A``, ``C`` and ``B``.

    Attributes
    ----------
    block : int
        The block's id.
    index : ndarray of int, shape (d,)
        Block-order positions of the block's effects.
    pivot, rest : ndarray of int
        Positions within ``index`` of the pivot and of the remaining effects.
    obs : ndarray of int, shape (n_b,)
        Block-order observations of the block.
    obs_pivot : ndarray of int, shape (n_b,)
        Each observation's effect in the pivot set (position in ``pivot``).
    obs_rest : ndarray of int, shape (n_b, K - 1)
        Each observation's other effects (positions in ``rest``).
    pivot_value, rest_value : ndarray or None
        The ``Z`` entries of those effects (random slopes); None when all are 1.
    off_pivot, off_rest, off_index : ndarray of int
        Prior precision entries between a pivot and a rest effect (positions in
        ``pivot`` and ``rest``) and their index in the prior's off-diagonal list.
    off_rest1, off_rest2, off_rest_index : ndarray of int
        The same between two rest effects.
    """

    block: int
    index: IntArray
    pivot: IntArray
    rest: IntArray
    obs: IntArray
    obs_pivot: IntArray
    obs_rest: IntArray
    pivot_value: FloatArray | None = None
    rest_value: FloatArray | None = None
    off_pivot: IntArray = field(default_factory=_empty)
    off_rest: IntArray = field(default_factory=_empty)
    off_index: IntArray = field(default_factory=_empty)
    off_rest1: IntArray = field(default_factory=_empty)
    off_rest2: IntArray = field(default_factory=_empty)
    off_rest_index: IntArray = field(default_factory=_empty)

    def __repr__(self) -> str:
        return (f"CrossedLayout(block={self.block}, pivot={self.pivot.size}, "
                f"rest={self.rest.size}, n_obs={self.obs.size})")

    @classmethod
    def build(
        cls,
        block: int,
        index: IntArray,
        obs: IntArray,
        z_columns: IntArray,
        z_values: FloatArray | None = None,
        off_pairs: tuple[IntArray, IntArray] | None = None,
    ) -> CrossedLayout | None:
        """The layout of block ``block``, or None if it has no worthwhile pivot set.

        Parameters
        ----------
        block : int
        index : ndarray of int, shape (d,)
            Block-order effect positions of the block (consecutive).
        obs : ndarray of int
            Block-order observations of the block.
        z_columns : ndarray of int, shape (n, K)
            Block-order effect of each observation in each (term, column).
        z_values : ndarray, shape (n, K), optional
            The matching entries of ``Z`` (None: all 1).
        off_pairs : (ndarray, ndarray), optional
            Block-order effects ``(a, b)`` of the prior's off-diagonal precision
            entries (all of them; those of this block are picked here).
        """
        d = index.size
        cols = z_columns[obs] - index[0]  # local effect positions, (n_b, K)
        n_formulas = cols.shape[1]
        if n_formulas < 2:
            return None
        counts = [np.unique(cols[:, k]).size for k in range(n_formulas)]
        k_pivot = int(np.argmax(counts))
        seen = np.zeros(d, dtype=bool)
        seen[cols.ravel()] = True
        in_pivot = ~seen
        in_pivot[cols[:, k_pivot]] = True
        pivot = np.flatnonzero(in_pivot).astype(np.intp)
        if pivot.size < MIN_PIVOT_SHARE * d:
            return None
        rest = np.flatnonzero(~in_pivot).astype(np.intp)
        local = np.empty(d, dtype=np.intp)
        local[pivot] = np.arange(pivot.size)
        local[rest] = np.arange(rest.size)
        others = [k for k in range(n_formulas) if k != k_pivot]
        extra: dict[str, IntArray] = {}
        if off_pairs is not None and off_pairs[0].size:
            a, b = off_pairs
            inside = np.flatnonzero((a >= index[0]) & (a <= index[-1]))
            la, lb = a[inside] - index[0], b[inside] - index[0]
            if np.any(in_pivot[la] & in_pivot[lb]):
                return None  # the pivot block would not be diagonal
            pa = np.where(in_pivot[la], la, lb)  # the pivot end, if any
            ra = np.where(in_pivot[la], lb, la)
            mixed = in_pivot[la] | in_pivot[lb]
            extra = dict(
                off_pivot=local[pa[mixed]], off_rest=local[ra[mixed]],
                off_index=inside[mixed].astype(np.intp),
                off_rest1=local[la[~mixed]], off_rest2=local[lb[~mixed]],
                off_rest_index=inside[~mixed].astype(np.intp),
            )
        values = None if z_values is None else z_values[obs]
        return cls(
            block=block, index=index.astype(np.intp), pivot=pivot, rest=rest,
            obs=obs.astype(np.intp), obs_pivot=local[cols[:, k_pivot]],
            obs_rest=local[cols[:, others]],
            pivot_value=None if values is None else np.ascontiguousarray(values[:, k_pivot]),
            rest_value=None if values is None else np.ascontiguousarray(values[:, others]),
            **extra,
        )

    def assemble(
        self,
        obs_weights: FloatArray,
        diagonal: FloatArray,
        scale: FloatArray | None,
        off_diagonal: FloatArray | None = None,
    ) -> CrossedMatrix:
        """``S Z_b^T diag(obs_weights) Z_b S + D`` in pivot/rest form.

        ``scale`` (block-order, per effect; None for ones) is the ``S`` of the formula;
        ``D`` has diagonal ``diagonal`` and the prior's ``off_diagonal`` entries.
        """
        w = obs_weights[self.obs]
        n_p, n_r = self.pivot.size, self.rest.size
        n_other = self.obs_rest.shape[1]
        if self.pivot_value is None or self.rest_value is None:
            w_pp = w
            w_pr = [w] * n_other
            w_rr = {(k1, k2): w for k1 in range(n_other) for k2 in range(n_other)}
        else:
            vp, vr = self.pivot_value, self.rest_value
            w_pp = w * vp * vp
            w_pr = [w * vp * vr[:, k] for k in range(n_other)]
            w_rr = {(k1, k2): w * vr[:, k1] * vr[:, k2]
                    for k1 in range(n_other) for k2 in range(n_other)}
        a: FloatArray = np.bincount(self.obs_pivot, weights=w_pp, minlength=n_p).astype(
            np.float64, copy=False)
        coupling = sp.csr_matrix(
            (np.concatenate(w_pr), (np.tile(self.obs_pivot, n_other),
                                    self.obs_rest.T.ravel())),
            shape=(n_p, n_r),
        )  # duplicates are summed
        # within one (term, column) the contributions are diagonal; across two, anywhere
        rest_diagonal = np.zeros(n_r)
        for k in range(n_other):
            rest_diagonal += np.bincount(self.obs_rest[:, k], weights=w_rr[k, k],
                                         minlength=n_r)
        rest_block = np.zeros((n_r, n_r))
        flat = rest_block.reshape(-1)
        for k1 in range(n_other):
            for k2 in range(n_other):
                if k1 != k2:
                    flat += np.bincount(self.obs_rest[:, k1] * n_r + self.obs_rest[:, k2],
                                        weights=w_rr[k1, k2], minlength=n_r * n_r)
        if scale is not None:
            sc_p, sc_r = scale[self.index[self.pivot]], scale[self.index[self.rest]]
            a *= sc_p**2
            coupling = sp.csr_matrix(sp.diags(sc_p) @ coupling @ sp.diags(sc_r))
            rest_diagonal *= sc_r**2
            rest_block *= sc_r[:, None] * sc_r[None, :]
        a += diagonal[self.index[self.pivot]]
        rest_diagonal += diagonal[self.index[self.rest]]
        rest_block[np.diag_indices(n_r)] += rest_diagonal
        if off_diagonal is not None and (self.off_index.size or self.off_rest_index.size):
            coupling = coupling + sp.csr_matrix(
                (off_diagonal[self.off_index], (self.off_pivot, self.off_rest)),
                shape=(n_p, n_r))
            values = off_diagonal[self.off_rest_index]
            np.add.at(rest_block, (self.off_rest1, self.off_rest2), values)
            np.add.at(rest_block, (self.off_rest2, self.off_rest1), values)
        return CrossedMatrix(self, a, coupling, rest_block)


@dataclass(frozen=True)
class CrossedMatrix:
    """A large block's precision ``[[diag(a), C], [C^T, B]]`` (pivot, rest order)."""

    layout: CrossedLayout
    pivot_diagonal: FloatArray  # (|P|,)
    coupling: sp.csr_matrix  # (|P|, |R|)
    rest_block: FloatArray  # (|R|, |R|)

    def dense(self) -> FloatArray:
        """The block as a dense (d, d) array in the block's own effect order."""
        lay = self.layout
        d = lay.index.size
        out = np.zeros((d, d))
        out[lay.pivot, lay.pivot] = self.pivot_diagonal
        c = self.coupling.toarray()
        out[np.ix_(lay.pivot, lay.rest)] = c
        out[np.ix_(lay.rest, lay.pivot)] = c.T
        out[np.ix_(lay.rest, lay.rest)] = self.rest_block
        return out

    def factor(self) -> CrossedFactor:
        """The Cholesky factor ``L`` (raises ``numpy.linalg.LinAlgError`` if not SPD)."""
        if not np.all(self.pivot_diagonal > 0):
            raise np.linalg.LinAlgError("crossed block: pivot diagonal not positive")
        root = np.sqrt(self.pivot_diagonal)
        m_t = sp.csr_matrix(sp.diags(1.0 / root) @ self.coupling)  # M^T, (|P|, |R|)
        schur = self.rest_block - (m_t.T @ m_t).toarray()
        try:
            factor = cholesky(schur, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError as exc:  # scipy's message names a leading minor
            raise np.linalg.LinAlgError(f"crossed block: {exc}") from exc
        half = float(np.log(root).sum() + np.log(np.diagonal(factor)).sum())
        return CrossedFactor(self.layout, root, m_t, sp.csr_matrix(m_t.T), factor, half)


@dataclass(frozen=True)
class CrossedFactor:
    """``L = [[diag(root), 0], [M, L_S]]`` of a :class:`CrossedMatrix`.

    Every method takes and returns arrays in the block's own effect order.
    """

    layout: CrossedLayout
    root: FloatArray  # (|P|,) square roots of the pivot diagonal
    m_t: sp.csr_matrix  # M^T, (|P|, |R|)
    m: sp.csr_matrix  # M, (|R|, |P|)
    schur_factor: FloatArray  # L_S, (|R|, |R|) lower
    half_log_det: float
    _schur_inverse: list[FloatArray] = field(default_factory=list, repr=False,
                                             compare=False)

    def _split(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        return x[self.layout.pivot], x[self.layout.rest]

    def _join(self, x_p: FloatArray, x_r: FloatArray) -> FloatArray:
        out = np.empty((self.layout.index.size,) + x_p.shape[1:])
        out[self.layout.pivot] = x_p
        out[self.layout.rest] = x_r
        return out

    def solve_transposed(self, y: FloatArray) -> FloatArray:
        """``L^{-T} y`` for columns ``y`` (d, r)."""
        y_p, y_r = self._split(y)
        x_r = solve_triangular(self.schur_factor, y_r, lower=True, trans="T",
                               check_finite=False)
        x_p = (y_p - self.m_t @ x_r) / self.root[:, None]
        return self._join(x_p, x_r)

    def solve(self, b: FloatArray) -> FloatArray:
        """``H^{-1} b`` for columns ``b`` (d, r)."""
        b_p, b_r = self._split(b)
        y_p = b_p / self.root[:, None]
        y_r = solve_triangular(self.schur_factor, b_r - self.m @ y_p, lower=True,
                               check_finite=False)
        return self.solve_transposed(self._join(y_p, y_r))

    def transposed_times(self, r: FloatArray) -> FloatArray:
        """``L^T r`` for columns ``r`` (d, k), in pivot-then-rest order."""
        r_p, r_r = self._split(r)
        top = self.root[:, None] * r_p + self.m_t @ r_r
        return np.concatenate([top, self.schur_factor.T @ r_r])

    def schur_inverse(self) -> FloatArray:
        """``S^{-1}`` from ``L_S`` (LAPACK ``dpotri``, formed once), (|R|, |R|)."""
        if not self._schur_inverse:
            n_r = self.schur_factor.shape[0]
            inverse = np.zeros((n_r, n_r))
            if n_r:
                lower, info = dpotri(self.schur_factor, lower=1)
                if info != 0:
                    raise np.linalg.LinAlgError(f"crossed block: dpotri failed ({info})")
                inverse = np.tril(lower) + np.tril(lower, -1).T
            self._schur_inverse.append(inverse)
        return self._schur_inverse[0]

    def inverse_entries(self, rows: IntArray, cols: IntArray) -> FloatArray:
        """Entries ``(H^{-1})[rows[k], cols[k]]`` (positions in the block's own order).

        Rest-rest entries are those of ``S^{-1}``. A pair with a pivot effect ``p``
        needs row ``p`` of ``T = M^T S^{-1}`` (scaled by ``1 / root_p``): ``T`` is
        formed in panels of the distinct pivot rows asked for, at most
        :data:`PANEL_ENTRIES` entries at a time, so memory stays at that of ``S``. A
        pivot-pivot entry ``(p, p')`` adds ``T[p] . M^T[p']`` over the sparse row
        ``p'`` of ``M^T`` to ``delta_{pp'} / root_p^2``.
        """
        lay = self.layout
        n_p, n_r = lay.pivot.size, lay.rest.size
        d = n_p + n_r
        position = np.empty(d, dtype=np.intp)
        position[lay.pivot] = np.arange(n_p)
        position[lay.rest] = np.arange(n_r)
        is_rest = np.zeros(d, dtype=bool)
        is_rest[lay.rest] = True
        rows, cols = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
        swap = is_rest[rows] & ~is_rest[cols]  # H^{-1} is symmetric: a pivot first
        first, second = np.where(swap, cols, rows), np.where(swap, rows, cols)
        i, j = position[first], position[second]
        s_inv = self.schur_inverse()
        out = np.empty(rows.size)
        both_rest = is_rest[first]
        out[both_rest] = s_inv[i[both_rest], j[both_rest]]
        with_pivot = np.flatnonzero(~both_rest)
        if not with_pivot.size:
            return out
        # distinct (pivot, other) pairs, the other as a pivot (code < n_p) or a rest
        # effect (code n_p + r)
        code = np.where(is_rest[second[with_pivot]], n_p + j[with_pivot], j[with_pivot])
        pairs, back = np.unique(i[with_pivot] * (n_p + n_r) + code, return_inverse=True)
        p_of, other = pairs // (n_p + n_r), pairs % (n_p + n_r)
        values = np.empty(pairs.size)
        indptr, indices, data = self.m_t.indptr, self.m_t.indices, self.m_t.data
        pivots, starts = np.unique(p_of, return_index=True)  # pairs are sorted by pivot
        per_panel = max(1, PANEL_ENTRIES // max(n_r, 1))
        for lo in range(0, pivots.size, per_panel):
            panel_rows = pivots[lo:lo + per_panel]
            panel = np.asarray(self.m_t[panel_rows] @ s_inv) if n_r else np.zeros(
                (panel_rows.size, 0))
            panel /= self.root[panel_rows, None]  # rows of A^{-1/2} M^T S^{-1}
            end = starts[lo + per_panel] if lo + per_panel < pivots.size else pairs.size
            mine = np.arange(starts[lo], end)
            local = np.searchsorted(panel_rows, p_of[mine])
            to_rest = other[mine] >= n_p
            k = mine[to_rest]
            values[k] = -panel[local[to_rest], other[k] - n_p]
            k, row = mine[~to_rest], local[~to_rest]
            q = other[k]  # pivot-pivot: panel row . (sparse row q of M^T) / root_q
            lengths = indptr[q + 1] - indptr[q]
            owner = np.repeat(np.arange(k.size), lengths)
            nz = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths,
                                                      lengths) + np.repeat(indptr[q], lengths)
            sums = np.bincount(owner, weights=panel[row[owner], indices[nz]] * data[nz],
                               minlength=k.size)
            values[k] = sums / self.root[q] + np.where(
                q == p_of[k], 1.0 / self.root[q] ** 2, 0.0)
        out[with_pivot] = values[back]
        return out
