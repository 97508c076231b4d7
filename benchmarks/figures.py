"""Draw the figures of README.md and docs/ from the salamander fit.

Usage (needs ``pip install 'pyglmm[plot]'``)::

    python benchmarks/figures.py            # writes docs/figures/*.png

The fit is the README's quickstart (m = 10,000, seed 1234), so the figures show the
numbers printed there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pyglmm as pg  # noqa: E402 - after choosing the backend

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"


def salamander_fit() -> pg.GLMMResults:
    """The README's salamander fit."""
    return pg.glmm(
        "Mate ~ 0 + Cross",
        random=["~ 0 + Female", "~ 0 + Male"],
        data=pg.datasets.load_salamander(),
        family="bernoulli",
        m=10_000,
        rng=1234,
        varcomps_names=["F", "M"],
    )


def main(argv: list[str] | None = None) -> None:
    """Fit salamander and write the diagnostics and random-effects figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIGURES, help="folder for the PNGs")
    parser.add_argument("--dpi", type=int, default=90)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fit = salamander_fit()
    written = []
    for name, fig in (
        ("salamander_diagnostics.png", fit.plot_diagnostics(max_blocks=6)),
        ("salamander_ranef.png", fit.plot_ranef(figsize=(9.0, 9.5))),
    ):
        path = args.out / name
        fig.savefig(path, dpi=args.dpi)
        written.append(path)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
