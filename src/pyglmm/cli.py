"""Command line: ``pyglmm demo`` fits the salamander model and prints its summary."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import __version__, datasets
from .api import glmm


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyglmm`` command."""
    parser = argparse.ArgumentParser(
        prog="pyglmm",
        description="Maximum likelihood for GLMMs by Monte Carlo likelihood approximation.",
    )
    parser.add_argument("--version", action="version", version=f"pyglmm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit the salamander model and print the summary")
    demo.add_argument("--m", type=int, default=10_000, help="Monte Carlo sample size")
    demo.add_argument("--seed", type=int, default=1234, help="random seed")
    demo.add_argument("--progress", action="store_true", help="show optimiser iterations")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
