"""What a fit reports while it runs: :class:`FitEvent` and the :class:`FitReporter`.

The fit driver emits one event per stage (the PQL and Laplace centres, each sampling
round's start, its chunks as they are drawn and its end, every trust-region
iteration, the end of the fit). A ``callback`` given to :func:`pyglmm.glmm` receives
every event (for notebooks, logs or a display of one's own). Standard error shows
them as :func:`pyglmm.glmm`'s ``progress`` says: ``None`` (the default) draws a live
display (:mod:`pyglmm.progress`) when standard error is a terminal and the fit lasts
more than about two seconds, and nothing otherwise; ``True`` draws it at once on a
terminal and prints one ``[pyglmm] ...`` line per event (chunks excepted) elsewhere;
``False`` shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .progress import LiveDisplay

#: The stages of :attr:`FitEvent.stage`, in the order a fit passes them.
STAGES = ("centre", "round", "chunk", "sampled", "iteration", "round_done", "done")


@dataclass(frozen=True)
class FitEvent:
    """One thing that happened during a fit.

    Attributes
    ----------
    stage : str
        One of :data:`STAGES`: ``"centre"`` (PQL or Laplace centre found),
        ``"round"`` (a sampling round starts), ``"chunk"`` (one more chunk of its
        sample drawn, on the first pass over them; not with a parallel backend,
        whose workers draw them), ``"sampled"`` (its proposal is built and the
        sample is ready), ``"iteration"`` (one trust-region iteration),
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
    grad_norm : float or None
        Euclidean norm of the MCLA's gradient at the iteration's point, where
        ``value`` is (``"iteration"``).
    chunk : int or None
        Chunks of the round's sample drawn so far (``"chunk"``).
    n_chunks : int or None
        Chunks of the round's sample (``"chunk"``, ``"sampled"``).
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
    grad_norm: float | None = None
    chunk: int | None = None
    n_chunks: int | None = None


class FitReporter:
    """Sends a fit's events to a callback and shows them on standard error.

    Parameters
    ----------
    callback : callable, optional
        Called with every :class:`FitEvent`.
    progress : bool or None
        ``None``: a live display (:class:`pyglmm.progress.LiveDisplay`) if standard
        error is a terminal, appearing after ``DEFAULT_DELAY`` seconds; nothing
        otherwise. ``True``: the live display at once on a terminal, else one
        ``[pyglmm] message`` line per event (``"chunk"`` events excepted).
        ``False``: nothing.
    started : float, optional
        ``time.perf_counter()`` when the fit began (default: now).
    """

    def __init__(
        self,
        callback: Callable[[FitEvent], object] | None = None,
        progress: bool | None = False,
        started: float | None = None,
    ) -> None:
        self.callback = callback
        self.started = time.perf_counter() if started is None else started
        self.display: LiveDisplay | None = None
        terminal = progress is not False and _is_terminal(sys.stderr)
        #: Print plain lines (``progress=True`` off a terminal).
        self.lines = progress is True and not terminal
        if terminal:
            from .progress import DEFAULT_DELAY, LiveDisplay

            self.display = LiveDisplay(sys.stderr, 0.0 if progress else DEFAULT_DELAY,
                                       self.started)

    @property
    def progress(self) -> bool:
        """Whether the events are shown on standard error (a display or lines)."""
        return self.lines or self.display is not None

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
        if self.lines and stage != "chunk":
            print(f"[pyglmm] {message}", file=sys.stderr, flush=True)
        if self.display is not None:
            self.display(event)
        if self.callback is not None:
            self.callback(event)

    def close(self) -> None:
        """End the live display, if any (after the ``"done"`` event, or on an error)."""
        if self.display is not None:
            self.display.close()


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed or detached stream
        return False
