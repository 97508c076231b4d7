"""Profile-interval ends as tasks for a backend (:func:`pyglmm.profile_ends.profile_intervals`).

A task holds what rebuilds the fit's final sample on a worker (the problem, the
sampler, the chunks' seed streams and sizes, the shift) and the end's arguments; the
worker draws the chunks again from their streams, so every end is the one the serial
computation finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import profile_ends
from .mcla import MCLAObjective
from .parallel import ChunkStore
from .profiles import Target
from .ranef import require_sample

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class EndTask:
    """One end of one profile interval, to compute where a backend puts it.

    Holds what rebuilds the fit's final sample (its chunks are drawn again from their
    seed streams, so the numbers are those of the fit's own sample) and the end's
    arguments.
    """

    problem: Any
    sampler: Any
    seeds: tuple[Any, ...]
    sizes: tuple[int, ...]
    shift: Any
    settings: Any
    level_variance: Any
    beta: FloatArray
    nu: FloatArray
    target: Target
    estimate: float
    se: float
    direction: float
    cut: float
    recentre: int


def end_task(task: EndTask) -> tuple[float, float, float, bool]:
    """Compute one :class:`EndTask` (on a worker, or here)."""
    store = ChunkStore(task.problem, task.sampler, task.seeds, task.sizes, shift=task.shift)
    sample = MCLAObjective(task.problem, store, task.sizes, shift=task.shift,
                           level_variance=task.level_variance)
    fit = SimpleNamespace(beta=task.beta, nu=task.nu, sample=sample, settings=task.settings)
    return profile_ends.end_point(fit, task.target, task.estimate, task.se, task.direction,
                                  task.cut, task.recentre)


def end_tasks(fit: Any, jobs: list[tuple[Target, float, float, float]],
              cut: float, recentre: int) -> list[EndTask]:
    """The :class:`EndTask` of every (target, estimate, se, direction) of ``jobs``."""
    sample = require_sample(fit)
    store = getattr(sample.chunk_source, "store", sample.chunk_source)
    return [EndTask(sample.problem, store.sampler, tuple(store.seeds), tuple(store.sizes),
                    sample.shift, fit.settings, sample.level_variance,
                    np.asarray(fit.beta), np.asarray(fit.nu), target, estimate, se,
                    direction, cut, recentre)
            for target, estimate, se, direction in jobs]
