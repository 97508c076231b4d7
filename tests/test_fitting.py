"""The fit driver: its round builder builds the rounds the fit used, and it records them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import pyglmm as pg
from pyglmm.errors import ImportanceSamplingWarning
from pyglmm.fitting import build_round, run_fit
from pyglmm.laplace import laplace_fit
from pyglmm.parallel import chunk_seeds
from pyglmm.pql import SIGMA_FLOOR, pql_centre
from pyglmm.problem import Problem

SAL = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
           family="bernoulli", varcomps_names=["F", "M"])


def _problem(fit: pg.GLMMResults) -> Problem:
    assert fit.design is not None
    return Problem.build(fit.design, fit.family, joint=fit.settings.blocks == "joint")


def _first_round_value(fit: pg.GLMMResults, theta: np.ndarray, **options) -> float:
    """The MCLA of a rebuilt first round at the first round's estimate."""
    first = fit.rounds[0]
    with threadpool_limits(limits=1, user_api="blas"):
        built = build_round(_problem(fit), fit.settings, 0, theta, first.m, **options)
        assert built.sampler.kind == first.sampler
        return built.objective.evaluate(first.estimate).value


def test_round_zero_from_the_start_is_the_fits_first_round(booth_hobert):
    start = np.array([4.0, 1.5])
    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=700, rng=5, par_init=start)
    assert _first_round_value(fit, start) == fit.rounds[0].value


def test_round_zero_at_the_laplace_centre_is_the_fits_first_round(salamander):
    fit = pg.glmm(**SAL, data=salamander, m=600, rng=8)
    problem = _problem(fit)
    with threadpool_limits(limits=1, user_api="blas"):
        pql = pql_centre(problem)
        laplace = laplace_fit(problem, pql.beta, pql.variances)
    theta = np.concatenate([laplace.beta, laplace.nu])
    assert fit.rounds[0].m == min(fit.m, fit.settings.pilot_m)
    assert _first_round_value(fit, theta) == fit.rounds[0].value


@pytest.mark.filterwarnings("ignore::pyglmm.errors.ImportanceSamplingWarning")
def test_round_zero_of_the_mixture_is_centred_at_pql(salamander):
    fit = pg.glmm(**SAL, data=salamander, m=500, rng=4, importance="glmm", recentre=0)
    problem = _problem(fit)
    with threadpool_limits(limits=1, user_api="blas"):
        pql = pql_centre(problem)
    theta = np.concatenate([pql.beta, pql.variances])
    value = _first_round_value(fit, theta, centre_effects=pql.u)
    assert value == fit.rounds[0].value == fit.loglike_value


def test_a_round_holds_its_centre_sample_and_seeds(booth_hobert):
    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=300, rng=9, recentre=0,
                  chunk_size=128)
    built = build_round(_problem(fit), fit.settings, 3, np.array([1.0, 1e-9]), 300)
    assert built.index == 3 and built.m == 300
    assert built.theta.tolist() == [1.0, SIGMA_FLOOR**2]  # nu raised to the floor
    assert built.sizes == (128, 128, 44) and built.objective.n_draws == 300
    expected = chunk_seeds(np.random.SeedSequence(9), 3, 3)
    assert [s.spawn_key for s in built.store.seeds] == [s.spawn_key for s in expected]
    assert built.shift is not None and built.mode is not None
    assert built.mode_factor is not None


def test_run_fit_is_the_fit_of_glmm(salamander):
    fit = pg.glmm(**SAL, data=salamander, m=500, rng=3, recentre=1)
    assert fit.design is not None
    with threadpool_limits(limits=1, user_api="blas"):
        again = run_fit(fit.design, fit.family, fit.settings)
    assert np.array_equal(again.params().to_numpy(), fit.params().to_numpy())
    assert again.settings == fit.settings and len(again.rounds) == 2


def test_the_fit_records_its_settings(salamander):
    fit = pg.glmm(**SAL, data=salamander, m=400, rng=6, recentre=2, pilot_m=250,
                  zeta=9.0, rmax=100.0, iterlim=50, chunk_size=150)
    settings = fit.settings
    assert (settings.m, settings.recentre, settings.pilot_m) == (400, 2, 250)
    assert (settings.zeta, settings.zeta_per_block) == (9.0, False)
    assert (settings.rmax, settings.iterlim, settings.chunk_size) == (100.0, 50, 150)
    assert settings.shift and settings.do_pql and settings.par_init is None
    assert [r.m for r in fit.rounds] == [250, 250, 400]
    assert fit.settings.to_dict()["recentre"] == 2


def test_warnings_point_at_the_call_of_glmm(salamander):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pg.glmm(**SAL, data=salamander, m=500, rng=1, importance="glmm", blocks="joint",
                recentre=0)
    mine = [w for w in record if issubclass(w.category, ImportanceSamplingWarning)]
    assert mine and all(w.filename == __file__ for w in mine)


def test_rounds_stop_before_a_step_below_the_tolerance(salamander):
    """Pilot and final rounds stop before evaluating a step whose predicted gain is below
    ``sqrt(eps)``, at a point whose remaining Newton gain on its own sample,
    ``g' (-H)^{-1} g / 2``, is below it."""
    fit = pg.glmm(**SAL, data=salamander, m=2000, rng=3, pilot_m=500)
    mterm = float(np.sqrt(np.finfo(float).eps))
    pilot, final = fit.rounds[0], fit.rounds[-1]
    assert len(fit.rounds) == 2 and pilot.converged and final.converged
    for rnd in (pilot, final):
        assert all(abs(step.predicted_change) >= mterm for step in rnd.trace)
        assert rnd.n_evaluations == rnd.iterations + 1
        np.testing.assert_array_equal(rnd.estimate, rnd.trace[-1].trial)
    gradient, hessian = fit.loglike_gradient, fit.loglike_hessian
    assert 0.5 * float(gradient @ np.linalg.solve(-hessian, gradient)) < mterm
    problem = _problem(fit)  # the pilot's end, on the pilot's own sample
    with threadpool_limits(limits=1, user_api="blas"):
        pql = pql_centre(problem)
        laplace = laplace_fit(problem, pql.beta, pql.variances)
        start = np.concatenate([laplace.beta, laplace.nu])
        built = build_round(problem, fit.settings, 0, start, pilot.m)
        ev = built.objective.evaluate(pilot.estimate)
    assert ev.value == pilot.value
    assert 0.5 * float(ev.gradient @ np.linalg.solve(-ev.hessian, ev.gradient)) < mterm


def test_caching_objective_keeps_the_last_two_evaluations():
    """The optimiser's current point after a rejected (or skipped) trial is the point
    before last: its closing evaluation must not pass over the sample again."""
    from types import SimpleNamespace

    from pyglmm.fitting import _CachingObjective

    calls: list[float] = []

    class Inner:
        def evaluate(self, theta):
            calls.append(float(theta[0]))
            return SimpleNamespace(value=-float(theta @ theta), gradient=-2 * theta,
                                   hessian=-2 * np.eye(theta.size),
                                   block_ess=np.array([100.0]))

    objective = _CachingObjective(Inner())  # type: ignore[arg-type]
    a, b, c = (np.array([x, 0.5]) for x in (1.0, 2.0, 3.0))
    first = objective.evaluation_at(a)
    objective.evaluation_at(b)
    assert objective.evaluation_at(a) is first and objective.evaluation_at(b) is not first
    assert calls == [1.0, 2.0]
    objective.evaluation_at(c)  # now b and c are kept
    objective.evaluation_at(a)
    assert calls == [1.0, 2.0, 3.0, 1.0]
