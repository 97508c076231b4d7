"""The null distribution of a likelihood-ratio test between nested GLMMs.

Adding interior parameters gives the reference chi-square(d). When the larger model
adds variance components that the smaller one fixes at 0, the true value is on the
boundary of the parameter space and the statistic follows a chi-bar-square mixture
(Self & Liang 1987; Stram & Lee 1994): :func:`boundary_blocks` counts the independent
boundary blocks the larger model adds, :func:`mixture` forms the mixture for them and
:func:`null_distribution` puts the two together (the rules are listed in
:func:`pyglmm.compare.lrt`). Where the mixture has no closed form the naive
chi-square is used, labelled with :data:`FALLBACK`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scipy import stats

if TYPE_CHECKING:
    from .results import GLMMResults

#: Label of the naive chi-square used where the boundary rules do not apply.
FALLBACK = "(boundary not accounted for)"


@dataclass(frozen=True)
class Mixture:
    """A chi-bar-square reference distribution."""

    weights: tuple[float, ...]
    dfs: tuple[int, ...]
    label: str
    boundary: bool
    accounted: bool

    def sf(self, statistic: float) -> float:
        """Upper tail probability at ``statistic`` (negative values count as 0)."""
        x = max(float(statistic), 0.0)
        total = 0.0
        for weight, d in zip(self.weights, self.dfs, strict=True):
            total += weight * chi2_sf(x, d)
        return float(min(total, 1.0))


def chi2_sf(x: float, d: int) -> float:
    if d == 0:
        return 1.0 if x <= 0.0 else 0.0
    return float(stats.chi2.sf(x, d))


def _format_weight(weight: float) -> str:
    return f"{weight:.6g}"


def mixture(df: int, n_boundary: int, fallback: bool, boundary: bool) -> Mixture:
    """The null distribution for ``n_boundary`` independent boundary blocks."""
    if fallback:
        label = f"chi-square({df}) {FALLBACK}"
        return Mixture((1.0,), (df,), label, True, False)
    if n_boundary == 0:
        return Mixture((1.0,), (df,), f"chi-square({df})", boundary, True)
    k = df - n_boundary
    weights = tuple(math.comb(n_boundary, j) / 2.0**n_boundary for j in range(n_boundary + 1))
    dfs = tuple(k + j for j in range(n_boundary + 1))
    label = " + ".join(f"{_format_weight(w)} chi-square({d})" for w, d in zip(weights, dfs,
                                                                           strict=True))
    return Mixture(weights, dfs, label, True, True)



def boundary_blocks(
    fit0: GLMMResults, fit1: GLMMResults, match: dict[int, int]
) -> tuple[int, bool]:
    """Independent boundary blocks the alternative adds, and whether the rules fail.

    Each block is one variance the null fixes at 0, with (for a column added to an
    unstructured term) its covariances with the term's other columns.
    """
    back = {j: i for i, j in match.items()}
    boundary_params: set[int] = set()
    fallback = False
    for j, alt in enumerate(fit1.terms):
        null_columns = () if j not in back else fit0.terms[back[j]].columns
        added = [c for c in alt.columns if c not in null_columns]
        if not added:
            continue
        variance = alt.covariance_structure().variance_params()
        variances = [p for p, is_var in zip(alt.params, variance, strict=True) if is_var]
        if alt.structure == "scalar" or len(alt.columns) == 1:
            boundary_params.update(variances[:1])
        elif alt.structure == "diagonal":
            positions = [alt.columns.index(c) for c in added]
            boundary_params.update(variances[p] for p in positions)
        elif len(added) == 1:
            # one column added to an unstructured term: one variance and q covariances
            boundary_params.add(variances[alt.columns.index(added[0])])
        else:
            fallback = True
    return len(boundary_params), fallback


def null_distribution(
    fit0: GLMMResults, fit1: GLMMResults, match: dict[int, int], df: int
) -> Mixture:
    n_boundary, fallback = boundary_blocks(fit0, fit1, match)
    if n_boundary > df:
        fallback = True
    boundary = fallback or n_boundary > 0
    return mixture(df, n_boundary, fallback, boundary)
