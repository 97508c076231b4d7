"""The ``pyglmm`` command: ``fit`` a model to a data file, ``summary`` of a saved fit, ``demo``.

``pyglmm fit DATA.csv --fixed "Mate ~ 0 + Cross" --random "~ 0 + Female" --random
"~ 0 + Male" --family bernoulli -m 10000 --seed 1234 --json out.json`` reads the data
(CSV, or Parquet when pyarrow is installed), fits with :func:`pyglmm.glmm`, prints the
summary and the confidence intervals and saves the JSON record
(:meth:`pyglmm.GLMMResults.to_json`); ``pyglmm summary out.json`` prints a saved fit
again. On a terminal, fits longer than about two seconds show a live progress display
(:mod:`pyglmm.progress`).

Exit status: 0 on success; 2 for a bad command line (one line on standard error,
``pyglmm fit: error: ...``); 1 when the fit or its input fails (a missing file or
column, a :class:`pyglmm.errors.PyGLMMError`): ``pyglmm: error: ...`` on standard
error, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import PyGLMMError
from .commands import (
    PARQUET_SUFFIXES,
    CommandError,
    demo_command,
    fit_arguments,
    fit_command,
    one_line,
    read_data,
    summary_command,
)

__all__ = ["PARQUET_SUFFIXES", "CommandError", "build_parser", "fit_arguments", "main",
           "read_data"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``prog: error: message``.

    argparse prints the whole usage before the message; for a command with a dozen
    options that buries the one line that matters, so the usage is left to ``--help``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _m_value(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress", dest="progress", action="store_const", const=True, default=None,
        help="always show progress on standard error: the live display at once on a "
        "terminal, else one line per stage and trust-region iteration (default: the "
        "display on a terminal after about 2 s, nothing otherwise)",
    )
    group.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                       help="show no progress at all")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``pyglmm`` command and its subcommands."""
    parser = _Parser(
        prog="pyglmm",
        description="Maximum likelihood for GLMMs by Monte Carlo likelihood approximation.",
    )
    parser.add_argument("--version", action="version", version=f"pyglmm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit", help="fit a GLMM to a CSV or Parquet file and print its summary",
        description="Fit a GLMM to a data file (CSV; Parquet with pyarrow), print the "
        "summary and Wald confidence intervals, and optionally save the fit as JSON.",
    )
    fit.add_argument("data", metavar="DATA", help="the data: a .csv file, or .parquet/.pq")
    fit.add_argument("--fixed", required=True, metavar="FORMULA",
                     help='fixed-effects formula, e.g. "Mate ~ 0 + Cross"; lme4-style '
                     'random terms such as "y ~ x + (1 | g)" work too')
    fit.add_argument("--random", action="append", metavar="FORMULA",
                     help='a random-effects formula such as "~ 0 + Female" (repeat the '
                     "option for crossed or nested factors)")
    fit.add_argument("--family", default="bernoulli",
                     choices=["bernoulli", "binomial", "poisson"],
                     help="response family (default bernoulli)")
    fit.add_argument("-m", "--m", type=_m_value, default=10_000, metavar="M",
                     help="Monte Carlo sample size, or 'auto' (default 10000)")
    fit.add_argument("--seed", type=int, default=None, help="random seed (reproducible fit)")
    fit.add_argument("--sampler", default="auto", choices=["auto", "importance", "qmc", "mcmc"],
                     help="how the random effects are drawn: auto (default: randomised QMC "
                     "for small blocks, Markov chains for blocks of 200+ effects), "
                     "importance, qmc or mcmc")
    fit.add_argument("--varcomps-names", nargs="+", metavar="NAME",
                     help="names of the variance components")
    fit.add_argument("--weights", metavar="COL", help="column of prior weights")
    fit.add_argument("--offset", metavar="COL", help="column of a known offset")
    fit.add_argument("--n-jobs", type=int, default=None, metavar="N",
                     help="local worker processes for the sample (-1: one per core)")
    fit.add_argument("--json", metavar="PATH", help="save the fit as JSON here")
    fit.add_argument("--level", type=_level, default=0.95,
                     help="level of the confidence intervals (default 0.95)")
    _progress_options(fit)
    fit.set_defaults(run=fit_command)

    summary = commands.add_parser(
        "summary", help="print the summary of a fit saved by 'pyglmm fit --json'",
        description="Print the summary and Wald confidence intervals of a saved fit.",
    )
    summary.add_argument("record", metavar="FIT.json", help="a fit saved by --json")
    summary.add_argument("--level", type=_level, default=0.95,
                         help="level of the confidence intervals (default 0.95)")
    summary.set_defaults(run=summary_command)

    demo = commands.add_parser(
        "demo", help="fit the salamander model and print the summary",
        description="Fit R glmm's salamander mating model and print its summary.",
    )
    demo.add_argument("-m", "--m", type=_m_value, default=10_000,
                      help="Monte Carlo sample size")
    demo.add_argument("--seed", type=int, default=1234, help="random seed")
    _progress_options(demo)
    demo.set_defaults(run=demo_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyglmm`` command; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when the command failed (the reason is on standard error);
        a bad command line exits with status 2 (:class:`SystemExit`).
    """
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except (CommandError, PyGLMMError) as exc:
        print(f"pyglmm: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyglmm: interrupted", file=sys.stderr)
        return 130
    return result
