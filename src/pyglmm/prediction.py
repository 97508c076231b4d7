"""Predictions, fitted values, residuals and simulation from a fitted GLMM.

The linear predictor of an observation is ``offset + x^T beta + sum_t z_t^T u_t``,
``u_t`` the effects of its level of term ``t``. :func:`predict` plugs in

* ``re="conditional"``: the conditional means of the random effects given the data
  (:func:`pyglmm.ranef.ranef`; lme4 plugs in the conditional modes);
* ``re="none"``: ``u = 0`` (lme4's ``re.form = NA``);
* ``re="marginal"``: the population-averaged mean
  :math:`E_{u \\sim N(0, D(\\psi))}[g^{-1}(\\eta)]`, by Monte Carlo.

On new data ``X`` is rebuilt from the fit's formulaic model spec (so factor levels,
contrasts and stateful transforms are those of the fit), ``Z`` from the terms' level
labels and columns, and the offset from the formula's ``offset(...)`` terms plus the
``offset=`` argument. :func:`fitted`, :func:`residuals` and :func:`simulate` work on
the fit's own rows.

The response scale is the inverse link: probabilities for the Bernoulli and binomial
families (per trial, as lme4), means for the Poisson.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, xlogy

from .datachecks import library_message
from .errors import ArgumentError, ArgumentTypeError, DataError, FormulaError
from .offsets import evaluate_expression
from .ranef import conditional_summary, resample_conditional
from .terms import INTERCEPT, RandomTerm

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Observations per slab of the Monte Carlo integral of ``re="marginal"`` (bounds the
#: (m, slab) arrays).
SLAB = 4096

_LOGIT = ("bernoulli", "binomial")


@dataclass(frozen=True)
class _TermRows:
    """One term's part of ``Z`` on some rows: level codes (-1: unseen) and values."""

    codes: IntArray  # (n,)
    values: FloatArray  # (n, k)


@dataclass(frozen=True)
class _Rows:
    """What the linear predictor needs on the rows being predicted."""

    x: FloatArray
    offset: FloatArray
    terms: tuple[_TermRows, ...]
    index: pd.Index


# -- building the rows ---------------------------------------------------------------
def _design(fit: Any) -> Any:
    design = getattr(fit, "design", None)
    if design is None:
        raise ArgumentError(
            "this fit was restored without its design (from_json); refit it with "
            "pyglmm.glmm to predict, compute residuals or simulate"
        )
    return design


def _fit_index(design: Any) -> pd.Index:
    """0-based positions, in the data as given, of the rows the fit used."""
    return pd.Index(design.kept_positions)


def _fit_rows(design: Any) -> _Rows:
    terms = tuple(
        _TermRows(term.codes,
                  np.column_stack([term.column_values(c) for c in range(term.n_columns)]))
        for term in design.random_terms
    )
    return _Rows(design.x, design.offset, terms, _fit_index(design))


def _fixed_matrix(design: Any, frame: pd.DataFrame) -> FloatArray:
    """``X`` on new data from the fit's model spec; unseen factor levels are an error."""
    from formulaic.errors import DataMismatchWarning

    spec = design.fixed_spec
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)
            with np.errstate(all="ignore"):
                matrix = spec.get_model_matrix(frame, na_action="ignore")
    except DataMismatchWarning as exc:
        for name, (kind, state) in spec.encoder_state.items():
            levels = state.get("categories") if isinstance(state, dict) else None
            if str(getattr(kind, "value", kind)) != "categorical" or levels is None:
                continue
            if name in frame.columns:
                seen = pd.Series(frame[name]).dropna().astype(str)
                unseen = sorted(set(seen) - {str(v) for v in levels})
                if unseen:
                    raise DataError(
                        f"newdata column {name!r} has level(s) {unseen} that the fit's data "
                        f"did not have (levels {[str(v) for v in levels]}); a fixed effect "
                        "cannot be predicted for an unseen level"
                    ) from None
        raise DataError(
            f"newdata has factor levels the fit's data did not have: {library_message(exc)}"
        ) from None
    except Exception as exc:
        raise FormulaError(
            f"cannot build the fixed design of {design.fixed_formula!r} on newdata: "
            f"{library_message(exc)}"
        ) from None
    x = np.asarray(matrix, dtype=np.float64)
    if x.shape != (len(frame), design.n_fixed):
        raise DataError(
            f"the fixed design on newdata has shape {x.shape}, expected "
            f"({len(frame)}, {design.n_fixed}); a term of the formula changed the number of "
            "rows or columns"
        )
    return x


def _labels(frame: pd.DataFrame, term: RandomTerm) -> pd.Series:
    """Each row's level label of ``term``, as :func:`pyglmm.datachecks.factor_codes` makes
    them (``str`` of each grouping value, joined by ``":"``)."""
    missing = [c for c in term.grouping if c not in frame.columns]
    if missing:
        raise DataError(
            f"newdata lacks the grouping column(s) {missing} of random term "
            f"{term.formula!r}; add them, or predict with re='none' or re='marginal'"
        )
    joined = frame[term.grouping[0]].astype(str)
    for column in term.grouping[1:]:
        joined = joined + ":" + frame[column].astype(str)
    return joined.reset_index(drop=True)


def _term_values(frame: pd.DataFrame, term: RandomTerm) -> FloatArray:
    """The term's columns on new data: (n, k)."""
    n = len(frame)
    if term.spec is not None:
        try:
            with np.errstate(all="ignore"):
                matrix = term.spec.get_model_matrix(frame, na_action="ignore")
        except Exception as exc:
            raise FormulaError(
                f"cannot build the columns of random term {term.formula!r} on newdata: "
                f"{library_message(exc)}"
            ) from None
        values = np.asarray(matrix, dtype=np.float64)
        if values.shape != (n, term.n_columns):
            raise DataError(f"the columns of random term {term.formula!r} on newdata have "
                            f"shape {values.shape}, expected ({n}, {term.n_columns})")
        return values
    if term.columns == (INTERCEPT,):
        return np.ones((n, 1))
    names = term.columns[0].split(":")
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(f"newdata lacks the column(s) {missing} of random term "
                        f"{term.formula!r}")
    return np.prod(np.column_stack([frame[c].to_numpy(np.float64) for c in names]),
                   axis=1)[:, None]


def _offset_vector(design: Any, frame: pd.DataFrame, offset: Any) -> FloatArray:
    out = np.zeros(len(frame))
    if offset is not None:
        if isinstance(offset, str):
            if offset not in frame.columns:
                raise DataError(f"offset column {offset!r} is not in newdata")
            values = frame[offset].to_numpy(np.float64)
        else:
            values = np.asarray(offset, dtype=np.float64).reshape(-1)
        if values.shape != (len(frame),):
            raise ArgumentError(
                f"offset has {values.size} values but newdata has {len(frame)} rows"
            )
        out = out + values
    for expr in design.offset_terms:
        out = out + evaluate_expression(expr, frame, f"offset({expr}) on newdata")
    return out


def _new_rows(design: Any, newdata: Any, offset: Any, need_levels: bool) -> _Rows:
    if isinstance(newdata, pd.DataFrame):
        frame = newdata
    else:
        try:
            frame = pd.DataFrame(newdata)
        except Exception as exc:
            raise ArgumentTypeError(
                f"newdata must be a DataFrame or a mapping of columns, not "
                f"{type(newdata).__name__} ({library_message(exc)})"
            ) from None
    x = _fixed_matrix(design, frame)
    terms = []
    for term in design.random_terms:
        values = _term_values(frame, term)
        if need_levels:
            lookup = pd.Index(term.levels)
            codes = lookup.get_indexer(_labels(frame, term)).astype(np.intp)
        else:
            codes = np.full(len(frame), -1, dtype=np.intp)
        terms.append(_TermRows(codes, values))
    return _Rows(x, _offset_vector(design, frame, offset), tuple(terms), frame.index)


# -- linear predictors ----------------------------------------------------------------
def _random_part(design: Any, rows: _Rows, u: FloatArray) -> FloatArray:
    """``Z u`` on ``rows`` for design-ordered ``u`` (q,); unseen levels contribute 0."""
    out = np.zeros(rows.x.shape[0])
    for t, part in enumerate(rows.terms):
        effects = design.level_effects(t)  # (levels, columns)
        seen = part.codes >= 0
        gathered = u[effects[np.where(seen, part.codes, 0)]]  # (n, k)
        out = out + np.where(seen, (gathered * part.values).sum(axis=1), 0.0)
    return out


def _inverse_link(fit: Any, eta: FloatArray) -> FloatArray:
    name = fit.family.name
    if name in _LOGIT:
        return np.asarray(expit(eta), dtype=np.float64)
    return np.asarray(fit.family.mean(eta, np.ones(1)), dtype=np.float64)


def _link(fit: Any, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The link of ``mu`` and its derivative ``d link / d mu``."""
    name = fit.family.name
    with np.errstate(divide="ignore"):
        if name in _LOGIT:
            return np.log(mu) - np.log1p(-mu), 1.0 / (mu * (1.0 - mu))
        if name == "poisson":
            return np.log(mu), 1.0 / mu
    raise ArgumentError(f"re='marginal' with type='link' is not available for family "
                        f"{name!r}")


def _sqrt_covariance(sigma: FloatArray) -> FloatArray:
    """A square root ``R`` with ``R R^T = sigma`` (positive semi-definite allowed)."""
    try:
        return np.asarray(np.linalg.cholesky(sigma), dtype=np.float64)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(sigma)
        return np.asarray(vectors * np.sqrt(np.clip(values, 0.0, None)), dtype=np.float64)


def _as_generator(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ArgumentTypeError(f"rng must be an int seed or a numpy Generator, not "
                            f"{type(rng).__name__}")


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ArgumentError(f"{name} must be one of {list(allowed)}, not {value!r}")
    return value


def _marginal_mean(
    fit: Any, rows: _Rows, fixed_eta: FloatArray, m: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Monte Carlo ``E[g^{-1}(eta + z^T b)]`` over ``b_t ~ N(0, Sigma_t)`` and its MCSE.

    The same ``m`` draws per term serve every row (each row's integral involves only
    its own levels' effects, which are all distributed as ``N(0, Sigma_t)``).
    """
    design = _design(fit)
    sigmas = design.layout.covariances(np.asarray(fit.nu, dtype=np.float64))
    draws = [rng.standard_normal((m, s.shape[0])) @ _sqrt_covariance(s).T for s in sigmas]
    n = fixed_eta.size
    mean = np.empty(n)
    mcse = np.empty(n)
    for start in range(0, n, SLAB):
        stop = min(start + SLAB, n)
        eta = np.broadcast_to(fixed_eta[start:stop], (m, stop - start)).copy()
        for part, b in zip(rows.terms, draws, strict=True):
            eta += b @ part.values[start:stop].T  # (m, slab)
        mu = _inverse_link(fit, eta)
        mean[start:stop] = mu.mean(axis=0)
        mcse[start:stop] = mu.std(axis=0, ddof=1) / np.sqrt(m)
    return mean, mcse


def predict(
    fit: Any,
    newdata: Any = None,
    type: str = "link",  # noqa: A002 - named as in R
    re: str = "conditional",
    new_levels: str = "population",
    se_fit: bool = False,
    offset: ArrayLike | str | None = None,
    rng: int | np.random.Generator | None = None,
    m: int = 2000,
) -> pd.Series | pd.DataFrame:
    """Predict the linear predictor or the mean response (lme4's ``predict``).

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm` (it must keep its design; ``re="conditional"``
        also needs its importance sample).
    newdata : DataFrame or mapping, optional
        Rows to predict. None: the rows of the fit, with the fit's offset.
    type : {"link", "response"}
        Linear predictor, or the inverse link of it (probabilities per trial for the
        Bernoulli and binomial families, means for the Poisson).
    re : {"conditional", "marginal", "none"}
        ``"conditional"``: the random effects at their conditional means given the data
        (:func:`pyglmm.ranef.ranef`). ``"none"``: all random effects 0. ``"marginal"``:
        the random effects integrated out, :math:`E[g^{-1}(\\eta)]` over
        ``u ~ N(0, D(psi))`` by Monte Carlo with ``m`` draws of each term's effects;
        with ``type="link"`` the link of that marginal mean.
    new_levels : {"population", "error"}
        With ``re="conditional"``, levels of a grouping factor that the fit did not see
        get random effects 0 (``"population"``) or raise an error naming the term and
        levels (``"error"``). Ignored by the other ``re``.
    se_fit : bool
        Also return delta-method standard errors from the fixed-effects block ``V`` of
        ``fit.vcov()``: ``sqrt(x_i^T V x_i)`` on the link scale, times ``d mu / d eta``
        on the response scale. Like lme4's ``predict(se.fit=TRUE)`` this ignores the
        uncertainty of the random effects (and of the variance components). Only with
        ``re="none"`` or ``"conditional"``.
    offset : array-like or str, optional
        With ``newdata``: an offset per row (or the name of a column of ``newdata``),
        added to the formula's ``offset(...)`` terms, which are evaluated on ``newdata``.
        Without ``newdata`` the fit's own offset is used and ``offset`` must be None.
    rng : int or numpy.random.Generator, optional
        Seed of the Monte Carlo draws of ``re="marginal"`` (default 0: reproducible).
    m : int
        Number of Monte Carlo draws for ``re="marginal"``.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like ``newdata`` (without it: the 0-based positions of the fit's rows in
        the data as given). A Series named ``"fit"``; a DataFrame with columns ``fit``
        and ``se_fit`` when ``se_fit``; a DataFrame with columns ``fit`` and ``mcse``
        (Monte Carlo standard error of ``fit``; on the link scale by the delta method)
        for ``re="marginal"``.

    Raises
    ------
    pyglmm.errors.DataError
        A factor level of a fixed effect, or (``new_levels="error"``) of a grouping
        factor, that the fit's data did not have; a missing column.
    pyglmm.errors.ArgumentError
        An invalid option.

    Examples
    --------
    >>> import pyglmm as pg
    >>> from pyglmm.prediction import predict
    >>> data = pg.datasets.load_booth_hobert()
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", data, m=2000, rng=1)
    >>> predict(fit, data.head(3), type="response").shape
    (3,)
    """
    _choice(type, "type", ("link", "response"))
    _choice(re, "re", ("conditional", "marginal", "none"))
    _choice(new_levels, "new_levels", ("population", "error"))
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or m < 2:
        raise ArgumentError(f"m must be an integer of at least 2, not {m!r}")
    if se_fit and re == "marginal":
        raise ArgumentError("se_fit is available with re='none' or re='conditional' only")
    design = _design(fit)
    if newdata is None:
        if offset is not None:
            raise ArgumentError("offset= applies to newdata; without newdata the fit's own "
                                "offset is used")
        rows = _fit_rows(design)
    else:
        rows = _new_rows(design, newdata, offset, need_levels=re == "conditional")
    beta = np.asarray(fit.beta, dtype=np.float64)
    eta = rows.offset + rows.x @ beta
    if re == "marginal":
        mean, mcse = _marginal_mean(fit, rows, eta, int(m), _as_generator(rng))
        if type == "response":
            return pd.DataFrame({"fit": mean, "mcse": mcse}, index=rows.index)
        link, slope = _link(fit, mean)
        return pd.DataFrame({"fit": link, "mcse": mcse * slope}, index=rows.index)
    if re == "conditional":
        if new_levels == "error":
            for term, part in zip(design.random_terms, rows.terms, strict=True):
                if np.any(part.codes < 0):
                    unseen = sorted(set(_labels(pd.DataFrame(newdata), term)[part.codes < 0]))
                    raise DataError(
                        f"random term {term.formula!r}: newdata has level(s) {unseen[:10]} "
                        f"of {term.name!r} that the fit did not see; pass "
                        "new_levels='population' to predict them with random effects 0"
                    )
        u = conditional_summary(fit, cond_var=False).mean
        eta = eta + _random_part(design, rows, u)
    value = _inverse_link(fit, eta) if type == "response" else eta
    if not se_fit:
        return pd.Series(value, index=rows.index, name="fit")
    p = beta.size
    v = np.asarray(fit.vcov(), dtype=np.float64)[:p, :p]
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", rows.x, v, rows.x), 0.0))
    if type == "response":
        se = se * fit.family.variance(eta, np.ones(1))
    return pd.DataFrame({"fit": value, "se_fit": se}, index=rows.index)


def _conditional_eta(fit: Any) -> FloatArray:
    design = _design(fit)
    u = conditional_summary(fit, cond_var=False).mean
    return np.asarray(design.offset + design.x @ np.asarray(fit.beta, np.float64)
                      + design.z_times(u), dtype=np.float64)


def fitted(fit: Any) -> pd.Series:
    """Conditional fitted values on the response scale (lme4's ``fitted``).

    ``g^{-1}(offset + X beta + Z u)`` with ``u`` the conditional means of the random
    effects (:func:`pyglmm.ranef.ranef`): probabilities per trial for the Bernoulli and
    binomial families, means for the Poisson.

    Parameters
    ----------
    fit : GLMMResults

    Returns
    -------
    pandas.Series
        Indexed by the 0-based positions of the fit's rows in the data as given.
    """
    design = _design(fit)
    return pd.Series(_inverse_link(fit, _conditional_eta(fit)), index=_fit_index(design),
                     name="fitted")


def _unit_deviance(name: str, y: FloatArray, mean: FloatArray, trials: FloatArray) -> FloatArray:
    """``2 [log f(y | saturated) - log f(y | mean)]`` per observation (``mean`` in counts)."""
    if name in _LOGIT:
        return np.asarray(2.0 * (xlogy(y, y / mean) + xlogy(trials - y, (trials - y)
                                                            / (trials - mean))), np.float64)
    if name == "poisson":
        return np.asarray(2.0 * (xlogy(y, y / mean) - (y - mean)), np.float64)
    raise ArgumentError(f"deviance residuals are not available for family {name!r}")


def residuals(fit: Any, type: str = "deviance") -> pd.Series:  # noqa: A002 - as R
    """Conditional residuals of the fit's rows (lme4's ``residuals``).

    With ``mu_i`` the conditional mean in counts (``n_i p_i`` for the binomial, where
    ``p_i`` is :func:`fitted`) and ``V_i`` the family's variance there
    (``n_i p_i (1 - p_i)``; ``mu_i`` for the Poisson):

    * ``"response"``: ``y_i / n_i - p_i`` for the Bernoulli and binomial families (the
      proportion scale, as lme4 and R's ``glm``; ``n_i = 1`` for the Bernoulli), ``y_i -
      mu_i`` for the Poisson; that is, observed minus :func:`fitted`;
    * ``"pearson"``: ``sqrt(w_i) (y_i - mu_i) / sqrt(V_i)``;
    * ``"deviance"``: ``sign(y_i - mu_i) sqrt(w_i d_i)`` with ``d_i`` the unit deviance
      ``2 [log f(y_i | saturated) - log f(y_i | mu_i)]``, so the squares sum to the
      conditional deviance.

    ``w_i`` are the prior weights (1 without them); response residuals are unweighted.

    Parameters
    ----------
    fit : GLMMResults
    type : {"deviance", "pearson", "response"}

    Returns
    -------
    pandas.Series
        Indexed by the 0-based positions of the fit's rows in the data as given.
    """
    _choice(type, "type", ("deviance", "pearson", "response"))
    design = _design(fit)
    eta = _conditional_eta(fit)
    y, trials = design.y, design.trials
    mean, variance = fit.family.mean_variance(eta, trials)
    weights = np.ones_like(y) if design.weights is None else design.weights
    if type == "response":
        out = y / trials - mean / trials
    elif type == "pearson":
        out = np.sqrt(weights) * (y - mean) / np.sqrt(variance)
    else:
        d = np.maximum(_unit_deviance(fit.family.name, y, mean, trials), 0.0)
        out = np.sign(y - mean) * np.sqrt(weights * d)
    return pd.Series(out, index=_fit_index(design), name=type)


def _new_effects(design: Any, nu: FloatArray, n: int, rng: np.random.Generator) -> FloatArray:
    """``n`` design-ordered random-effect vectors from ``N(0, D(psi))``."""
    out = np.empty((n, design.n_effects))
    for t, sigma in enumerate(design.layout.covariances(nu)):
        effects = design.level_effects(t)  # (levels, k)
        z = rng.standard_normal((n,) + effects.shape)
        out[:, effects] = z @ _sqrt_covariance(sigma).T
    return out


def simulate(
    fit: Any,
    nsim: int = 1,
    rng: int | np.random.Generator | None = None,
    re: str = "new",
) -> pd.DataFrame:
    """Simulate responses on the fit's rows from the fitted model (lme4's ``simulate``).

    Parameters
    ----------
    fit : GLMMResults
    nsim : int
        Number of simulated responses per row.
    rng : int or numpy.random.Generator, optional
        Seed (default 0: reproducible).
    re : {"new", "conditional"}
        ``"new"``: every simulation draws new random effects from ``N(0, D(psi))`` at
        the estimate (lme4's ``use.u = FALSE``). ``"conditional"``: every simulation
        draws the random effects from their conditional distribution given the data, by
        resampling the fit's importance sample with its normalised weights, block by
        block (:func:`pyglmm.ranef.resample_conditional`).

    Returns
    -------
    pandas.DataFrame
        Columns ``sim_1`` ... ``sim_nsim``: responses (successes out of the rows'
        trials for the binomial), indexed by the 0-based positions of the fit's rows in
        the data as given.
    """
    _choice(re, "re", ("new", "conditional"))
    if not isinstance(nsim, int | np.integer) or isinstance(nsim, bool) or nsim < 1:
        raise ArgumentError(f"nsim must be a positive integer, not {nsim!r}")
    design = _design(fit)
    generator = _as_generator(rng)
    nsim = int(nsim)
    if re == "new":
        u = _new_effects(design, np.asarray(fit.nu, dtype=np.float64), nsim, generator)
    else:
        u = resample_conditional(fit, nsim, generator)
    name = fit.family.name
    if name not in _LOGIT and name != "poisson":
        raise ArgumentError(f"simulate is not available for family {name!r}")
    fixed = design.offset + design.x @ np.asarray(fit.beta, np.float64)
    trials = design.trials.astype(np.int64)
    out = np.empty((design.n_obs, nsim))
    step = max(1, (SLAB * 256) // max(design.n_obs, 1))  # simulations per slab
    for start in range(0, nsim, step):
        stop = min(start + step, nsim)
        p = _inverse_link(fit, fixed[None, :] + design.z_times(u[start:stop]))
        y = generator.binomial(trials, p) if name in _LOGIT else generator.poisson(p)
        out[:, start:stop] = y.T
    return pd.DataFrame(out, index=_fit_index(design),
                        columns=[f"sim_{k + 1}" for k in range(nsim)])
