"""The Laplace approximation's analytic gradient and its maximiser.

The gradient (:func:`pyglmm.laplace.laplace_gradient`) is pinned to central finite
differences of the value with steps of 1e-6 relative: their truncation and rounding
error is about 1e-8 of the gradient's largest entry, so the tolerance is 1e-6 of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyglmm.design import build_design
from pyglmm.families import get_family
from pyglmm.laplace import laplace_fit, laplace_gradient, laplace_loglik
from pyglmm.pql import pql_centre
from pyglmm.problem import Problem
from pyglmm.simulate import simulate_glmm


def _slopes_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    g = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    u0, u1 = rng.normal(size=40) * 0.5, rng.normal(size=40) * 0.3
    eta = 0.2 + 0.3 * x + u0[g] + u1[g] * x
    return pd.DataFrame({
        "g": pd.Categorical(g), "h": pd.Categorical(rng.integers(0, 8, n)), "x": x,
        "count": rng.poisson(np.exp(eta)), "hit": (rng.random(n) < 1 / (1 + np.exp(-eta))),
        "w": rng.uniform(0.5, 2.0, n), "off": rng.normal(size=n) * 0.1,
        "succ": rng.binomial(4, 1 / (1 + np.exp(-eta))),
    }).assign(fail=lambda f: 4 - f["succ"], hit=lambda f: f["hit"].astype(float))


CASES = {
    "crossed bernoulli": ("y ~ x", ["~ 0 + a", "~ 0 + b"], "bernoulli", {}),
    "correlated poisson slopes": ("count ~ x + (x | g)", None, "poisson", {}),
    "weighted bernoulli with offset": ("hit ~ x + (1 | g) + (1 | h)", None, "bernoulli",
                                       {"weights": "w", "offset": "off"}),
    "binomial, two terms": ("cbind(succ, fail) ~ x + (1 | g) + (0 + x | g)", None,
                            "binomial", {}),
    "tied variances": ("y ~ x", ["~ 0 + a", "~ 0 + b"], "bernoulli",
                       {"varcomps_equal": [1, 1]}),
}


def _problem(case: str) -> Problem:
    fixed, random, family_name, extra = CASES[case]
    if case in ("crossed bernoulli", "tied variances"):
        frame = simulate_glmm("bernoulli", 600, {"a": 30, "b": 12}, beta=(-0.3, 0.5),
                              nu=(0.6, 0.4), rng=5)
    else:
        frame = _slopes_frame(3)
    family = get_family(family_name)
    design = build_design(fixed, random, frame, family, **extra)
    return Problem.build(design, family)


def _value(problem: Problem, theta: np.ndarray) -> float:
    p = problem.n_fixed
    return laplace_loglik(problem, theta[:p], theta[p:])[0]


def _test_point(problem: Problem) -> np.ndarray:
    """A point away from the optimum, with a correlation where a term has one."""
    p = problem.n_fixed
    psi = problem.params.start() * 0.7
    if not problem.params.all_diagonal:
        psi = problem.params.from_unconstrained(
            problem.params.to_unconstrained(psi) + 0.2)
    return np.concatenate([np.linspace(-0.3, 0.4, p), psi])


def _assert_gradient_matches_finite_differences(problem: Problem, theta: np.ndarray) -> None:
    p = problem.n_fixed
    _, mode, chol = laplace_loglik(problem, theta[:p], theta[p:])
    gradient = laplace_gradient(problem, theta[:p], theta[p:], mode, chol)
    fd = np.empty_like(theta)
    for j in range(theta.size):
        h = 1e-6 * max(0.1, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        fd[j] = (_value(problem, up) - _value(problem, down)) / (2 * h)
    np.testing.assert_allclose(gradient, fd, rtol=0, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_finite_differences(case: str) -> None:
    problem = _problem(case)
    _assert_gradient_matches_finite_differences(problem, _test_point(problem))


@pytest.mark.parametrize("slopes", [False, True])
def test_gradient_through_a_crossed_schur_block(slopes: bool) -> None:
    """A large crossed block's gradient (entries of H^{-1} from the Schur complement's
    inverse) against central differences, as above; with a correlated slope the
    prior's intercept-slope pairs are pivot-pivot entries off the diagonal."""
    if slopes:
        frame = simulate_glmm("bernoulli", 800, {"a": 30, "b": 12}, beta=(-0.3, 0.5),
                              nu=[[[0.4, 0.1], [0.1, 0.3]], 0.5], rng=6)
        fixed, random = "y ~ x + (1 + x | a) + (1 | b)", None
    else:
        frame = simulate_glmm("bernoulli", 600, {"a": 30, "b": 12}, beta=(-0.3, 0.5),
                              nu=(0.6, 0.4), rng=5)
        fixed, random = "y ~ x", ["~ 0 + a", "~ 0 + b"]
    family = get_family("bernoulli")
    design = build_design(fixed, random, frame, family)
    problem = Problem.build(design, family, crossed_min_size=16)
    assert problem.has_crossed_blocks
    _assert_gradient_matches_finite_differences(problem, _test_point(problem))


def test_fit_is_stationary_and_agrees_with_the_schur_path() -> None:
    """The dense and the Schur factor lead the maximiser to the same optimum, where the
    gradient vanishes."""
    frame = simulate_glmm("bernoulli", 600, {"a": 30, "b": 12}, beta=(-0.3, 0.5),
                          nu=(0.6, 0.4), rng=5)
    family = get_family("bernoulli")
    design = build_design("y ~ x", ["~ 0 + a", "~ 0 + b"], frame, family)
    dense = Problem.build(design, family)
    crossed = Problem.build(design, family, crossed_min_size=16)  # Schur inverse
    pql = pql_centre(dense)
    fit_d = laplace_fit(dense, pql.beta, pql.variances)
    fit_c = laplace_fit(crossed, pql.beta, pql.variances)
    assert fit_d.converged and fit_c.converged
    np.testing.assert_allclose(fit_c.loglik, fit_d.loglik, rtol=1e-12)
    np.testing.assert_allclose(fit_d.beta, fit_c.beta, atol=1e-6)
    np.testing.assert_allclose(fit_d.nu, fit_c.nu, atol=1e-6)
    for problem, fit in ((dense, fit_d), (crossed, fit_c)):
        _, mode, chol = laplace_loglik(problem, fit.beta, fit.nu)
        gradient = laplace_gradient(problem, fit.beta, fit.nu, mode, chol)
        assert np.abs(gradient).max() < 1e-4
