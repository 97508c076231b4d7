"""The live progress display (pyglmm.progress) and when it is shown."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import pyglmm as pg
from pyglmm.events import FitEvent, FitReporter
from pyglmm.progress import LiveDisplay


def run_on_terminal(script: str, columns: int = 100) -> tuple[int, str, str]:
    """Run ``python -c script`` with standard error on a pseudo-terminal.

    Returns the exit status, what reached the terminal and the standard output.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    received = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        received.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout is not None else ""
    return proc.wait(timeout=120), b"".join(received).decode(), out


# no delay, and the fits' warnings kept off the terminal
FAST_DISPLAY = ("import warnings; warnings.simplefilter('ignore')\n"
                "import pyglmm.progress; pyglmm.progress.DEFAULT_DELAY = 0.0\n")


def test_cli_demo_draws_a_live_display_on_a_terminal():
    script = FAST_DISPLAY + (
        "from pyglmm.cli import main\n"
        "raise SystemExit(main(['demo', '-m', '5000']))\n"  # several chunks

    )
    status, terminal, out = run_on_terminal(script)
    assert status == 0
    assert "Fixed Effects:" in out  # the summary goes to standard output
    frames = terminal.split("\r")
    # the display is redrawn in place: the stages, the chunks drawn, each iteration
    assert any("PQL centre" in f for f in frames)
    assert any("sampling |" in f and "chunks" in f for f in frames)
    assert sum("iteration" in f and "MCLA -" in f and "|grad|" in f for f in frames) >= 2
    assert any("round 2 final" in f for f in frames)
    # ... and ends cleanly: the line is cleared, then one closing line
    assert terminal.endswith("\r\n")
    closing = terminal.rstrip("\r\n").split("\r")
    assert closing[-1].startswith("pyglmm: fit done in")
    assert closing[-2].strip() == ""
    assert "Traceback" not in terminal


def test_nothing_is_printed_without_a_terminal_by_default(booth_hobert, capsys):
    pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=300, rng=1)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert FitReporter(progress=None).progress is False  # pytest's stderr is no terminal
    assert FitReporter(progress=True).lines


def _events():
    yield FitEvent("centre", "PQL centre: 10 random effects in 10 blocks", 0.0)
    for r, (final, m) in enumerate([(False, 400), (True, 800)]):
        yield FitEvent("round", "", 0.0, round_index=r, final=final, m=m)
        for j in range(1, 5):
            yield FitEvent("chunk", "", 0.0, round_index=r, final=final, m=m, chunk=j,
                           n_chunks=4)
        yield FitEvent("sampled", "", 0.0, round_index=r, final=final, m=m, n_chunks=4)
        yield FitEvent("iteration", "", 0.0, round_index=r, final=final, iteration=1,
                       value=-12.5, grad_norm=0.25, step_norm=0.1, accepted=True)
        yield FitEvent("round_done", "", 0.0, round_index=r, final=final, value=-12.4)
    yield FitEvent("done", "fit done in 0.1 s (2 sampling rounds)", 0.0)


def test_the_display_follows_the_events():
    stream = io.StringIO()
    display = LiveDisplay(stream, delay=0.0)
    for event in _events():
        display(event)
    text = stream.getvalue()
    assert "round 1 pilot m=400 sampling |" in text and "4/4 chunks" in text
    assert "round 2 final iteration 1: MCLA -12.500000 |grad| 2.50e-01" in text
    assert text.endswith("pyglmm: fit done in 0.1 s (2 sampling rounds)\n")
    display.close()  # closing again changes nothing
    assert stream.getvalue() == text


def test_the_display_waits_for_its_delay():
    stream = io.StringIO()
    display = LiveDisplay(stream, delay=60.0)
    for event in _events():
        display(event)
    assert stream.getvalue() == ""  # a short fit stays silent, closing line included


def test_progress_false_is_silent_and_a_failed_fit_clears_the_display():
    script = FAST_DISPLAY + (
        "import sys\n"
        "import pyglmm as pg\n"
        "pg.glmm('y ~ 0 + x1', '~ 0 + z1', pg.datasets.load_booth_hobert(), m=300, rng=1,"
        " progress=False)\n"
        "print('silent until here', file=sys.stderr)\n"
        "def stop(event):\n"
        "    if event.stage == 'iteration':\n"
        "        raise KeyboardInterrupt\n"
        "try:\n"
        "    pg.glmm('y ~ 0 + x1', '~ 0 + z1', pg.datasets.load_booth_hobert(), m=300,"
        " rng=1, callback=stop)\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n"
    )
    status, terminal, out = run_on_terminal(script)
    assert status == 0 and out == "stopped\n"
    assert terminal.startswith("silent until here\r\n")  # progress=False drew nothing
    assert "iteration 1" in terminal  # the display was drawn ...
    assert terminal.split("\r")[-1] == ""  # ... and its line cleared, nothing after it
    assert terminal.split("\r")[-2].strip() == ""
