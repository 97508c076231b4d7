"""Where a fit's Monte Carlo sample lives and is evaluated: serial, processes or dask.

The fit driver asks its backend to hold the chunks of each sampling round
(:meth:`Backend.open_round`) and, at every ``theta``, for the records of their runs
(:mod:`pyglmm.backends.base`); the merged record gives the MCLA, its derivatives and
its Monte Carlo error. Chunks are drawn from their own seed streams wherever they are
held and records are merged in an order fixed by the number of chunks, so the numbers
are the same bit for bit on every backend and any number of workers.

* :class:`~pyglmm.backends.serial.SerialBackend` (``n_jobs=1``, the default).
* :class:`~pyglmm.backends.processes.ProcessBackend` (``n_jobs=k``; ``-1``: every core).
* :class:`~pyglmm.backends.dask_cluster.DaskBackend` (``client=distributed.Client``).

A new backend is one module with a class of the :class:`Backend` protocol and its line
in :func:`get_backend`.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ArgumentError, ArgumentTypeError
from .base import Backend, OpenRound, RoundWork, Shard, split_runs
from .serial import SerialBackend

__all__ = ["Backend", "OpenRound", "RoundWork", "SerialBackend", "Shard", "get_backend",
           "split_runs"]


def get_backend(n_jobs: Any = None, client: Any = None) -> Backend:
    """The backend of ``glmm(n_jobs=..., client=...)``, checked.

    Parameters
    ----------
    n_jobs : int, optional
        Local worker processes: None or 1 for none (serial), ``k >= 2``, or ``-1`` for
        one per core.
    client : distributed.Client, optional
        Run on this dask cluster's workers (not together with ``n_jobs``).

    Raises
    ------
    pyglmm.errors.ArgumentError
        Both given, or ``n_jobs`` not a positive integer or -1.
    ImportError
        ``client`` given but dask.distributed is not installed (says what to install).
    """
    if client is not None:
        if n_jobs not in (None, 1):
            raise ArgumentError("give n_jobs or client, not both: a dask client runs on "
                                "its cluster's workers")
        from .dask_cluster import DaskBackend

        return DaskBackend(client)
    if n_jobs is None:
        return SerialBackend()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        raise ArgumentTypeError(f"n_jobs must be an integer (1, 2, ... or -1 for every "
                                f"core), not {n_jobs!r}")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if n_jobs < 1:
        raise ArgumentError(f"n_jobs must be at least 1, or -1 for every core; got {n_jobs}")
    if n_jobs == 1:
        return SerialBackend()
    from .processes import ProcessBackend

    return ProcessBackend(n_jobs)
