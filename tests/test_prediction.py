"""Predictions, fitted values, residuals and simulation (pyglmm.prediction)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logit

import pyglmm as pg
from pyglmm.errors import ArgumentError, DataError
from pyglmm.prediction import fitted, predict, residuals, simulate
from pyglmm.ranef import ranef
from pyglmm.simulate import simulate_glmm


def _fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pg.glmm(*args, **kwargs)


@pytest.fixture(scope="module")
def slopes():
    data = simulate_glmm("bernoulli", 600, {"g": 30}, beta=(0.2, 0.5),
                         nu=[[[1.0, 0.3], [0.3, 0.5]]], rng=3)
    return _fit("y ~ x + (1 + x | g)", None, data, family="bernoulli", m=1000, rng=1), data


@pytest.fixture(scope="module")
def counts():
    """Poisson with a factor fixed effect, an offset term and a random intercept."""
    rng = np.random.default_rng(7)
    n, n_groups = 300, 20
    g = rng.integers(0, n_groups, n)
    u = rng.normal(0.0, np.sqrt(0.3), n_groups)
    f = rng.choice(["a", "b", "c"], n)
    t = rng.uniform(0.5, 3.0, n)
    eta = 0.2 + np.select([f == "b", f == "c"], [0.4, -0.3], 0.0) + u[g] + np.log(t)
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "f": f, "t": t,
                         "g": [f"s{j}" for j in g]})
    return _fit("y ~ f + offset(log(t))", ["~ 0 + g"], data, family="poisson", m=1000,
                rng=2), data


def test_newdata_equal_to_fit_rows(slopes, counts):
    for fit, data in (slopes, counts):
        for re in ("conditional", "none"):
            a, b = predict(fit, re=re), predict(fit, newdata=data, re=re)
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())  # exactly
            assert a.index.equals(b.index)
        a = predict(fit, re="marginal", type="response", m=500, rng=4)
        b = predict(fit, data, re="marginal", type="response", m=500, rng=4)
        pd.testing.assert_frame_equal(a, b)


def test_conditional_is_plug_in_of_ranef(slopes):
    fit, data = slopes
    table = ranef(fit)
    u0 = table[table["column"] == "(Intercept)"].set_index("level")["mean"]
    u1 = table[table["column"] == "x"].set_index("level")["mean"]
    g = data["g"].astype(str)
    eta = (fit.beta[0] + fit.beta[1] * data["x"] + u0[g].to_numpy()
           + u1[g].to_numpy() * data["x"])
    np.testing.assert_allclose(predict(fit), eta, rtol=1e-12)
    np.testing.assert_allclose(predict(fit, re="none"), fit.beta[0] + fit.beta[1] * data["x"])
    np.testing.assert_allclose(predict(fit, type="response"), expit(eta), rtol=1e-12)
    np.testing.assert_allclose(fitted(fit), expit(eta), rtol=1e-12)


def test_conditional_beats_marginal_in_log_loss(slopes):
    fit, data = slopes
    y = data["y"].to_numpy()

    def log_loss(p):
        return -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))

    conditional = log_loss(predict(fit, type="response").to_numpy())
    marginal = log_loss(predict(fit, type="response", re="marginal")["fit"].to_numpy())
    none = log_loss(predict(fit, type="response", re="none").to_numpy())
    # random intercept variance ~1 over 30 groups of 20: the conditional predictions
    # use each group's own effect and gain ~0.09 nats per observation
    assert conditional < marginal - 0.02
    assert conditional < none - 0.02


def test_marginal_link_and_mcse(slopes):
    fit, data = slopes
    response = predict(fit, data.head(5), type="response", re="marginal", rng=3)
    link = predict(fit, data.head(5), type="link", re="marginal", rng=3)
    assert list(response.columns) == ["fit", "mcse"]
    np.testing.assert_allclose(link["fit"], logit(response["fit"]), rtol=1e-12)
    p = response["fit"]
    np.testing.assert_allclose(link["mcse"], response["mcse"] / (p * (1 - p)), rtol=1e-12)
    assert (response["mcse"] > 0).all() and (response["mcse"] < 0.01).all()
    # reproducible by default, and the marginal mean lies between 0 and the plug-in
    pd.testing.assert_frame_equal(predict(fit, data.head(5), re="marginal"),
                                  predict(fit, data.head(5), re="marginal"))


def test_marginal_matches_lognormal_mean(counts):
    fit, data = counts
    # E[exp(eta + u)] with u ~ N(0, nu) is exp(eta + nu / 2)
    exact = np.exp(predict(fit, re="none").to_numpy() + fit.nu[0] / 2)
    got = predict(fit, type="response", re="marginal", m=4000, rng=1)
    z = (got["fit"].to_numpy() - exact) / got["mcse"].to_numpy()
    # the same draws serve every row, so the z-scores are one draw: allow 4 SEs
    assert np.max(np.abs(z)) < 4.0


def test_se_fit(slopes):
    fit, data = slopes
    out = predict(fit, data.head(10), se_fit=True, re="none")
    x = np.column_stack([np.ones(10), data["x"].head(10)])
    v = fit.vcov().to_numpy()[:2, :2]
    np.testing.assert_allclose(out["se_fit"], np.sqrt(np.einsum("ij,jk,ik->i", x, v, x)),
                               rtol=1e-12)
    resp = predict(fit, data.head(10), se_fit=True, type="response")
    link = predict(fit, data.head(10), se_fit=True)
    p = expit(link["fit"])
    np.testing.assert_allclose(resp["se_fit"], link["se_fit"] * p * (1 - p), rtol=1e-12)
    with pytest.raises(ArgumentError, match="se_fit"):
        predict(fit, se_fit=True, re="marginal")


def test_new_levels(counts):
    fit, data = counts
    new = data.head(4).copy()
    new["g"] = ["s1", "unseen", "s2", "also_new"]
    population = predict(fit, new)
    none = predict(fit, new, re="none")
    assert population.iloc[1] == none.iloc[1] and population.iloc[3] == none.iloc[3]
    assert population.iloc[0] != none.iloc[0]
    assert population.index.equals(new.index)
    with pytest.raises(DataError, match="'also_new', 'unseen'.*'g'"):
        predict(fit, new, new_levels="error")
    predict(fit, new, re="none", new_levels="error")  # no random effects: no error


def test_unseen_fixed_level_is_named(counts):
    fit, data = counts
    new = data.head(3).copy()
    new["f"] = ["a", "zz", "b"]
    with pytest.raises(DataError, match=r"'f'.*\['zz'\]"):
        predict(fit, new)


def test_offsets_on_newdata(counts):
    fit, data = counts
    new = data.head(5).copy()
    base = predict(fit, new)
    doubled = new.assign(t=2 * new["t"])
    np.testing.assert_allclose(predict(fit, doubled), base + np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(predict(fit, new, offset=np.full(5, 0.5)), base + 0.5)
    with pytest.raises(ArgumentError, match="offset"):
        predict(fit, offset=np.zeros(len(data)))


def test_simulate_reproduces_mean_and_variance():
    data = simulate_glmm("poisson", 40, {"g": 8}, beta=(0.5, 0.4), nu=[0.3], rng=9)
    fit = _fit("y ~ x", ["~ 0 + g"], data, family="poisson", m=1000, rng=3)
    nsim = 2000
    sims = simulate(fit, nsim, rng=5).to_numpy()
    assert sims.shape == (40, nsim)
    marginal = predict(fit, type="response", re="marginal", m=20_000, rng=6)
    mu, nu = marginal["fit"].to_numpy(), fit.nu[0]
    # Poisson-lognormal: Var y = E mu + Var mu, Var mu = (E mu)^2 (e^nu - 1)
    var = mu + mu**2 * np.expm1(nu)
    se = np.sqrt(var / nsim + marginal["mcse"].to_numpy() ** 2)
    # 40 z-scores: |z| < 4 fails with probability ~3e-3 under the model
    assert np.max(np.abs(sims.mean(axis=1) - mu) / se) < 4.0
    # the relative SE of one row's sample variance is ~0.04 at nsim=2000; averaged
    # over 40 rows (correlated within groups) ~0.01: allow 0.05
    assert abs(np.mean(sims.var(axis=1, ddof=1) / var) - 1.0) < 0.05
    # the same seed, the same simulations
    np.testing.assert_array_equal(simulate(fit, 3, rng=1), simulate(fit, 3, rng=1))


def test_simulate_conditional_and_binomial():
    data = simulate_glmm("binomial", 120, {"g": 12}, beta=(0.0, 0.8), nu=[0.8], rng=2,
                         trials=6)
    fit = _fit("cbind(y, fail) ~ x", ["~ 0 + g"], data, family="binomial", m=1000, rng=1)
    sims = simulate(fit, 400, re="conditional", rng=2)
    assert list(sims.columns[:2]) == ["sim_1", "sim_2"]
    values = sims.to_numpy()
    assert values.min() >= 0 and values.max() <= 6 and np.all(values == np.round(values))
    # given the data the effects are near their conditional means: the simulated
    # means follow the fitted values (in counts) far closer than the marginal ones
    fitted_counts = 6 * fitted(fit).to_numpy()
    cond_error = np.mean(np.abs(values.mean(axis=1) - fitted_counts))
    new_error = np.mean(np.abs(simulate(fit, 400, rng=2).to_numpy().mean(axis=1)
                               - fitted_counts))
    assert cond_error < 0.5 * new_error


def test_residual_identities():
    data = simulate_glmm("binomial", 120, {"g": 12}, beta=(0.0, 0.8), nu=[0.8], rng=4,
                         trials=5)
    fit = _fit("cbind(y, fail) ~ x", ["~ 0 + g"], data, family="binomial", m=1000, rng=1)
    y, n = data["y"].to_numpy(float), 5.0
    p = fitted(fit).to_numpy()
    response = residuals(fit, "response").to_numpy()
    pearson = residuals(fit, "pearson").to_numpy()
    deviance = residuals(fit).to_numpy()  # the default, as lme4
    np.testing.assert_allclose(response, y / n - p, atol=1e-14)
    np.testing.assert_allclose(pearson * np.sqrt(n * p * (1 - p)), y - n * p, atol=1e-12)
    saturated = stats.binom.logpmf(y, n, y / n)
    model = stats.binom.logpmf(y, n, p)
    np.testing.assert_allclose(deviance**2, 2 * (saturated - model), rtol=1e-9, atol=1e-12)
    assert np.all(np.sign(deviance) == np.sign(y - n * p))


def test_residuals_with_weights():
    data = simulate_glmm("poisson", 120, {"g": 10}, beta=(0.3, 0.5), nu=[0.4], rng=8)
    w = np.random.default_rng(1).integers(1, 4, len(data)).astype(float)
    fit = _fit("y ~ x", ["~ 0 + g"], data, family="poisson", m=1000, rng=1, weights=w)
    y, mu = data["y"].to_numpy(float), fitted(fit).to_numpy()
    np.testing.assert_allclose(residuals(fit, "pearson"), np.sqrt(w) * (y - mu) / np.sqrt(mu),
                               rtol=1e-12)
    unit = 2 * (stats.poisson.logpmf(y, y) - stats.poisson.logpmf(y, mu))
    np.testing.assert_allclose(residuals(fit, "deviance") ** 2, w * unit, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(residuals(fit, "response"), y - mu, rtol=1e-12)


def test_bad_arguments(slopes):
    fit, data = slopes
    with pytest.raises(ArgumentError, match="type"):
        predict(fit, type="probability")
    with pytest.raises(ArgumentError, match="re"):
        simulate(fit, re="old")
    with pytest.raises(DataError, match="grouping column"):
        predict(fit, data.drop(columns="g"))
    assert predict(fit, data.drop(columns="g"), re="none").shape == (len(data),)


def test_results_methods_forward_to_the_post_estimation_functions():
    import pyglmm as pg
    from pyglmm import prediction
    from pyglmm import ranef as ranef_module

    data = pg.datasets.load_booth_hobert()
    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, m=500, rng=4)
    pd.testing.assert_frame_equal(fit.ranef(), ranef_module.ranef(fit))
    pd.testing.assert_series_equal(fit.predict(type="response"),
                                   prediction.predict(fit, type="response"))
    pd.testing.assert_series_equal(fit.fitted(), prediction.fitted(fit))
    pd.testing.assert_series_equal(fit.residuals("pearson"),
                                   prediction.residuals(fit, "pearson"))
    pd.testing.assert_frame_equal(fit.simulate(3, rng=2), prediction.simulate(fit, 3, rng=2))
