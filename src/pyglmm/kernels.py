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
element (each factor lies in (1, 2], so the product cannot overflow). Each thread
sweeps four draws at once: their chains of sums are independent, so the processor
overlaps them, and each family's sweep is compiled with its code as a constant (a
salamander pass takes three quarters of the one-draw sweep's time, with the same
numbers to the last bit; the price is about 15 s more compilation, once, on the
first fit after installation, BENCHMARKS.md section 7).
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


#: Draws a thread takes together: their sweeps over the observations are independent,
#: which lets the processor overlap them (a quarter less time a pass, BENCHMARKS.md).
LANES = 4


@numba.njit(inline="always", nogil=True)
def _element(
    eta: float, y_i: float, n_i: float, family_code: int
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled (inlined)
    """One observation of one draw: (log-density term, run factor, mean, variance).

    For the Bernoulli kernel (code 0) the term leaves out ``log(1 + exp(-|eta|))``, whose
    factor ``1 + exp(-|eta|)`` joins the run's product; the other codes give the factor 1.
    """
    if family_code == 2:
        if eta > _POISSON_ETA_MAX:
            eta = _POISSON_ETA_MAX
        mean = exp(eta)
        return y_i * eta - mean, 1.0, mean, mean
    e = exp(-abs(eta))
    one_plus_e = 1.0 + e
    inv = 1.0 / one_plus_e
    mean = inv if eta >= 0.0 else e * inv
    var = e * inv * inv
    positive = eta if eta > 0.0 else 0.0
    if family_code == 0:
        return y_i * eta - positive, one_plus_e, mean, var
    return y_i * eta - n_i * (positive + log(one_plus_e)), 1.0, mean * n_i, var * n_i


@numba.njit(inline="always", nogil=True)
def _eta4(
    source: FloatArray, k0: int, k1: int, k2: int, k3: int, columns: IntArray, i: int,
    xb_i: float,
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled (inlined)
    """``(Z u_k)_i + (X beta)_i`` of four draws with unit ``Z`` entries, summed in
    z_gather's order."""
    c = columns[i, 0]
    a0, a1, a2, a3 = source[k0, c], source[k1, c], source[k2, c], source[k3, c]
    for j in range(1, columns.shape[1]):
        c = columns[i, j]
        a0 += source[k0, c]
        a1 += source[k1, c]
        a2 += source[k2, c]
        a3 += source[k3, c]
    return a0 + xb_i, a1 + xb_i, a2 + xb_i, a3 + xb_i


@numba.njit(inline="always", nogil=True)
def _eta4_values(
    source: FloatArray, k0: int, k1: int, k2: int, k3: int, columns: IntArray,
    values: FloatArray, i: int, xb_i: float,
) -> tuple[float, float, float, float]:  # pragma: no cover - compiled (inlined)
    """:func:`_eta4` with ``Z`` entries ``values``."""
    c, v = columns[i, 0], values[i, 0]
    a0, a1, a2, a3 = source[k0, c] * v, source[k1, c] * v, source[k2, c] * v, source[k3, c] * v
    for j in range(1, columns.shape[1]):
        c, v = columns[i, j], values[i, j]
        a0 += source[k0, c] * v
        a1 += source[k1, c] * v
        a2 += source[k2, c] * v
        a3 += source[k3, c] * v
    return a0 + xb_i, a1 + xb_i, a2 + xb_i, a3 + xb_i


@numba.njit(inline="always", nogil=True)
def _add_scores(
    scores: FloatArray, k0: int, b: int, x: FloatArray, i: int,
    r0: float, r1: float, r2: float, r3: float,
) -> None:  # pragma: no cover - compiled (inlined)
    """Add observation ``i``'s scores of output rows ``k0 .. k0 + 3`` in block ``b``."""
    for j in range(x.shape[1]):
        x_ij = x[i, j]
        scores[k0, b, j] += r0 * x_ij
        scores[k0 + 1, b, j] += r1 * x_ij
        scores[k0 + 2, b, j] += r2 * x_ij
        scores[k0 + 3, b, j] += r3 * x_ij


@numba.njit(inline="always", nogil=True)
def _close_run(
    loglik: FloatArray, k0: int, b: int, lin0: float, lin1: float, lin2: float,
    lin3: float, prod0: float, prod1: float, prod2: float, prod3: float,
) -> None:  # pragma: no cover - compiled (inlined)
    """Add a run's sums (its linear parts less the log of its products) to block ``b``
    of output rows ``k0 .. k0 + 3``."""
    loglik[k0, b] += lin0 - log(prod0)
    loglik[k0 + 1, b] += lin1 - log(prod1)
    loglik[k0 + 2, b] += lin2 - log(prod2)
    loglik[k0 + 3, b] += lin3 - log(prod3)


@numba.njit(inline="always", nogil=True)
def _clear_rows(
    loglik: FloatArray, scores: FloatArray, k0: int
) -> None:  # pragma: no cover - compiled (inlined)
    for row in range(k0, k0 + LANES):
        for b in range(loglik.shape[1]):
            loglik[row, b] = 0.0
            for j in range(scores.shape[2]):
                scores[row, b, j] = 0.0


@numba.njit(inline="always", nogil=True)
def _sweep_plain(
    k0: int, k1: int, k2: int, k3: int, source: FloatArray, columns: IntArray,
    xb: FloatArray, y: FloatArray, trials: FloatArray, x: FloatArray, obs_block: IntArray,
    family_code: int, loglik: FloatArray, scores: FloatArray, variance: FloatArray,
) -> None:  # pragma: no cover - compiled (inlined)
    """Four draws (rows ``k0..k3`` of ``source``) into output rows ``k0 .. k0 + 3``."""
    n = columns.shape[0]
    _clear_rows(loglik, scores, k0)
    lin0 = lin1 = lin2 = lin3 = 0.0
    prod0 = prod1 = prod2 = prod3 = 1.0
    run = 0
    current = obs_block[0] if n > 0 else 0
    for i in range(n):
        b = obs_block[i]
        if b != current or run == _RUN:
            _close_run(loglik, k0, current, lin0, lin1, lin2, lin3, prod0, prod1, prod2,
                       prod3)
            lin0 = lin1 = lin2 = lin3 = 0.0
            prod0 = prod1 = prod2 = prod3 = 1.0
            run = 0
            current = b
        y_i, n_i = y[i], trials[i]
        e0, e1, e2, e3 = _eta4(source, k0, k1, k2, k3, columns, i, xb[i])
        t0, f0, mean0, var0 = _element(e0, y_i, n_i, family_code)
        t1, f1, mean1, var1 = _element(e1, y_i, n_i, family_code)
        t2, f2, mean2, var2 = _element(e2, y_i, n_i, family_code)
        t3, f3, mean3, var3 = _element(e3, y_i, n_i, family_code)
        lin0 += t0
        lin1 += t1
        lin2 += t2
        lin3 += t3
        if family_code == 0:
            prod0 *= f0
            prod1 *= f1
            prod2 *= f2
            prod3 *= f3
            run += 1
        _add_scores(scores, k0, b, x, i, y_i - mean0, y_i - mean1, y_i - mean2, y_i - mean3)
        variance[k0, i] = var0
        variance[k0 + 1, i] = var1
        variance[k0 + 2, i] = var2
        variance[k0 + 3, i] = var3
    if n > 0:
        _close_run(loglik, k0, current, lin0, lin1, lin2, lin3, prod0, prod1, prod2, prod3)


@numba.njit(parallel=True, cache=True, nogil=True)
def _fused_pass_kernel(
    source: FloatArray,
    columns: IntArray,
    xb: FloatArray,
    y: FloatArray,
    trials: FloatArray,
    x: FloatArray,
    obs_block: IntArray,
    family_code: int,
    loglik: FloatArray,
    scores: FloatArray,
    variance: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to fused_pass_numpy by the tests
    """The pass with unit ``Z`` entries and weights, :data:`LANES` draws at a time.

    The outputs have a multiple of :data:`LANES` rows: the last group's lanes past
    the last draw repeat it into rows that :func:`fused_pass` drops. Each family's
    sweep is compiled on its own (the family code a constant in it), and every draw's
    arithmetic is that of a sweep over one draw, to the last bit.
    """
    m = source.shape[0]
    last = m - 1
    for h in numba.prange((m + LANES - 1) // LANES):
        k0 = LANES * h
        k1, k2, k3 = min(k0 + 1, last), min(k0 + 2, last), min(k0 + 3, last)
        if family_code == 0:
            _sweep_plain(k0, k1, k2, k3, source, columns, xb, y, trials, x, obs_block, 0,
                         loglik, scores, variance)
        elif family_code == 1:
            _sweep_plain(k0, k1, k2, k3, source, columns, xb, y, trials, x, obs_block, 1,
                         loglik, scores, variance)
        else:
            _sweep_plain(k0, k1, k2, k3, source, columns, xb, y, trials, x, obs_block, 2,
                         loglik, scores, variance)


@numba.njit(inline="always", nogil=True)
def _sweep_general(
    k0: int, k1: int, k2: int, k3: int, source: FloatArray, columns: IntArray,
    values: FloatArray, weights: FloatArray, xb: FloatArray, y: FloatArray,
    trials: FloatArray, x: FloatArray, obs_block: IntArray, family_code: int,
    loglik: FloatArray, scores: FloatArray, variance: FloatArray,
) -> None:  # pragma: no cover - compiled (inlined)
    """:func:`_sweep_plain` with ``Z`` entries ``values`` and prior ``weights``: one
    ``log`` per element (no run products; the logistic term in the binomial form, with
    one trial for Bernoulli)."""
    _clear_rows(loglik, scores, k0)
    code = 2 if family_code == 2 else 1
    for i in range(columns.shape[0]):
        b = obs_block[i]
        y_i, w = y[i], weights[i]
        n_i = trials[i] if family_code == 1 else 1.0
        e0, e1, e2, e3 = _eta4_values(source, k0, k1, k2, k3, columns, values, i, xb[i])
        t0, _, mean0, var0 = _element(e0, y_i, n_i, code)
        t1, _, mean1, var1 = _element(e1, y_i, n_i, code)
        t2, _, mean2, var2 = _element(e2, y_i, n_i, code)
        t3, _, mean3, var3 = _element(e3, y_i, n_i, code)
        loglik[k0, b] += w * t0
        loglik[k0 + 1, b] += w * t1
        loglik[k0 + 2, b] += w * t2
        loglik[k0 + 3, b] += w * t3
        _add_scores(scores, k0, b, x, i, w * (y_i - mean0), w * (y_i - mean1),
                    w * (y_i - mean2), w * (y_i - mean3))
        variance[k0, i] = w * var0
        variance[k0 + 1, i] = w * var1
        variance[k0 + 2, i] = w * var2
        variance[k0 + 3, i] = w * var3


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
    family_code: int,
    loglik: FloatArray,
    scores: FloatArray,
    variance: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to fused_pass_numpy by the tests
    """:func:`_fused_pass_kernel` with ``Z`` entries ``values`` and prior ``weights``."""
    m = source.shape[0]
    last = m - 1
    for h in numba.prange((m + LANES - 1) // LANES):
        k0 = LANES * h
        k1, k2, k3 = min(k0 + 1, last), min(k0 + 2, last), min(k0 + 3, last)
        if family_code == 2:
            _sweep_general(k0, k1, k2, k3, source, columns, values, weights, xb, y, trials,
                           x, obs_block, 2, loglik, scores, variance)
        else:
            _sweep_general(k0, k1, k2, k3, source, columns, values, weights, xb, y, trials,
                           x, obs_block, family_code, loglik, scores, variance)


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
    rows = -(-m // LANES) * LANES  # the lanes past the last draw write rows dropped here
    n_blocks = obs_starts.size
    loglik = np.empty((rows, n_blocks))
    scores = np.empty((rows, n_blocks, x.shape[1]))
    variance = np.empty((rows, n))
    source = np.ascontiguousarray(zu)
    columns = np.ascontiguousarray(columns, dtype=np.intp)
    data = (xb, y, trials, np.ascontiguousarray(x), obs_block, code)
    plain = weights is None and (z_values is None or z_columns is None)
    if m and plain:
        _fused_pass_kernel(source, columns, *data, loglik, scores, variance)
    elif m:
        values = (np.ones(columns.shape) if z_values is None or z_columns is None
                  else np.ascontiguousarray(z_values, dtype=np.float64))
        obs_weights = (np.ones(n) if weights is None
                       else np.ascontiguousarray(weights, np.float64))
        _fused_pass_kernel_general(source, columns, values, obs_weights, *data, loglik,
                                   scores, variance)
    return loglik[:m], scores[:m], variance[:m]


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
