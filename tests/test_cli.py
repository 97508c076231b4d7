"""The command line and progress feedback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

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


# -- the command in a subprocess -----------------------------------------------------------
SALAMANDER_ARGS = ["--fixed", "Mate ~ 0 + Cross", "--random", "~ 0 + Female",
                   "--random", "~ 0 + Male", "--family", "bernoulli", "-m", "400",
                   "--seed", "7", "--varcomps-names", "F", "M"]


def run_cli(*args, cwd=None):
    """``python -m pyglmm ARGS`` in a subprocess (stdin closed, stderr not a terminal)."""
    return subprocess.run([sys.executable, "-m", "pyglmm", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory, salamander):
    """``pyglmm fit`` on the salamander CSV, saving the fit (run once for the module)."""
    folder = tmp_path_factory.mktemp("cli")
    salamander.to_csv(folder / "salamander.csv", index=False)
    done = run_cli("fit", folder / "salamander.csv", *SALAMANDER_ARGS, "--level", "0.9",
                   "--json", folder / "fit.json")
    return folder, done


def test_fit_writes_the_record_of_the_in_process_fit(saved_fit):
    folder, done = saved_fit
    assert done.returncode == 0, done.stderr
    assert "Fixed Effects:" in done.stdout and "Wald confidence intervals (90%)" in done.stdout
    assert "0.05" in done.stdout and "0.95" in done.stdout
    assert done.stderr == ""  # no terminal: no progress display, and no warning
    saved = pg.GLMMResults.from_json((folder / "fit.json").read_text())
    here = pg.glmm("Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
                   data=pd.read_csv(folder / "salamander.csv"), family="bernoulli", m=400,
                   rng=7, varcomps_names=["F", "M"])
    assert np.array_equal(saved.beta, here.beta) and np.array_equal(saved.nu, here.nu)
    assert saved.loglike_value == here.loglike_value
    assert str(saved.summary()) in done.stdout


def test_fit_takes_the_sampler(tmp_path, salamander):
    salamander.to_csv(tmp_path / "salamander.csv", index=False)
    done = run_cli("fit", tmp_path / "salamander.csv", *SALAMANDER_ARGS, "--sampler",
                   "importance", "--json", tmp_path / "fit.json")
    assert done.returncode == 0, done.stderr
    saved = pg.GLMMResults.from_json((tmp_path / "fit.json").read_text())
    assert saved.sampler == "importance" and saved.rounds[-1].sampler == "laplace"
    bad = run_cli("fit", tmp_path / "salamander.csv", *SALAMANDER_ARGS, "--sampler", "gibbs")
    assert bad.returncode == 2 and "--sampler" in bad.stderr


def test_summary_prints_the_saved_fit(saved_fit):
    folder, fitted = saved_fit
    done = run_cli("summary", folder / "fit.json", "--level", "0.9")
    assert done.returncode == 0, done.stderr
    # the same summary and intervals as the fit printed (only the timing lines differ)
    assert fitted.stdout.startswith(done.stdout.rstrip("\n"))


def test_a_bad_option_exits_2_with_one_line():
    done = run_cli("fit", "data.csv", "--fixed", "y ~ x", "--level", "2")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines == ["pyglmm fit: error: argument --level: expected a number between 0 and "
                     "1, got '2' (see 'pyglmm fit --help')"]


def test_bad_options_in_process(capsys):
    for argv in (["fit"], ["fit", "d.csv", "--fixed", "y ~ x", "-m", "-3"], ["nonsense"],
                 ["fit", "d.csv", "--fixed", "y ~ x", "--family", "gamma"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and ": error: " in err, (argv, err)


def test_help_of_every_command(capsys):
    for argv in (["--help"], ["fit", "--help"], ["summary", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
        assert "usage: pyglmm" in capsys.readouterr().out


def test_a_failed_fit_exits_1_without_traceback(saved_fit):
    folder, _ = saved_fit
    csv = folder / "salamander.csv"
    done = run_cli("fit", csv, "--fixed", "Mate ~ 0 + Crosss", "--random", "~ 0 + Female")
    assert done.returncode == 1
    assert done.stderr.startswith("pyglmm: error: ") and "Crosss" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("argv, phrase", [
    (["fit", "{missing}", "--fixed", "Mate ~ 0 + Cross"], "no data file"),
    (["fit", "{csv}", "--fixed", "Mate ~ 0 + Cross", "--random", "~ 0 + Male",
      "--weights", "W"], "--weights 'W': no such column"),
    (["fit", "{csv}", "--fixed", "Mate ~ 0 + Cross"], "no random effects"),
    (["fit", "{parquet}", "--fixed", "Mate ~ 0 + Cross"], "pyarrow"),
    (["summary", "{csv}"], "not a saved pyglmm fit"),
    (["summary", "{missing}"], "cannot read"),
])
def test_failures_are_one_line_on_stderr(saved_fit, capsys, monkeypatch, argv, phrase):
    folder, _ = saved_fit
    (folder / "data.parquet").write_bytes(b"PAR1")
    if "{parquet}" in argv:  # as if pyarrow were not installed (pandas may use it else)
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    paths = {"missing": folder / "missing.csv", "csv": folder / "salamander.csv",
             "parquet": folder / "data.parquet"}
    assert main([a.format(**paths) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("pyglmm: error: ") and phrase in captured.err
    assert len(captured.err.splitlines()) == 1


def test_fit_reads_parquet_when_pyarrow_is_installed(tmp_path, salamander, capsys):
    pytest.importorskip("pyarrow")
    salamander.to_parquet(tmp_path / "s.parquet")
    argv = ["fit", str(tmp_path / "s.parquet"), "--fixed", "Mate ~ 0 + Cross", "--random",
            "~ 0 + Female", "-m", "200", "--seed", "1"]
    assert main(argv) == 0
    assert "Fixed Effects:" in capsys.readouterr().out


def test_the_fits_warnings_are_lines_on_stderr(tmp_path, capsys):
    """A variance the data do not support ends at the boundary: one warning line."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.poisson(2.0, 120), "x": rng.normal(size=120),
                         "g": np.repeat(np.arange(12), 10)})
    data.to_csv(tmp_path / "flat.csv", index=False)
    argv = ["fit", str(tmp_path / "flat.csv"), "--fixed", "y ~ x", "--random", "~ 0 + g",
            "--family", "poisson", "-m", "1000", "--seed", "1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines and all(line.startswith("pyglmm: warning: ") for line in lines)
    assert any("'g' at the boundary 0" in line for line in lines)
    assert "WARNING: variance component(s) 'g' at the boundary 0" in captured.out
