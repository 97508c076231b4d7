"""``glmm(..., m="auto")``: grow the Monte Carlo sample until its error is small enough.

The Monte Carlo standard error of an estimate falls like ``1 / sqrt(m)``. Starting from
a small sample, each step fits at ``m``, reads the largest MCSE/SE ratio ``r`` over the
parameters, and, if ``r`` is above the target ``t``, refits at
``m (r / t)^2`` (times 1.2 for the ratio's own noise, at least 1.5 ``m``, at most
``max_m``), starting from the previous estimate. The path (m, seconds, largest
MCSE/SE) is kept in ``fit.m_path``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ArgumentError, ArgumentTypeError, ImportanceSamplingWarning

#: Sample size of the first step.
AUTO_START_M = 1_000
#: Margin on the square-root law's sample size, and the least growth per step.
AUTO_MARGIN = 1.2
AUTO_MIN_GROWTH = 1.5


def check_auto(mcse_target: Any, max_m: Any) -> tuple[float, int]:
    """Validate ``mcse_target`` (in (0, 1)) and ``max_m`` (an int of at least 100)."""
    if isinstance(mcse_target, bool) or not isinstance(mcse_target, int | float):
        raise ArgumentTypeError(f"mcse_target must be a number, not {type(mcse_target).__name__}")
    if not 0.0 < float(mcse_target) < 1.0:
        raise ArgumentError(f"mcse_target must be between 0 and 1 (e.g. 0.1), got {mcse_target}")
    if isinstance(max_m, bool) or not isinstance(max_m, int | np.integer):
        raise ArgumentTypeError(f"max_m must be an integer, not {type(max_m).__name__}")
    if int(max_m) < 100:
        raise ArgumentError(f"max_m must be at least 100, got {max_m}")
    return float(mcse_target), int(max_m)


def next_m(m: int, ratio: float, target: float, max_m: int) -> int:
    """The next sample size by the square-root law (see the module doc)."""
    wanted = m * (ratio / target) ** 2 * AUTO_MARGIN if np.isfinite(ratio) else 10.0 * m
    return int(min(max_m, max(math.ceil(wanted), math.ceil(AUTO_MIN_GROWTH * m))))


def fit_until_precise(
    fit_at: Callable[[int, Any], Any], target: float, max_m: int, stacklevel: int = 3
) -> Any:
    """Run ``fit_at(m, start)`` with growing ``m`` until MCSE/SE <= ``target``.

    ``fit_at`` returns a :class:`pyglmm.GLMMResults`; ``start`` is None for the first
    step, then the previous estimate. Returns the last fit with ``m_path`` set.
    """
    m = min(AUTO_START_M, max_m)
    start = None
    path: list[tuple[int, float, float]] = []
    while True:
        began = time.perf_counter()
        fit = fit_at(m, start)
        ratio = float(fit.diagnostics().max_mcse_se_ratio)
        path.append((m, time.perf_counter() - began, ratio))
        if ratio <= target or m >= max_m:
            break
        start = fit.params().to_numpy()
        m = next_m(m, ratio, target, max_m)
    if not ratio <= target:
        warnings.warn(
            f"m='auto' stopped at max_m = {max_m} with a largest MCSE/SE of {ratio:.3g} "
            f"(target {target:g}); raise max_m, or read the Monte Carlo errors as they are",
            ImportanceSamplingWarning,
            stacklevel=stacklevel,
        )
    return dataclasses.replace(fit, m_path=tuple(path), sample=fit.sample, design=fit.design)
