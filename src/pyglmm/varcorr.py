"""Variances, standard deviations and correlations of the random terms (lme4's VarCorr).

The Monte Carlo likelihood is maximised in variances and covariances
(:mod:`pyglmm.layout`), so their standard errors come straight from the observed
information; those of the standard deviations ``sd = sqrt(v)`` and correlations
``r = c / sqrt(v_1 v_2)`` follow by the delta method, with gradients
``d sd / d v = 1 / (2 sd)`` and ``d r / d c = 1 / sqrt(v_1 v_2)``,
``d r / d v_1 = -r / (2 v_1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from .terms import TermInfo

FloatArray = NDArray[np.float64]

#: Columns of :func:`varcorr_table`, as in ``as.data.frame(lme4::VarCorr(fit))`` plus SEs
#: and Wald intervals of ``sdcor``.
VARCORR_COLUMNS = ("grp", "var1", "var2", "vcov", "sdcor", "se_vcov", "se_sdcor",
                   "sdcor_lower", "sdcor_upper")


def varcorr_table(
    terms: Sequence[TermInfo], psi: FloatArray, covariance: FloatArray, level: float = 0.95
) -> pd.DataFrame:
    """One row per variance (with its SD) and per covariance (with its correlation).

    Parameters
    ----------
    terms : sequence of TermInfo
    psi : ndarray
        The random-effect parameters ``theta[p:]``.
    covariance : ndarray
        Their estimated covariance matrix (the random block of ``fit.vcov()``).
    level : float
        Level of the Wald intervals of the SDs (truncated at 0) and correlations
        (truncated to [-1, 1]).

    Returns
    -------
    pandas.DataFrame
        Columns ``grp`` (grouping factor), ``var1``, ``var2`` (the columns; ``var2``
        empty for a variance), ``vcov`` (variance or covariance), ``sdcor`` (SD or
        correlation), ``se_vcov`` and ``se_sdcor`` (their standard errors), and
        ``sdcor_lower``, ``sdcor_upper`` (the Wald interval of ``sdcor``).
    """
    rows = []
    psi = np.asarray(psi, dtype=np.float64)
    for info in terms:
        structure = info.covariance_structure()
        index = np.asarray(info.params, dtype=np.intp)
        basis = structure.basis()  # (P, k, k)
        sigma = np.tensordot(psi[index], basis, axes=1)
        k = len(info.columns)
        sub = covariance[np.ix_(index, index)]

        def se_of(gradient: FloatArray, sub: FloatArray = sub) -> float:
            value = float(gradient @ sub @ gradient)
            return float(np.sqrt(value)) if value >= 0 else float("nan")

        for i in range(k):
            d_var = basis[:, i, i]  # d sigma_ii / d psi
            sd = float(np.sqrt(sigma[i, i])) if sigma[i, i] > 0 else 0.0
            se_v = se_of(d_var)
            rows.append((info.name, info.columns[i], "", float(sigma[i, i]), sd, se_v,
                         se_v / (2.0 * sd) if sd > 0 else float("nan")))
        if structure.is_diagonal:
            continue
        for i in range(k):
            for j in range(i):
                cov = float(sigma[i, j])
                scale = float(np.sqrt(sigma[i, i] * sigma[j, j]))
                corr = cov / scale if scale > 0 else float("nan")
                d_cov = basis[:, i, j]
                d_corr = (d_cov / scale - corr / (2.0 * sigma[i, i]) * basis[:, i, i]
                          - corr / (2.0 * sigma[j, j]) * basis[:, j, j])
                rows.append((info.name, info.columns[j], info.columns[i], cov, corr,
                             se_of(d_cov), se_of(d_corr)))
    table = pd.DataFrame(rows, columns=list(VARCORR_COLUMNS[:7]))
    quantile = float(stats.norm.ppf(0.5 + level / 2.0))
    spread = quantile * table["se_sdcor"].to_numpy()
    is_sd = (table["var2"] == "").to_numpy()
    sdcor = table["sdcor"].to_numpy()
    table["sdcor_lower"] = np.where(is_sd, np.maximum(sdcor - spread, 0.0),
                                    np.maximum(sdcor - spread, -1.0))
    table["sdcor_upper"] = np.where(is_sd, sdcor + spread, np.minimum(sdcor + spread, 1.0))
    return table
