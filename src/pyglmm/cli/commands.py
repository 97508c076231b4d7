"""The commands of ``pyglmm``: ``fit``, ``summary`` and ``demo`` (:mod:`pyglmm.cli`).

Each takes the parsed arguments and returns the exit status; failures the user can
mend are :class:`CommandError` (or :class:`pyglmm.errors.PyGLMMError`), which
:func:`pyglmm.cli.main` turns into one ``pyglmm: error: ...`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the fitting stack is imported by the commands that use it, so that
    import pandas as pd  # `pyglmm --help` and a bad option answer at once

    from ..results import GLMMResults

#: File suffixes read as Parquet (everything else is read as CSV).
PARQUET_SUFFIXES = (".parquet", ".pq")


class CommandError(Exception):
    """A failure the command reports in one line (exit status 1)."""


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
    import pandas as pd

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
        sampler=args.sampler,
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


def _glmm(**arguments: Any) -> GLMMResults:
    """:func:`pyglmm.glmm`, its warnings written as ``pyglmm: warning: ...`` lines."""
    from ..api import glmm

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = glmm(**arguments)
    for warning in caught:
        print(f"pyglmm: warning: {one_line(str(warning.message))}", file=sys.stderr)
    return fit


def fit_command(args: argparse.Namespace) -> int:
    """``pyglmm fit``: read the data, fit, print the summary and intervals, save."""
    data = read_data(args.data)
    started = time.perf_counter()
    fit = _glmm(**fit_arguments(args, data))
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


def summary_command(args: argparse.Namespace) -> int:
    """``pyglmm summary``: print the summary and intervals of a saved fit."""
    path = Path(args.record)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    from ..results import GLMMResults

    try:
        fit = GLMMResults.from_json(text)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"{str(path)!r} is not a saved pyglmm fit ({exc})") from None
    _print_fit(fit, args.level)
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """``pyglmm demo``: fit the salamander model and print its summary."""
    from .. import datasets

    data = datasets.load_salamander()
    print(
        "Fitting the salamander mating model (Mate ~ 0 + Cross, crossed random Female and "
        f"Male effects, bernoulli) by Monte Carlo maximum likelihood, m = {args.m}, "
        f"seed {args.seed} ...",
        flush=True,
    )
    started = time.perf_counter()
    fit = _glmm(
        fixed="Mate ~ 0 + Cross",
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


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())
