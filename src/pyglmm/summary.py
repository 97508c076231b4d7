"""The model summary: R glmm's layout, plus MCSEs and the importance-sampling checks.

:meth:`pyglmm.GLMMResults.summary` returns a :class:`Summary`. Its text keeps the
structure of R glmm's ``summary`` (call, link, fixed-effects table with two-sided
p-values, variance-component table with one-sided p-values, significance codes) so the
two can be compared line by line, and adds an MCSE column, the Monte Carlo settings,
the smallest block ESS, the largest Pareto k-hat and the largest MCSE/SE ratio, with a
warning line for each check that fails (docs/method.md).

Estimates and standard errors are printed rounded at the decimal of the MCSE's leading
digit, but never finer than two significant digits of the standard error (a departure
from R's glmm, which prints fixed digits); z values and p-values are computed from the
unrounded numbers, and the DataFrames :attr:`Summary.fixed` and :attr:`Summary.varcomps`
hold the unrounded numbers.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .diagnostics import ImportanceDiagnostics

if TYPE_CHECKING:
    from .results import GLMMResults

#: Column names of :attr:`Summary.fixed`.
FIXED_COLUMNS = ("Estimate", "Std. Error", "MCSE", "z value", "Pr(>|z|)")
#: Column names of :attr:`Summary.varcomps` (the p-value is one-sided, H_A: nu > 0).
VARCOMP_COLUMNS = ("Estimate", "Std. Error", "MCSE", "z value", "Pr(>z)")
SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"
ROUNDING_NOTE = (
    "Estimates and standard errors are rounded at the leading digit of the MCSE, "
    "at most to two significant digits of the standard error."
)
_WIDTH = 80

FloatArray = NDArray[np.float64]


def significance_stars(p_value: float) -> str:
    """R's significance code of a p-value (``"***"``, ``"**"``, ``"*"``, ``"."``, ``""``).

    Examples
    --------
    >>> significance_stars(0.004)
    '**'
    """
    if not np.isfinite(p_value):
        return ""
    for cut, stars in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p_value < cut:
            return stars
    return ""


def display_decimals(se: float, mcse: float) -> int:
    """Decimals to print an estimate and its SE with (may be negative: round to tens).

    The estimate is rounded at the MCSE's leading digit, :math:`-\\lfloor\\log_{10}
    \\mathrm{mcse}\\rfloor` decimals, but to no more decimals than two significant digits
    of the SE, :math:`1-\\lfloor\\log_{10}\\mathrm{se}\\rfloor`. Four decimals when
    neither is a positive finite number.

    Examples
    --------
    >>> display_decimals(se=0.404, mcse=0.0076)
    2
    >>> display_decimals(se=0.404, mcse=0.058)
    2
    >>> display_decimals(se=2.1, mcse=0.57)
    1
    """
    candidates = []
    if np.isfinite(mcse) and mcse > 0:
        candidates.append(-math.floor(math.log10(mcse)))
    if np.isfinite(se) and se > 0:
        candidates.append(1 - math.floor(math.log10(se)))
    return min(candidates) if candidates else 4


def format_fixed(value: float, decimals: int) -> str:
    """``value`` rounded to ``decimals`` (negative: to tens, hundreds...), as text."""
    if not np.isfinite(value):
        return "NA" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")
    rounded = round(float(value), decimals)
    text = f"{rounded:.{max(decimals, 0)}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def format_p_value(p_value: float) -> str:
    """A p-value to three significant digits, ``"<2e-16"`` below machine epsilon (as R)."""
    if not np.isfinite(p_value):
        return "NA"
    if p_value < np.finfo(float).eps:
        return "<2e-16"
    return f"{p_value:.3g}"


#: MCSEs below this print in scientific notation (``3.2e-07``), never as ``0.0000``.
MCSE_SCIENTIFIC_BELOW = 1e-3


def mcse_text(mcse: float) -> str:
    """An MCSE to two significant digits; scientific below :data:`MCSE_SCIENTIFIC_BELOW`.

    Examples
    --------
    >>> mcse_text(0.0076), mcse_text(3.21e-7), mcse_text(0.0)
    ('0.0076', '3.2e-07', '0')
    """
    if not np.isfinite(mcse):
        return format_fixed(mcse, 4)
    if mcse <= 0:
        return "0"
    if mcse < MCSE_SCIENTIFIC_BELOW:
        return f"{mcse:.1e}"
    return format_fixed(mcse, 1 - math.floor(math.log10(mcse)))


def _text_table(frame: pd.DataFrame, p_column: str) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of a coefficient table (names first, stars last)."""
    rows = []
    for name, row in frame.iterrows():
        decimals = display_decimals(row["Std. Error"], row["MCSE"])
        rows.append([
            str(name),
            format_fixed(row["Estimate"], decimals),
            format_fixed(row["Std. Error"], decimals),
            mcse_text(row["MCSE"]),
            format_fixed(row["z value"], 3),
            format_p_value(row[p_column]),
            significance_stars(row[p_column]),
        ])
    return ["", *frame.columns, ""], rows


def _aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for cells in [headers, *rows]:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        parts.append(cells[-1])
        lines.append(" ".join(parts).rstrip())
    return lines


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + f"<th>{html.escape(r[0])}</th>"
        + "".join(f'<td style="text-align:right">{html.escape(c)}</td>' for c in r[1:])
        + "</tr>"
        for r in rows
    )
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass(frozen=True)
class Summary:
    """Summary of a GLMM fit: R glmm's tables, MCSEs and importance-sampling checks.

    ``str(summary)`` is the text table, ``summary._repr_html_()`` the notebook view.

    Attributes
    ----------
    call : str
        The fit as a call of :func:`pyglmm.glmm` (formulas, family, ``m``, names).
    link : str
        The canonical link: ``"logit (log odds)"`` or ``"log"``.
    fixed : pandas.DataFrame
        One row per fixed effect: Estimate, Std. Error, MCSE, z value and the two-sided
        p-value ``Pr(>|z|)``; unrounded.
    varcomps : pandas.DataFrame
        One row per variance component: Estimate, Std. Error, MCSE, z value and the
        one-sided p-value ``Pr(>z)`` for :math:`H_A: \\nu > 0` (half the two-sided one);
        unrounded.
    loglike_value : float
        The maximised Monte Carlo log-likelihood approximation.
    trust_converged : bool
        Whether the trust-region optimiser converged.
    iterations : int
        Trust-region iterations of the final round.
    monte_carlo : str
        One line on the Monte Carlo settings (``m``, blocks, proposal, rounds).
    diagnostics : ImportanceDiagnostics
        Block ESS, Pareto k-hat and MCSE/SE, with their warnings.
    warnings : tuple of str
        Every warning line of the summary (convergence, information, sampling).

    Examples
    --------
    >>> import pyglmm as pg
    >>> fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", pg.datasets.load_booth_hobert(),
    ...               "bernoulli", m=1000, rng=1)
    >>> s = fit.summary()
    >>> list(s.varcomps.columns)
    ['Estimate', 'Std. Error', 'MCSE', 'z value', 'Pr(>z)']
    >>> print(s)  # doctest: +ELLIPSIS
    Call:
    glmm("y ~ 0 + x1", random=["~ 0 + z1"], family="bernoulli", m=1000...
    """

    call: str
    link: str
    fixed: pd.DataFrame
    varcomps: pd.DataFrame
    loglike_value: float
    trust_converged: bool
    iterations: int
    monte_carlo: str
    diagnostics: ImportanceDiagnostics
    warnings: tuple[str, ...]
    varcorr: pd.DataFrame | None = None
    two_sided_covariances: bool = False

    @property
    def _varcomp_heading(self) -> str:
        if self.two_sided_covariances:
            return ("P-values are one-sided for variances, H_A: nu > 0; two-sided for "
                    "covariances")
        return "P-values are one-sided, H_A: nu > 0"

    @classmethod
    def from_results(cls, fit: GLMMResults) -> Summary:
        """Build the summary of a fit (what :meth:`GLMMResults.summary` returns)."""
        tidy = fit.tidy().set_index("term")
        tidy.index.name = None
        columns = {"estimate": "Estimate", "se": "Std. Error", "mcse": "MCSE", "z": "z value"}
        fixed = tidy[tidy["kind"] == "fixed"].rename(columns=columns | {"p": "Pr(>|z|)"})
        varcomps = tidy[tidy["kind"] != "fixed"].rename(columns=columns | {"p": "Pr(>z)"})
        diagnostics = fit.diagnostics()
        # every post-fit check, as glmm() warned them (pyglmm.checks)
        warnings = list(diagnostics.messages)
        bar_form = bool(fit.random_formulas) and all(
            f.lstrip().startswith("(") for f in fit.random_formulas)
        arguments = [_quote(fit.fixed_formula)]
        if not bar_form:
            arguments.append(f"random=[{', '.join(_quote(f) for f in fit.random_formulas)}]")
        arguments += [f"family={_quote(fit.family.name)}", f"m={fit.m}"]
        if not bar_form:
            arguments.append(
                f"varcomps_names=[{', '.join(_quote(n) for n in fit.varcomps_names)}]")
        if list(fit.varcomps_equal) != list(range(1, len(fit.varcomps_equal) + 1)):
            arguments.append(f"varcomps_equal={list(fit.varcomps_equal)}")
        rounds = len(fit.rounds)
        sample = (
            f"m = {fit.m} draws for each of {fit.n_blocks} independent blocks"
            if fit.blocks == "independent" and fit.n_blocks > 1
            else f"m = {fit.m} draws of one {'joint sample' if fit.blocks == 'joint' else 'block'}"
        )
        tails = (
            f"t with max({fit.zeta:g}, block size) degrees of freedom"
            if fit.zeta_per_block else f"zeta = {fit.zeta:g}"
        )
        kind = fit.rounds[-1].sampler
        chained = int(fit.settings.chained_blocks(fit.block_sizes).sum())
        others = fit.n_blocks - chained
        where = ("" if others == 0 else
                 f" in the {chained} {_plural(chained, 'block')} of at least "
                 f"{_chain_threshold()} effects")
        besides = ("" if others == 0 else
                   f", independent draws of the Laplace t in the other {others}")
        drawn = (
            f"MCMC likelihood: {fit.n_batches} Hamiltonian Markov chains{where} at the "
            f"final round's centre, its level by bridge sampling{besides}"
            if kind == "mcmc" else
            f"{fit.importance} proposal ({tails}) by randomised quasi-Monte Carlo, "
            f"{fit.n_batches} randomly shifted Sobol sets" if kind == "qmc" else
            f"{fit.importance} proposal ({tails})")
        monte_carlo = (
            f"Monte Carlo: {sample}; {drawn}; "
            f"{rounds} sampling {_plural(rounds, 'round')}, "
            f"the last {'converged' if fit.trust_converged else 'stopped'} after "
            f"{fit.iterations} {_plural(fit.iterations, 'iteration')}."
        )
        correlated = any(len(t.columns) > 1 or t.structure != "scalar" for t in fit.terms)
        return cls(
            varcorr=_varcorr_display(fit) if correlated else None,
            two_sided_covariances=bool((tidy["kind"] == "covariance").any()),
            call=_wrap_call(arguments),
            link=fit.family.link,
            fixed=fixed[list(FIXED_COLUMNS)].astype(float),
            varcomps=varcomps[list(VARCOMP_COLUMNS)].astype(float),
            loglike_value=fit.loglike_value,
            trust_converged=fit.trust_converged,
            iterations=fit.iterations,
            monte_carlo=monte_carlo,
            diagnostics=diagnostics,
            warnings=tuple(warnings),
        )

    def _check_line(self) -> str:
        d = self.diagnostics
        ratio = d.max_mcse_se_ratio
        pareto_k = d.max_pareto_k
        chains = d.chains
        mixing = "" if chains is None else (
            f" Chains: smallest effective sample size {chains.min_ess:.0f} of {d.m}, "
            f"largest R-hat {chains.max_rhat:.3f}.")
        return (
            f"Smallest block ESS {d.min_ess:.0f} ({100 * d.min_ess / d.m:.1f}% of m); "
            f"largest Pareto k {'NA' if np.isnan(pareto_k) else f'{pareto_k:.2f}'}; "
            f"largest MCSE/SE {'NA' if np.isnan(ratio) else f'{ratio:.3f}'}"
            + (f" ({d.worst_parameter})." if np.isfinite(ratio) else ".") + mixing
        )

    def __str__(self) -> str:
        lines: list[str] = []
        if not self.trust_converged:
            lines += [textwrap.fill(self.warnings[0], _WIDTH), ""]
        lines += ["Call:", self.call, "", f'Link is: "{self.link}"', "", "Fixed Effects:"]
        lines += _aligned(*_text_table(self.fixed, "Pr(>|z|)"))
        lines += [""] + textwrap.fill(
            f"Variance Components for Random Effects ({self._varcomp_heading}):", _WIDTH
        ).splitlines()
        lines += _aligned(*_text_table(self.varcomps, "Pr(>z)"))
        if self.varcorr is not None:
            lines += ["", "Random effects as standard deviations and correlations:"]
            lines += self.varcorr.to_string(index=False).splitlines()
        lines += ["---", SIGNIF_LEGEND, textwrap.fill(ROUNDING_NOTE, _WIDTH), ""]
        lines.append(f"Log-likelihood (Monte Carlo approximation): {self.loglike_value:.4f}")
        lines.append(textwrap.fill(self.monte_carlo, _WIDTH))
        lines.append(textwrap.fill(self._check_line(), _WIDTH))
        later = self.warnings[0 if self.trust_converged else 1 :]
        for warning in later:
            lines += ["", textwrap.fill(warning, _WIDTH)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """HTML for notebooks: the same content as the text, as tables."""
        fixed = _html_table(*_text_table(self.fixed, "Pr(>|z|)"))
        varcomps = _html_table(*_text_table(self.varcomps, "Pr(>z)"))
        alerts = "".join(
            f'<p style="color:#b00020"><b>{html.escape(w)}</b></p>' for w in self.warnings
        )
        notes = [SIGNIF_LEGEND, ROUNDING_NOTE,
                 f"Log-likelihood (Monte Carlo approximation): {self.loglike_value:.4f}",
                 self.monte_carlo, self._check_line()]
        return (
            f"<div><p><b>Call:</b> <code>{html.escape(self.call)}</code></p>"
            f"<p>Link is: &quot;{html.escape(self.link)}&quot;</p>"
            f"<p><b>Fixed Effects</b></p>{fixed}"
            "<p><b>Variance Components for Random Effects</b> "
            f"({html.escape(self._varcomp_heading)})</p>{varcomps}"
            + ("" if self.varcorr is None else
               "<p><b>Standard deviations and correlations</b></p>"
               + self.varcorr.to_html(index=False))
            + "".join(f"<p><small>{html.escape(n)}</small></p>" for n in notes)
            + f"{alerts}</div>"
        )


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _wrap_call(arguments: list[str]) -> str:
    lines = ["glmm("]
    for i, argument in enumerate(arguments):
        piece = argument + (", " if i < len(arguments) - 1 else ")")
        if len(lines[-1]) + len(piece.rstrip()) > _WIDTH and lines[-1].strip() != "glmm(":
            lines[-1] = lines[-1].rstrip()
            lines.append("     ")
        lines[-1] += piece
    return "\n".join(lines)


def _varcorr_display(fit: GLMMResults) -> pd.DataFrame:
    """lme4's VarCorr layout: one row per column, its SD and correlations with the earlier."""
    table = fit.varcorr()
    rows = []
    for grp in dict.fromkeys(table["grp"]):
        part = table[table["grp"] == grp]
        variances = part[part["var2"] == ""]
        names = list(variances["var1"])
        for i, row in enumerate(variances.itertuples()):
            corr = []
            for j in range(i):
                hit = part[(part["var1"] == names[j]) & (part["var2"] == row.var1)]
                corr.append(f"{hit['sdcor'].iloc[0]:.3f}" if len(hit) else "")
            rows.append([grp if i == 0 else "", row.var1, f"{row.vcov:.4g}",
                         f"{row.sdcor:.4g}", " ".join(corr)])
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])


def _chain_threshold() -> int:
    """The block size from which ``sampler="auto"`` draws Markov chains."""
    from . import chains

    return int(chains.MCMC_MIN_BLOCK)
