"""Importance-sampling proposals, one independent factor per block.

Two proposals are provided, both products over the blocks of
:mod:`pyglmm.blocks` (with ``blocks="joint"`` there is one block and the first is
exactly R glmm's proposal):

* :func:`glmm_mixture` -- R glmm's three-part mixture (docs/method.md) restricted
  to each block: ``p1 t_zeta(0, D*) + p2 N(u*, D*) + p3 N(u*, Sigma~)``. Each block of
  each draw picks its own component.
* :func:`laplace_t` -- a multivariate ``t_zeta`` per block centred at the conditional
  mode of the random effects and scaled by the curvature there (docs/method.md).

Draws and log-densities are in block order; log-densities are per block (m, B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from .blocklinalg import BlockCholesky, solve_columns
from .problem import Problem

FloatArray = NDArray[np.float64]

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Component:
    """A per-block normal or Student t distribution.

    The scale matrix of block ``b`` is ``diag(sd_b^2)`` when ``cholesky`` is None,
    otherwise the inverse of the precision whose Cholesky factors ``cholesky`` holds.
    ``df`` None means normal.
    """

    location: FloatArray  # (q,) block order
    sd: FloatArray | None
    cholesky: BlockCholesky | None
    df: float | FloatArray | None  # one for all blocks, or one per block (B,)

    def _half_log_det_precision(self, problem: Problem) -> FloatArray:
        if self.cholesky is not None:
            return self.cholesky.half_log_det
        assert self.sd is not None
        return -problem.blocks.block_sum(np.log(self.sd))

    def transform(self, z: FloatArray) -> FloatArray:
        """Map standard normal rows to rows with this component's scale matrix."""
        if self.cholesky is not None:
            return self.cholesky.draw_transform(z)
        assert self.sd is not None
        return z * self.sd

    def quadratic_form(self, u: FloatArray, problem: Problem) -> FloatArray:
        """Return ``(u - loc)^T S_b^{-1} (u - loc)`` per block, shape (m, B)."""
        r = u - self.location
        if self.cholesky is not None:
            return self.cholesky.quadratic_form(r, problem.blocks.n_blocks)
        assert self.sd is not None
        return problem.blocks.block_sum((r / self.sd) ** 2)

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """Log density of every block of every row of ``u``: shape (m, B)."""
        d = problem.blocks.block_sizes.astype(np.float64)
        quad = self.quadratic_form(u, problem)
        half_log_det = self._half_log_det_precision(problem)
        if self.df is None:
            return -0.5 * d * _LOG_2PI + half_log_det - 0.5 * quad
        nu = self.df
        const = gammaln(0.5 * (nu + d)) - gammaln(0.5 * nu) - 0.5 * d * np.log(nu * np.pi)
        return const + half_log_det - 0.5 * (nu + d) * np.log1p(quad / nu)


class Sampler(Protocol):
    """What chunks, stores and backends need of the draws of a sampling round.

    :class:`ImportanceSampler` (independent draws) and
    :class:`pyglmm.chains.ChainSampler` (Markov chains) have it.
    """

    @property
    def kind(self) -> str:
        """What draws these are (``"laplace"``, ``"glmm"``, ``"mcmc"``)."""
        ...

    def draw(self, rng: np.random.Generator, n_draws: int, problem: Problem) -> FloatArray:
        """``n_draws`` rows of block-ordered random effects from ``rng``: (n_draws, q)."""
        ...

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """The log density ``log h`` of the MCLA's weights per block of each row: (m, B)."""
        ...


@dataclass(frozen=True)
class ImportanceSampler:
    """A mixture of per-block components; each block of each draw picks a component.

    Attributes
    ----------
    kind : str
        ``"glmm"`` or ``"laplace"``.
    components : tuple of Component
    probabilities : tuple of float
        Mixture probabilities of the components (all positive, summing to one).
    """

    kind: str
    components: tuple[Component, ...]
    probabilities: tuple[float, ...]

    def draw(self, rng: np.random.Generator, n_draws: int, problem: Problem) -> FloatArray:
        """Draw ``n_draws`` rows of block-ordered random effects: shape (n_draws, q)."""
        n_blocks = problem.blocks.n_blocks
        effect_block = problem.blocks.effect_block
        n_comp = len(self.components)
        labels = (
            rng.choice(n_comp, size=(n_draws, n_blocks), p=np.asarray(self.probabilities))
            if n_comp > 1
            else None
        )
        z = rng.standard_normal((n_draws, problem.n_effects))
        out = np.empty_like(z)
        for j, comp in enumerate(self.components):
            candidate = comp.transform(z)
            if comp.df is not None:
                scale = np.sqrt(rng.chisquare(comp.df, size=(n_draws, n_blocks)) / comp.df)
                candidate /= scale[:, effect_block]
            candidate += comp.location
            if labels is None:
                out = candidate
            else:
                mask = labels[:, effect_block] == j
                np.copyto(out, candidate, where=mask)
        return out

    def log_density(self, u: FloatArray, problem: Problem) -> FloatArray:
        """Log proposal density of every block of every row: shape (m, B)."""
        terms = [
            np.log(p) + comp.log_density(u, problem)
            for p, comp in zip(self.probabilities, self.components, strict=True)
        ]
        if len(terms) == 1:
            return terms[0]
        return np.logaddexp.reduce(np.stack(terms), axis=0)


def conditional_mode(
    problem: Problem,
    beta: FloatArray,
    nu: FloatArray,
    start: FloatArray | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
    factor: BlockCholesky | None = None,
) -> tuple[FloatArray, BlockCholesky]:
    """Mode of the random effects given ``theta`` and the curvature there.

    Maximises ``sum_i w_i [y_i eta_i - c(eta_i)] - 1/2 u^T D(psi)^{-1} u`` over ``u`` by
    Newton's method with step halving (docs/method.md); the negative Hessian is
    block-diagonal over the blocks.

    Parameters
    ----------
    problem : Problem
    beta, nu : ndarray
        The parameters: fixed effects and the random-effect parameters ``psi``.
    start : ndarray, optional
        Starting point (block order), e.g. the mode at a nearby ``theta``.
    tol : float
        Newton decrement below which one last full step is taken.
    max_iter : int
    factor : BlockCholesky, optional
        The curvature factor at a nearby ``theta`` (as returned with ``start``). Its
        steps (a chord method: a solve, no factorisation) are taken while they converge
        fast, to a decrement of ``tol**2``; otherwise Newton's method takes over. With a
        warm start this leaves one factorisation per call, the one at the mode.

    Returns
    -------
    mode : ndarray, shape (q,)
        Block-ordered conditional mode.
    cholesky : BlockCholesky
        Factors of the negative Hessian ``Z^T diag(c''(eta)) Z + D^{-1}`` at the mode.
    """
    prior = problem.prior_at(nu)
    layout = problem.prior
    off = prior.off_precision if layout.off_a.size else None
    offset = problem.offset + problem.x @ beta
    u = np.zeros(problem.n_effects) if start is None else np.array(start, dtype=np.float64)

    def objective(v: FloatArray, eta: FloatArray | None = None) -> float:
        eta = offset + problem.z_times(v) if eta is None else eta
        return problem.data_loglik(eta) - 0.5 * prior.quadratic(layout, v)

    def gradient_at(v: FloatArray, eta: FloatArray) -> FloatArray:
        resid = problem.residual_variance(eta)[0]
        return problem.zt_times(resid) - prior.times(layout, v)

    value = objective(u)
    converged = False
    if factor is not None:
        previous = np.inf
        gradient = gradient_at(u, offset + problem.z_times(u))
        for _ in range(max_iter):
            step = factor.solve(gradient)
            decrement = float(np.dot(step, gradient))
            if decrement > 0.25 * previous:
                break  # converging slowly: Newton's method takes over
            trial = u + step
            trial_eta = offset + problem.z_times(trial)  # shared by value and gradient
            trial_value = objective(trial, trial_eta)
            if not trial_value >= value:
                break
            u, value, previous = trial, trial_value, decrement
            if decrement <= tol * tol:
                converged = True
                break
            gradient = gradient_at(u, trial_eta)
    for _ in range(0 if converged else max_iter):
        eta = offset + problem.z_times(u)
        resid, variance = problem.residual_variance(eta)
        gradient = problem.zt_times(resid) - prior.times(layout, u)
        precision = problem.precision(variance, prior.diag_precision, off_diagonal=off)
        chol = BlockCholesky.from_blocks(problem.groups, precision, problem.blocks.n_blocks)
        step = chol.solve(gradient)
        decrement = float(np.dot(step, gradient))
        if decrement < tol:
            # inside the region of quadratic convergence: one more full step makes the
            # mode exact to rounding, so callers see a smooth function of theta
            u = u + step
            break
        size = 1.0
        while True:
            trial = u + size * step
            trial_value = objective(trial)
            if trial_value >= value or size < 1e-10:
                break
            size *= 0.5
        if trial_value < value:
            break  # no ascent possible in floating point: u is the mode
        u, value = trial, trial_value
    eta = offset + problem.z_times(u)
    variance = problem.residual_variance(eta)[1]
    precision = problem.precision(variance, prior.diag_precision, off_diagonal=off)
    return u, BlockCholesky.from_blocks(problem.groups, precision, problem.blocks.n_blocks)


def mode_slope(
    problem: Problem, beta: FloatArray, mode: FloatArray, chol: BlockCholesky
) -> FloatArray:
    """Derivative of the conditional mode with respect to ``beta``: (q, p), block order.

    From the mode's equation ``Z^T (y - c'(eta)) - D^{-1} u = 0``:
    ``du/dbeta = -H^{-1} Z^T diag(c''(eta)) X`` with ``H`` factored in ``chol``.
    """
    eta = problem.eta(beta, mode)
    weighted_x = problem.residual_variance(eta)[1][:, None] * problem.x
    return -solve_columns(chol, problem.zt_times(weighted_x))


def glmm_mixture(
    problem: Problem,
    beta_star: FloatArray,
    variances_star: FloatArray,
    u_star: FloatArray,
    p: tuple[float, float, float],
    zeta: float,
) -> ImportanceSampler:
    """R glmm's three-part mixture at the centre ``(beta*, D*, u*)``, per block.

    Parameters
    ----------
    problem : Problem
    beta_star : ndarray, shape (p,)
    variances_star : ndarray
        The centre's random-effect parameters ``psi*`` (variances clamped). The
        mixture's t and first normal use the diagonal of ``D(psi*)`` (R's ``D*``; for
        correlated terms the correlations are left out of those components, which
        keeps them valid proposals); the third uses the full prior precision.
    u_star : ndarray, shape (q,)
        Block-ordered centre of the normal components.
    p : (p1, p2, p3)
        Mixture probabilities; zero entries drop their component.
    zeta : float
        Degrees of freedom of the t component.
    """
    prior = problem.prior_at(variances_star)
    sd = np.sqrt(prior.variances)
    eta = problem.eta(beta_star, u_star)
    variance = problem.residual_variance(eta)[1]
    candidates = [
        Component(np.zeros(problem.n_effects), sd, None, float(zeta)),
        Component(u_star, sd, None, None),
    ]
    if p[2] > 0:
        off = prior.off_precision if problem.prior.off_a.size else None
        diagonal = 1.0 / sd**2 if off is None else prior.diag_precision
        precision = problem.precision(variance, diagonal, off_diagonal=off)
        chol = BlockCholesky.from_blocks(problem.groups, precision, problem.blocks.n_blocks)
        candidates.append(Component(u_star, None, chol, None))
    kept = [(float(pj), comp) for pj, comp in zip(p, candidates, strict=False) if pj > 0]
    return ImportanceSampler(
        "glmm", tuple(c for _, c in kept), tuple(pj for pj, _ in kept)
    )


def block_degrees_of_freedom(zeta: float, block_sizes: NDArray[np.intp]) -> FloatArray:
    """Degrees of freedom of the t proposal of each block: ``max(zeta, d_b)``.

    A t draw is a normal draw divided by one random scale ``sqrt(chi2_zeta / zeta)``
    per block. In a block of ``d`` effects that scale moves the whole draw off the
    target's typical set (radius about ``sqrt(d)``) unless ``zeta`` grows with ``d``;
    heavy tails pay only in small blocks. On a crossed Bernoulli block of 1,000 effects
    (BENCHMARKS.md) ``max(zeta, d)`` raised the smallest ESS about tenfold against
    ``zeta = 20``; blocks of at most ``zeta`` effects are unchanged.
    """
    return np.maximum(float(zeta), np.asarray(block_sizes, dtype=np.float64))


def laplace_t(
    problem: Problem,
    beta: FloatArray,
    nu: FloatArray,
    zeta: float | FloatArray,
    start: FloatArray | None = None,
    factor: BlockCholesky | None = None,
) -> tuple[ImportanceSampler, FloatArray, FloatArray]:
    """Per-block ``t_zeta`` at the conditional mode, scaled by the inverse curvature.

    ``zeta`` is one number of degrees of freedom for every block or one per block
    (:func:`block_degrees_of_freedom`, ``glmm()``'s default).

    ``start`` and ``factor`` (a nearby mode and its curvature factor, e.g. the previous
    round's) warm-start :func:`conditional_mode`. Returns the sampler, the block-ordered
    mode and the mode's slope in ``beta`` (:func:`mode_slope`, for
    :class:`pyglmm.mcla.EffectShift`).
    """
    mode, chol = conditional_mode(problem, beta, nu, start=start, factor=factor)
    df = zeta if np.ndim(zeta) == 0 else np.asarray(zeta, dtype=np.float64)
    sampler = ImportanceSampler("laplace", (Component(mode, None, chol, df),), (1.0,))
    return sampler, mode, mode_slope(problem, beta, mode, chol)
