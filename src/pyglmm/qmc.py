"""Randomised quasi-Monte Carlo draws of the Laplace t proposal (``sampler="qmc"``).

A draw of block ``b`` of the Laplace t (:func:`pyglmm.importance.laplace_t`) is a
function of ``d_b + 1`` independent uniforms: ``d_b`` normals ``z = Phi^{-1}(p)`` and one
chi-square ``chi2_zeta = F^{-1}(p')`` by the inverse of its distribution function, then
``u_b = mode_b + L_b^{-T} z / sqrt(chi2_zeta / zeta)``. Here the uniforms are randomised
Sobol points, block ``b`` taking ``d_b + 1`` consecutive coordinates. Every point is
still a draw from the proposal, so the MCLA is unchanged and unbiased, but the points
fill the cube more evenly than independent ones and the error of a smooth integrand
falls faster than ``1/sqrt(m)``.

The randomisation is a random digital shift (Dick and Pillichshammer 2010, ch. 4): the
first ``2^k`` points of one Sobol sequence whose generator matrices were scrambled once,
by a fixed linear matrix scramble (:class:`scipy.stats.qmc.Sobol` with the seed
:data:`NET_SEED`), are XOR-ed coordinate by coordinate with a uniform random vector of
30-bit integers. A digitally shifted digital net is uniform point by point and keeps
the net's equidistribution, so each shifted set is an unbiased estimate, and the sets
of a chunk, shifted independently, give honest Monte Carlo errors. The net is built
once per dimension and process (:func:`sobol_net`): a shift costs one XOR per
coordinate, where a fresh scrambling per set cost milliseconds (BENCHMARKS.md section
8 compares the two: at equal m the fixed scramble was as accurate or more). The
chi-square's inverse distribution function is tabulated once per degree of freedom and
interpolated (:func:`chi2_quantile`), a tenth of the cost of
:func:`scipy.special.gammaincinv` with a relative error below ``1e-10`` (tested), and
the normal quantile is Wichura's (1988) algorithm AS 241, compiled into the pass that
shifts the points (:func:`shifted_normals`; within a few units in the last place of
:func:`scipy.special.ndtri`, tested, in about a third of its time).

Such points are not independent, so their spread says nothing about the error. Each
chunk therefore holds :attr:`QMCSampler.n_sets` independently shifted point sets,
interleaved as rows ``t * n_chains + r`` exactly as Markov chains are
(:mod:`pyglmm.chains`), and the records' batch moments (:mod:`pyglmm.chunks`) give the
Monte Carlo errors from the spread between the randomisations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray
from scipy.special import gammainccinv, gammaincinv, gammaln, ndtr, ndtri
from scipy.stats import qmc

from .importance import ImportanceSampler
from .problem import Problem

FloatArray = NDArray[np.float64]

#: ``sampler="auto"`` draws scrambled Sobol points when the largest block holds at most
#: this many random effects (BENCHMARKS.md section 8: at equal m they cut the spread of
#: the estimates over seeds 2.2-6.4x in blocks of one effect, 1.7-2.1x in blocks of 20
#: and 1.4x in crossed blocks of 48, for 1.4x the time; in blocks of 96 the spread fell
#: 1.1x for 1.1-1.4x the time, no gain per second, and in a block of 192 the QMC fits
#: were worse).
QMC_MAX_BLOCK = 48
#: The most coordinates a Sobol sequence of :class:`scipy.stats.qmc.Sobol` has: a
#: sample of more effects and blocks than this is drawn independently.
MAX_DIMENSION = 21_201
#: Independently scrambled point sets per chunk (the batches of the Monte Carlo error).
DEFAULT_RANDOMISATIONS = 8
#: Points of each set in a chunk of a ``sampler="qmc"`` round: a power of two, where
#: Sobol points are balanced (a chunk holds ``DEFAULT_RANDOMISATIONS`` times as many).
POINTS_PER_SET = 256
#: Uniforms are kept this far inside (0, 1) so that the inverse distribution functions
#: stay finite.
_EDGE = 2.0**-53
#: Binary digits of a Sobol coordinate (scipy's default): points are multiples of 2^-30.
BITS = 30
#: Seed of the one linear matrix scramble of the Sobol generator matrices (fixed, so that
#: every process builds the same net; the randomness of a fit is in the digital shifts).
NET_SEED = 20261202
#: The tabulated chi-square quantile covers ``z = Phi^{-1}(p)`` in this range, past the
#: normal quantiles of the smallest and largest uniforms (+-8.2 at ``2^-53``) ...
_Z_RANGE = (-8.5, 8.5)
#: ... at nodes this far apart, with cubic Hermite interpolation of ``log x`` in ``z``.
_Z_STEP = 0.01


def sobol_net(n_dims: int, n_points: int) -> NDArray[np.uint32]:
    """The first ``n_points`` points of the fixed scrambled Sobol sequence, as integers.

    Returns an ``(n_points, n_dims)`` read-only array of ``BITS``-bit integers (point
    ``i`` is ``net[i] / 2^BITS``): a prefix of the net built, and cached, for the next
    power of two, so every length up to it shares one net per dimension.
    """
    return _sobol_net_of_size(n_dims, 1 << max(0, int(n_points - 1).bit_length()))[:n_points]


@functools.lru_cache(maxsize=8)
def _sobol_net_of_size(n_dims: int, size: int) -> NDArray[np.uint32]:
    """The first ``size`` (a power of two) points of the net: built once per process."""
    engine = qmc.Sobol(d=n_dims, scramble=True, bits=BITS, seed=NET_SEED)
    net = np.rint(engine.random(size) * 2.0**BITS).astype(np.uint32)
    net.setflags(write=False)
    return net


@functools.lru_cache(maxsize=16)
def _chi2_table(df: float) -> tuple[FloatArray, FloatArray]:
    """``log x`` and ``d log x / dz`` of the chi-square(df) quantile at the nodes in z."""
    lo, hi = _Z_RANGE
    z = lo + _Z_STEP * np.arange(int(round((hi - lo) / _Z_STEP)) + 1)
    k = 0.5 * df
    lower = z < 0.0  # each half from the side where its probability is accurate
    x = np.empty_like(z)
    x[lower] = 2.0 * gammaincinv(k, ndtr(z[lower]))
    x[~lower] = 2.0 * gammainccinv(k, ndtr(-z[~lower]))
    log_x = np.log(x)
    log_pdf = (k - 1.0) * log_x - 0.5 * x - k * np.log(2.0) - gammaln(k)
    log_phi = -0.5 * z * z - 0.5 * np.log(2.0 * np.pi)
    return log_x, np.exp(log_phi - log_x - log_pdf)


def chi2_quantile(p: FloatArray, df: float) -> FloatArray:
    """The chi-square(``df``) quantile of ``p`` in (0, 1), by interpolation.

    ``log x`` is smooth in ``z = Phi^{-1}(p)``; it is tabulated once per ``df`` by
    :func:`scipy.special.gammaincinv` (and ``gammainccinv`` above the median) with its
    exact derivative and interpolated by cubic Hermite polynomials. The relative error
    against ``gammaincinv`` stays below ``1e-10`` for degrees of freedom from 1 to 100
    (``tests/test_qmc.py``), at a tenth of its cost.
    """
    log_x, slope = _chi2_table(float(df))
    t = (ndtri(p) - _Z_RANGE[0]) / _Z_STEP
    i = np.clip(t.astype(np.intp), 0, log_x.size - 2)
    s = t - i
    s2 = s * s
    s3 = s2 * s
    value = ((2.0 * s3 - 3.0 * s2 + 1.0) * log_x[i] + (3.0 * s2 - 2.0 * s3) * log_x[i + 1]
             + _Z_STEP * ((s3 - 2.0 * s2 + s) * slope[i] + (s3 - s2) * slope[i + 1]))
    return np.exp(value)


def qmc_dimension(problem: Problem, heavy: bool = True) -> int:
    """Coordinates of one point: every effect, plus one per block for a t proposal."""
    return int(problem.n_effects + (problem.blocks.n_blocks if heavy else 0))


def qmc_chunk_size(n_obs: int, n_sets: int = DEFAULT_RANDOMISATIONS) -> int:
    """Rows of a chunk of a ``sampler="qmc"`` round: ``n_sets`` sets of a power of two.

    :data:`POINTS_PER_SET` points per set, fewer (down to 16) where a chunk's ``m_j x n``
    array would exceed 8 MiB.
    """
    room = max(16, 2**20 // max(n_sets * n_obs, 1))
    return n_sets * min(POINTS_PER_SET, 2 ** int(np.floor(np.log2(room))))


# Wichura (1988), algorithm AS 241 (PPND16): rational approximations of Phi^{-1} in
# r = 0.180625 - q^2 near the centre (|q| = |p - 1/2| <= 0.425) and in
# r = sqrt(-log(min(p, 1 - p))) - 1.6 (r <= 5) or - 5 in the tails; numerators and
# denominators from the constant term up (the denominators' constant is 1)
_CENTRE_NUM = (3.3871328727963666080, 1.3314166789178437745e2, 1.9715909503065514427e3,
               1.3731693765509461125e4, 4.5921953931549871457e4, 6.7265770927008700853e4,
               3.3430575583588128105e4, 2.5090809287301226727e3)
_CENTRE_DEN = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2,
               5.3941960214247511077e3, 2.1213794301586595867e4, 3.9307895800092710610e4,
               2.8729085735721942674e4, 5.2264952788528545610e3)
_NEAR_NUM = (1.42343711074968357734, 4.63033784615654529590, 5.76949722146069140550,
             3.64784832476320460504, 1.27045825245236838258, 2.41780725177450611770e-1,
             2.27238449892691845833e-2, 7.74545014278341407640e-4)
_NEAR_DEN = (1.0, 2.05319162663775882187, 1.67638483018380384940, 6.89767334985100004550e-1,
             1.48103976427480074590e-1, 1.51986665636164571966e-2,
             5.47593808499534494600e-4, 1.05075007164441684324e-9)
_FAR_NUM = (6.65790464350110377720, 5.46378491116411436990, 1.78482653991729133580,
            2.96560571828504891230e-1, 2.65321895265761230930e-2,
            1.24266094738807843860e-3, 2.71155556874348757815e-5,
            2.01033439929228813265e-7)
_FAR_DEN = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1,
            1.48753612908506148525e-2, 7.86869131145613259100e-4,
            1.84631831751005468180e-5, 1.42151175831644588870e-7,
            2.04426310338993978564e-15)


@numba.njit(inline="always")
def _ratio(num: tuple[float, ...], den: tuple[float, ...], r: float) -> float:
    top = num[7]
    bottom = den[7]
    for j in range(6, -1, -1):
        top = top * r + num[j]
        bottom = bottom * r + den[j]
    return top / bottom


@numba.njit(inline="always")
def _phi_inverse(p: float) -> float:
    q = p - 0.5
    if not 0.0 < p < 1.0:  # the limits (and NaN for NaN)
        return -np.inf if p == 0.0 else np.inf if p == 1.0 else np.nan
    if abs(q) <= 0.425:
        return q * _ratio(_CENTRE_NUM, _CENTRE_DEN, 0.180625 - q * q)
    r = np.sqrt(-np.log(p if q < 0.0 else 1.0 - p))
    if r <= 5.0:
        value = _ratio(_NEAR_NUM, _NEAR_DEN, r - 1.6)
    else:
        value = _ratio(_FAR_NUM, _FAR_DEN, r - 5.0)
    return -value if q < 0.0 else value


@numba.njit(parallel=True, cache=True, nogil=True)
def _shifted_normal_kernel(
    net: NDArray[np.uint32], shifts: NDArray[np.uint32], dims: NDArray[np.intp],
    out: FloatArray,
) -> None:  # pragma: no cover - compiled; pinned to the numpy steps by the tests
    n_sets = shifts.shape[0]
    for row in numba.prange(out.shape[0]):
        t = row // n_sets
        r = row - t * n_sets
        for j in range(dims.size):
            d = dims[j]
            p = float(net[t, d] ^ shifts[r, d]) * 2.0**-BITS
            out[row, j] = _phi_inverse(min(max(p, _EDGE), 1.0 - _EDGE))


def shifted_uniforms(net: NDArray[np.uint32], shifts: NDArray[np.uint32],
                     dims: NDArray[np.intp]) -> FloatArray:
    """Coordinates ``dims`` of the digitally shifted sets, rows ``t * n_sets + r``: point
    ``t`` of ``net`` XOR shift ``r``, as uniforms in [2^-53, 1 - 2^-53]."""
    shifted = net[:, None, dims] ^ shifts[None, :, dims]  # (t, r, dim)
    points = np.multiply(shifted.reshape(-1, dims.size), 2.0**-BITS, dtype=np.float64)
    return np.clip(points, _EDGE, 1.0 - _EDGE, out=points)


def shifted_normals(net: NDArray[np.uint32], shifts: NDArray[np.uint32],
                    dims: NDArray[np.intp]) -> FloatArray:
    """The normal quantiles (AS 241) of :func:`shifted_uniforms`, in one compiled pass
    (no uniforms are stored)."""
    out = np.empty((net.shape[0] * shifts.shape[0], dims.size))
    _shifted_normal_kernel(np.ascontiguousarray(net), np.ascontiguousarray(shifts),
                           np.ascontiguousarray(dims, dtype=np.intp), out)
    return out


@dataclass(frozen=True)
class QMCSampler:
    """Scrambled Sobol draws of a one-component Laplace t (or normal) proposal.

    Has the interface of :class:`pyglmm.importance.ImportanceSampler` (``kind``,
    ``draw``, ``log_density``); the density is the proposal's own.

    Attributes
    ----------
    proposal : ImportanceSampler
        The Laplace t of :func:`pyglmm.importance.laplace_t` (one component).
    n_sets : int
        Independently scrambled point sets per chunk (rows ``t * n_sets + r``), the
        batches of the Monte Carlo errors (:attr:`n_batches`).
    """

    proposal: ImportanceSampler
    n_sets: int = DEFAULT_RANDOMISATIONS
    kind: str = "qmc"

    @property
    def n_batches(self) -> int:
        """Independent batches per chunk for the Monte Carlo errors: the point sets."""
        return self.n_sets

    def __post_init__(self) -> None:
        if len(self.proposal.components) != 1:
            raise ValueError("randomised QMC draws a one-component proposal")

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """The proposal's log density of every block of every row: (m, B)."""
        return self.proposal.log_density(u, problem)

    def draw(self, rng: np.random.Generator, n_draws: int, problem: Problem) -> FloatArray:
        """``n_draws`` rows from :attr:`n_sets` shifted Sobol sets (row ``t * n_sets + r``)."""
        component = self.proposal.components[0]
        blocks = problem.blocks
        n_sets = self.n_sets
        per_set = -(-n_draws // n_sets)
        heavy = component.df is not None
        effect_dim = np.arange(problem.n_effects) + (blocks.effect_block if heavy else 0)
        chi_dim = blocks.effect_starts + np.arange(blocks.n_blocks) + blocks.block_sizes
        n_dims = qmc_dimension(problem, heavy)
        shifts = rng.integers(0, 1 << BITS, size=(n_sets, n_dims), dtype=np.uint32)
        net = sobol_net(n_dims, per_set)
        u = component.transform(shifted_normals(net, shifts, effect_dim))
        if heavy:
            df = np.broadcast_to(np.asarray(component.df, dtype=np.float64),
                                 (blocks.n_blocks,))
            scale = np.empty((per_set * n_sets, blocks.n_blocks))
            for value in np.unique(df):  # one table per degree of freedom
                cols = np.flatnonzero(df == value)
                scale[:, cols] = np.sqrt(chi2_quantile(
                    shifted_uniforms(net, shifts, chi_dim[cols]), float(value)) / value)
            sizes = blocks.block_sizes
            if u.flags.c_contiguous and sizes.size and sizes.min() == sizes.max():
                # the blocks as a view of equal rows: no (m, q) copy of the scales
                by_block = u.reshape(u.shape[0], sizes.size, int(sizes[0]))
                by_block /= scale[:, :, None]
            else:
                u /= scale[:, blocks.effect_block]
        u += component.location
        return u[:n_draws]
