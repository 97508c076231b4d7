"""Pictures of a fit: Monte Carlo diagnostics, random effects and likelihood profiles.

Each function takes a :class:`pyglmm.GLMMResults` and returns a
:class:`matplotlib.figure.Figure`; :class:`PlotMethods` makes them methods of the fit
(``fit.plot_diagnostics()``, ``fit.plot_ranef()``, ``fit.plot_profile(param)``).

matplotlib is an optional dependency (``pip install 'pyglmm[plot]'``). It is imported
inside the functions, never by ``import pyglmm``. The figures are built as plain
:class:`~matplotlib.figure.Figure` objects, not through ``pyplot``: they are not
registered with a GUI backend, so nothing is shown or kept alive behind the caller's
back. Save one with ``fig.savefig("fit.png")``; Jupyter displays a returned figure.

* :func:`plot_diagnostics` -- the trust-region path of every sampling round, the
  normalised importance weights of the least effective blocks, each block's effective
  sample size (ESS) against its Pareto :math:`\\hat k`, and the estimates with their
  standard errors (SE) and Monte Carlo standard errors (MCSE).
* :func:`plot_ranef` -- a caterpillar plot of the conditional means of the random
  effects (:meth:`GLMMResults.ranef`) with normal intervals, one panel per term and
  column.
* :func:`plot_profile` -- the profile likelihood of one parameter
  (:meth:`GLMMResults.profile`) with the profile interval and the Monte Carlo SE of its
  end points (``confint(method="profile")``) and the Wald interval for comparison.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PlotMethods", "plot_diagnostics", "plot_profile", "plot_ranef"]

FloatArray = NDArray[np.float64]

#: The message of the ImportError raised when matplotlib is not installed.
INSTALL_HINT = (
    "plotting needs matplotlib, which is an optional dependency of pyglmm: "
    "pip install 'pyglmm[plot]'"
)

#: Thresholds drawn in the diagnostics, as in :mod:`pyglmm.diagnostics`' warnings.
ESS_WARN_FRACTION = 0.01
PARETO_K_WARN = 0.7

#: Most levels per caterpillar panel whose labels are written on the axis.
MAX_LEVEL_LABELS = 40


def _figure(figsize: tuple[float, float]) -> Figure:
    """A new figure, or an ImportError that says how to install matplotlib."""
    try:
        import matplotlib  # noqa: F401 - raises when matplotlib is missing
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return Figure(figsize=figsize, layout="constrained")


# -- diagnostics --------------------------------------------------------------------------


def _trace_panel(ax: Axes, fit: Any) -> None:
    """The MCLA value along each round's trust-region path."""
    start = 0
    colours = _colours(len(fit.rounds))
    for r, rnd in enumerate(fit.rounds):
        values = [step.value for step in rnd.trace] + [rnd.value]
        x = np.arange(start, start + len(values))
        kind = "final" if r == len(fit.rounds) - 1 else "pilot"
        ax.plot(x, values, "o-", ms=3, color=colours[r],
                label=f"round {r + 1} ({kind}, m={rnd.m:,})")
        rejected = [(start + i, s.trial_value) for i, s in enumerate(rnd.trace)
                    if not s.accepted and np.isfinite(s.trial_value)]
        if rejected:
            rx, ry = zip(*rejected, strict=True)
            ax.plot(rx, ry, "x", color=colours[r], ms=5)
        if r:
            ax.axvline(start - 0.5, color="0.8", lw=0.8)
        start += len(values)
    ax.set_xlabel("trust-region iteration (all rounds; x: rejected trial)")
    ax.set_ylabel("MCLA log-likelihood")
    ax.set_title("Trust-region path per sampling round")
    ax.legend(fontsize="small")


def _normalised_weights(fit: Any, blocks: NDArray[np.intp]) -> tuple[FloatArray, bool]:
    """``m * v`` for the chosen blocks (columns), sorted descending, or the stored tail.

    With the fit's sample the weights are recomputed at the estimate. A fit restored
    from JSON keeps only the largest log weights of each block; those are returned
    relative to the block's largest weight (the second value is then False).
    """
    sample = getattr(fit, "sample", None)
    if sample is None:
        top = np.asarray(fit.top_log_weights, dtype=np.float64)[blocks]
        rel = np.exp(top - top.max(axis=1, keepdims=True))
        return -np.sort(-rel, axis=1).T, False
    from .ranef import require_sample

    theta = np.concatenate([np.asarray(fit.beta, np.float64), np.asarray(fit.nu, np.float64)])
    columns = [lw[:, blocks] for _, lw in require_sample(fit).weighted_draws(theta)]
    log_w = np.concatenate(columns, axis=0)
    w = np.exp(log_w - log_w.max(axis=0))
    w *= w.shape[0] / w.sum(axis=0)
    return -np.sort(-w, axis=0), True


def _weights_panel(ax: Axes, fit: Any, diag: Any, max_blocks: int) -> None:
    """Sorted normalised weights of the blocks with the smallest ESS."""
    ess = np.asarray(diag.block_ess, dtype=np.float64)
    order = np.argsort(ess, kind="stable")[:max_blocks]
    weights, full = _normalised_weights(fit, order)
    colours = _colours(order.size)
    ranks = np.arange(1, weights.shape[0] + 1)
    for c, b in enumerate(order):
        k = diag.block_pareto_k[b]
        k_text = "n/a" if not np.isfinite(k) else f"{k:.2f}"
        ax.loglog(ranks, weights[:, c], color=colours[c], lw=1.2,
                  label=f"block {b}: ESS {ess[b]:,.0f} ({100 * ess[b] / diag.m:.0f}%), "
                  f"k {k_text}")
    if full:
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_ylabel("normalised weight  m v (1 = equal weights)")
        ax.set_title(f"Normalised importance weights (m={diag.m:,})")
        ax.set_ylim(max(float(weights.min()), 1e-3) / 2, float(weights.max()) * 2)
    else:
        ax.set_ylabel("weight / largest weight (stored tail only)")
        ax.set_title("Largest importance weights (restored fit: tail only)")
    ax.set_xlabel(f"rank of the draw, largest weight first ({order.size} smallest-ESS blocks)")
    ax.legend(fontsize="x-small", ncol=1 if order.size <= 6 else 2)


def _ess_k_panel(ax: Axes, diag: Any) -> None:
    """Each block's ESS fraction against its Pareto k, with the warning thresholds."""
    frac = np.asarray(diag.block_ess, dtype=np.float64) / diag.m
    k = np.asarray(diag.block_pareto_k, dtype=np.float64)
    shown = np.isfinite(k)
    bad = (frac < ESS_WARN_FRACTION) | (np.where(shown, k, 0.0) > PARETO_K_WARN)
    ax.scatter(k[shown & ~bad], frac[shown & ~bad], s=18, color="tab:blue", label="passes")
    if np.any(shown & bad):
        ax.scatter(k[shown & bad], frac[shown & bad], s=24, color="tab:red",
                   marker="D", label="fails a check")
    ax.axhline(ESS_WARN_FRACTION, color="tab:red", lw=0.8, ls=":")
    ax.axvline(PARETO_K_WARN, color="tab:red", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_ylim(min(ESS_WARN_FRACTION / 2, float(np.nanmin(frac)) / 2 if frac.size else 1), 1.5)
    ax.set_xlabel("Pareto k of the weights (warning above 0.7)")
    ax.set_ylabel("ESS / m (warning below 1%)")
    ax.set_title(f"{frac.size} block(s): smallest ESS {diag.min_ess:,.0f}")
    ax.legend(fontsize="small", loc="lower left")


def _estimates_panel(ax: Axes, fit: Any, level: float) -> None:
    """Estimates with SE and MCSE intervals, one row per parameter."""
    table = fit.tidy()
    names = list(fit.param_names)
    est = table["estimate"].to_numpy(dtype=np.float64)
    se = table["se"].to_numpy(dtype=np.float64)
    mcse = table["mcse"].to_numpy(dtype=np.float64)
    z = float(stats.norm.ppf(0.5 + level / 2))
    y = np.arange(len(names))[::-1]
    ok = np.isfinite(se)
    ax.errorbar(est[ok], y[ok], xerr=z * se[ok], fmt="none", ecolor="0.55", elinewidth=1,
                capsize=3, label=f"{100 * level:g}% Wald (SE)")
    okm = np.isfinite(mcse)
    ax.errorbar(est[okm], y[okm], xerr=z * mcse[okm], fmt="none", ecolor="tab:red",
                elinewidth=5, label=f"± {z:.2f} MCSE")
    ax.plot(est, y, "o", color="k", ms=4)
    ratios = mcse / np.where(se > 0, se, np.nan)
    ax.set_yticks(y, [f"{n}  (MCSE/SE {r:.3f})" if np.isfinite(r) else n
                      for n, r in zip(names, ratios, strict=True)])
    ax.axvline(0.0, color="0.85", lw=0.8)
    ax.set_xlabel("estimate")
    ax.set_title("Estimates: SE (grey) and Monte Carlo SE (red)")
    ax.legend(fontsize="small")


def plot_diagnostics(
    fit: Any,
    *,
    max_blocks: int = 8,
    level: float = 0.95,
    figsize: tuple[float, float] = (12.0, 8.5),
) -> Figure:
    """Four panels on the Monte Carlo side of a fit.

    1. The MCLA value along the trust-region path of every sampling round (pilots, then
       the final round), rejected trial points marked with ``x``.
    2. The normalised importance weights ``m v_bk`` of the ``max_blocks`` blocks with
       the smallest effective sample size, largest first on log-log axes: a flat curve
       near 1 is a good sample; a curve that starts orders of magnitude above 1 and drops
       is one where a few draws carry the weight. The legend gives each block's ESS and
       Pareto :math:`\\hat k`.
    3. ESS / m against Pareto :math:`\\hat k` for every block, with the thresholds of the
       warnings (ESS below 1% of m, :math:`\\hat k` above 0.7).
    4. The estimates with their Wald intervals (SE) and, thicker, the same multiple of
       their Monte Carlo standard errors, and each parameter's MCSE/SE.

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm`. A fit restored from JSON has no sample: panel 2
        then shows the stored largest weights of each block relative to its largest.
    max_blocks : int
        Number of blocks (those with the smallest ESS) drawn in panel 2.
    level : float
        Coverage of the intervals in panel 4.
    figsize : tuple of float
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'pyglmm[plot]'``).
    """
    fig = _figure(figsize)
    axes = fig.subplots(2, 2)
    diag = fit.diagnostics()
    _trace_panel(axes[0, 0], fit)
    _weights_panel(axes[0, 1], fit, diag, max(1, int(max_blocks)))
    _ess_k_panel(axes[1, 0], diag)
    _estimates_panel(axes[1, 1], fit, level)
    fig.suptitle(f"{fit.family.name} GLMM {fit.fixed_formula}: Monte Carlo diagnostics "
                 f"(loglik {fit.loglike_value:.3f})")
    return fig


# -- random effects -----------------------------------------------------------------------


def plot_ranef(
    fit: Any,
    *,
    level: float = 0.95,
    terms: list[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Caterpillar plot of the conditional means of the random effects.

    One panel per term and column (``(Intercept)`` or a slope), levels sorted by their
    conditional mean, each with the interval ``mean +- z sd`` (a normal approximation of
    the conditional distribution given the data, at the estimate). Effects whose block's
    sample was degenerate report the conditional mode (:meth:`GLMMResults.ranef`) and
    are drawn as open squares.

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm` that still holds its importance sample.
    level : float
        Nominal coverage of the intervals.
    terms : list of str, optional
        The terms to draw (values of the ``term`` column of ``fit.ranef()``); default
        all.
    figsize : tuple of float, optional
        Figure size in inches; by default it grows with the number of levels.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'pyglmm[plot]'``).
    pyglmm.errors.ArgumentError
        If the fit has no importance sample (restored from JSON).
    ValueError
        If ``terms`` names no term of the fit.
    """
    table = fit.ranef(cond_var=True)
    if terms is not None:
        table = table[table["term"].isin(list(terms))]
        if table.empty:
            raise ValueError(f"terms={terms!r} names no random term of this fit")
    groups = list(dict.fromkeys(zip(table["term"], table["column"], strict=True)))
    largest = max(int(((table["term"] == t) & (table["column"] == c)).sum()) for t, c in groups)
    if figsize is None:
        height = min(2.0 + 0.16 * min(largest, 4 * MAX_LEVEL_LABELS), 14.0)
        figsize = (min(4.2 * len(groups), 16.0), height)
    fig = _figure(figsize)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    z = float(stats.norm.ppf(0.5 + level / 2))
    for ax, (term, column) in zip(axes, groups, strict=True):
        part = table[(table["term"] == term) & (table["column"] == column)]
        part = part.sort_values("mean", kind="stable")
        mean = part["mean"].to_numpy(dtype=np.float64)
        sd = part["sd"].to_numpy(dtype=np.float64)
        y = np.arange(mean.size)
        mode = (part["method"] != "importance").to_numpy()
        ax.errorbar(mean, y, xerr=z * sd, fmt="none", ecolor="tab:blue", elinewidth=1,
                    alpha=0.8)
        ax.plot(mean[~mode], y[~mode], "o", color="tab:blue", ms=3.5)
        if np.any(mode):
            ax.plot(mean[mode], y[mode], "s", mfc="none", color="tab:orange", ms=5,
                    label="conditional mode")
            ax.legend(fontsize="small")
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        if mean.size <= MAX_LEVEL_LABELS:
            ax.set_yticks(y, [str(v) for v in part["level"]], fontsize="small")
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{mean.size} levels, sorted")
        ax.set_ylim(-1, mean.size)
        title = term if column == "(Intercept)" else f"{term}: {column}"
        ax.set_title(title)
        ax.set_xlabel(f"conditional mean ± {z:.2f} sd")
    fig.suptitle(f"Random effects given the data ({100 * level:g}% normal intervals)")
    return fig


# -- profiles -----------------------------------------------------------------------------


def plot_profile(
    fit: Any,
    param: str | int,
    *,
    level: float = 0.95,
    n: int = 21,
    width: float = 4.0,
    scale: str = "signed_root",
    figsize: tuple[float, float] = (6.5, 4.5),
) -> Figure:
    """The profile likelihood of one parameter with its profile interval.

    The curve is ``fit.profile(param, n, width)``: on ``scale="signed_root"`` the signed
    square root of the likelihood-ratio statistic, ``sign(v - v_hat) sqrt(D(v))``, which
    is a straight line when the log-likelihood is quadratic, with horizontal lines at
    ``+-z``; on ``scale="deviance"`` ``D(v)`` itself with the chi-square cut-off. The
    profile interval (``fit.confint(method="profile")``) is shaded, its end points drawn
    with bands of +- 2 Monte Carlo SE, and the Wald interval is drawn dashed for
    comparison.

    Parameters
    ----------
    fit : GLMMResults
        A fit from :func:`pyglmm.glmm` that still holds its importance sample.
    param : str or int
        The parameter, by name or 0-based position (fixed effects first).
    level : float
        Confidence level of the intervals.
    n, width : int, float
        Grid of the profile: ``n`` values over the estimate +- ``width`` SE.
    scale : {"signed_root", "deviance"}
        What the vertical axis shows.
    figsize : tuple of float
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'pyglmm[plot]'``).
    ValueError
        If ``scale`` is not one of the two names.
    pyglmm.errors.ArgumentError
        If the fit has no importance sample, or ``param`` names no parameter.
    """
    if scale not in ("signed_root", "deviance"):
        raise ValueError(f"scale must be 'signed_root' or 'deviance', not {scale!r}")
    fig = _figure(figsize)
    ax = fig.subplots()
    table = fit.profile(param, n=n, width=width)
    ci = fit.confint(level=level, parm=[param], method="profile")
    wald = fit.confint(level=level, parm=[param])
    name = str(ci.index[0])
    lower, upper = float(ci.iloc[0, 0]), float(ci.iloc[0, 1])
    mc_lower = float(ci["mcse_lower"].iloc[0])
    mc_upper = float(ci["mcse_upper"].iloc[0])
    estimate = float(fit.params()[name])
    z = float(stats.norm.ppf(0.5 + level / 2))
    cut = float(stats.chi2.ppf(level, 1))
    values = table["value"].to_numpy(dtype=np.float64)
    lines: tuple[float, ...]
    if scale == "signed_root":
        curve = table["signed_root"].to_numpy(dtype=np.float64)
        lines, limit = (-z, z), z + 2.0
        ylim = (-limit, limit)
        ax.set_ylabel("signed root of the LR statistic")
    else:
        curve = table["deviance"].to_numpy(dtype=np.float64)
        lines, limit = (cut,), 2.5 * cut
        ylim = (-0.05 * limit, limit)
        ax.set_ylabel("likelihood-ratio statistic D")
    ax.plot(values, curve, "o-", color="tab:blue", ms=3.5, label="profile (fit's sample)")
    for h in lines:
        ax.axhline(h, color="0.5", lw=0.8, ls=":")
    ax.axvspan(lower, upper, color="tab:blue", alpha=0.08,
               label=f"{100 * level:g}% profile interval")
    for end, mc in ((lower, mc_lower), (upper, mc_upper)):
        if math.isfinite(end):
            ax.axvline(end, color="tab:blue", lw=1.0)
            if math.isfinite(mc) and mc > 0:
                ax.axvspan(end - 2 * mc, end + 2 * mc, color="tab:red", alpha=0.25, lw=0)
    ax.plot([], [], color="tab:red", alpha=0.4, lw=6, label="end point ± 2 MCSE")
    for k, end in enumerate((float(wald.iloc[0, 0]), float(wald.iloc[0, 1]))):
        ax.axvline(end, color="0.3", lw=0.9, ls="--", label="Wald interval" if k == 0 else None)
    ax.axvline(estimate, color="k", lw=0.8)
    ax.set_ylim(*ylim)
    ax.set_xlabel(name)
    ax.set_title(f"Profile of {name}: [{lower:.3g}, {upper:.3g}] (estimate {estimate:.3g})")
    ax.legend(fontsize="small")
    return fig


# -- helpers and the mixin ----------------------------------------------------------------


def _colours(k: int) -> list[Any]:
    """``k`` distinguishable colours (matplotlib's default cycle, then a colormap)."""
    from matplotlib import colormaps

    if k <= 10:
        return [f"C{i}" for i in range(k)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(k - 1, 1)) for i in range(k)]


class PlotMethods:
    """``plot_diagnostics``, ``plot_ranef`` and ``plot_profile`` of a fit (matplotlib)."""

    def plot_diagnostics(
        self,
        *,
        max_blocks: int = 8,
        level: float = 0.95,
        figsize: tuple[float, float] = (12.0, 8.5),
    ) -> Figure:
        """Trust-region paths, importance weights, ESS and Pareto k, SE and MCSE.

        See :func:`pyglmm.plots.plot_diagnostics`; needs ``pip install 'pyglmm[plot]'``.
        """
        return plot_diagnostics(self, max_blocks=max_blocks, level=level, figsize=figsize)

    def plot_ranef(
        self,
        *,
        level: float = 0.95,
        terms: list[str] | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Figure:
        """Caterpillar plot of :meth:`ranef` (see :func:`pyglmm.plots.plot_ranef`)."""
        return plot_ranef(self, level=level, terms=terms, figsize=figsize)

    def plot_profile(
        self,
        param: str | int,
        *,
        level: float = 0.95,
        n: int = 21,
        width: float = 4.0,
        scale: str = "signed_root",
        figsize: tuple[float, float] = (6.5, 4.5),
    ) -> Figure:
        """The profile of one parameter with its interval (:func:`pyglmm.plots.plot_profile`)."""
        return plot_profile(self, param, level=level, n=n, width=width, scale=scale,
                            figsize=figsize)
