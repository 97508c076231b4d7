"""Backends: the same numbers serial, on local processes and on a dask LocalCluster.

The dask tests use a real ``LocalCluster`` of two worker processes (no mock). A fit
is compared with ``np.array_equal``: chunks are drawn from their own seed streams on
whichever worker holds them and records are merged in an order fixed by the number
of chunks, so nothing may differ, not even in the last bit.
"""

from __future__ import annotations

import operator
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pyglmm as pg
from pyglmm.backends import RoundWork, Shard, get_backend, split_runs
from pyglmm.backends.processes import ProcessBackend, worker_pool
from pyglmm.chunks import merge_groups
from pyglmm.errors import ArgumentError, ArgumentTypeError, BackendError

SALAMANDER = dict(fixed="Mate ~ 0 + Cross", random=["~ 0 + Female", "~ 0 + Male"],
                  family="bernoulli", rng=1234)


@pytest.fixture(scope="module")
def salamander():
    return pg.datasets.load_salamander()


@pytest.fixture(scope="module")
def poisson_data():
    import pandas as pd

    rng = np.random.default_rng(7)
    a = np.repeat(np.arange(15), 8)
    b = np.tile(np.arange(8), 15)
    x = rng.normal(size=a.size)
    eta = 0.4 + 0.3 * x + rng.normal(0, 0.6, 15)[a] + rng.normal(0, 0.5, 8)[b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x,
                         "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


FIELDS = ("beta", "nu", "loglike_value", "loglike_gradient", "loglike_hessian",
          "score_mc_covariance", "block_ess", "top_log_weights")


def assert_identical(a: pg.GLMMResults, b: pg.GLMMResults) -> None:
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert [r.estimate.tolist() for r in a.rounds] == [r.estimate.tolist() for r in b.rounds]


def test_salamander_is_identical_on_every_backend(salamander, client):
    serial = pg.glmm(data=salamander, m=20_000, **SALAMANDER)
    two = pg.glmm(data=salamander, m=20_000, n_jobs=2, **SALAMANDER)
    dask = pg.glmm(data=salamander, m=20_000, client=client, **SALAMANDER)
    assert serial.backend == "serial"
    assert two.backend == "processes(2)"
    assert dask.backend.startswith("dask(")
    assert_identical(serial, two)
    assert_identical(serial, dask)
    # post-estimation on a parallel fit uses the same sample, drawn again here
    np.testing.assert_array_equal(serial.ranef()["mean"], dask.ranef()["mean"])


@pytest.mark.parametrize("options", [
    {},  # shifted draws, independent blocks
    {"shift": False},  # fixed draws
    {"blocks": "joint"},
    {"importance": "glmm", "recentre": 1},
], ids=["shifted", "fixed", "joint", "mixture"])
def test_poisson_is_identical_on_every_backend(poisson_data, client, options):
    call = dict(fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"], data=poisson_data,
                family="poisson", m=3_000, rng=11, chunk_size=200, **options)
    serial = pg.glmm(**call)
    assert_identical(serial, pg.glmm(**call, n_jobs=2))
    assert_identical(serial, pg.glmm(**call, client=client))


@pytest.mark.parametrize("sampler", ["qmc", "mcmc"])
def test_every_sampler_is_identical_on_every_backend(poisson_data, client, sampler):
    """Scrambled Sobol sets and Markov chains are drawn on the workers from the chunks'
    streams too (the chains' level and pilots are computed in the main process)."""
    call = dict(fixed="y ~ x", random=["~ 0 + a", "~ 0 + b"], data=poisson_data,
                family="poisson", m=1_024, rng=3, sampler=sampler, chunk_size=512)
    serial = pg.glmm(**call)
    assert serial.rounds[-1].sampler == sampler and serial.n_batches > 0
    assert_identical(serial, pg.glmm(**call, n_jobs=2))
    assert_identical(serial, pg.glmm(**call, client=client))


def test_binomial_slopes_and_weights_are_identical(client):
    rng = np.random.default_rng(3)
    import pandas as pd

    g = np.repeat(np.arange(30), 4)
    x = rng.normal(size=g.size)
    n = rng.integers(2, 6, size=g.size)
    eta = -0.2 + 0.5 * x + rng.normal(0, 0.7, 30)[g] + rng.normal(0, 0.4, 30)[g] * x
    data = pd.DataFrame({"s": rng.binomial(n, 1 / (1 + np.exp(-eta))), "n": n, "x": x,
                         "g": [f"g{i}" for i in g], "w": rng.uniform(0.5, 2.0, g.size)})
    data["f"] = data["n"] - data["s"]
    call = dict(fixed="cbind(s, f) ~ x + (1 + x | g)", data=data, family="binomial",
                m=2_000, rng=5, chunk_size=128, weights=data["w"].to_numpy())
    serial = pg.glmm(**call)
    assert_identical(serial, pg.glmm(**call, n_jobs=2))
    assert_identical(serial, pg.glmm(**call, client=client))


def _killer(kill):
    state = {"done": False}

    def callback(event):
        if event.stage == "iteration" and event.final and not state["done"]:
            state["done"] = True
            kill()

    return callback, state


def test_a_killed_worker_process_costs_time_not_the_fit(salamander):
    call = dict(data=salamander, m=20_000, **SALAMANDER)
    undisturbed = pg.glmm(**call, n_jobs=2)
    pool = worker_pool(2)
    restarts = pool.restarts
    victim = pool.pids()[0]
    callback, state = _killer(lambda: os.kill(victim, signal.SIGKILL))
    disturbed = pg.glmm(**call, n_jobs=2, callback=callback)
    assert state["done"]
    assert pool.restarts == restarts + 1
    assert victim not in pool.pids()
    assert_identical(undisturbed, disturbed)


def test_a_killed_dask_worker_costs_time_not_the_fit(salamander, client):
    call = dict(data=salamander, m=20_000, **SALAMANDER)
    undisturbed = pg.glmm(**call, client=client)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    callback, state = _killer(lambda: os.kill(victim, signal.SIGKILL))
    disturbed = pg.glmm(**call, client=client, callback=callback)
    assert state["done"]
    assert_identical(undisturbed, disturbed)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for later tests


def test_a_scheduler_that_goes_away_is_a_clear_error(salamander, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from pyglmm.backends import dask_cluster

    monkeypatch.setattr(dask_cluster, "SCHEDULER_GRACE_SECONDS", 2.0)
    script = ("import time, distributed\n"
              "c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, "
              "dashboard_address=None)\n"
              "print(c.scheduler_address, flush=True)\n"
              "time.sleep(600)\n")
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        address = server.stdout.readline().strip()
        client = distributed.Client(address, timeout=30)
        callback, _ = _killer(lambda: os.killpg(server.pid, signal.SIGKILL))
        started = time.monotonic()
        with pytest.raises(BackendError, match="scheduler"):
            pg.glmm(data=salamander, m=20_000, client=client, callback=callback,
                    **SALAMANDER)
        assert time.monotonic() - started < 120
        client.close(timeout=5)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_client_without_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'pyglmm\[dask\]'"):
        get_backend(client=object())


def test_backend_arguments_are_checked(client):
    assert get_backend().description == "serial"
    assert get_backend(1).description == "serial"
    assert get_backend(-1).description in ("serial", f"processes({os.cpu_count()})")
    assert isinstance(get_backend(2), ProcessBackend)
    with pytest.raises(ArgumentError, match="n_jobs or client"):
        get_backend(2, client)
    with pytest.raises(ArgumentError, match="at least 1"):
        get_backend(0)
    with pytest.raises(ArgumentTypeError, match="integer"):
        get_backend(2.5)
    with pytest.raises(TypeError, match="distributed.Client"):
        get_backend(client="tcp://localhost:8786")


def test_map_keeps_the_order(client):
    items = list(range(-5, 6))
    expected = [-i for i in items]
    for backend in (get_backend(), get_backend(2), get_backend(client=client)):
        assert backend.map(operator.neg, items) == expected


def test_runs_split_into_consecutive_balanced_shards():
    runs = merge_groups(10)
    parts = split_runs(runs, 3)
    assert [len(p) for p in parts] == [3, 4, 3]
    assert [r for p in parts for r in p] == runs
    assert split_runs(runs[:1], 4) == [runs[:1]]


def test_a_shard_with_a_small_memory_budget_redraws_the_same_records(salamander):
    from pyglmm.fitting import build_round
    from pyglmm.problem import Problem

    fit = pg.glmm(data=salamander, m=1_000, chunk_size=250, **SALAMANDER)
    problem = Problem.build(fit.design, fit.family)
    theta = np.concatenate([fit.beta, fit.nu])
    built = build_round(problem, fit.settings, 0, theta, 1_000)
    work = RoundWork(problem=problem, sampler=built.sampler, shift=built.shift,
                     seeds=built.store.seeds, sizes=built.sizes,
                     n_top=built.objective.n_top)
    runs = merge_groups(len(built.sizes))
    kept = Shard(work, runs).records(theta)
    tight = Shard(RoundWork(**{**work.__dict__, "cache_bytes": 0}), runs)
    assert tight._ready()[0].mode == "redraw"
    for a, b in zip(kept, tight.records(theta), strict=True):
        np.testing.assert_array_equal(a.score_scatter, b.score_scatter)
    local = built.objective.records(theta)
    for a, b in zip(kept, local, strict=True):
        np.testing.assert_array_equal(a.weight_sum, b.weight_sum)


def test_dask_workers_malloc_is_tuned_only_where_the_nanny_set_it(monkeypatch):
    from pyglmm.backends import dask_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert not dask_cluster.tune_worker_malloc()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(dask_cluster, "TUNE_WORKER_MALLOC", False)
    assert not dask_cluster.tune_worker_malloc()
    monkeypatch.setattr(dask_cluster, "TUNE_WORKER_MALLOC", True)
    if sys.platform.startswith("linux"):
        assert dask_cluster.tune_worker_malloc()

