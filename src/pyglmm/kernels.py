"""The hot loop of the MCLA: one fused pass over the ``m_j x n`` linear predictors.

For every draw ``k`` of a chunk and every observation ``i`` (in block order) it
computes ``eta = Z u_k + X beta`` (from ``Z u_k`` or, gathering, from ``u_k``) and, in
the same sweep,

* the per-block conditional log-likelihood ``sum_{i in I_b} [y_i eta_ki - c(eta_ki)]``,
* the per-block fixed-effect scores ``sum_{i in I_b} (y_i - c'(eta_ki)) x_i``,
* the variance function ``c''(eta_ki)`` (kept for the Hessian's ``X^T diag(.) X``).

It is compiled with numba (parallel over draws) for the built-in families: measured
2-3 times faster than the equivalent numpy expression, which makes about ten passes
over memory and evaluates ``log`` per element (BENCHMARKS.md, issue 4). For the
logistic families the sum of ``log(1 + exp(-|eta|))`` over a run of at most 256
observations is taken as the log of a product, one ``log`` per run instead of per
element (each factor lies in (1, 2], so the product cannot overflow).
:func:`fused_pass_numpy` is the plain numpy reference the tests pin the kernel to;
it also serves families that have no kernel. :func:`gather_rows` forms a chunk's
``Z u`` the same way, compiled, with the numbers of :func:`pyglmm.design.z_gather`.
"""

from __future__ import annotations

from math import exp, log

import numba
import numpy as np
from numpy.typing import NDArray

from .design import z_gather
from .families import Bernoulli, Binomial, Family, Poisson

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Kernel codes of the built-in families (exact classes: a subclass may change the math).
KERNEL_CODES: dict[type[Family], int] = {Bernoulli: 0, Binomial: 1, Poisson: 2}
_RUN = 256
_POISSON_ETA_MAX = 300.0


@numba.njit(parallel=True, cache=True, nogil=True)
def _fused_pass_kernel(
    source: FloatArray,
    columns: IntArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    x: FloatArray,
    obs_block: IntArray,
    n_blocks: int,
    family_code: int,
    loglik: FloatArray,
    scores: FloatArray,
    variance: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to fused_pass_numpy by the tests
    m = source.shape[0]
    n, n_columns = columns.shape
    p = x.shape[1]
    for k in numba.prange(m):
        for b in range(n_blocks):
            loglik[k, b] = 0.0
            for j in range(p):
                scores[k, b, j] = 0.0
        linear = 0.0
        product = 1.0
        run = 0
        current = obs_block[0] if n > 0 else 0
        for i in range(n):
            b = obs_block[i]
            if b != current or run == _RUN:
                loglik[k, current] += linear - log(product)
                linear = 0.0
                product = 1.0
                run = 0
                current = b
            eta = source[k, columns[i, 0]]  # summed in z_gather's order, then X beta
            for c in range(1, n_columns):
                eta += source[k, columns[i, c]]
            eta += xb[i]
            if family_code == 2:
                if eta > _POISSON_ETA_MAX:
                    eta = _POISSON_ETA_MAX
                mean = exp(eta)
                linear += y[i] * eta - mean
                var = mean
            else:
                e = exp(-abs(eta))
                one_plus_e = 1.0 + e
                inv = 1.0 / one_plus_e
                mean = inv if eta >= 0.0 else e * inv
                var = e * inv * inv
                positive = eta if eta > 0.0 else 0.0
                if family_code == 0:
                    linear += y[i] * eta - positive
                    product *= one_plus_e
                    run += 1
                else:
                    n_i = trials[i]
                    linear += y[i] * eta - n_i * (positive + log(one_plus_e))
                    mean *= n_i
                    var *= n_i
            resid = y[i] - mean
            for j in range(p):
                scores[k, b, j] += resid * x[i, j]
            variance[k, i] = var
        if n > 0:
            loglik[k, current] += linear - log(product)


@numba.njit(parallel=True, cache=True, nogil=True)
def _fused_pass_kernel_general(
    source: FloatArray,
    columns: IntArray,
    values: FloatArray,
    weights: FloatArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    x: FloatArray,
    obs_block: IntArray,
    n_blocks: int,
    family_code: int,
    loglik: FloatArray,
    scores: FloatArray,
    variance: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to fused_pass_numpy by the tests
    """:func:`_fused_pass_kernel` with ``Z`` entries ``values`` and prior ``weights``.

    Weighted terms take one ``log`` per element (no run products).
    """
    m = source.shape[0]
    n, n_columns = columns.shape
    p = x.shape[1]
    for k in numba.prange(m):
        for b in range(n_blocks):
            loglik[k, b] = 0.0
            for j in range(p):
                scores[k, b, j] = 0.0
        for i in range(n):
            b = obs_block[i]
            eta = source[k, columns[i, 0]] * values[i, 0]  # z_gather's order, then X beta
            for c in range(1, n_columns):
                eta += source[k, columns[i, c]] * values[i, c]
            eta += xb[i]
            w = weights[i]
            if family_code == 2:
                if eta > _POISSON_ETA_MAX:
                    eta = _POISSON_ETA_MAX
                mean = exp(eta)
                term = y[i] * eta - mean
                var = mean
            else:
                e = exp(-abs(eta))
                one_plus_e = 1.0 + e
                inv = 1.0 / one_plus_e
                mean = inv if eta >= 0.0 else e * inv
                var = e * inv * inv
                positive = eta if eta > 0.0 else 0.0
                n_i = trials[i] if family_code == 1 else 1.0
                term = y[i] * eta - n_i * (positive + log(one_plus_e))
                mean *= n_i
                var *= n_i
            loglik[k, b] += w * term
            resid = w * (y[i] - mean)
            for j in range(p):
                scores[k, b, j] += resid * x[i, j]
            variance[k, i] = w * var


def fused_pass_numpy(
    family: Family,
    zu: FloatArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    x: FloatArray,
    obs_starts: IntArray,
    z_columns: IntArray | None = None,
    z_values: FloatArray | None = None,
    weights: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Reference implementation of :func:`fused_pass` with numpy (any family).

    Returns
    -------
    loglik : ndarray, shape (m, B)
    scores : ndarray, shape (m, B, p)
    variance : ndarray, shape (m, n)
    """
    if z_columns is not None:
        zu = z_gather(z_columns, zu, z_values)
    eta = zu + xb
    terms, mean, variance = family.all_terms(eta, y, trials)
    resid = y - mean
    if weights is not None:
        terms, resid, variance = terms * weights, resid * weights, variance * weights
    loglik = np.add.reduceat(terms, obs_starts, axis=1)
    bounds = np.append(obs_starts, y.size)
    scores = np.empty((zu.shape[0], obs_starts.size, x.shape[1]))
    for b in range(obs_starts.size):
        lo, hi = bounds[b], bounds[b + 1]
        scores[:, b, :] = resid[:, lo:hi] @ x[lo:hi]
    return loglik, scores, variance


def fused_pass(
    family: Family,
    zu: FloatArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    x: FloatArray,
    obs_block: IntArray,
    obs_starts: IntArray,
    z_columns: IntArray | None = None,
    z_values: FloatArray | None = None,
    weights: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-block log-likelihoods, scores and variances of a chunk (see module doc).

    ``zu`` is ``Z u_k`` (m, n), or with ``z_columns`` (n, K) the draws ``u_k`` (m, q)
    themselves: the kernel then gathers ``Z u_k`` as it goes, which saves writing and
    reading an m x n array (a third of an evaluation at n = 10^5, BENCHMARKS.md).
    ``z_values`` (n, K) are the entries of ``Z`` for random slopes (None: ones; only
    with ``z_columns``), and ``weights`` (n,) multiply each observation's log-density,
    score and variance (R glmm's prior weights; None: ones). Weighted Bernoulli rows
    take one ``log`` each (the run product needs unit weights).
    """
    code = KERNEL_CODES.get(type(family))
    if code is None:
        return fused_pass_numpy(family, zu, xb, y, trials, x, obs_starts, z_columns,
                                z_values, weights)
    m, n = zu.shape[0], y.size
    # Z = I when ``zu`` is given: one index per observation, O(n) against O(m n)
    columns = np.arange(n, dtype=np.intp)[:, None] if z_columns is None else z_columns
    n_blocks = obs_starts.size
    loglik = np.empty((m, n_blocks))
    scores = np.empty((m, n_blocks, x.shape[1]))
    variance = np.empty((m, n))
    plain = weights is None and (z_values is None or z_columns is None)
    if plain:
        _fused_pass_kernel(
            np.ascontiguousarray(zu), np.ascontiguousarray(columns, dtype=np.intp), xb, y,
            trials, np.ascontiguousarray(x), obs_block, n_blocks, code, loglik, scores,
            variance,
        )
        return loglik, scores, variance
    values = (np.ones(columns.shape) if z_values is None or z_columns is None
              else np.ascontiguousarray(z_values, dtype=np.float64))
    obs_weights = np.ones(n) if weights is None else np.ascontiguousarray(weights, np.float64)
    _fused_pass_kernel_general(
        np.ascontiguousarray(zu), np.ascontiguousarray(columns, dtype=np.intp), values,
        obs_weights, xb, y,
        trials, np.ascontiguousarray(x), obs_block, n_blocks, code, loglik, scores, variance,
    )
    return loglik, scores, variance


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_kernel(
    u: FloatArray, columns: IntArray, values: FloatArray, weighted: bool, out: FloatArray
) -> None:  # pragma: no cover - compiled; pinned to z_gather by the tests
    m = u.shape[0]
    n, n_columns = columns.shape
    for k in numba.prange(m):
        for i in range(n):
            if weighted:
                acc = u[k, columns[i, 0]] * values[i, 0]
                for c in range(1, n_columns):
                    acc += u[k, columns[i, c]] * values[i, c]
            else:
                acc = u[k, columns[i, 0]]
                for c in range(1, n_columns):
                    acc += u[k, columns[i, c]]
            out[k, i] = acc


#: Rows of draws from which :func:`gather_rows` runs compiled (fewer: numpy's ``take``).
GATHER_MIN_ROWS = 16


def gather_rows(
    z_columns: IntArray, u: FloatArray, z_values: FloatArray | None = None
) -> FloatArray:
    """``Z u`` of :func:`pyglmm.design.z_gather`, the same numbers to the last bit, compiled
    and parallel over the rows when ``u`` is a chunk of draws (m, q) (a quarter of
    numpy's time for salamander's 2,000 x 360; BENCHMARKS.md section 7)."""
    if u.ndim != 2 or u.shape[0] < GATHER_MIN_ROWS:
        return z_gather(z_columns, u, z_values)
    out = np.empty((u.shape[0], z_columns.shape[0]))
    values = np.ones((1, 1)) if z_values is None else np.ascontiguousarray(z_values,
                                                                           np.float64)
    _gather_kernel(np.ascontiguousarray(u, np.float64),
                   np.ascontiguousarray(z_columns, np.intp), values, z_values is not None,
                   out)
    return out
