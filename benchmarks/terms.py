"""The random-term layer against an earlier pyglmm: same numbers, same speed (issue 9).

Runs, in fresh processes that alternate between this checkout and a baseline source
tree (e.g. ``git worktree add /tmp/base 04a9e2b``), the salamander fit at m = 10^4
(one warm-up fit, then the median of seven warm fits in each process), and compares
the estimates of three R glmm models at the same seeds. Also times the correlated
Poisson model of ``tests/reference/poisson_slopes.csv`` in this checkout.

Usage::

    python benchmarks/terms.py --baseline /tmp/base [--pairs 5]

Prints a table (markdown) to standard output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_TIMING = """
import json, time, warnings
import numpy as np
import pyglmm as pg
warnings.simplefilter("ignore")
sal = pg.datasets.load_salamander()
def fit(**kw):
    return pg.glmm("Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"], data=sal,
                   family="bernoulli", rng=1234, **kw)
fit(m=10000)
seconds = []
for _ in range(7):
    t = time.perf_counter(); fit(m=10000); seconds.append(time.perf_counter() - t)
estimates = {
    "default": fit(m=10000).params().tolist(),
    "joint, R's mixture": fit(m=3000, blocks="joint", importance="glmm", recentre=0)
        .params().tolist(),
    "tied": fit(m=3000, varcomps_equal=[1, 1]).params().tolist(),
}
print(json.dumps({"median": float(np.median(seconds)), "estimates": estimates}))
"""

_SLOPES = """
import json, time, pandas as pd, numpy as np, pyglmm as pg
d = pd.read_csv("tests/reference/poisson_slopes.csv")
pg.glmm("y ~ x + (1 + x | g)", data=d, family="poisson", m=1000, rng=1)
seconds = []
for _ in range(3):
    t = time.perf_counter()
    pg.glmm("y ~ x + (1 + x | g)", data=d, family="poisson", m=10000, rng=1)
    seconds.append(time.perf_counter() - t)
print(json.dumps({"median": float(np.median(seconds))}))
"""


def _run(code: str, source: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(source / "src"))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="source tree of the earlier pyglmm (with src/pyglmm)")
    parser.add_argument("--pairs", type=int, default=5, help="alternating process pairs")
    args = parser.parse_args(argv)
    new, old, ratios = [], [], []
    first_new = first_old = None
    for _ in range(args.pairs):
        a, b = _run(_TIMING, ROOT), _run(_TIMING, args.baseline)
        new.append(a["median"])
        old.append(b["median"])
        ratios.append(a["median"] / b["median"])
        first_new, first_old = first_new or a, first_old or b
    assert first_new is not None and first_old is not None
    print("| salamander, m = 10^4, warm fit | this checkout | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| median over {args.pairs} processes (s) | {statistics.median(new):.3f} | "
          f"{statistics.median(old):.3f} | {statistics.median(ratios):.3f} |")
    print()
    print("| model (salamander, same seed) | largest difference in the estimates |")
    print("|---|---|")
    for name, values in first_new["estimates"].items():
        diff = max(abs(x - y) for x, y in zip(values, first_old["estimates"][name],
                                              strict=True))
        print(f"| {name} | {diff:.2g} |")
    slopes = _run(_SLOPES, ROOT)
    print()
    print(f"Correlated Poisson model (1 + x | g), 40 groups, n = 1,000, m = 10^4: "
          f"{slopes['median']:.2f} s (median of 3 warm fits).")


if __name__ == "__main__":
    main()
