"""Diagnostics of the importance sample: Pareto tail shape, effective sample size, MCSE/SE.

The Monte Carlo standard errors are only honest when the importance weights are well
behaved (docs/method.md). Three numbers say whether they are:

* the Kish effective sample size (ESS) of each block, :math:`1/\\sum_k v_{bk}^2`;
* the Pareto :math:`\\hat k` of the largest weights of each block (PSIS, Vehtari et al.
  2024): the shape of a generalized Pareto distribution fitted to the upper tail of the
  weights. The weights have a finite variance only for :math:`k < 1/2`, and the importance
  estimate is unreliable at any practical sample size for :math:`\\hat k > 0.7`;
* the ratio of the Monte Carlo standard error to the standard error of each parameter,
  which says how much of the reported uncertainty is simulation noise. Since the MCSE
  falls like :math:`1/\\sqrt m`, the ratio says how large ``m`` must be.

References
----------
Zhang, J. and Stephens, M. A. (2009). A new and efficient estimation method for the
generalized Pareto distribution. Technometrics 51, 316-325.

Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto smoothed
importance sampling. Journal of Machine Learning Research 25(72), 1-58.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .errors import ImportanceSamplingWarning, PyGLMMWarning
from .pql import SIGMA_FLOOR

FloatArray = NDArray[np.float64]

#: Warn when the smallest per-block ESS is below this fraction of ``m``.
ESS_FRACTION_MIN = 0.01
#: Warn when a block's Pareto k-hat exceeds this (Vehtari et al. 2024).
PARETO_K_MAX = 0.7
#: Blocks of at least this many random effects get advice about dimension when their
#: weights fail a check: in the scaling benchmarks (BENCHMARKS.md), crossed Bernoulli
#: blocks of 792-5,000 effects gave ESS of 0.02-0.4% of m = 10^4 with t proposals of 20
#: or 100 degrees of freedom and any number of re-centring rounds.
LARGE_BLOCK = 300
#: Warn when MCSE/SE exceeds this for some parameter ...
MCSE_SE_RATIO_MAX = 0.2
#: ... and recommend the ``m`` at which the largest ratio would be this.
MCSE_SE_RATIO_TARGET = 0.1
#: A variance component below this is at the boundary 0 (the fit's floor is
#: ``SIGMA_FLOOR**2``): its Wald standard error means nothing and is reported as NaN.
BOUNDARY_NU = 10 * SIGMA_FLOOR**2
#: Fewest tail weights a generalized Pareto fit is attempted with (as in PSIS).
MIN_TAIL_SIZE = 5
#: Weight of the weakly informative prior that pulls k-hat towards 0.5 (PSIS).
_PRIOR_WEIGHT = 10.0
#: Blocks fitted at once (bounds the (blocks x grid x tail) working array).
_BATCH = 256


def fit_generalized_pareto(
    exceedances: ArrayLike, *, weak_prior: bool = True
) -> tuple[float, float]:
    """Fit a generalized Pareto distribution by the method of Zhang and Stephens (2009).

    The distribution function is :math:`F(x) = 1 - (1 + kx/\\sigma)^{-1/k}` for
    :math:`x \\ge 0`. The estimate of :math:`\\theta = -k/\\sigma` is the posterior mean
    of the profile likelihood over a fixed grid of points (empirical Bayes, Zhang and
    Stephens 2009), and :math:`k` is then the profile maximiser at that :math:`\\theta`.
    With ``weak_prior`` the shape is shrunk towards 0.5 as in PSIS:
    :math:`(n\\hat k + 10 \\cdot 0.5)/(n + 10)`.

    Parameters
    ----------
    exceedances : array_like, shape (n,)
        Non-negative exceedances of a threshold (any order), ``n >= 5``, not all zero.
    weak_prior : bool
        Shrink the shape towards 0.5 (Vehtari et al. 2024, appendix C).

    Returns
    -------
    shape : float
        The estimated shape :math:`\\hat k`.
    scale : float
        The estimated scale :math:`\\hat\\sigma`.

    Examples
    --------
    >>> import numpy as np
    >>> draws = np.random.default_rng(0).pareto(2.0, size=5000)  # shape 1/2
    >>> shape, scale = fit_generalized_pareto(draws)
    >>> round(shape, 1)
    0.5
    """
    values = np.sort(np.asarray(exceedances, dtype=np.float64))
    if values.ndim != 1 or values.size < MIN_TAIL_SIZE:
        raise ValueError(f"need a 1-D array of at least {MIN_TAIL_SIZE} exceedances")
    if values[0] < 0 or not np.all(np.isfinite(values)) or values[-1] <= 0:
        raise ValueError("exceedances must be finite, non-negative and not all zero")
    shape, scale = _fit_rows(values[None, :], weak_prior=weak_prior)
    return float(shape[0]), float(scale[0])


def _fit_rows(values: FloatArray, *, weak_prior: bool) -> tuple[FloatArray, FloatArray]:
    """Zhang-Stephens fit of every row of ``values`` (sorted ascending, last entry > 0)."""
    n_rows, n = values.shape
    n_grid = 30 + int(math.sqrt(n))
    grid = 1.0 - np.sqrt(n_grid / (np.arange(1, n_grid + 1) - 0.5))  # (G,), all < 0
    quartile = values[:, int(n / 4.0 + 0.5) - 1]
    positive_min = np.where(values > 0, values, np.inf).min(axis=1)
    quartile = np.where(quartile > 0, quartile, positive_min)
    theta = 1.0 / values[:, -1:] + grid[None, :] / (3.0 * quartile[:, None])  # (R, G)
    profile_k = np.log1p(-theta[:, :, None] * values[:, None, :]).mean(axis=2)
    profile = n * (np.log(-theta / profile_k) - profile_k - 1.0)
    posterior = np.exp(profile - logsumexp(profile, axis=1, keepdims=True))
    theta_hat = (posterior * theta).sum(axis=1)
    shape = np.log1p(-theta_hat[:, None] * values).mean(axis=1)
    scale = -shape / theta_hat
    if weak_prior:
        shape = (n * shape + _PRIOR_WEIGHT * 0.5) / (n + _PRIOR_WEIGHT)
    return shape, scale


def pareto_k_hat(top_log_weights: ArrayLike) -> FloatArray:
    """Pareto :math:`\\hat k` of the largest importance weights, per block.

    Follows PSIS (Vehtari et al. 2024): the smallest of the given log-weights is the
    threshold, the others form the tail, and a generalized Pareto distribution is fitted
    to the exceedances of the weights (rescaled by the largest, so nothing overflows)
    with :func:`fit_generalized_pareto`. Values above 0.7 mean that the importance
    estimate and its Monte Carlo standard error are unreliable; between 0.5 and 0.7 the
    weights have infinite variance but the estimate is still usable at the given size.

    Parameters
    ----------
    top_log_weights : array_like, shape (k,) or (B, k)
        The ``k`` largest log importance weights of one block or of each of ``B``
        blocks (``GLMMResults.top_log_weights``: ``k = min(0.2 m, 3 sqrt(m))``, plus the
        threshold), in any order.

    Returns
    -------
    ndarray of float, shape () or (B,)
        :math:`\\hat k` per block; NaN where it cannot be estimated: fewer than
        ``MIN_TAIL_SIZE + 1`` log-weights, a non-finite one, or a flat tail (all
        largest weights equal).

    Examples
    --------
    >>> import numpy as np
    >>> draws = np.random.default_rng(1).pareto(1 / 0.8, size=10_000) + 1.0  # k = 0.8
    >>> top = np.sort(np.log(draws))[-300:]
    >>> float(np.round(pareto_k_hat(top), 1))
    0.8
    """
    logs = np.asarray(top_log_weights, dtype=np.float64)
    one_block = logs.ndim == 1
    logs = np.sort(np.atleast_2d(logs), axis=1)
    result = np.full(logs.shape[0], np.nan)
    if logs.shape[1] < MIN_TAIL_SIZE + 1:
        return result[0] if one_block else result
    largest = logs[:, -1:]
    exceedances = np.exp(logs[:, 1:] - largest) - np.exp(logs[:, :1] - largest)
    usable = np.all(np.isfinite(logs), axis=1) & (exceedances[:, -1] > 0)
    rows = np.flatnonzero(usable)
    for start in range(0, rows.size, _BATCH):
        batch = rows[start : start + _BATCH]
        result[batch] = _fit_rows(np.maximum(exceedances[batch], 0.0), weak_prior=True)[0]
    return result[0] if one_block else result


def recommend_m(
    m: int, mcse_se_ratio: float, target_ratio: float = MCSE_SE_RATIO_TARGET
) -> int:
    """Monte Carlo sample size at which the largest MCSE/SE ratio would be ``target_ratio``.

    The MCSE falls like :math:`1/\\sqrt m`, so the ratio reaches the target at
    :math:`m\\,(r/r_{target})^2`; this is rounded up to two significant digits and is
    never below ``m``.

    Parameters
    ----------
    m : int
        The current Monte Carlo sample size.
    mcse_se_ratio : float
        The current largest MCSE/SE ratio.
    target_ratio : float
        The ratio wanted (default 0.1: the Monte Carlo error adds at most 0.5% to the
        total standard error :math:`\\sqrt{SE^2 + MCSE^2}`).

    Returns
    -------
    int

    Examples
    --------
    >>> recommend_m(10_000, 0.35)
    130000
    """
    if not (np.isfinite(mcse_se_ratio) and mcse_se_ratio > target_ratio):
        return int(m)
    needed = m * (mcse_se_ratio / target_ratio) ** 2
    unit = 10 ** max(int(math.floor(math.log10(needed))) - 1, 0)
    return int(max(m, math.ceil(needed / unit) * unit))


@dataclass(frozen=True)
class Check:
    """One failed post-fit check: the warning :func:`pyglmm.glmm` raises for it.

    The same sentence is the warning's message, a line of the summary's WARNING block
    and an entry of ``fit.diagnostics().messages`` (as :attr:`text`).

    Attributes
    ----------
    name : str
        What failed: ``"not_converged"``, ``"no_maximum"``, ``"not_stationary"``,
        ``"information"``, ``"boundary"``, ``"ess"``, ``"pareto_k"``, ``"mcse"`` or
        ``"weakly_identified"``.
    category : type
        The warning's class (a :class:`pyglmm.errors.PyGLMMWarning`).
    message : str
        What failed and what to do.
    """

    name: str
    category: type[PyGLMMWarning]
    message: str

    @property
    def text(self) -> str:
        """The message as the summary prints it: ``"WARNING: " + message``."""
        return f"WARNING: {self.message}"


@dataclass(frozen=True)
class ImportanceDiagnostics:
    """The checks of docs/method.md at the estimate, with what to do when one fails.

    Attributes
    ----------
    m : int
        Monte Carlo sample size (draws per block).
    block_ess : ndarray
        Kish effective sample size of each block.
    block_pareto_k : ndarray
        Pareto :math:`\\hat k` of each block (NaN where not estimable).
    mcse_se_ratio : ndarray
        MCSE/SE of each parameter.
    parameter_names : tuple of str
        Names of the parameters, in the order of ``mcse_se_ratio``.
    recommended_m : int
        ``m`` at which the largest MCSE/SE would be about 0.1; ``m`` if already below,
        or if a larger ``m`` would not help (:attr:`larger_m_helps`).
    messages : tuple of str
        One warning per failed check, saying what to do; empty when all pass. For a
        fit (``fit.diagnostics()``) every post-fit check is here, the optimiser's and
        the data's too, word for word as :func:`pyglmm.glmm` warns and the summary
        prints (:mod:`pyglmm.checks`).
    checks : tuple of Check
        The failed checks behind ``messages``.
    larger_m_helps : bool
        False when a block whose weights fail a check has at least
        :data:`LARGE_BLOCK` effects: importance sampling is degenerate there at any
        practical ``m``, so no message advises a larger one.
    """

    m: int
    block_ess: FloatArray
    block_pareto_k: FloatArray
    mcse_se_ratio: FloatArray
    parameter_names: tuple[str, ...]
    recommended_m: int
    messages: tuple[str, ...]
    checks: tuple[Check, ...] = ()
    larger_m_helps: bool = True
    #: With Markov chains: their ESS and R-hat per parameter
    #: (:class:`pyglmm.mixing.ChainDiagnostics`); None for importance sampling.
    chains: Any = None

    @property
    def min_ess(self) -> float:
        """The smallest per-block effective sample size."""
        return float(np.min(self.block_ess))

    @property
    def max_pareto_k(self) -> float:
        """The largest per-block Pareto k-hat (NaN if none could be estimated)."""
        finite = self.block_pareto_k[np.isfinite(self.block_pareto_k)]
        return float(finite.max()) if finite.size else float("nan")

    @property
    def max_mcse_se_ratio(self) -> float:
        """The largest MCSE/SE ratio over the parameters (NaN if none is finite)."""
        finite = self.mcse_se_ratio[np.isfinite(self.mcse_se_ratio)]
        return float(finite.max()) if finite.size else float("nan")

    @property
    def worst_parameter(self) -> str:
        """The parameter with the largest MCSE/SE ratio ("" if none is finite)."""
        ratios = np.where(np.isfinite(self.mcse_se_ratio), self.mcse_se_ratio, -np.inf)
        return self.parameter_names[int(np.argmax(ratios))] if ratios.size else ""


def diagnose(
    *,
    m: int,
    block_ess: ArrayLike,
    top_log_weights: ArrayLike,
    mcse: ArrayLike,
    se: ArrayLike,
    parameter_names: Sequence[str],
    importance: str = "laplace",
    zeta: float = 5.0,
    block_sizes: ArrayLike | None = None,
    chains: bool = False,
) -> ImportanceDiagnostics:
    """Run the checks of docs/method.md and phrase a warning for each that fails.

    Parameters
    ----------
    m : int
        Monte Carlo sample size (draws per block).
    block_ess : array_like, shape (B,)
        Kish effective sample size of each block.
    top_log_weights : array_like, shape (B, k)
        The largest log importance weights of each block.
    mcse, se : array_like, shape (P,)
        Monte Carlo and sampling standard errors of the parameters.
    parameter_names : sequence of str
        Names of the ``P`` parameters.
    importance : str
        The proposal used (``"laplace"`` or ``"glmm"``), to phrase the advice.
    zeta : float
        Degrees of freedom of the proposal's t component, to phrase the advice.
    block_sizes : array_like of int, shape (B,), optional
        Random effects per block: a failing block of at least :data:`LARGE_BLOCK`
        effects gets advice about dimension rather than about the proposal.
    chains : bool
        The draws were Markov chains (``sampler="mcmc"``): the weights are likelihood
        ratios against the final round's centre, and low ESS means the estimate moved
        far from it, which re-centring cures.

    Returns
    -------
    ImportanceDiagnostics

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> top = np.sort(rng.standard_normal((3, 10_000)), axis=1)[:, -300:]
    >>> d = diagnose(m=10_000, block_ess=[9000.0, 8000.0, 9500.0], top_log_weights=top,
    ...              mcse=[0.01, 0.02], se=[0.4, 0.5], parameter_names=["a", "b"])
    >>> d.messages
    ()
    """
    ess = np.asarray(block_ess, dtype=np.float64)
    pareto_k = np.atleast_1d(pareto_k_hat(top_log_weights))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(mcse, dtype=np.float64) / np.asarray(se, dtype=np.float64)
    names = tuple(parameter_names)
    found = ImportanceDiagnostics(
        m=int(m), block_ess=ess, block_pareto_k=pareto_k, mcse_se_ratio=ratio,
        parameter_names=names, recommended_m=int(m), messages=(),
    )
    other_sampler = (
        "importance='laplace' (a t proposal centred at each block's mode) with recentre='auto'"
        if importance == "glmm"
        else f"more re-centring rounds (recentre='auto' or larger) or heavier proposal tails "
        f"(zeta={max(1.0, zeta / 2):g})"
    )
    sizes = None if block_sizes is None else np.asarray(block_sizes)
    low_ess = bool(ess.size) and found.min_ess < ESS_FRACTION_MIN * m
    heavy = bool(np.isfinite(found.max_pareto_k) and found.max_pareto_k > PARETO_K_MAX)
    failing = ([int(np.argmin(ess))] if low_ess else []) + (
        [int(np.nanargmax(pareto_k))] if heavy else [])

    def large(block: int) -> bool:
        return sizes is not None and sizes[block] >= LARGE_BLOCK

    helps = chains or not any(large(block) for block in failing)

    def remedy(block: int, more_m: bool) -> str:
        if chains:
            return ("The estimate is far from the final round's centre: refit with more "
                    "re-centring rounds (recentre='auto' or larger).")
        if sizes is None or not large(block):
            mixture = importance == "glmm"
            if more_m:
                start = "Raise m, " + ("change p1, p2, p3, " if mixture else "") + "or use"
            else:
                start = "Change p1, p2, p3, or use" if mixture else "Use"
            return f"{start} another proposal: {other_sampler}."
        return (
            f"Block {block} has {int(sizes[block])} random effects: importance sampling in "
            "that many dimensions is degenerate at any practical m, whatever the proposal. "
            "Treat the estimates as approximate (near the Laplace fit's when every effect "
            "has many observations) and their MCSEs as too small."
        )

    checks: list[Check] = []
    if low_ess:
        block = failing[0]
        checks.append(Check("ess", ImportanceSamplingWarning, (
            f"the smallest block effective sample size (ESS) is {found.min_ess:.1f} (block "
            f"{block}), below 1% of m = {m}: a few draws carry the importance weights, so "
            f"the estimates and their MCSEs are unreliable. {remedy(block, helps)}"
        )))
    if heavy:
        block = failing[-1]
        checks.append(Check("pareto_k", ImportanceSamplingWarning, (
            f"the largest Pareto k of the importance weights is {found.max_pareto_k:.2f} "
            f"(block {block}), above {PARETO_K_MAX}: the weights are too heavy-tailed for "
            "the likelihood approximation and its MCSE to be trusted, and raising m helps "
            f"little. {remedy(block, False)}"
        )))
    worst = found.max_mcse_se_ratio
    recommended = recommend_m(m, worst) if helps else int(m)
    if np.isfinite(worst) and worst > MCSE_SE_RATIO_MAX:
        advice = (
            f"Refit with m = {recommended} (MCSE/SE about {MCSE_SE_RATIO_TARGET})." if helps
            else "A larger m would not make it reliable: the sample is degenerate in a large "
            "block (above)."
        )
        checks.append(Check("mcse", ImportanceSamplingWarning, (
            f"MCSE/SE is {worst:.2f} for {found.worst_parameter} (above "
            f"{MCSE_SE_RATIO_MAX}): Monte Carlo error is a large part of the reported "
            f"uncertainty. {advice}"
        )))
    return ImportanceDiagnostics(
        m=int(m), block_ess=ess, block_pareto_k=pareto_k, mcse_se_ratio=ratio,
        parameter_names=names, recommended_m=recommended,
        messages=tuple(c.text for c in checks), checks=tuple(checks), larger_m_helps=helps,
    )
