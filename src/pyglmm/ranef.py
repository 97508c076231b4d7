"""Conditional means and SDs of the random effects given the data (lme4's ``ranef``).

At the Monte Carlo MLE ``theta = (beta, psi)`` the fit's final importance sample
already approximates the posterior of the random effects: draw ``u_k`` of block ``b``
has the (unnormalised) importance weight ``exp(b_{bk}(theta))`` of docs/method.md.
Self-normalising the weights within each block gives

.. math::

    E[u_j \\mid y] \\approx \\sum_k v_{bk} u_{kj},\\qquad
    \\mathrm{Var}[u_j \\mid y] \\approx \\sum_k v_{bk} (u_{kj} - \\bar u_j)^2,\\qquad
    v_{bk} = e^{b_{bk}} / \\textstyle\\sum_l e^{b_{bl}},

for every effect ``j`` of block ``b``. The sums are accumulated chunk by chunk (a
running maximum of the log weights and a pairwise merge of weighted centred moments),
so memory stays at one chunk. Blocks whose Kish effective sample size is below
``min_ess`` fall back to the conditional mode and the inverse curvature (a Laplace
approximation of the posterior) with an
:class:`~pyglmm.errors.ImportanceSamplingWarning`.

Public names: :func:`ranef` (the table), :func:`conditional_summary` (the same as
design-ordered arrays) and :func:`resample_conditional` (draws from the weighted
sample, used by :func:`pyglmm.simulate_fit.simulate`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.linalg import solve_triangular

from .blocklinalg import BlockCholesky, solve_columns
from .crossed import CrossedFactor
from .errors import ArgumentError, ImportanceSamplingWarning
from .importance import conditional_mode

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Kish effective sample size below which a block's weighted sample is called
#: degenerate and the conditional mode is used instead.
MIN_ESS = 10.0

IMPORTANCE = "importance"
MODE = "conditional mode"


@dataclass(frozen=True)
class ConditionalSummary:
    """Conditional moments of every random effect, in design order.

    Attributes
    ----------
    mean, sd : ndarray, shape (q,)
        Conditional mean and standard deviation of each random effect given the data.
    ess : ndarray, shape (q,)
        Kish effective sample size of the effect's block.
    importance : ndarray of bool, shape (q,)
        Whether the moments come from the importance sample (False: conditional mode).
    block : ndarray of int, shape (q,)
        The effect's block.
    """

    mean: FloatArray
    sd: FloatArray
    ess: FloatArray
    importance: NDArray[np.bool_]
    block: IntArray


def _theta(fit: Any) -> FloatArray:
    return np.concatenate([np.asarray(fit.beta, np.float64), np.asarray(fit.nu, np.float64)])


def require_sample(fit: Any) -> Any:
    """The fit's final importance sample, or a clear error for a restored fit."""
    sample = getattr(fit, "sample", None)
    if sample is None:
        raise ArgumentError(
            "this fit has no importance sample (fits restored with from_json do not keep "
            "it), so the conditional distribution of the random effects is not available; "
            "refit the model with pyglmm.glmm to use ranef, predict(re='conditional') or "
            "simulate(re='conditional')"
        )
    return sample


def _weighted_moments(
    sample: Any, theta: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per block max log weight, weight sums, and per effect weighted mean and scatter.

    Returns ``(top, weight_sum, sq_weight_sum, mean, scatter)`` with ``weight_sum``
    and ``sq_weight_sum`` the sums of ``e^{lw - top}`` and their squares (B,), and
    ``mean``/``scatter`` the weighted mean and ``sum w (u - mean)^2`` (q,), block order.
    """
    problem = sample.problem
    effect_block = problem.blocks.effect_block
    n_blocks = problem.blocks.n_blocks
    q = problem.n_effects
    top = np.full(n_blocks, -np.inf)
    wsum = np.zeros(n_blocks)
    w2sum = np.zeros(n_blocks)
    mean = np.zeros(q)
    scatter = np.zeros(q)
    for u, log_weight in sample.weighted_draws(theta):
        new_top = np.maximum(top, log_weight.max(axis=0))
        with np.errstate(invalid="ignore"):  # -inf - -inf for a block not seen yet
            rescale = np.where(np.isfinite(top), np.exp(top - new_top), 0.0)
        w = np.exp(log_weight - new_top)  # (m_j, B), entries in [0, 1]
        wsum = wsum * rescale
        w2sum = w2sum * rescale**2
        scatter = scatter * rescale[effect_block]
        top = new_top
        chunk_w = w.sum(axis=0)
        we = w[:, effect_block]  # (m_j, q): the weight of each effect's block
        cw = chunk_w[effect_block]
        safe = np.where(cw > 0.0, cw, 1.0)
        chunk_mean = (we * u).sum(axis=0) / safe
        chunk_scatter = (we * (u - chunk_mean) ** 2).sum(axis=0)
        old = wsum[effect_block]
        total = old + cw
        frac = np.where(total > 0.0, cw / np.where(total > 0.0, total, 1.0), 0.0)
        delta = chunk_mean - mean
        mean = mean + delta * frac
        scatter = scatter + chunk_scatter + delta**2 * old * frac
        wsum = wsum + chunk_w
        w2sum = w2sum + (w**2).sum(axis=0)
    return top, wsum, w2sum, mean, scatter


def _inverse_diagonal(chol: BlockCholesky, q: int) -> FloatArray:
    """Diagonal of ``P^{-1}`` for the factored block-diagonal ``P`` (block order)."""
    out = np.empty(q)
    for g, group in enumerate(chol.groups):
        factors = chol.factors[g]
        if isinstance(factors, CrossedFactor):
            index = group.index[0]
            for start in range(0, index.size, 256):  # identity columns, a slab at a time
                cols = index[start:start + 256]
                rhs = np.zeros((q, cols.size))
                rhs[cols, np.arange(cols.size)] = 1.0
                out[cols] = solve_columns(chol, rhs)[cols, np.arange(cols.size)]
        elif chol._small(g):
            inverse = chol.inverse_factor(g)  # L^{-1}: P^{-1} = L^{-T} L^{-1}
            out[group.index] = (inverse**2).sum(axis=1)
        else:
            for factor, index in zip(factors, group.index, strict=True):
                inverse = solve_triangular(factor, np.eye(index.size), lower=True)
                out[index] = (inverse**2).sum(axis=0)
    return out


def conditional_summary(
    fit: Any, cond_var: bool = True, min_ess: float = MIN_ESS
) -> ConditionalSummary:
    """Conditional mean (and SD) of every random effect at the estimate, design order.

    Parameters
    ----------
    fit : GLMMResults
        A fit that keeps its importance sample (``fit.sample``).
    cond_var : bool
        Compute the conditional SDs too (otherwise ``sd`` is NaN).
    min_ess : float
        Blocks whose Kish effective sample size is below this use the conditional mode
        and inverse curvature instead, with an ImportanceSamplingWarning.

    Returns
    -------
    ConditionalSummary

    Raises
    ------
    pyglmm.errors.ArgumentError
        If the fit has no importance sample (restored from JSON).
    """
    sample = require_sample(fit)
    problem = sample.problem
    blocks = problem.blocks
    theta = _theta(fit)
    _, wsum, w2sum, mean, scatter = _weighted_moments(sample, theta)
    ess = np.where(w2sum > 0.0, wsum**2 / np.where(w2sum > 0.0, w2sum, 1.0), 0.0)
    effect_block = blocks.effect_block
    safe = np.where(wsum > 0.0, wsum, 1.0)[effect_block]
    sd = np.sqrt(np.maximum(scatter / safe, 0.0)) if cond_var else np.full(mean.size, np.nan)
    degenerate = ~(ess >= min_ess)
    used = ~degenerate[effect_block]
    if degenerate.any():
        warnings.warn(
            f"{int(degenerate.sum())} of {blocks.n_blocks} block(s) of random effects have "
            f"an importance sample with effective size below {min_ess:g} (smallest "
            f"{float(ess.min()):.3g}); their conditional means and SDs are the conditional "
            "mode and the inverse curvature there (method 'conditional mode'); refit with "
            "a larger m for importance-sampling values",
            ImportanceSamplingWarning,
            stacklevel=3,
        )
        mode, chol = conditional_mode(problem, np.asarray(fit.beta, np.float64),
                                      np.asarray(fit.nu, np.float64))
        mean = np.where(used, mean, mode)
        if cond_var:
            sd = np.where(used, sd, np.sqrt(_inverse_diagonal(chol, mode.size)))
    to_design = blocks.effects_to_design_order
    return ConditionalSummary(
        mean=to_design(mean),
        sd=to_design(sd),
        ess=to_design(ess[effect_block]),
        importance=to_design(used),
        block=to_design(effect_block),
    )


def resample_conditional(
    fit: Any, n: int, rng: np.random.Generator, min_ess: float = MIN_ESS
) -> FloatArray:
    """Draw ``n`` random-effect vectors from the importance-weighted sample.

    Each block's draws are resampled independently with probabilities proportional to
    their weights (multinomial resampling by inverting the cumulative weights in a
    second pass over the chunks), which approximates draws from the conditional
    distribution of the random effects given the data at the estimate.

    Parameters
    ----------
    fit : GLMMResults
        A fit that keeps its importance sample.
    n : int
        Number of vectors.
    rng : numpy.random.Generator
    min_ess : float
        Warn (ImportanceSamplingWarning) when a block's effective sample size is lower.

    Returns
    -------
    ndarray, shape (n, q)
        Design-ordered random-effect vectors.
    """
    sample = require_sample(fit)
    problem = sample.problem
    blocks = problem.blocks
    n_blocks = blocks.n_blocks
    effect_block = blocks.effect_block
    theta = _theta(fit)
    top, wsum, w2sum, _, _ = _weighted_moments(sample, theta)
    ess = wsum**2 / np.where(w2sum > 0.0, w2sum, 1.0)
    if np.any(ess < min_ess):
        warnings.warn(
            f"resampling the importance sample of {int(np.sum(ess < min_ess))} block(s) "
            f"with effective sample size below {min_ess:g}: the draws repeat a few values "
            "and understate the conditional variance; refit with a larger m",
            ImportanceSamplingWarning,
            stacklevel=3,
        )
    # targets in [0, 1) of the normalised cumulative weights, one per (draw, block)
    target = rng.uniform(size=(n, n_blocks))
    offsets = 2.0 * np.arange(n_blocks)  # block b's cumulative weights live in [2b, 2b+1]
    out = np.zeros((n, problem.n_effects))
    base = np.zeros(n_blocks)
    effect_index = np.arange(problem.n_effects)
    last = np.zeros((1, problem.n_effects))
    for u, log_weight in sample.weighted_draws(theta):
        last = u[-1:]
        m_j = u.shape[0]
        cum = base + np.cumsum(np.exp(log_weight - top), axis=0) / wsum  # (m_j, B)
        inside = (target >= base) & (target < cum[-1])
        # one sorted array: block b's cumulative weights shifted by 2b
        flat = (cum + offsets).T.ravel()
        s_idx, b_idx = np.nonzero(inside)
        pos = np.searchsorted(flat, target[s_idx, b_idx] + offsets[b_idx], side="right")
        row = np.clip(pos - b_idx * m_j, 0, m_j - 1)
        chosen = np.full((n, n_blocks), -1, dtype=np.intp)
        chosen[s_idx, b_idx] = row
        per_effect = chosen[:, effect_block]  # (n, q)
        hit = per_effect >= 0
        out[hit] = u[per_effect[hit], np.broadcast_to(effect_index, per_effect.shape)[hit]]
        target = np.where(inside, np.inf, target)  # each target is used once
        base = cum[-1]
    # targets above the last cumulative weight (1 up to rounding) take the last draw
    left = np.isfinite(target)[:, effect_block]
    out[left] = np.broadcast_to(last, out.shape)[left]
    return blocks.effects_to_design_order(out)


def ranef(fit: Any, cond_var: bool = True, min_ess: float = MIN_ESS) -> pd.DataFrame:
    """Conditional means (and SDs) of the random effects given the data at the estimate.

    The analogue of ``lme4::ranef(fit, condVar=TRUE)`` as a long table; where lme4
    gives the conditional mode and the inverse curvature (a Laplace approximation),
    this gives the conditional mean and SD by self-normalised importance weighting of
    the fit's final importance sample, block by block (weights of block ``b``
    normalised within block ``b``).

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm`. Fits restored from JSON keep no importance
        sample and are refused (an :class:`~pyglmm.errors.ArgumentError`).
    cond_var : bool
        Include the conditional standard deviations (column ``sd``).
    min_ess : float
        Blocks whose Kish effective sample size is below this (a degenerate sample)
        report the conditional mode and the square root of the diagonal of the inverse
        negative Hessian there instead, with method ``"conditional mode"`` and an
        :class:`~pyglmm.errors.ImportanceSamplingWarning`.

    Returns
    -------
    pandas.DataFrame
        One row per random effect in design order (term, level, column), with columns
        ``term`` (grouping factor, e.g. ``"Female"`` or ``"g"``), ``level``,
        ``column`` (e.g. ``"(Intercept)"`` or ``"x"``), ``mean``, ``sd`` (if
        ``cond_var``), ``ess`` (the Kish effective sample size of the effect's block)
        and ``method`` (``"importance"`` or ``"conditional mode"``).

    Raises
    ------
    pyglmm.errors.ArgumentError
        If the fit has no importance sample or no design.

    Examples
    --------
    >>> import pyglmm as pg
    >>> from pyglmm.ranef import ranef
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(),
    ...               m=2000, rng=1)
    >>> ranef(fit).columns.tolist()
    ['term', 'level', 'column', 'mean', 'sd', 'ess', 'method']
    """
    design = getattr(fit, "design", None)
    if design is None:
        raise ArgumentError("this fit was restored without its design; refit it to use ranef")
    summary = conditional_summary(fit, cond_var=cond_var, min_ess=min_ess)
    q = design.n_effects
    term = np.empty(q, dtype=object)
    level = np.empty(q, dtype=object)
    column = np.empty(q, dtype=object)
    for t, rt in enumerate(design.random_terms):
        index = design.level_effects(t)  # (levels, columns)
        term[index] = rt.name
        level[index] = np.asarray(rt.levels, dtype=object)[:, None]
        column[index] = np.asarray(rt.columns, dtype=object)[None, :]
    frame: dict[str, Any] = {"term": term, "level": level, "column": column,
                             "mean": summary.mean}
    if cond_var:
        frame["sd"] = summary.sd
    frame["ess"] = summary.ess
    frame["method"] = np.where(summary.importance, IMPORTANCE, MODE).astype(object)
    return pd.DataFrame(frame)
