"""A live display of a running fit on a terminal, drawn with tqdm from the fit's events.

:class:`LiveDisplay` turns :class:`pyglmm.events.FitEvent` s into one status line on
standard error: the stage (PQL and Laplace centres, each round's sampling and
maximisation), a bar of the sample's chunks drawn so far with an estimate of the time
left, and for each trust-region iteration the MCLA value and its gradient norm. It
appears only once the fit has run for :data:`DEFAULT_DELAY` seconds (short fits stay
silent) and clears its line when the fit ends, leaving one closing line.

:func:`pyglmm.glmm` uses it with ``progress=None`` (the default) when standard error is
a terminal, and with ``progress=True`` on a terminal (then at once); off a terminal
``progress=True`` prints plain ``[pyglmm] ...`` lines instead
(:class:`pyglmm.events.FitReporter`).

tqdm rather than rich: it is small, pure Python, has no dependencies of its own, and
draws one line, which is all a fit needs; it also copes with terminals that do not
understand cursor movement.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, TextIO

from .events import FitEvent

#: Seconds a fit runs before the display appears with ``progress=None``.
DEFAULT_DELAY = 2.0
#: Seconds between redraws while no event arrives (the clocks keep running).
TICK = 0.5

#: Width used when the terminal does not say (a pseudo-terminal of size 0).
FALLBACK_WIDTH = 80

# the text after the bar travels in tqdm's ``unit`` field (its ``postfix`` adds a comma)
_SAMPLING_FORMAT = "{desc} |{bar}| {n_fmt}/{total_fmt} {unit}"
_PLAIN_FORMAT = "{desc}"


def _seconds(value: float) -> str:
    """A duration as ``"42 s"`` or ``"3 min 05 s"``."""
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes} min {seconds:02d} s"


def _width(stream: TextIO) -> int:
    """Columns of the terminal behind ``stream`` (:data:`FALLBACK_WIDTH` if unknown)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns if columns > 0 else FALLBACK_WIDTH


class LiveDisplay:
    """One line on a terminal that follows a fit's events.

    Parameters
    ----------
    stream : file
        Where to draw (a terminal: standard error).
    delay : float
        Seconds after ``started`` before anything is drawn.
    started : float, optional
        ``time.perf_counter()`` when the fit began (default: now).
    """

    def __init__(self, stream: TextIO, delay: float = DEFAULT_DELAY,
                 started: float | None = None) -> None:
        self.stream = stream
        self.delay = delay
        self.started = time.perf_counter() if started is None else started
        self._lock = threading.Lock()
        self._bar: Any = None
        self._closed = False
        # what the line shows now
        self._stage = "starting"
        self._sampling = False
        self._chunks = (0, 0)
        self._detail = ""
        self._stage_started = self.started
        self._m: int | None = None
        self._seconds_per_draw: float | None = None  # measured on the last sampled round
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="pyglmm-progress", daemon=True)
        self._ticker.start()

    # -- events --------------------------------------------------------------------------
    def __call__(self, event: FitEvent) -> None:
        """Show one event."""
        with self._lock:
            if self._closed:
                return
            now = time.perf_counter()
            label = f"round {(event.round_index or 0) + 1} "
            label += "final" if event.final else "pilot"
            if event.stage == "centre":
                self._begin(now, event.message.split(" (")[0], sampling=False)
            elif event.stage == "round":
                self._m = event.m or 0
                self._begin(now, f"{label} m={self._m:,} sampling", sampling=True)
                self._chunks = (0, event.n_chunks or 0)
            elif event.stage == "chunk":
                self._chunks = (event.chunk or 0, event.n_chunks or self._chunks[1])
            elif event.stage == "sampled":
                if self._m:
                    self._seconds_per_draw = (now - self._stage_started) / self._m
                self._begin(now, f"{label} maximising", sampling=False)
            elif event.stage == "iteration":
                self._stage = f"{label} iteration {event.iteration}"
                self._detail = f"MCLA {event.value:.6f}" + (
                    "" if event.grad_norm is None else f" |grad| {event.grad_norm:.2e}")
            elif event.stage == "round_done":
                self._stage = f"{label} maximised"
                self._detail = f"MCLA {event.value:.6f}"
            elif event.stage == "done":
                self._finish(event.message)
                return
            self._draw(now)

    def close(self, message: str | None = None) -> None:
        """Clear the line (writing ``message`` on a line of its own, if shown); idempotent."""
        with self._lock:
            self._finish(message)

    # -- drawing ---------------------------------------------------------------------------
    def _begin(self, now: float, stage: str, sampling: bool) -> None:
        self._stage, self._sampling, self._detail = stage, sampling, ""
        self._stage_started = now

    def _time_left(self, now: float) -> str:
        """Estimated seconds left in a sampling stage ("" when nothing says)."""
        done, total = self._chunks
        spent = now - self._stage_started
        if total and done:
            left = spent / done * (total - done)
        elif self._seconds_per_draw is not None and self._m:
            left = self._seconds_per_draw * self._m - spent
        else:
            return ""
        return f", ~{_seconds(left)} left" if left > 0.5 else ""

    def _draw(self, now: float) -> None:
        if self._closed or now - self.started < self.delay:
            return
        if self._bar is None:
            from tqdm import tqdm

            # nrows given: tqdm draws nothing on a terminal that reports 0 rows
            self._bar = tqdm(total=None, file=self.stream, leave=False, nrows=24,
                             bar_format=_PLAIN_FORMAT, mininterval=0.0, disable=False)
        bar = self._bar
        bar.ncols = _width(self.stream) - 1  # the last column would wrap on some terminals
        stage = f"pyglmm {_seconds(now - self.started)} | {self._stage}"
        if self._sampling and self._chunks[1] > 1:
            done, total = self._chunks
            bar.bar_format = _SAMPLING_FORMAT
            bar.total, bar.n = total, done
            bar.unit = f"chunks{self._time_left(now)}"
        else:
            bar.bar_format = _PLAIN_FORMAT
            bar.total, bar.n = None, 0
            tail = self._time_left(now) if self._sampling else ""
            stage = ": ".join(p for p in (stage, self._detail) if p) + tail
        bar.set_description_str(stage, refresh=False)
        bar.refresh()

    def _finish(self, message: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            if message:
                self.stream.write(f"pyglmm: {message}\n")
                self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self._draw(time.perf_counter())
