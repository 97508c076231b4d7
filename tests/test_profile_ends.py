"""Profile-interval ends re-centred on fresh samples, against the exact profile.

Booth and Hobert's data (10 clusters of 15 Bernoulli responses, one variance) are small
enough for the exact log-likelihood by quadrature, so the exact profile-interval ends
are known. The tolerance is 3 of each end's reported MCSE: the re-centred end's MCSE
counts the Monte Carlo variance of both likelihood values, and what it leaves out
(the log of a mean is biased by about half its variance) is of order ``1/ESS`` per
cluster, far below it at m = 2,000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import pyglmm as pg
from pyglmm import profile_ends
from pyglmm.errors import ArgumentError, ImportanceSamplingWarning
from pyglmm.profiles import _Profiler, targets

CUT = stats.chi2.ppf(0.95, 1)


@pytest.fixture(scope="module")
def booth():
    data = pg.datasets.load_booth_hobert()
    return data, pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, m=2000, rng=2)


def _exact_loglik(data: pd.DataFrame, beta: float, nu: float) -> float:
    """log L(beta, nu) by quadrature over each cluster's effect (+-8 SD, 801 nodes: the
    trapezoid rule on this smooth integrand agrees with 4,001 nodes to 1e-9 in the ends)."""
    y, x = data["y"].to_numpy(), data["x1"].to_numpy()
    _, cluster = np.unique(data["z1"].astype(str), return_inverse=True)
    u = np.linspace(-8.0, 8.0, 801) * np.sqrt(nu)
    eta = beta * x[:, None] + u[None, :]
    log_f = y[:, None] * eta - np.logaddexp(0.0, eta)
    per = np.zeros((cluster.max() + 1, u.size))
    np.add.at(per, cluster, log_f)
    per += -0.5 * u**2 / nu - 0.5 * np.log(2.0 * np.pi * nu)
    return float(np.sum(logsumexp(per, axis=1) + np.log(u[1] - u[0])))


@pytest.fixture(scope="module")
def exact(booth):
    return _exact_ends(booth[0])


def _exact_ends(data: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """The exact 95% profile-interval ends of ``x1`` and ``z1``."""
    def loglik(t):
        return _exact_loglik(data, t[0], np.exp(t[1]))

    best = optimize.minimize(lambda t: -loglik(t), [6.0, 0.5], method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-12})
    top, (beta_hat, log_nu_hat) = -best.fun, best.x

    def profile_x1(b):
        return -optimize.minimize_scalar(lambda s: -loglik([b, s]), bounds=(-8.0, 5.0),
                                         method="bounded", options={"xatol": 1e-10}).fun

    def profile_z1(nu):
        return -optimize.minimize_scalar(lambda b: -loglik([b, np.log(nu)]),
                                         bounds=(0.0, 30.0), method="bounded",
                                         options={"xatol": 1e-10}).fun

    nu_hat = np.exp(log_nu_hat)
    out = {}
    for name, prof, hat, lo, hi in (("x1", profile_x1, beta_hat, 1.0, 20.0),
                                    ("z1", profile_z1, nu_hat, 1e-3, 60.0)):
        gap = lambda v, prof=prof: 2.0 * (top - prof(v)) - CUT  # noqa: E731
        out[name] = (optimize.brentq(gap, lo, hat, xtol=1e-10),
                     optimize.brentq(gap, hat, hi, xtol=1e-10))
    return out


def test_recentred_ends_match_the_exact_profile(booth, exact):
    data, fit = booth
    recentred = fit.confint(method="profile")
    own = fit.confint(method="profile", recentre=0)
    for name, (lower, upper) in exact.items():
        for column, mcse, truth in (("0.025", "mcse_lower", lower),
                                    ("0.975", "mcse_upper", upper)):
            error = recentred.loc[name, column] - truth
            assert abs(error) <= 3.0 * recentred.loc[name, mcse], (name, column, error)
    # on the fit's own sample the variance's upper end is far too low: 1.2 below the
    # exact 10.07 (2.2 of its own MCSE); re-centred, it is within 0.1
    own_error = exact["z1"][1] - own.loc["z1", "0.975"]
    assert own_error > 0.5
    assert abs(recentred.loc["z1", "0.975"] - exact["z1"][1]) < own_error / 5.0


def test_recentred_end_solves_the_cut_on_its_own_sample(booth):
    """D(v*) = 2 (l(theta_hat) on the fit's sample - l_p(v*) on the re-centred one)."""
    _, fit = booth
    with pytest.warns(ImportanceSamplingWarning, match="z1 upper was still moving after 1"):
        ci = fit.confint(method="profile", parm="z1", recentre=1)  # one round
    upper = ci.loc["z1", "0.975"]
    (target,) = targets(fit, "z1")
    estimate, se = fit.nu[0], float(fit.se().iloc[1])
    first = _Profiler(fit, target)
    found, point = profile_ends._solve(first, target, estimate, se, 1.0, CUT)
    assert found == "root" and point.deviance == pytest.approx(CUT, abs=1e-5)
    sample = profile_ends._recentred_sample(fit, target, 1.0, 1, point.theta)
    again = _Profiler(fit, target, objective=sample,
                      value_hat=(first.value_hat, first.hat_variance), start=point.theta)
    assert again.point(upper).deviance == pytest.approx(CUT, abs=1e-5)
    # the sample is centred near the end: its weights there are nearly even
    assert sample.evaluate(again.last).block_ess.min() > 0.5 * fit.m


def test_recentred_ends_do_not_depend_on_what_else_is_asked(booth):
    _, fit = booth
    both = fit.confint(method="profile")
    alone = fit.confint(method="profile", parm=["z1"])
    pd.testing.assert_frame_equal(alone, both.loc[["z1"]], check_exact=True)
    pd.testing.assert_frame_equal(fit.confint(method="profile"), both, check_exact=True)


def test_more_rounds_move_the_ends_by_their_monte_carlo_error_only(booth):
    _, fit = booth
    with pytest.warns(ImportanceSamplingWarning, match="still moving"):
        one = fit.confint(method="profile", recentre=1)
    three = fit.confint(method="profile", recentre=3)
    for column, mcse in (("0.025", "mcse_lower"), ("0.975", "mcse_upper")):
        spread = np.hypot(one[mcse], three[mcse])
        assert (np.abs(one[column] - three[column]) <= 4.0 * spread + 1e-12).all()


def test_recentre_argument_is_checked(booth):
    _, fit = booth
    with pytest.raises(ArgumentError, match="recentre must be 0 or more"):
        fit.confint(method="profile", recentre=-1)
    with pytest.raises(ArgumentError, match="recentre applies to method='profile'"):
        fit.confint(recentre=1)


def test_a_far_end_is_reached_through_the_window(booth, exact):
    """Started 40% below the exact upper end of z1, a re-centred round stops at the edge
    of its window (1 SE), and further rounds reach the end."""
    data, fit = booth
    (target,) = targets(fit, "z1")
    estimate, se = fit.nu[0], float(fit.se().iloc[1])
    start = 0.6 * exact["z1"][1]
    first = _Profiler(fit, target)
    point = first.point(start)
    sample = profile_ends._recentred_sample(fit, target, 1.0, 1, point.theta)
    again = _Profiler(fit, target, objective=sample,
                      value_hat=(first.value_hat, first.hat_variance), start=point.theta)
    found, edge = profile_ends._solve_near(again, target, estimate, start, se, 1.0, CUT)
    assert found == "edge" and edge.value == pytest.approx(start + se)
    assert edge.deviance < CUT
