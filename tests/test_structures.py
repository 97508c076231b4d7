"""The MCLA with random slopes and covariance structures: derivatives and values.

For a random slope (R glmm's list form ``~ 0 + x:g``), an unstructured intercept and
slope ``(1 + x | g)``, a diagonal one ``(1 + x || g)`` and the unstructured term crossed
with a scalar intercept ``(1 + x | g) + (1 | h)``, the closed-form gradient and Hessian
of the MCLA in ``theta = (beta, variances and covariances)`` must agree with central
finite differences of the value and of the gradient (relative error below 1e-5, as in
tests/test_mcla.py), for every family, block-wise and joint, with fixed and with
shifted draws, and with R glmm's mixture proposal. The value itself is checked against
a direct log-mean-exp of the importance weights.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from helpers import make_objective
from scipy.special import gammaln
from scipy.stats import multivariate_normal

from pyglmm.mcla import EffectShift, MCLAObjective, chunk_from_draws
from pyglmm.simulate import simulate_glmm

FAMILIES = ("bernoulli", "poisson", "binomial")
RESPONSE = {"bernoulli": "y", "poisson": "y", "binomial": "cbind(y, fail)"}
TRUE_BETA = {"bernoulli": (0.2, 0.8), "poisson": (0.4, 0.5), "binomial": (-0.2, 0.6)}
NU_G = np.array([[0.5, 0.1], [0.1, 0.4]])

# structure: (right-hand side, list-form random formulas, psi at the centre,
#             psi where the derivatives are checked)
STRUCTURES = {
    "slope": ("~ x", ["~ 0 + x:g"], [0.5], [0.65]),
    "unstructured": ("~ x + (1 + x | g)", None, [0.5, 0.1, 0.5], [0.6, 0.05, 0.4]),
    "diagonal": ("~ x + (1 + x || g)", None, [0.5, 0.5], [0.6, 0.4]),
    "crossed": ("~ x + (1 + x | g) + (1 | h)", None, [0.5, 0.1, 0.5, 0.5],
                [0.6, 0.05, 0.4, 0.55]),
}


@cache
def _data(family):
    return simulate_glmm(family, 200, {"g": 20, "h": 10}, TRUE_BETA[family], [NU_G, 0.3],
                         trials=5, rng={"bernoulli": 11, "poisson": 12, "binomial": 13}[family])


def _thetas(structure, family):
    _, _, psi_centre, psi_eval = STRUCTURES[structure]
    beta = np.array(TRUE_BETA[family])
    centre = np.concatenate([beta, psi_centre])
    # away from the centre, so the importance weights are not uniform
    at = np.concatenate([beta + [0.06, -0.09], psi_eval])
    return centre, at


def _build(structure, family, *, joint=False, shift=False, importance="laplace", m=300):
    rhs, random, _, _ = STRUCTURES[structure]
    centre, at = _thetas(structure, family)
    problem, objective, _ = make_objective(
        RESPONSE[family] + " " + rhs, random, _data(family), family, m=m, chunk=150,
        joint=joint, shift=shift, importance=importance, theta_centre=centre,
    )
    assert problem.params.n_params == centre.size
    return problem, objective, at


def _relative_error(approx, exact):
    return float(np.max(np.abs(approx - exact)) / max(np.max(np.abs(exact)), 1e-8))


def _fd_value_and_gradient(objective, theta, h=1e-5):
    """Central differences of the value (gradient) and of the gradient (Hessian)."""
    n = theta.size
    grad = np.empty(n)
    hess = np.empty((n, n))
    for j in range(n):
        step = np.zeros(n)
        step[j] = h * max(1.0, abs(theta[j]))
        plus, minus = objective.evaluate(theta + step), objective.evaluate(theta - step)
        grad[j] = (plus.value - minus.value) / (2 * step[j])
        hess[:, j] = (plus.gradient - minus.gradient) / (2 * step[j])
    return grad, 0.5 * (hess + hess.T)


MODES = {
    "blocks": dict(),
    "joint": dict(joint=True),
    "blocks-shift": dict(shift=True),
    "joint-shift": dict(joint=True, shift=True),
    "glmm": dict(importance="glmm"),
    "glmm-joint": dict(importance="glmm", joint=True),
}


def _cases():
    names = sorted(STRUCTURES)
    cases = [(s, f, "blocks") for s in names for f in FAMILIES]
    for i, s in enumerate(names):  # each structure joint and shifted, families rotated
        cases.append((s, FAMILIES[i % 3], "joint"))
        cases.append((s, FAMILIES[(i + 1) % 3], "blocks-shift"))
        cases.append((s, FAMILIES[(i + 2) % 3], "joint-shift"))
    cases += [("unstructured", "poisson", "glmm"), ("crossed", "bernoulli", "glmm"),
              ("slope", "binomial", "glmm-joint"), ("diagonal", "binomial", "glmm")]
    return cases


@pytest.mark.parametrize(("structure", "family", "mode"), _cases(),
                         ids=["-".join(c) for c in _cases()])
def test_gradient_and_hessian_match_finite_differences(structure, family, mode):
    problem, objective, theta = _build(structure, family, **MODES[mode])
    assert (objective.shift is not None) == MODES[mode].get("shift", False)
    if MODES[mode].get("joint"):
        assert problem.blocks.n_blocks == 1
    elif structure != "crossed":
        assert problem.blocks.n_blocks == 20
    ev = objective.evaluate(theta)
    assert np.isfinite(ev.value)
    assert ev.gradient.shape == (theta.size,) and ev.hessian.shape == (theta.size,) * 2
    np.testing.assert_allclose(ev.hessian, ev.hessian.T, rtol=1e-10, atol=1e-10)
    fd_grad, fd_hess = _fd_value_and_gradient(objective, theta)
    assert _relative_error(ev.gradient, fd_grad) < 1e-5
    assert _relative_error(ev.hessian, fd_hess) < 1e-5


def _direct_value(problem, family, theta, u, log_h, slope=None, beta0=None):
    """sum_b log mean_k exp(log f(y_b | u) + log f(u_b) - log h_b(u)) straight from u."""
    p = problem.n_fixed
    beta, psi = theta[:p], theta[p:]
    if slope is not None:
        u = u + (slope @ (beta - beta0))[None, :]
    eta = problem.x @ beta + problem.z_times(u)
    y, n = problem.y, problem.trials
    # full log densities, constants included (log y!, log binomial coefficients)
    if family == "poisson":
        loglik = y * eta - np.exp(eta) - gammaln(y + 1.0)
    else:
        loglik = (y * eta - n * np.logaddexp(0.0, eta) + gammaln(n + 1.0) - gammaln(y + 1.0)
                  - gammaln(n - y + 1.0))
    per_block = np.add.reduceat(loglik, problem.blocks.obs_starts, axis=1)
    inverse = np.empty_like(problem.blocks.effect_order)
    inverse[problem.blocks.effect_order] = np.arange(inverse.size)
    covs = problem.params.covariances(psi)
    log_prior = np.zeros_like(per_block)
    for t, sigma in enumerate(covs):
        dist = multivariate_normal(np.zeros(sigma.shape[0]), sigma)
        for level in inverse[problem.design.level_effects(t)]:
            log_prior[:, problem.blocks.effect_block[level[0]]] += np.atleast_1d(
                dist.logpdf(u[:, level]))
    logw = per_block + log_prior - log_h
    top = logw.max(axis=0)
    return float(np.sum(top + np.log(np.mean(np.exp(logw - top), axis=0))))


@pytest.mark.parametrize(
    ("structure", "family", "shifted"),
    [("unstructured", "bernoulli", False), ("crossed", "poisson", False),
     ("diagonal", "binomial", True), ("unstructured", "poisson", True)],
)
def test_value_matches_direct_log_mean_exp(structure, family, shifted):
    problem, objective, theta = _build(structure, family, shift=shifted, m=150)
    sampler = objective.chunk_source.sampler
    u = sampler.draw(np.random.default_rng(5), 120, problem)
    log_h = sampler.log_density(u, problem)
    shift = None
    if shifted:
        # a made-up slope, so that the draws visibly move with beta
        slope = np.random.default_rng(6).normal(0.0, 0.3, (problem.n_effects, 2))
        shift = EffectShift.build(problem, slope, objective.shift.beta0)
    chunk = chunk_from_draws(problem, sampler, u, shift)
    mine = MCLAObjective(problem, lambda j: chunk, [u.shape[0]], shift=shift)
    direct = _direct_value(problem, family, theta, u, log_h,
                           None if shift is None else shift.slope,
                           None if shift is None else shift.beta0)
    assert mine.evaluate(theta).value == pytest.approx(direct, rel=1e-11)


@pytest.mark.parametrize("shift", [False, True], ids=["fixed-draws", "shifted-draws"])
@pytest.mark.parametrize("structure", ["unstructured", "crossed"])
def test_indefinite_covariance_is_minus_infinity(structure, shift):
    problem, objective, theta = _build(structure, "bernoulli", shift=shift, m=150)
    p = problem.n_fixed
    bad = theta.copy()
    bad[p + 1] = 0.6  # cov^2 = 0.36 > 0.6 * 0.4: Sigma of g indefinite
    assert not problem.params.feasible(bad[p:])
    for point in (bad, np.concatenate([theta[:p], [0.6, 0.05, -0.4], theta[p + 3:]])):
        ev = objective.evaluate(point)
        assert ev.value == -np.inf
        np.testing.assert_array_equal(ev.gradient, np.zeros(theta.size))
        np.testing.assert_array_equal(ev.hessian, np.zeros((theta.size, theta.size)))
    # just inside, everything is finite
    near = theta.copy()
    near[p + 1] = 0.95 * np.sqrt(theta[p] * theta[p + 2])
    ev = objective.evaluate(near)
    assert np.isfinite(ev.value) and np.all(np.isfinite(ev.gradient))
    assert np.all(np.isfinite(ev.hessian))


def test_zero_variance_of_a_diagonal_term_is_minus_infinity():
    problem, objective, theta = _build("diagonal", "poisson", m=150)
    bad = theta.copy()
    bad[-1] = 0.0
    ev = objective.evaluate(bad)
    assert ev.value == -np.inf
    assert not np.any(ev.gradient) and not np.any(ev.hessian)
