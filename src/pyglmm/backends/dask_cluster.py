"""dask.distributed: ``glmm(..., client=Client(...))``.

A round's work (the model, the proposal, the chunks' seeds: a few hundred KB for
10^3 observations, growing with ``n``) is sent once as the argument of a task, so the
scheduler can run it again; one :class:`pyglmm.backends.base.Shard` per worker is built
from it, draws its chunks on that worker and keeps them there for the round. Every
evaluation submits one task per shard carrying ``theta`` and gathers the shards' run
records (a few KB each, plus the largest log weights of the runs). Nothing of size
``m x n`` crosses the network. Closing the round releases its shards.

A worker lost during a fit loses its shard: the scheduler rebuilds it from the work
task on another worker, which redraws the chunks from their seed streams, and the
evaluation returns the same records, later. A scheduler that goes away makes the
evaluation fail with :class:`pyglmm.errors.BackendError` instead of waiting forever.
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..chunks import ChunkRecord, merge_groups
from ..errors import BackendError
from .base import RoundWork, Shard, split_runs

FloatArray = NDArray[np.float64]

#: How often (seconds) a wait for results checks that the scheduler is still there.
POLL_SECONDS = 1.0
#: A scheduler unreachable for this long ends the fit with BackendError.
SCHEDULER_GRACE_SECONDS = 10.0


def require_distributed() -> Any:
    """Import ``distributed``, or say what to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "client= needs dask.distributed, which is not installed: "
            "pip install 'pyglmm[dask]' (or pip install 'distributed')"
        ) from exc
    return distributed


def _load_work(payload: bytes) -> RoundWork:
    work: RoundWork = pickle.loads(payload)
    return work


def _make_shard(work: RoundWork, runs: list[range]) -> Shard:
    return Shard(work, runs)


_BLAS_LIMITED: list[Any] = []  # the worker process's BLAS limit, set once and kept

#: Whether pyglmm's tasks undo the tight malloc trimming of dask's nanny (see below).
TUNE_WORKER_MALLOC = True
#: glibc's ``mallopt`` parameters and the values set in a worker.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest: arrays below it reuse the heap
_TRIM_THRESHOLD_BYTES = 64 * 2**20  # free memory kept before returning it to the OS


def tune_worker_malloc() -> bool:
    """Let numpy's temporaries reuse heap memory in a worker started by dask's nanny.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it switches
    off glibc's adaptive mmap threshold, so every array above 128 KiB is a fresh
    ``mmap`` whose pages fault in on first touch and are unmapped when freed. An MCLA
    evaluation allocates such temporaries per chunk: measured, 12x the page faults and
    about twice the CPU time of the same evaluation outside dask. Raising the mmap
    threshold to 32 MiB and the trim threshold to 64 MiB (at most 64 MiB of freed
    memory is kept by the worker) restores the speed. Only done when one of the two
    variables is set, on glibc, and while :data:`TUNE_WORKER_MALLOC` is true.
    """
    import ctypes
    import os

    if not TUNE_WORKER_MALLOC or not ({"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"}
                                      & set(os.environ)):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))


def _in_worker(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` with numba on ``threads`` threads and BLAS on one."""
    import numba
    from threadpoolctl import threadpool_limits

    if not _BLAS_LIMITED:  # inspecting the loaded libraries takes milliseconds: once
        _BLAS_LIMITED.append(threadpool_limits(limits=1, user_api="blas"))
        tune_worker_malloc()
    most = int(getattr(numba.config, "NUMBA_NUM_THREADS", threads))
    numba.set_num_threads(max(1, min(threads, most)))  # numba's setting is per thread
    return function(*args)


def _run_mapped(function: Callable[[Any], Any], item: Any) -> Any:
    """``function(item)`` with numba on the worker's threads (as its shards run)."""
    distributed = require_distributed()
    threads = int(getattr(distributed.get_worker(), "nthreads", 1) or 1)
    return _in_worker(threads, function, item)


def _shard_records(shard: Shard, theta: FloatArray, threads: int) -> list[ChunkRecord]:
    records: list[ChunkRecord] = _in_worker(threads, shard.records, theta)
    return records


class DaskBackend:
    """The workers of a ``distributed.Client`` (see the module's documentation).

    Parameters
    ----------
    client : distributed.Client
    """

    def __init__(self, client: Any) -> None:
        distributed = require_distributed()
        if not isinstance(client, distributed.Client):
            raise TypeError(
                f"client must be a distributed.Client, not {type(client).__name__}; "
                "e.g. Client(LocalCluster(n_workers=2)) or Client('tcp://scheduler:8786')"
            )
        self.client = client
        self.description = f"dask({_address(client)})"

    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's workers: address -> info (``nthreads`` among others)."""
        try:
            info = self.client.scheduler_info()
        except Exception as exc:
            raise BackendError(f"the dask scheduler is not reachable: {exc}") from exc
        workers: dict[str, dict[str, Any]] = dict(info.get("workers", {}))
        if not workers:
            raise BackendError("the dask cluster has no workers; start some, or use n_jobs")
        return workers

    def open_round(self, work: RoundWork) -> DaskRound:
        """Place one shard per worker."""
        return DaskRound(self, work)

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]`` on the cluster, in order."""
        futures = self.client.map(_run_mapped, [function] * len(items), list(items),
                                  pure=False)
        return gather(self.client, futures)


class DaskRound:
    """One sampling round placed on a dask cluster.

    With ``DaskRound.count_payload`` set (off by default: it pickles every gathered
    record once more), ``DaskRound.payload_sent`` and ``DaskRound.payload_received``
    count, over every round of this process, the pickled bytes of what the rounds send
    (each round's work, once) and what the evaluations send (``theta``, once per shard)
    and gather (the run records); dask adds a task's metadata to each message.
    """

    count_payload = False
    payload_sent = 0
    payload_received = 0

    def __init__(self, backend: DaskBackend, work: RoundWork) -> None:
        client = self.client = backend.client
        workers = backend.workers()
        addresses = sorted(workers)
        token = uuid.uuid4().hex
        payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
        #: Bytes of the round's work, sent once (to one worker; shards fetch it there).
        self.work_bytes = len(payload)
        if DaskRound.count_payload:
            DaskRound.payload_sent += self.work_bytes
        self._work = client.submit(_load_work, payload, key=f"pyglmm-work-{token}",
                                   pure=False)
        parts = split_runs(merge_groups(len(work.sizes)), len(addresses))
        self._where = addresses[:len(parts)]
        self._threads = [max(1, int(workers[a].get("nthreads", 1))) for a in self._where]
        self._shards = [
            client.submit(_make_shard, self._work, part, key=f"pyglmm-shard-{token}-{i}",
                          workers=[address], allow_other_workers=True, pure=False)
            for i, (part, address) in enumerate(zip(parts, self._where, strict=True))
        ]

    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """Every run's record at ``theta``, computed where the shards live, in run order."""
        theta = np.asarray(theta, dtype=np.float64)
        futures = [
            self.client.submit(_shard_records, shard, theta, threads, workers=[address],
                               allow_other_workers=True, pure=False)
            for shard, address, threads in zip(self._shards, self._where, self._threads,
                                               strict=True)
        ]
        parts = gather(self.client, futures)
        if DaskRound.count_payload:
            DaskRound.payload_sent += len(futures) * len(pickle.dumps(theta))
            DaskRound.payload_received += sum(len(pickle.dumps(part)) for part in parts)
        return [record for part in parts for record in part]

    def close(self) -> None:
        """Release the round's shards and work on the cluster."""
        try:
            self.client.cancel([*self._shards, self._work])
        except Exception:
            pass  # a cluster that is gone holds nothing


def gather(client: Any, futures: list[Any]) -> list[Any]:
    """Gather ``futures``; a scheduler gone for long raises BackendError, never hangs."""
    distributed = require_distributed()
    lost_since: float | None = None
    while True:
        try:
            distributed.wait(futures, timeout=POLL_SECONDS)
            return list(client.gather(futures))
        except distributed.TimeoutError:
            pass
        except BackendError:
            raise
        except Exception as exc:
            if client.status in ("running",) and not _is_connection_error(exc):
                raise
            raise BackendError(
                f"the dask scheduler at {_address(client)} went away during the fit "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if client.status != "running":
            lost_since = time.monotonic() if lost_since is None else lost_since
            if time.monotonic() - lost_since > SCHEDULER_GRACE_SECONDS:
                raise BackendError(
                    f"the dask scheduler at {_address(client)} went away during the fit "
                    f"(client status {client.status!r})"
                )
        else:
            lost_since = None


def _is_connection_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e}
    return bool(names & {"CommClosedError", "CancelledError", "OSError", "StreamClosedError",
                         "ConnectionRefusedError", "FutureCancelledError"})


def _address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:
        return "?"
