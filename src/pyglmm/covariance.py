"""Covariance structures of a random-effect term: ``D`` per level and ``log f(u)``.

A term with ``k`` columns (an intercept and/or slopes) has, for every level of its
grouping factor, a random-effect vector ``u_l`` of length ``k`` with
``u_l ~ N_k(0, Sigma(psi))``, independent over levels. Every structure here is
*linear* in its parameters,

.. math:: \\Sigma(\\psi) = \\sum_a \\psi_a E_a ,

with constant symmetric basis matrices ``E_a``, so the parameters are variances and
covariances (the scale R's glmm and lme4's ``VarCorr`` report) and every derivative
of

.. math:: \\log f_\\psi(u) = \\sum_l \\Big[-\\tfrac k2 \\log 2\\pi
          - \\tfrac12\\log\\det\\Sigma - \\tfrac12 u_l^\\top\\Sigma^{-1}u_l\\Big]
          = c - \\tfrac L2 \\log\\det\\Sigma - \\tfrac12\\operatorname{tr}(\\Sigma^{-1}S),
          \\quad S = \\sum_l u_l u_l^\\top ,

follows from the basis in closed form (:meth:`CovarianceStructure.prior_terms`):
``d log det / d psi_a = tr(P E_a)``, ``dP/d psi_a = -P E_a P`` with ``P = Sigma^{-1}``,
and so on. ``log f`` is linear in the *statistics* of ``S`` a structure needs (its
trace for a scalar term, the diagonal for a diagonal one, every entry for an
unstructured one), which is what the Monte Carlo likelihood keeps per draw.

Structures:

* ``"scalar"``: ``Sigma = nu I`` (one variance for all the term's columns; R glmm's
  variance component);
* ``"diagonal"``: one variance per column, no correlations (lme4's ``||``);
* ``"unstructured"``: every variance and covariance (lme4's ``(1 + x | g)``).

Adding a structure means adding one class here (its basis, statistics, names and
start) and its name to :data:`STRUCTURES`. See ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class PriorTerms:
    """``log det Sigma``, the statistics' coefficients and their derivatives at ``psi``.

    With ``stats`` the vector of the term's statistics of ``S`` (one per entry of
    :meth:`CovarianceStructure.stat_pairs`), ``tr(P S) = pi @ stats``.

    Attributes
    ----------
    logdet : float
        ``log det Sigma``.
    dlogdet, d2logdet : ndarray, shapes (P,) and (P, P)
        Its gradient and Hessian in ``psi``.
    pi, dpi, d2pi : ndarray, shapes (S,), (S, P) and (S, P, P)
        Coefficients of the statistics in ``tr(P S)``, and their derivatives.
    precision : ndarray, shape (k, k)
        ``P = Sigma^{-1}``.
    """

    logdet: float
    dlogdet: FloatArray
    d2logdet: FloatArray
    pi: FloatArray
    dpi: FloatArray
    d2pi: FloatArray
    precision: FloatArray


@dataclass(frozen=True)
class CovarianceStructure:
    """A covariance structure for ``k`` columns (base class; see the module doc).

    Attributes
    ----------
    k : int
        Number of columns of the term (length of each level's ``u_l``).
    """

    k: int
    name: ClassVar[str] = ""

    # -- what a structure defines ------------------------------------------------------
    def basis(self) -> FloatArray:
        """The basis matrices ``E_a``: shape (P, k, k)."""
        raise NotImplementedError

    def stat_pairs(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Entries ``(c, c')``, ``c >= c'``, of ``S`` summed into each statistic.

        All entries of one statistic must have the same coefficient in ``tr(P S)`` for
        every ``psi`` (e.g. a scalar term's diagonal).
        """
        raise NotImplementedError

    def param_labels(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        """Short labels of the parameters, e.g. ``("var (Intercept)", "cov (Intercept),x")``."""
        raise NotImplementedError

    # -- derived ---------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """Number of parameters ``P``."""
        return int(self.basis().shape[0])

    @property
    def is_diagonal(self) -> bool:
        """Whether ``Sigma`` is diagonal for every ``psi``."""
        return _shape_facts(self)[0]

    def variance_params(self) -> BoolArray:
        """Which parameters are variances (a diagonal entry; bounded below by 0)."""
        return _shape_facts(self)[1].copy()

    def variance_index(self) -> NDArray[np.intp]:
        """For each column, the parameter that is its variance (shape (k,))."""
        b = self.basis()
        variances = self.variance_params()
        out = np.empty(self.k, dtype=np.intp)
        for c in range(self.k):
            owners = np.flatnonzero(variances & (b[:, c, c] != 0.0))
            out[c] = owners[0]
        return out

    def covariance(self, psi: FloatArray) -> FloatArray:
        """``Sigma(psi)``: shape (k, k)."""
        return np.asarray(np.tensordot(np.asarray(psi, np.float64), _basis(self), axes=1))

    def from_covariance(self, sigma: FloatArray) -> FloatArray:
        """The parameters whose ``Sigma`` is closest to ``sigma`` (least squares)."""
        b = self.basis().reshape(self.n_params, -1)
        psi, *_ = np.linalg.lstsq(b.T, np.asarray(sigma, np.float64).ravel(), rcond=None)
        return np.asarray(psi, dtype=np.float64)

    def start(self) -> FloatArray:
        """Parameters of ``Sigma = I``."""
        return self.from_covariance(np.eye(self.k))

    def feasible(self, psi: FloatArray) -> bool:
        """Whether ``Sigma(psi)`` is positive definite."""
        return self.prior_terms(psi) is not None

    def prior_terms(self, psi: FloatArray) -> PriorTerms | None:
        """:class:`PriorTerms` at ``psi``, or None where ``Sigma`` is not positive definite."""
        psi = np.asarray(psi, dtype=np.float64)
        if not np.all(np.isfinite(psi)):
            return None
        basis = _basis(self)
        first, mult = _shape_facts(self)[2:]
        if self.is_diagonal:
            e = np.diagonal(basis, axis1=1, axis2=2)  # (P, k)
            d = psi @ e
            if not np.all(d > 0.0):
                return None
            inv = 1.0 / d
            dlogdet = e @ inv
            d2logdet = -(e * inv**2) @ e.T
            c = first[:, 0]
            dpi = -(e[:, c] * inv[c] ** 2).T  # (S, P)
            d2pi = 2.0 * (e[:, None, c] * e[None, :, c] * inv[c] ** 3).transpose(2, 0, 1)
            return PriorTerms(float(np.log(d).sum()), dlogdet, d2logdet, inv[c], dpi, d2pi,
                              np.diag(inv))
        sigma = self.covariance(psi)
        try:
            chol = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.diagonal(chol) > 0.0):
            return None
        inv_chol = np.linalg.inv(chol)
        prec = inv_chol.T @ inv_chol
        pe = prec[None] @ basis  # (P, k, k): P E_a
        dlogdet = np.trace(pe, axis1=1, axis2=2)
        d2logdet = -np.einsum("aij,bji->ab", pe, pe)
        dprec = -pe @ prec[None]  # (P, k, k)
        pair = np.einsum("aij,bjk->abik", pe, pe) @ prec  # P E_a P E_b P
        d2prec = pair + np.swapaxes(pair, 0, 1)
        r, c = first[:, 0], first[:, 1]
        return PriorTerms(
            logdet=float(2.0 * np.log(np.diagonal(chol)).sum()),
            dlogdet=dlogdet,
            d2logdet=d2logdet,
            pi=mult * prec[r, c],
            dpi=mult[:, None] * dprec[:, r, c].T,
            d2pi=mult[:, None, None] * d2prec[:, :, r, c].transpose(2, 0, 1),
            precision=prec,
        )


@dataclass(frozen=True)
class Scalar(CovarianceStructure):
    """``Sigma = nu I``: one variance for every column (R glmm's variance component)."""

    name: ClassVar[str] = "scalar"

    def basis(self) -> FloatArray:
        return np.eye(self.k)[None]

    def stat_pairs(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return (tuple((c, c) for c in range(self.k)),)

    def param_labels(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        return ("var " + ",".join(columns),)


@dataclass(frozen=True)
class Diagonal(CovarianceStructure):
    """One variance per column, uncorrelated columns (lme4's ``(1 + x || g)``)."""

    name: ClassVar[str] = "diagonal"

    def basis(self) -> FloatArray:
        out = np.zeros((self.k, self.k, self.k))
        out[np.arange(self.k), np.arange(self.k), np.arange(self.k)] = 1.0
        return out

    def stat_pairs(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return tuple(((c, c),) for c in range(self.k))

    def param_labels(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"var {col}" for col in columns)


def _lower_entries(k: int) -> list[tuple[int, int]]:
    """Entries ``(i, j)``, ``i >= j``, of a k x k matrix, row by row."""
    return [(i, j) for i in range(k) for j in range(i + 1)]


@dataclass(frozen=True)
class Unstructured(CovarianceStructure):
    """Every variance and covariance of the columns (lme4's ``(1 + x | g)``).

    Parameters are the lower triangle of ``Sigma`` row by row: for ``k = 2``,
    ``(var_1, cov_21, var_2)``.
    """

    name: ClassVar[str] = "unstructured"

    def basis(self) -> FloatArray:
        entries = _lower_entries(self.k)
        out = np.zeros((len(entries), self.k, self.k))
        for a, (i, j) in enumerate(entries):
            out[a, i, j] = out[a, j, i] = 1.0
        return out

    def stat_pairs(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return tuple(((i, j),) for i, j in _lower_entries(self.k))

    def param_labels(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(
            f"var {columns[i]}" if i == j else f"cov {columns[j]},{columns[i]}"
            for i, j in _lower_entries(self.k)
        )


@cache
def _basis(structure: CovarianceStructure) -> FloatArray:
    """The structure's basis, computed once per structure (read-only)."""
    basis = structure.basis()
    basis.setflags(write=False)
    return basis


@cache
def _shape_facts(
    structure: CovarianceStructure,
) -> tuple[bool, BoolArray, NDArray[np.intp], FloatArray]:
    """Diagonal or not, the variance parameters, each statistic's first entry and its
    multiplicity in ``tr(P S)`` (1 on the diagonal, 2 off it)."""
    b = _basis(structure)
    off_diagonal = b * (1.0 - np.eye(structure.k))
    first = np.array([group[0] for group in structure.stat_pairs()], dtype=np.intp)
    mult = np.where(first[:, 0] == first[:, 1], 1.0, 2.0)
    return (bool(np.all(off_diagonal == 0.0)),
            np.asarray(np.abs(off_diagonal).sum(axis=(1, 2)) == 0.0), first, mult)


def sqrt_covariance(sigma: FloatArray) -> FloatArray:
    """A square root ``R`` with ``R R^T = sigma`` (positive semi-definite allowed)."""
    try:
        return np.asarray(np.linalg.cholesky(sigma), dtype=np.float64)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(sigma)
        return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None)), dtype=np.float64)


#: The structures by name (the bar syntax picks one: ``|`` unstructured, ``||`` diagonal).
STRUCTURES: dict[str, type[CovarianceStructure]] = {
    cls.name: cls for cls in (Scalar, Diagonal, Unstructured)
}


def make_structure(name: str, k: int) -> CovarianceStructure:
    """The structure called ``name`` for ``k`` columns."""
    try:
        return STRUCTURES[name](k)
    except KeyError:
        raise ValueError(
            f"unknown covariance structure {name!r}; choose one of {sorted(STRUCTURES)}"
        ) from None
