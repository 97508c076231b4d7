"""The command line and progress feedback."""

from __future__ import annotations

import pyglmm as pg
from pyglmm.cli import main


def test_demo_prints_the_salamander_summary(capsys):
    assert main(["demo", "--m", "1500", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "Fixed Effects:" in out and "CrossR/R" in out
    assert "Variance Components" in out and "Fitted in" in out


def test_progress_reports_every_trust_iteration(booth_hobert, capsys):
    fit = pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=1_000, rng=2, progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[pyglmm]")]
    iterations = [line for line in lines if ", iteration " in line]
    assert len(iterations) == sum(r.iterations for r in fit.rounds)
    assert "final round" in iterations[-1]
    # the stages before the rounds, and each round's start, are announced too
    assert "PQL centre done" in err and "Laplace centre done" in err
    starts = [line for line in lines if "proposal built and sample drawn" in line]
    assert len(starts) == len(fit.rounds)
