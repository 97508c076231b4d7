"""Hard data and numerical trouble: a clear answer, never a wrong one (issue 5).

* numerics through ``glmm`` (separation, huge ``|eta|``, a variance at the boundary,
  degenerate importance weights, the iteration limit), with small ``m``;
* a property test of the MCLA objective on random small designs, including extreme
  ``eta``: finite value, gradient equal to finite differences, weights that sum to one;
* no internal exception reaches the user for bad input, and the caller's data are
  never modified.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import round_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyglmm as pg
from pyglmm.design import build_design
from pyglmm.errors import (
    BoundaryWarning,
    ConvergenceWarning,
    DataWarning,
    ImportanceSamplingWarning,
    PyGLMMError,
    PyGLMMWarning,
)
from pyglmm.fitting import build_round
from pyglmm.problem import Problem

SAL = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
           family="bernoulli", varcomps_names=["F", "M"])


def _grouped(seed: int, n_groups: int = 12, size: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * size
    return pd.DataFrame({"x": rng.normal(size=n), "g": np.repeat(np.arange(n_groups), size)})


def _fit_recording(**kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit = pg.glmm(**kwargs)
    return fit, record


def _assert_finite_fit(fit):
    assert np.isfinite(fit.loglike_value)
    assert np.all(np.isfinite(fit.loglike_gradient))
    assert np.all(np.isfinite(fit.params().to_numpy()))


# -- separation and huge |eta| -------------------------------------------------------------
def test_complete_separation_ends_with_an_explicit_warning():
    data = _grouped(1)
    data["y"] = (data.x > 0).astype(int)
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=data, m=500, rng=1)
    _assert_finite_fit(fit)
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert any("complete separation" in msg and "diverge" in msg for msg in messages)


def test_quasi_complete_separation_ends_with_an_explicit_warning():
    """Two ties at x = 0 with the 'wrong' response: quasi-complete, still divergent."""
    data = _grouped(2)
    data["y"] = (data.x > 0).astype(int)
    data.loc[0, ["x", "y"]] = [0.0, 1 - data.loc[0, "y"]]  # one tie at the boundary
    data.loc[1, ["x", "y"]] = [0.0, 1 - data.loc[1, "y"]]
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=data, m=500, rng=1)
    _assert_finite_fit(fit)
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert any("quasi-complete separation" in msg for msg in messages)


def test_huge_covariate_scale_does_not_overflow():
    data = _grouped(3)
    rng = np.random.default_rng(3)
    data["x"] *= 1e4
    data["y"] = rng.integers(0, 2, len(data))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        fit, _ = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=data, m=500, rng=1)
    _assert_finite_fit(fit)


def _huge_start_data(family: str) -> pd.DataFrame:
    data = _grouped(4, n_groups=6)
    rng = np.random.default_rng(4)
    data["y"] = rng.poisson(2.0, len(data)) if family == "poisson" else rng.integers(0, 2, 30)
    return data


@pytest.mark.parametrize(("family", "start"), [("poisson", 400.0), ("bernoulli", 200.0)])
def test_start_at_huge_eta_is_finite(family, start):
    """A start with eta beyond the Poisson cap or deep in the logistic tails: no overflow."""
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=_huge_start_data(family),
                                 family=family, m=300, rng=1, par_init=[start, 0.0, 1.0],
                                 recentre=0, iterlim=50)
    assert np.isfinite(fit.loglike_value)
    assert np.all(np.isfinite(fit.loglike_gradient))
    assert not any(issubclass(w.category, RuntimeWarning) and "overflow" in str(w.message)
                   for w in record)


def test_start_at_huge_eta_recovers_with_recentring():
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g",
                                 data=_huge_start_data("bernoulli"), m=300, rng=1,
                                 par_init=[200.0, 0.0, 1.0], recentre=1, iterlim=50)
    _assert_finite_fit(fit)
    assert fit.trust_converged or any(issubclass(w.category, PyGLMMWarning) for w in record)
    assert abs(fit.beta[0]) < 5.0  # back from eta = 200 to the data


def test_start_beyond_the_poisson_cap_ends_unconverged_or_warned():
    """From eta = 400 the proposal is a point mass and no trust step is accepted: say so."""
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g",
                                 data=_huge_start_data("poisson"), family="poisson", m=300,
                                 rng=1, par_init=[400.0, 0.0, 1.0], recentre=0, iterlim=50)
    assert not fit.trust_converged or any(
        issubclass(w.category, ConvergenceWarning) for w in record
    )


@pytest.mark.parametrize("recentre", [0, 1])
def test_start_at_huge_eta_on_a_ridge_ends_at_the_mle_or_warned(recentre):
    """From eta = 60 the intercept and nu ~ 3300 trade off along a ridge of the likelihood
    (loglik about -80 there, -48.8 at the MLE); a fixed-sample MCLA can be stationary on
    it. The fit must either come back to the MLE or say that it did not."""
    data = _huge_start_data("poisson")
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=data,
                                 family="poisson", m=300, rng=1, par_init=[60.0, 0.0, 1.0],
                                 recentre=recentre, iterlim=50)
    _assert_finite_fit(fit)
    warned = any(issubclass(w.category, PyGLMMWarning) for w in record)
    if fit.trust_converged and not warned:
        reference, _ = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=data,
                                      family="poisson", m=1000, rng=2)
        assert fit.loglike_value > reference.loglike_value - 2.0
        assert abs(fit.beta[0] - reference.beta[0]) < 1.0


def test_poisson_crossed_start_at_eta_40_does_not_leak_linalg_error():
    """c''(eta) = e^40 swamps 1/nu in a crossed block: a clear error, not LinAlgError."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=24), "g": np.repeat(np.arange(6), 4),
                         "h": np.tile(np.arange(2), 12)})
    data["y"] = rng.poisson(2.0, 24)
    try:
        fit, _ = _fit_recording(fixed="y ~ x", random=["~ 0 + g", "~ 0 + h"], data=data,
                                family="poisson", m=200, rng=1, recentre=0, iterlim=30,
                                par_init=[40.0, 0.0, 1.0, 1.0])
    except PyGLMMError as exc:  # a clear error is acceptable
        assert isinstance(exc, ValueError) and "par_init" in str(exc)
        return
    assert np.isfinite(fit.loglike_value)


# -- a variance component at the boundary --------------------------------------------------
def _no_group_effect() -> pd.DataFrame:
    data = _grouped(0)
    data["y"] = np.random.default_rng(0).poisson(2.0, len(data))
    return data


def test_variance_driven_to_the_boundary_does_not_crash():
    """Round 1 ends at nu ~ 4e-10; the next round must start where its proposal is."""
    fit, _ = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=_no_group_effect(),
                            family="poisson", m=500, rng=1)
    _assert_finite_fit(fit)
    assert fit.nu[0] < 1e-3  # the data carry no group effect: the MLE of nu is ~ 0


def test_variance_at_the_boundary_is_reported_and_its_se_flagged():
    fit, record = _fit_recording(fixed="y ~ x", random="~ 0 + g", data=_no_group_effect(),
                                 family="poisson", m=1000, rng=1)
    assert fit.nu[0] < 1e-4
    messages = [str(w.message) for w in record if issubclass(w.category, BoundaryWarning)]
    assert any("boundary" in msg and "'g'" in msg for msg in messages)
    assert np.isnan(fit.se()["g"])


# -- degenerate importance weights ---------------------------------------------------------
def _degenerate_fit(salamander):
    return _fit_recording(**SAL, data=salamander, m=500, rng=1, importance="glmm",
                          blocks="joint", recentre=0)


def test_degenerate_weights_are_warned_with_what_to_do(salamander):
    fit, record = _degenerate_fit(salamander)
    assert fit.block_ess.min() < 0.01 * fit.m
    messages = [str(w.message).lower() for w in record
                if issubclass(w.category, ImportanceSamplingWarning)]
    assert any("effective sample size" in msg and "raise m" in msg for msg in messages)


def test_degenerate_weights_warning_names_the_mixture_probabilities(salamander):
    """With R's mixture proposal the remedy includes changing p1, p2, p3."""
    _, record = _degenerate_fit(salamander)
    messages = [str(w.message) for w in record
                if issubclass(w.category, ImportanceSamplingWarning)]
    assert any("p1" in msg and "p3" in msg for msg in messages)


def test_a_final_round_at_the_gate_edge_is_explained_not_called_unconverged(booth_hobert):
    """At the ESS gate's edge the MCLA has no stationary point: one warning says why."""
    import dataclasses

    from pyglmm.api import _warn_after_fit

    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=1_000, rng=3)
    last = dataclasses.replace(fit.rounds[-1], settled=False)
    not_a_maximum = dict(loglike_hessian=np.eye(fit.beta.size + fit.nu.size))
    for at_edge in (True, False):
        rounds = (*fit.rounds[:-1], dataclasses.replace(last, at_gate_edge=at_edge))
        edited = dataclasses.replace(fit, rounds=rounds, trust_converged=True, **not_a_maximum)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            _warn_after_fit(edited)
        categories = [w.category for w in record]
        assert ImportanceSamplingWarning in categories
        assert any("no reliable maximum" in str(w.message) for w in record)
        assert (ConvergenceWarning in categories) is (not at_edge)


# -- the iteration limit -------------------------------------------------------------------
def test_iterlim_warns_and_par_init_continues_the_fit(salamander):
    with pytest.warns(ConvergenceWarning, match=r"par_init=fit.params\(\)"):
        stopped = pg.glmm(**SAL, data=salamander, m=1000, rng=1, iterlim=1)
    assert not stopped.trust_converged and stopped.iterations == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        resumed = pg.glmm(**SAL, data=salamander, m=1000, rng=1, par_init=stopped.params())
    assert resumed.trust_converged
    full = pg.glmm(**SAL, data=salamander, m=1000, rng=1)
    tolerance = 4 * np.sqrt(resumed.mcse() ** 2 + full.mcse() ** 2) + 0.05
    assert np.all(np.abs(resumed.params() - full.params()) < tolerance)


# -- the objective on random small designs -------------------------------------------------
@st.composite
def small_models(draw):
    family = draw(st.sampled_from(["bernoulli", "binomial", "poisson"]))
    n_groups = draw(st.integers(2, 4))
    sizes = draw(st.lists(st.integers(1, 4), min_size=n_groups, max_size=n_groups))
    crossed = draw(st.booleans())
    extreme = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    slope = draw(st.booleans())
    if not extreme:
        beta = [draw(st.floats(-2.0, 2.0)) for _ in range(1 + slope)]
        x_scale = 1.0
    elif family == "poisson":
        # eta far below zero only: far above it a crossed block's precision is singular
        # in floating point (see test_poisson_crossed_start_at_eta_40_...)
        beta = [draw(st.floats(-500.0, 3.0))] + [draw(st.floats(-1.0, 1.0))] * slope
        x_scale = 1.0
    else:
        beta = [draw(st.floats(-60.0, 60.0)) for _ in range(1 + slope)]
        x_scale = 50.0
    nu = [draw(st.floats(0.05, 4.0)) for _ in range(1 + crossed)]
    importance = draw(st.sampled_from(["laplace", "glmm"]))
    return dict(family=family, sizes=sizes, crossed=crossed, seed=seed, slope=slope,
                beta=np.array(beta), nu=np.array(nu), importance=importance, x_scale=x_scale)


def _build(spec):
    rng = np.random.default_rng(spec["seed"])
    g = np.repeat(np.arange(len(spec["sizes"])), spec["sizes"])
    n = g.size
    data = pd.DataFrame({"g": g, "h": rng.integers(0, 2, n) if n > 1 else [0]})
    if spec["crossed"]:
        data["h"] = np.arange(n) % 2  # two levels of a crossed factor
        if n < 2:
            data["h"] = [0]
    data["x"] = rng.normal(size=n) * spec["x_scale"]
    if spec["family"] == "bernoulli":
        data["y"] = rng.integers(0, 2, n)
    elif spec["family"] == "binomial":
        data["s"] = rng.integers(0, 4, n)
        data["f"] = rng.integers(0, 4, n)
    else:
        data["y"] = rng.poisson(3.0, n)
    lhs = "cbind(s, f)" if spec["family"] == "binomial" else "y"
    fixed = f"{lhs} ~ {'x' if spec['slope'] else '1'}"
    random = ["~ 0 + g", "~ 0 + h"] if spec["crossed"] and n >= 2 else ["~ 0 + g"]
    fam = pg.get_family(spec["family"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        design = build_design(fixed, random, data, fam)
    return design, fam


def _log_weights(problem, store, n_chunks, theta):
    """Per-block log importance weights of every draw, from docs/method.md and 4.1."""
    p = problem.n_fixed
    beta, nu = theta[:p], theta[p:]
    counts = problem.blocks.component_counts.astype(float)
    rows = []
    for j in range(n_chunks):
        chunk = store(j)
        eta = chunk.zu + problem.x @ beta
        terms = problem.family.loglik_terms(eta, problem.y, problem.trials)
        loglik = np.add.reduceat(terms, problem.blocks.obs_starts, axis=1)
        log_prior = (-0.5 * counts.sum(axis=1) * np.log(2 * np.pi)
                     - 0.5 * counts @ np.log(nu) - 0.5 * chunk.stats @ (1.0 / nu))
        rows.append(loglik + log_prior - chunk.log_h)
    return np.concatenate(rows, axis=0), np.concatenate([store(j).zu for j in range(n_chunks)])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=small_models())
def test_objective_is_finite_with_correct_gradient_and_normalised_weights(spec):
    design, fam = _build(spec)
    if len(design.varcomps_names) != spec["nu"].size:
        spec["nu"] = spec["nu"][: design.n_components]
    problem = Problem.build(design, fam)
    beta, nu = spec["beta"][: design.n_fixed], spec["nu"]
    if beta.size < design.n_fixed:
        beta = np.resize(beta, design.n_fixed)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        theta = np.concatenate([beta, nu])
        round_spec = round_settings(m=90, chunk=40, seed=spec["seed"],
                                    importance=spec["importance"], p=(0.5, 0.25, 0.25))
        built = build_round(problem, round_spec, 0, theta, 90,
                            centre_effects=np.zeros(problem.n_effects))
        store, sizes, objective = built.store, built.sizes, built.objective
        ev = objective.evaluate(theta)

        # finite, whatever eta is
        assert np.isfinite(ev.value)
        assert np.all(np.isfinite(ev.gradient)) and np.all(np.isfinite(ev.hessian))
        assert np.all(ev.block_ess >= 1.0 - 1e-9) and np.all(ev.block_ess <= 90 + 1e-6)

        # the normalised weights sum to one and reproduce the value and the ESS
        log_w, zu = _log_weights(problem, store, len(sizes), theta)
        top = log_w.max(axis=0)
        weights = np.exp(log_w - top)
        weights /= weights.sum(axis=0)
        assert np.all(weights >= 0) and np.all(np.isfinite(weights))
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-12)
        block_values = top + np.log(np.exp(log_w - top).sum(axis=0)) - np.log(90)
        np.testing.assert_allclose(ev.block_values, block_values, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ev.block_ess, 1.0 / (weights**2).sum(axis=0), rtol=1e-8)

    # the gradient matches central differences where the cumulant is smooth (below
    # the Poisson cap, and away from eta so large that the value has no digits left)
    eta_max = np.abs(zu + problem.x @ beta).max()
    if eta_max > 30.0:
        return
    value_scale = 1.0 + abs(ev.value)
    for i in range(theta.size):
        step = 1e-6 * max(1.0, abs(theta[i]))
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        numeric = (objective.evaluate(up).value - objective.evaluate(down).value) / (2 * step)
        assert abs(numeric - ev.gradient[i]) <= 1e-5 * (value_scale + abs(ev.gradient[i])), (
            i, numeric, ev.gradient[i])


# -- no internal exception reaches the user ------------------------------------------------
def _bad_inputs(salamander):
    sal = salamander
    return [
        dict(data=sal.assign(Mate=sal.Mate + 1)),
        dict(data=sal.assign(Mate=sal.Mate.map({0: "False", 1: "True"}))),
        dict(data=sal.assign(Female=sal.Female.astype(float))),
        dict(data=sal.assign(Female="one")),
        dict(data=sal.iloc[:0]),
        dict(data=sal.assign(Mate=np.where(sal.index == 4, np.nan, sal.Mate))),
        dict(data=sal.drop(columns="Male")),
        dict(data=sal.to_numpy()),
        dict(data=sal.assign(RR=(sal.Cross == "R/R").astype(float)), fixed="Mate ~ Cross + RR"),
        dict(fixed="Mate ~ Cross +"),
        dict(fixed="Mate ~ Cross + (1 | Female)"),
        dict(fixed="Mate ~ np.log(Mate)"),
        dict(fixed=None),
        dict(random=None),
        dict(random=["~ 1 + Female", "~ 0 + Male"]),
        dict(random=["~ 0 + Female + Male"]),
        dict(family="binomial"),
        dict(family="poisson", data=sal.assign(Mate=sal.Mate - 0.5)),
        dict(family="gaussian"),
        dict(family=42),
        dict(m=0), dict(m=2.5), dict(m="10"),
        dict(p1=0.0, p2=0.5, p3=0.5), dict(p1=0.5, p2=0.6, p3=0.1),
        dict(zeta=0), dict(rmax=-1), dict(iterlim=0),
        dict(varcomps_equal=[2, 1]), dict(varcomps_equal=[1]), dict(varcomps_equal=3),
        dict(varcomps_names=["F"]), dict(varcomps_names=["F", "F"]), dict(varcomps_names=7),
        dict(par_init=[0.0] * 3), dict(par_init=[0, 0, 0, 0, 1, 0]),
        dict(par_init=[0, 0, 0, 0, 1, "x"]), dict(par_init={"a": 1}),
        dict(na_action="omit"), dict(rng="x"), dict(blocks=None), dict(importance=3),
        dict(recentre="sometimes"), dict(chunk_size=-2), dict(pilot_m=0.5),
    ]


def test_no_internal_exception_reaches_the_user(salamander):
    for index, change in enumerate(_bad_inputs(salamander)):
        call = dict(SAL) | {"data": salamander, "m": 50, "rng": 1} | change
        if "varcomps_equal" in change:
            call["varcomps_names"] = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PyGLMMWarning)
            try:
                pg.glmm(**call)
            except PyGLMMError as exc:
                assert isinstance(exc, ValueError | TypeError), (index, change)
                assert len(str(exc)) > 20, (index, change)
            except Exception as exc:  # pragma: no cover - the failure being tested
                pytest.fail(f"input #{index} {sorted(change)} leaked {type(exc).__name__}: {exc}")
            else:  # pragma: no cover
                pytest.fail(f"input #{index} {sorted(change)} was accepted")


# -- nothing lost --------------------------------------------------------------------------
def test_glmm_never_modifies_the_callers_data(salamander):
    data = salamander.copy()
    data["note"] = "kept"
    data.loc[7, "Mate"] = np.nan
    before = data.copy(deep=True)
    with pytest.warns(DataWarning, match="dropped 1 row"):
        fit = pg.glmm(**SAL, data=data, m=200, rng=1, na_action="drop", recentre=0)
    pd.testing.assert_frame_equal(data, before)
    assert fit.design is not None
    assert fit.design.dropped_rows == (7,)
    assert fit.design.n_obs == len(data) - 1


def test_na_action_drop_reports_exactly_the_dropped_rows(salamander):
    data = salamander.copy()
    data.index = [f"mating{i}" for i in range(len(data))]
    rows = ["mating3", "mating100", "mating359"]
    data.loc[rows[:2], "Cross"] = np.nan
    data.loc[rows[2], "Male"] = np.nan
    with pytest.warns(DataWarning, match="dropped 3 row") as record:
        fit = pg.glmm(**SAL, data=data, m=200, rng=1, na_action="drop", recentre=0)
    assert fit.design.dropped_rows == tuple(rows)
    assert all(row in str(record[0].message) for row in rows)
    with pytest.raises(pg.errors.DataError, match=r"'Cross': 2.*'Male': 1"):
        pg.glmm(**SAL, data=data, m=200, rng=1)
