"""Local worker processes: ``glmm(..., n_jobs=k)``.

``k`` processes are started once (spawned, so nothing of the parent's threads is
inherited) and kept for later fits of the same process. Each holds its shards of the
current round (:class:`pyglmm.backends.base.Shard`): the round's work is sent once,
the chunks are drawn in the worker from their seed streams, and every evaluation
sends ``theta`` and receives the records of the worker's runs. Each worker runs the
numba kernel on ``cpu_count // k`` threads and BLAS on one, so ``k`` workers do not
oversubscribe the cores.

A worker that dies (killed, out of memory) is replaced: the new process is given the
open rounds' work again, redraws its chunks from their seeds and answers the pending
request, so the fit ends with the same numbers, only later.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing as mp
import os
import pickle
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..chunks import ChunkRecord, merge_groups
from ..errors import BackendError
from .base import RoundWork, Shard, split_runs

FloatArray = NDArray[np.float64]

#: A request is retried on a fresh worker at most this often before the fit fails.
MAX_RESTARTS = 3
_LOST = (EOFError, BrokenPipeError, ConnectionResetError, OSError)


def _worker_main(conn: Connection, threads: int) -> None:  # pragma: no cover - child
    """A worker's loop: hold shards, answer ``open``, ``records``, ``call`` and ``close``."""
    import numba
    from threadpoolctl import threadpool_limits

    most = int(getattr(numba.config, "NUMBA_NUM_THREADS", threads))
    numba.set_num_threads(max(1, min(threads, most)))
    shards: dict[int, Shard] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            try:
                message = pickle.loads(conn.recv_bytes())
            except _LOST:
                return
            kind = message[0]
            if kind == "stop":
                return
            if kind == "close":
                shards.pop(message[1], None)
                continue
            try:
                if kind == "open":
                    _, key, payload, runs = message
                    shards[key] = Shard(pickle.loads(payload), runs)
                    reply: Any = None
                elif kind == "records":
                    reply = shards[message[1]].records(message[2])
                else:  # "call"
                    reply = message[1](message[2])
                out = pickle.dumps(("ok", reply), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # sent back and raised in the parent
                text = traceback.format_exc()
                try:
                    out = pickle.dumps(("error", exc, text))
                except Exception:
                    out = pickle.dumps(("error", None, text))
            try:
                conn.send_bytes(out)
            except _LOST:
                return


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process of the spawn context
    conn: Connection


class ProcessPool:
    """``n_workers`` worker processes, each answering one request at a time.

    Parameters
    ----------
    n_workers : int
    threads : int
        numba threads of each worker.
    """

    def __init__(self, n_workers: int, threads: int) -> None:
        self.n_workers = n_workers
        self.threads = threads
        self._context = mp.get_context("spawn")
        self._workers = [self._start() for _ in range(n_workers)]
        self._rounds: dict[int, dict[int, tuple[bytes, list[range]]]] = {}
        self._keys = itertools.count()
        #: Workers replaced after they were lost.
        self.restarts = 0
        #: Bytes sent to and received from the workers so far.
        self.bytes_sent = 0
        self.bytes_received = 0

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, self.threads), daemon=True,
            name="pyglmm-worker",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def pids(self) -> list[int]:
        """Process ids of the workers (for monitoring, or to test recovery)."""
        return [int(w.process.pid) for w in self._workers]

    @property
    def alive(self) -> bool:
        """Whether the pool's workers can take requests."""
        return bool(self._workers)

    def _send(self, slot: int, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._workers[slot].conn.send_bytes(data)
        self.bytes_sent += len(data)

    def _receive(self, slot: int) -> Any:
        data = self._workers[slot].conn.recv_bytes()
        self.bytes_received += len(data)
        reply = pickle.loads(data)
        if reply[0] == "error":
            if reply[1] is not None:
                raise reply[1]
            raise BackendError(f"a pyglmm worker failed:\n{reply[2]}")
        return reply[1]

    def _restart(self, slot: int) -> None:
        old = self._workers[slot]
        if old.process.is_alive():
            old.process.kill()
        old.process.join(timeout=5)
        old.conn.close()
        self._workers[slot] = self._start()
        self.restarts += 1
        for key, placed in self._rounds.items():
            if slot in placed:
                payload, runs = placed[slot]
                self._send(slot, ("open", key, payload, runs))
                self._receive(slot)

    def exchange(self, messages: dict[int, tuple[Any, ...]]) -> dict[int, Any]:
        """Send each slot its message and gather the replies (lost workers replaced)."""
        replies: dict[int, Any] = {}
        for _ in range(MAX_RESTARTS + 1):
            pending = [slot for slot in messages if slot not in replies]
            sent, lost = [], []
            for slot in pending:
                try:
                    self._send(slot, messages[slot])
                    sent.append(slot)
                except _LOST:
                    lost.append(slot)
            for slot in sent:
                try:
                    replies[slot] = self._receive(slot)
                except _LOST:
                    lost.append(slot)
            if not lost:
                return replies
            for slot in lost:
                try:
                    self._restart(slot)
                except _LOST:
                    pass  # tried again in the next pass
        raise BackendError(
            f"pyglmm worker processes kept dying ({MAX_RESTARTS} restarts for one request); "
            "check the memory available per worker, or use fewer n_jobs"
        )

    def open_round(self, placed: dict[int, tuple[bytes, list[range]]]) -> int:
        """Give each slot its shard of a new round; return the round's key."""
        key = next(self._keys)
        self._rounds[key] = placed
        self.exchange({slot: ("open", key, payload, runs)
                       for slot, (payload, runs) in placed.items()})
        return key

    def close_round(self, key: int) -> None:
        """Drop a round's shards in every worker that holds one."""
        placed = self._rounds.pop(key, {})
        for slot in placed:
            try:
                self._send(slot, ("close", key))
            except _LOST:
                pass  # a lost worker holds nothing any more

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]``, one item per worker at a time, in order."""
        out: list[Any] = []
        for lo in range(0, len(items), self.n_workers):
            wave = items[lo:lo + self.n_workers]
            replies = self.exchange({slot: ("call", function, item)
                                     for slot, item in enumerate(wave)})
            out.extend(replies[slot] for slot in range(len(wave)))
        return out

    def shutdown(self) -> None:
        """Stop the workers."""
        for worker in self._workers:
            try:
                worker.conn.send_bytes(pickle.dumps(("stop",)))
            except _LOST:
                pass
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()
        self._workers = []


_POOLS: dict[tuple[int, int], ProcessPool] = {}


def worker_pool(n_workers: int) -> ProcessPool:
    """The process's pool of ``n_workers`` workers, started on first use."""
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    key = (n_workers, threads)
    pool = _POOLS.get(key)
    if pool is None or not pool.alive:
        pool = _POOLS[key] = ProcessPool(n_workers, threads)
    return pool


@atexit.register
def shutdown_pools() -> None:
    """Stop every pool this process started."""
    for pool in _POOLS.values():
        pool.shutdown()
    _POOLS.clear()


class ProcessRound:
    """One sampling round placed on a :class:`ProcessPool`."""

    def __init__(self, pool: ProcessPool, work: RoundWork) -> None:
        self.pool = pool
        payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
        parts = split_runs(merge_groups(len(work.sizes)), pool.n_workers)
        self.slots = list(range(len(parts)))
        self.key = pool.open_round({slot: (payload, part) for slot, part in
                                    zip(self.slots, parts, strict=True)})

    def records(self, theta: FloatArray) -> list[ChunkRecord]:
        """Every run's record at ``theta``, computed by the workers, in run order."""
        theta = np.asarray(theta, dtype=np.float64)
        replies = self.pool.exchange({slot: ("records", self.key, theta)
                                      for slot in self.slots})
        return [record for slot in self.slots for record in replies[slot]]

    def close(self) -> None:
        """Release the round's chunks in the workers."""
        self.pool.close_round(self.key)


class ProcessBackend:
    """``n_jobs`` local worker processes (see the module's documentation).

    Parameters
    ----------
    n_jobs : int
        Number of worker processes (at least 2).
    """

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.description = f"processes({n_jobs})"

    @property
    def pool(self) -> ProcessPool:
        """The worker pool (started on first use, shared with later fits)."""
        return worker_pool(self.n_jobs)

    def open_round(self, work: RoundWork) -> ProcessRound:
        """Place the round's shards on the workers."""
        return ProcessRound(self.pool, work)

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]`` on the workers (``function`` must pickle)."""
        return self.pool.map(function, list(items))
