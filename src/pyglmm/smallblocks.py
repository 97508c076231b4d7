"""Cholesky factors and their inverses for stacks of small dense blocks, compiled.

A nested design has one block per group and a crossed design of moderate size a few
blocks of tens of effects; PQL refactors them at every Newton step and the proposal at
every centre. numpy's batched ``cholesky`` and the triangular inverse it would take
from ``solve`` (an LU factorisation of a triangular matrix) cost 20-170 microseconds
a stack in call overhead and pivoting; these loops take 4-25 for the stacks of
:data:`pyglmm.blocklinalg.SMALL_BLOCK` or fewer effects (BENCHMARKS.md section 7).
Larger dense blocks keep LAPACK.
"""

from __future__ import annotations

from math import sqrt

import numba
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@numba.njit(cache=True, nogil=True)
def _cholesky_kernel(matrix: FloatArray, out: FloatArray) -> int:  # pragma: no cover
    """Lower factors of ``matrix`` (G, d, d) into ``out``; the first block that is not
    positive definite (a pivot not above 0, or NaN), or -1."""
    n_blocks, d, _ = matrix.shape
    for g in range(n_blocks):
        for j in range(d):
            pivot = matrix[g, j, j]
            for r in range(j):
                pivot -= out[g, j, r] * out[g, j, r]
            if not pivot > 0.0:
                return g
            diagonal = sqrt(pivot)
            out[g, j, j] = diagonal
            for i in range(j + 1, d):
                entry = matrix[g, i, j]
                for r in range(j):
                    entry -= out[g, i, r] * out[g, j, r]
                out[g, i, j] = entry / diagonal
            for i in range(j):
                out[g, i, j] = 0.0
    return -1


@numba.njit(cache=True, nogil=True)
def _lower_inverse_kernel(factor: FloatArray, out: FloatArray) -> None:  # pragma: no cover
    """``L^{-1}`` of every lower triangular block of ``factor`` by forward substitution
    on the columns of the identity."""
    n_blocks, d, _ = factor.shape
    for g in range(n_blocks):
        for j in range(d):
            for i in range(j):
                out[g, i, j] = 0.0
            out[g, j, j] = 1.0 / factor[g, j, j]
            for i in range(j + 1, d):
                acc = 0.0
                for r in range(j, i):
                    acc += factor[g, i, r] * out[g, r, j]
                out[g, i, j] = -acc / factor[g, i, i]


def cholesky_stack(matrix: FloatArray) -> FloatArray:
    """Lower Cholesky factors of a stack (G, d, d) of symmetric positive definite blocks
    (the lower triangles are read).

    Raises
    ------
    numpy.linalg.LinAlgError
        When a block is not positive definite (numpy's own error for ``cholesky``).
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    out = np.empty_like(matrix)
    failed = _cholesky_kernel(matrix, out)
    if failed >= 0:
        raise np.linalg.LinAlgError(f"Matrix is not positive definite (block {failed} of "
                                    f"the stack)")
    return out


def lower_inverse_stack(factor: FloatArray) -> FloatArray:
    """``L^{-1}`` of every block of a stack (G, d, d) of lower triangular factors with
    positive diagonals (lower triangular, zeros above)."""
    factor = np.ascontiguousarray(factor, dtype=np.float64)
    out = np.empty_like(factor)
    _lower_inverse_kernel(factor, out)
    return out
