"""The parameter layout: what every entry of ``theta`` is, and nothing else slices it.

``theta = (beta, psi)``: the ``p`` fixed effects, then the random-effect parameters
``psi``, term by term in the order of the terms' first appearance, each term's in its
structure's order (variances and covariances; :mod:`pyglmm.covariance`). Terms tied by
``varcomps_equal`` (R glmm) share their entries of ``psi``.

The layout owns the names, which entries are variances (bounded below by 0), the
start, the feasibility test (every ``Sigma`` positive definite) and the unconstrained
coordinates used by the Laplace fit (log variances; log-Cholesky for unstructured
terms). The Monte Carlo likelihood itself is maximised in ``theta``: variances and
covariances, where a variance can reach its boundary 0 exactly and the observed
information gives standard errors on the scale that is reported.
See ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from .covariance import CovarianceStructure

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class ParameterLayout:
    """Map ``theta`` to the fixed effects and the terms' covariance parameters.

    Attributes
    ----------
    fixed_names : tuple of str
        Names of ``beta``.
    random_names : tuple of str
        Names of ``psi`` (``theta[p:]``).
    structures : tuple of CovarianceStructure
        One per term.
    term_index : tuple of ndarray of int
        Per term, the position in ``psi`` of each of its parameters (tied terms share).
    """

    fixed_names: tuple[str, ...]
    random_names: tuple[str, ...]
    structures: tuple[CovarianceStructure, ...]
    term_index: tuple[IntArray, ...]

    @classmethod
    def build(
        cls,
        fixed_names: tuple[str, ...],
        structures: tuple[CovarianceStructure, ...],
        groups: tuple[int, ...],
        names: tuple[str, ...],
    ) -> ParameterLayout:
        """Lay out terms whose parameters are shared within ``groups``.

        ``groups[t]`` (0-based) is the parameter group of term ``t``; tied terms must
        have the same structure and number of parameters. ``names`` name the random
        parameters in group order.
        """
        first: dict[int, int] = {}
        index: list[IntArray] = []
        offset = 0
        starts: dict[int, int] = {}
        for t, (structure, g) in enumerate(zip(structures, groups, strict=True)):
            if g not in first:
                first[g] = t
                starts[g] = offset
                offset += structure.n_params
            elif structures[first[g]] != structure:
                raise ValueError("tied terms must have the same structure and columns")
            index.append(np.arange(starts[g], starts[g] + structure.n_params, dtype=np.intp))
        if len(names) != offset:
            raise ValueError(f"{len(names)} names for {offset} random parameters")
        return cls(tuple(fixed_names), tuple(names), tuple(structures), tuple(index))

    # -- sizes and names -------------------------------------------------------------
    @property
    def n_fixed(self) -> int:
        """Number of fixed effects ``p``."""
        return len(self.fixed_names)

    @property
    def n_random(self) -> int:
        """Number of random-effect parameters."""
        return len(self.random_names)

    @property
    def n_params(self) -> int:
        """Length of ``theta``."""
        return self.n_fixed + self.n_random

    @property
    def names(self) -> tuple[str, ...]:
        """Names of ``theta``."""
        return self.fixed_names + self.random_names

    @property
    def n_term_params(self) -> int:
        """Number of term parameters before ties (``sum_t P_t``)."""
        return sum(s.n_params for s in self.structures)

    @cached_property
    def is_variance(self) -> BoolArray:
        """Which entries of ``psi`` are variances (read-only)."""
        out = np.zeros(self.n_random, dtype=bool)
        for structure, index in zip(self.structures, self.term_index, strict=True):
            out[index] = structure.variance_params()
        out.setflags(write=False)
        return out

    @property
    def all_scalar(self) -> bool:
        """Whether every term has one variance (R glmm's model)."""
        return all(s.n_params == 1 for s in self.structures)

    def tie_matrix(self) -> FloatArray:
        """``J`` with ``psi_terms = J psi``: shape (sum_t P_t, n_random), 0/1."""
        out = np.zeros((self.n_term_params, self.n_random))
        row = 0
        for index in self.term_index:
            out[row + np.arange(index.size), index] = 1.0
            row += index.size
        return out

    # -- slicing -----------------------------------------------------------------------
    def beta(self, theta: FloatArray) -> FloatArray:
        """The fixed effects of ``theta``."""
        return np.asarray(theta, dtype=np.float64)[: self.n_fixed]

    def psi(self, theta: FloatArray) -> FloatArray:
        """The random-effect parameters of ``theta``."""
        return np.asarray(theta, dtype=np.float64)[self.n_fixed :]

    def join(self, beta: FloatArray, psi: FloatArray) -> FloatArray:
        """``theta`` from its two parts."""
        return np.concatenate([np.asarray(beta, np.float64), np.asarray(psi, np.float64)])

    def term_params(self, psi: FloatArray, t: int) -> FloatArray:
        """Term ``t``'s parameters from ``psi``."""
        return np.asarray(psi, dtype=np.float64)[self.term_index[t]]

    def covariances(self, psi: FloatArray) -> list[FloatArray]:
        """Every term's ``Sigma`` (k x k) at ``psi``."""
        return [s.covariance(self.term_params(psi, t)) for t, s in enumerate(self.structures)]

    # -- feasibility and the start ------------------------------------------------------
    def feasible(self, psi: FloatArray) -> bool:
        """Whether every term's ``Sigma`` is positive definite at ``psi``."""
        psi = np.asarray(psi, dtype=np.float64)
        if not np.all(np.isfinite(psi)) or np.any(psi[self.is_variance] <= 0.0):
            return False
        return all(
            s.n_params == 1 or s.feasible(self.term_params(psi, t))
            for t, s in enumerate(self.structures)
        )

    def start(self) -> FloatArray:
        """``psi`` with every ``Sigma = I``."""
        out = np.zeros(self.n_random)
        for structure, index in zip(self.structures, self.term_index, strict=True):
            out[index] = structure.start()
        return out

    def floor_variances(self, psi: FloatArray, floor: float) -> FloatArray:
        """``psi`` with every variance at least ``floor`` and every ``Sigma`` definite.

        Where raising the variances leaves a ``Sigma`` indefinite, its correlations are
        shrunk towards 0 until it is positive definite.
        """
        out = np.array(psi, dtype=np.float64)
        variance = self.is_variance
        out[variance] = np.maximum(out[variance], floor)
        for t, structure in enumerate(self.structures):
            if structure.is_diagonal:
                continue
            index = self.term_index[t]
            sigma = structure.covariance(out[index])
            d = np.sqrt(np.diagonal(sigma))
            corr = sigma / np.outer(d, d)
            shrink = 1.0
            while not structure.feasible(out[index]) and shrink > 1e-6:
                shrink *= 0.9
                c = corr * shrink
                np.fill_diagonal(c, 1.0)
                out[index] = structure.from_covariance(c * np.outer(d, d))
        return out

    # -- unconstrained coordinates (Laplace fit) ---------------------------------------
    @cached_property
    def all_diagonal(self) -> bool:
        """Whether every term's ``Sigma`` is diagonal (every entry of ``psi`` a variance)."""
        return all(s.is_diagonal for s in self.structures)

    def to_unconstrained(self, psi: FloatArray) -> FloatArray:
        """Log variances, and log-Cholesky coordinates of unstructured terms."""
        psi = np.asarray(psi, dtype=np.float64)
        if self.all_diagonal:
            return np.log(psi)
        out = np.empty(self.n_random)
        for t, structure in enumerate(self.structures):
            index = self.term_index[t]
            if structure.is_diagonal:
                out[index] = np.log(psi[index])
                continue
            chol = np.linalg.cholesky(structure.covariance(psi[index]))
            np.fill_diagonal(chol, np.log(np.diagonal(chol)))
            out[index] = structure.from_covariance(np.tril(chol) + np.tril(chol, -1).T)
        return out

    def from_unconstrained(self, z: FloatArray) -> FloatArray:
        """Inverse of :meth:`to_unconstrained`."""
        z = np.asarray(z, dtype=np.float64)
        if self.all_diagonal:
            return np.exp(z)
        out = np.empty(self.n_random)
        for t, structure in enumerate(self.structures):
            index = self.term_index[t]
            if structure.is_diagonal:
                out[index] = np.exp(z[index])
                continue
            packed = structure.covariance(z[index])  # the lower triangle, mirrored
            chol = np.tril(packed)
            np.fill_diagonal(chol, np.exp(np.diagonal(packed)))
            out[index] = structure.from_covariance(chol @ chol.T)
        return out

    def unconstrained_jacobian(self, z: FloatArray) -> FloatArray:
        """``d psi / d z`` of :meth:`from_unconstrained` at ``z``: (R, R), block-diagonal
        over the terms (diagonal ``psi`` for log variances; for a log-Cholesky term with
        factor ``C``, ``dC C^T + C dC^T`` per coordinate)."""
        z = np.asarray(z, dtype=np.float64)
        if self.all_diagonal:
            return np.diag(np.exp(z))
        out = np.zeros((self.n_random, self.n_random))
        for t, structure in enumerate(self.structures):
            index = self.term_index[t]
            if structure.is_diagonal:
                out[index, index] = np.exp(z[index])
                continue
            packed = structure.covariance(z[index])
            chol = np.tril(packed)
            np.fill_diagonal(chol, np.exp(np.diagonal(packed)))
            for j, coordinate in enumerate(index):
                unit = np.zeros(index.size)
                unit[j] = 1.0
                d_chol = np.tril(structure.covariance(unit))  # the coordinate's entry
                d_chol[np.diag_indices_from(d_chol)] *= np.diagonal(chol)
                d_sigma = d_chol @ chol.T
                out[index, coordinate] = structure.from_covariance(d_sigma + d_sigma.T)
        return out

    def unconstrained_is_log_variance(self) -> BoolArray:
        """Which unconstrained coordinates are logs (of a variance or a Cholesky diagonal)."""
        out = np.zeros(self.n_random, dtype=bool)
        for structure, index in zip(self.structures, self.term_index, strict=True):
            out[index] = structure.variance_params()
        return out
