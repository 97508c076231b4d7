"""Tests for the trust-region maximiser in :mod:`pyglmm.optimize`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyglmm.optimize import TrustStep, trust_maximize

STEP_TYPES = {"Newton", "easy-easy", "hard-easy", "hard-hard"}


def neg_rosenbrock(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    x, y = theta
    value = -(100.0 * (y - x * x) ** 2 + (1.0 - x) ** 2)
    grad = -np.array([-400.0 * x * (y - x * x) - 2.0 * (1.0 - x), 200.0 * (y - x * x)])
    hess = -np.array([[1200.0 * x * x - 400.0 * y + 2.0, -400.0 * x], [-400.0 * x, 200.0]])
    return value, grad, hess


def double_well(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``-(x^2 - 1)^2 - y^2``: saddle at ``x = 0``, maxima at ``(+-1, 0)``."""
    x, y = theta
    value = -((x * x - 1.0) ** 2) - y * y
    grad = np.array([-4.0 * x * (x * x - 1.0), -2.0 * y])
    hess = np.array([[4.0 - 12.0 * x * x, 0.0], [0.0, -2.0]])
    return value, grad, hess


def log_minus_x(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``log(x) - x``, infeasible (``-inf``) for ``x <= 0``; maximum at ``x = 1``."""
    x = theta[0]
    if x <= 0:
        return -math.inf, np.full(1, np.nan), np.full((1, 1), np.nan)
    return math.log(x) - x, np.array([1.0 / x - 1.0]), np.array([[-1.0 / x**2]])


def check_trace(result) -> None:
    assert len(result.trace) == result.iterations
    assert [s.iteration for s in result.trace] == list(range(1, result.iterations + 1))
    for step in result.trace:
        assert step.step_type in STEP_TYPES
        if step.step_type != "Newton":
            assert step.step_norm == pytest.approx(step.radius, rel=1e-8)
        else:
            assert step.step_norm <= step.radius * (1 + 1e-12)


def test_concave_quadratic_one_newton_step() -> None:
    a = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    centre = np.array([1.0, -2.0, 0.5])

    def quad(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        d = theta - centre
        return 7.0 - 0.5 * float(d @ a @ d), -(a @ d), -a

    result = trust_maximize(quad, np.zeros(3))
    first = result.trace[0]
    assert first.step_type == "Newton"
    assert first.accepted
    np.testing.assert_allclose(first.trial, centre, atol=1e-12)
    assert first.rho == pytest.approx(1.0)
    assert first.predicted_change == pytest.approx(first.trial_value - first.value)
    assert result.converged
    assert result.iterations == 2
    np.testing.assert_allclose(result.argument, centre, atol=1e-12)
    assert result.value == pytest.approx(7.0)
    np.testing.assert_allclose(result.gradient, 0.0, atol=1e-10)
    np.testing.assert_allclose(result.hessian, -a)
    check_trace(result)


def test_rosenbrock() -> None:
    result = trust_maximize(neg_rosenbrock, np.array([-1.2, 1.0]))
    assert result.converged
    np.testing.assert_allclose(result.argument, [1.0, 1.0], atol=1e-6)
    assert result.value == pytest.approx(0.0, abs=1e-10)
    value, grad, hess = neg_rosenbrock(result.argument)
    assert result.value == value
    np.testing.assert_allclose(result.gradient, grad)
    np.testing.assert_allclose(result.hessian, hess)
    check_trace(result)


def test_iteration_limit() -> None:
    result = trust_maximize(neg_rosenbrock, np.array([-1.2, 1.0]), iterlim=2)
    assert not result.converged
    assert result.iterations == 2
    check_trace(result)


def test_hard_case_from_saddle() -> None:
    # zero gradient in x and negative curvature there: the hard case
    result = trust_maximize(double_well, np.array([0.0, 0.5]))
    assert result.trace[0].step_type == "hard-hard"
    assert not result.trace[0].accepted
    assert result.converged
    np.testing.assert_allclose(np.abs(result.argument), [1.0, 0.0], atol=1e-6)
    check_trace(result)


def test_hard_easy_case() -> None:
    result = trust_maximize(double_well, np.array([0.0, 5.0]), rinit=1.0)
    assert result.trace[0].step_type == "hard-easy"
    assert result.converged
    np.testing.assert_allclose(np.abs(result.argument), [1.0, 0.0], atol=1e-6)
    check_trace(result)


def test_infeasible_trial_points_are_rejected() -> None:
    # from x = 3 the Newton step lands at x = -3, where the objective is -inf
    steps: list[TrustStep] = []
    result = trust_maximize(log_minus_x, np.array([3.0]), rinit=10.0, callback=steps.append)
    first, second = result.trace[:2]
    assert first.trial[0] <= 0
    assert first.trial_value == -math.inf
    assert first.rho == -math.inf
    assert not first.accepted
    assert second.radius == pytest.approx(2.5)
    np.testing.assert_array_equal(second.argument, [3.0])
    assert result.converged
    np.testing.assert_allclose(result.argument, [1.0], atol=1e-6)
    assert tuple(steps) == result.trace
    check_trace(result)


def test_near_boundary_start() -> None:
    result = trust_maximize(log_minus_x, np.array([0.01]), rinit=10.0)
    assert result.converged
    np.testing.assert_allclose(result.argument, [1.0], atol=1e-6)
    assert all(s.trial[0] > 0 for s in result.trace)


def test_nan_value_is_infeasible() -> None:
    def f(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        value, grad, hess = log_minus_x(theta)
        return (math.nan if value == -math.inf else value), grad, hess

    result = trust_maximize(f, np.array([3.0]))
    assert not result.trace[0].accepted
    np.testing.assert_allclose(result.argument, [1.0], atol=1e-6)


def test_infeasible_start_raises() -> None:
    with pytest.raises(ValueError, match="start not feasible"):
        trust_maximize(log_minus_x, np.array([-1.0]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rinit": 0.0}, "rinit"),
        ({"rinit": -1.0}, "rinit"),
        ({"rinit": math.inf}, "rinit"),
        ({"rmax": 0.0}, "rmax"),
        ({"iterlim": 0}, "iterlim"),
        ({"iterlim": 2.5}, "iterlim"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        trust_maximize(neg_rosenbrock, np.array([-1.2, 1.0]), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("theta0", [np.array([[1.0, 2.0]]), np.array([np.nan, 1.0]), []])
def test_bad_start_raises(theta0: np.ndarray) -> None:
    with pytest.raises(ValueError, match="theta0"):
        trust_maximize(neg_rosenbrock, theta0)


def test_max_infeasible_stops_at_the_edge_of_the_feasible_region() -> None:
    """The maximum of log(x) - x over x <= 0.5 (infeasible beyond) is at the edge."""

    def capped(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        if theta[0] > 0.5:
            return -math.inf, np.full(1, np.nan), np.full((1, 1), np.nan)
        return log_minus_x(theta)

    free = trust_maximize(capped, np.array([0.2]), rinit=1.0, iterlim=200)
    stopped = trust_maximize(capped, np.array([0.2]), rinit=1.0, iterlim=200,
                             max_infeasible=6)
    # without the option the radius shrinks until a step is too small to matter
    assert free.iterations > stopped.iterations
    assert stopped.converged and stopped.at_feasible_edge and not free.at_feasible_edge
    assert sum(s.trial_value == -math.inf for s in stopped.trace) == 6
    assert stopped.trace[-1].trial_value == -math.inf
    assert 0.45 < stopped.argument[0] <= 0.5
    assert stopped.argument[0] <= free.argument[0] <= 0.5
    check_trace(stopped)


def test_stop_before_small_step_saves_the_last_evaluation() -> None:
    """The same path as R's rule, less the final evaluation of a step below ``mterm``."""
    calls: dict[str, int] = {"trust": 0, "early": 0}

    def counted(name: str):
        def objective(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            calls[name] += 1
            return neg_rosenbrock(theta)
        return objective

    start = np.array([-1.2, 1.0])
    trust = trust_maximize(counted("trust"), start)
    early = trust_maximize(counted("early"), start, stop_before_small_step=True)
    assert trust.converged and early.converged
    check_trace(early)
    # R's rule stopped at its last iteration because that step's predicted change was
    # below mterm (or the change was below fterm); the early rule stops before it
    last = trust.trace[-1]
    if abs(last.predicted_change) < 1.4901161193847656e-08:
        assert early.iterations == trust.iterations - 1
        assert calls["early"] == calls["trust"] - 1
        for a, b in zip(early.trace, trust.trace[:-1], strict=True):
            np.testing.assert_array_equal(a.trial, b.trial)
        np.testing.assert_array_equal(early.argument, last.argument)
    else:
        assert early.iterations == trust.iterations
    # either way the point is at the maximum (1, 1) to the optimiser's tolerance: the
    # gain left, in the curvature's metric there, is of the order of mterm
    d = early.argument - 1.0
    curvature = -neg_rosenbrock(np.ones(2))[2]
    assert 0.5 * float(d @ curvature @ d) < 2 * 1.4901161193847656e-08
    # the result's value and derivatives are the evaluated point's own
    value, grad, _ = neg_rosenbrock(early.argument)
    assert early.value == value
    np.testing.assert_array_equal(early.gradient, grad)


def test_stop_before_small_step_at_the_maximum_takes_no_step() -> None:
    """Started at the maximum, the early rule evaluates only the start."""
    n_calls = 0

    def quad(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        nonlocal n_calls
        n_calls += 1
        return -float(theta @ theta), -2.0 * theta, -2.0 * np.eye(theta.size)

    result = trust_maximize(quad, np.zeros(2), stop_before_small_step=True)
    assert result.converged and result.iterations == 0 and n_calls == 1
    np.testing.assert_array_equal(result.argument, np.zeros(2))
