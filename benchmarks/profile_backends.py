"""Profile intervals serial and on local processes, with and without re-centred ends.

``python benchmarks/profile_backends.py [--m 10000] [--n-jobs 2] [--repeats 3]`` fits
salamander (``Mate ~ 0 + Cross``, crossed ``Female`` and ``Male``) once and prints a
markdown table of the wall time of ``fit.confint(method="profile")`` for every
parameter (median of ``--repeats``): serial and on ``--n-jobs`` local processes, with
each end re-centred in up to 3 rounds (the default) and on the fit's own sample alone
(``recentre=0``), with the speed-up over serial and whether the table is identical to
the serial one. The pool is started and warmed up before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import pandas as pd
from tables import markdown

import pyglmm as pg
from pyglmm.backends import get_backend
from pyglmm.profile_ends import RECENTRE_ROUNDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=10_000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = pg.datasets.load_salamander()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pg.glmm("Mate ~ 0 + Cross", ["~ 0 + Female", "~ 0 + Male"], data,
                      m=args.m, rng=1, varcomps_names=["F", "M"], progress=False)
    backend = get_backend(n_jobs=args.n_jobs)
    fit.confint(method="profile", parm=["F"], recentre=0, n_jobs=args.n_jobs)  # warm-up
    rows = []
    for recentre in (RECENTRE_ROUNDS, 0):
        serial_table, serial_time = None, None
        for n_jobs in (None, args.n_jobs):
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                table = fit.confint(method="profile", recentre=recentre, n_jobs=n_jobs)
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            if n_jobs is None:
                serial_table, serial_time = table, seconds
            assert serial_table is not None and serial_time is not None
            rows.append({"recentre": recentre,
                         "backend": "serial" if n_jobs is None else f"n_jobs={n_jobs}",
                         "seconds": seconds, "speed-up": serial_time / seconds,
                         "same table": bool(table.equals(serial_table))})
    shutdown = getattr(backend, "shutdown", None)
    if shutdown is not None:
        shutdown()
    print(f"# salamander, m = {args.m:,}, profile intervals of all 6 parameters "
          f"(12 ends), median of {args.repeats}\n")
    print(markdown(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
