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
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from . import __version__, datasets
from .api import glmm
from .errors import PyGLMMError
from .results import GLMMResults

#: File suffixes read as Parquet (everything else is read as CSV).
PARQUET_SUFFIXES = (".parquet", ".pq")


class CommandError(Exception):
    """A failure the command reports in one line (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``prog: error: message``.

    argparse prints the whole usage before the message; for a command with a dozen
    options that buries the one line that matters, so the usage is left to ``--help``.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def read_data(path: str | Path) -> pd.DataFrame:
    """Read a data file: Parquet for ``.parquet``/``.pq`` (needs pyarrow), else CSV.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    CommandError
        The file is missing, unreadable or not a table, or it is Parquet and pyarrow is
        not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"no data file {str(path)!r}")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            import pyarrow  # noqa: F401 - only to say what is missing
        except ImportError:
            raise CommandError(
                f"reading the Parquet file {str(path)!r} needs pyarrow: pip install pyarrow "
                "(or save the data as CSV)"
            ) from None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors have no common public base
            raise CommandError(f"cannot read {str(path)!r} as Parquet: {exc}") from None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {str(path)!r} as CSV: {exc}") from None


def _column(data: pd.DataFrame, name: str | None, option: str) -> str | None:
    if name is not None and name not in data.columns:
        raise CommandError(
            f"{option} {name!r}: no such column; the data have {', '.join(map(str, data.columns))}"
        )
    return name


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


def fit_arguments(args: argparse.Namespace, data: pd.DataFrame) -> dict[str, Any]:
    """The keyword arguments of :func:`pyglmm.glmm` that ``pyglmm fit`` passes.

    Tests repeat a command's fit in-process with them.
    """
    return dict(
        fixed=args.fixed,
        random=args.random or None,
        data=data,
        family=args.family,
        m=args.m,
        rng=args.seed,
        varcomps_names=args.varcomps_names,
        weights=_column(data, args.weights, "--weights"),
        offset=_column(data, args.offset, "--offset"),
        n_jobs=args.n_jobs,
        progress=args.progress,
    )


def _print_fit(fit: GLMMResults, level: float) -> None:
    print(fit.summary())
    print()
    print(f"Wald confidence intervals ({100 * level:g}%):")
    print(fit.confint(level=level).to_string(float_format=lambda v: f"{v:.4g}"))


def _fit(args: argparse.Namespace) -> int:
    data = read_data(args.data)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmm(**fit_arguments(args, data))
    for warning in caught:
        print(f"pyglmm: warning: {warning.message}", file=sys.stderr)
    _print_fit(fit, args.level)
    print()
    print(f"Fitted in {time.perf_counter() - started:.2f} s.")
    if args.json is not None:
        try:
            Path(args.json).write_text(fit.to_json(indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {args.json!r}: {exc.strerror}") from None
        print(f"Saved the fit to {args.json}.")
    return 0


def _summary(args: argparse.Namespace) -> int:
    path = Path(args.record)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        fit = GLMMResults.from_json(text)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"{str(path)!r} is not a saved pyglmm fit ({exc})") from None
    _print_fit(fit, args.level)
    return 0


def _demo(args: argparse.Namespace) -> int:
    data = datasets.load_salamander()
    print(
        "Fitting the salamander mating model (Mate ~ 0 + Cross, crossed random Female and "
        f"Male effects, bernoulli) by Monte Carlo maximum likelihood, m = {args.m}, "
        f"seed {args.seed} ...",
        flush=True,
    )
    started = time.perf_counter()
    fit = glmm(
        "Mate ~ 0 + Cross",
        random=["~ 0 + Female", "~ 0 + Male"],
        data=data,
        family="bernoulli",
        m=args.m,
        rng=args.seed,
        varcomps_names=["F", "M"],
        progress=args.progress,
    )
    elapsed = time.perf_counter() - started
    print()
    print(fit.summary())
    print()
    print(f"Fitted in {elapsed:.2f} s.")
    return 0


def _progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress", dest="progress", action="store_const", const=True, default=None,
        help="print every stage and trust-region iteration as a line on standard error "
        "(default: a live display on a terminal, nothing otherwise)",
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
                     choices=["bernoulli", "binomial", "poisson"], help="response family")
    fit.add_argument("-m", "--m", type=_m_value, default=10_000, metavar="M",
                     help="Monte Carlo sample size, or 'auto' (default 10000)")
    fit.add_argument("--seed", type=int, default=None, help="random seed (reproducible fit)")
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
    fit.set_defaults(run=_fit)

    summary = commands.add_parser(
        "summary", help="print the summary of a fit saved by 'pyglmm fit --json'",
        description="Print the summary and Wald confidence intervals of a saved fit.",
    )
    summary.add_argument("record", metavar="FIT.json", help="a fit saved by --json")
    summary.add_argument("--level", type=_level, default=0.95,
                         help="level of the confidence intervals (default 0.95)")
    summary.set_defaults(run=_summary)

    demo = commands.add_parser(
        "demo", help="fit the salamander model and print the summary",
        description="Fit R glmm's salamander mating model and print its summary.",
    )
    demo.add_argument("-m", "--m", type=_m_value, default=10_000,
                      help="Monte Carlo sample size")
    demo.add_argument("--seed", type=int, default=1234, help="random seed")
    _progress_options(demo)
    demo.set_defaults(run=_demo)
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
        print(f"pyglmm: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyglmm: interrupted", file=sys.stderr)
        return 130
    return result


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
