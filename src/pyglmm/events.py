"""What a fit reports while it runs: :class:`FitEvent` and the :class:`FitReporter`.

The fit driver emits one event per stage (the PQL and Laplace centres, each sampling
round's start and end, every trust-region iteration, the end of the fit). A
``callback`` given to :func:`pyglmm.glmm` receives every event (for notebooks, logs or
a display of one's own); ``progress=True`` prints them to standard error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The stages of :attr:`FitEvent.stage`, in the order a fit passes them.
STAGES = ("centre", "round", "sampled", "iteration", "round_done", "done")


@dataclass(frozen=True)
class FitEvent:
    """One thing that happened during a fit.

    Attributes
    ----------
    stage : str
        One of :data:`STAGES`: ``"centre"`` (PQL or Laplace centre found),
        ``"round"`` (a sampling round starts), ``"sampled"`` (its proposal is built
        and the sample is ready), ``"iteration"`` (one trust-region iteration),
        ``"round_done"`` (its maximisation ended) and ``"done"`` (the fit ended).
    message : str
        A one-line description, as ``progress=True`` prints it.
    elapsed : float
        Seconds since the fit began.
    round_index : int or None
        The sampling round (from 0), for the round stages.
    final : bool
        Whether that round is a final round (at the full ``m``).
    m : int or None
        Draws of the round.
    iteration : int or None
        Trust-region iteration (from 1), for ``"iteration"``.
    value : float or None
        The MCLA at the current point (``"iteration"``, ``"round_done"``).
    step_norm : float or None
        Length of the trust-region step (``"iteration"``).
    accepted : bool or None
        Whether the step was accepted (``"iteration"``).
    """

    stage: str
    message: str
    elapsed: float
    round_index: int | None = None
    final: bool = False
    m: int | None = None
    iteration: int | None = None
    value: float | None = None
    step_norm: float | None = None
    accepted: bool | None = None


class FitReporter:
    """Sends a fit's events to a callback and, with ``progress``, to standard error.

    Parameters
    ----------
    callback : callable, optional
        Called with every :class:`FitEvent`.
    progress : bool
        Print each event's message to standard error.
    started : float, optional
        ``time.perf_counter()`` when the fit began (default: now).
    """

    def __init__(
        self,
        callback: Callable[[FitEvent], object] | None = None,
        progress: bool = False,
        started: float | None = None,
    ) -> None:
        self.callback = callback
        self.progress = progress
        self.started = time.perf_counter() if started is None else started

    @property
    def active(self) -> bool:
        """Whether anybody listens (else events need not be built)."""
        return self.callback is not None or self.progress

    def emit(self, stage: str, message: str, **fields: object) -> None:
        """Report one event."""
        if not self.active:
            return
        event = FitEvent(stage=stage, message=message,
                         elapsed=time.perf_counter() - self.started, **fields)  # type: ignore[arg-type]
        if self.progress:
            print(f"[pyglmm] {message}", file=sys.stderr, flush=True)
        if self.callback is not None:
            self.callback(event)
