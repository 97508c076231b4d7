"""The compiled fused pass is pinned to the plain numpy reference (1e-12 relative)."""

from __future__ import annotations

import numpy as np
import pytest

import pyglmm as pg
from pyglmm.design import z_gather
from pyglmm.kernels import fused_pass, fused_pass_numpy


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_kernel_matches_numpy_reference(family):
    rng = np.random.default_rng(7)
    m, p = 37, 3
    block_sizes = [1, 300, 45, 600]  # runs longer than 256 and one-observation blocks
    n = sum(block_sizes)
    obs_block = np.repeat(np.arange(len(block_sizes)), block_sizes).astype(np.intp)
    obs_starts = np.concatenate([[0], np.cumsum(block_sizes)[:-1]]).astype(np.intp)
    zu = rng.normal(0, 2, (m, n))
    zu[0, :5] = [40.0, -40.0, 700.0, -700.0, 0.0]  # extreme linear predictors
    xb = rng.normal(0, 1, n)
    x = rng.normal(0, 1, (n, p))
    trials = rng.integers(1, 9, n).astype(float) if family == "binomial" else np.ones(n)
    if family == "poisson":
        y = rng.poisson(3, n).astype(float)
    else:
        y = np.floor(rng.random(n) * (trials + 1))
    fam = pg.get_family(family)
    fast = fused_pass(fam, zu, xb, y, trials, x, obs_block, obs_starts)
    slow = fused_pass_numpy(fam, zu, xb, y, trials, x, obs_starts)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape
        scale = np.maximum(np.abs(b), 1.0)
        assert np.max(np.abs(a - b) / scale) < 1e-12


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_kernel_gathering_z_u_matches_the_given_z_u(family):
    """With ``z_columns`` the kernel gathers ``Z u`` from the draws: the same numbers."""
    from pyglmm.design import z_gather

    rng = np.random.default_rng(8)
    m, n, q = 23, 700, 90
    z_columns = np.column_stack([rng.integers(0, 50, n), rng.integers(50, 80, n),
                                 rng.integers(80, q, n)]).astype(np.intp)
    u = rng.normal(0, 1.5, (m, q))
    xb, x = rng.normal(0, 1, n), rng.normal(0, 1, (n, 2))
    trials = rng.integers(1, 6, n).astype(float) if family == "binomial" else np.ones(n)
    y = (rng.poisson(2, n).astype(float) if family == "poisson"
         else np.floor(rng.random(n) * (trials + 1)))
    obs_block = np.zeros(n, dtype=np.intp)
    obs_starts = np.array([0], dtype=np.intp)
    fam = pg.get_family(family)
    given = fused_pass(fam, z_gather(z_columns, u), xb, y, trials, x, obs_block, obs_starts)
    gathered = fused_pass(fam, u, xb, y, trials, x, obs_block, obs_starts, z_columns)
    reference = fused_pass_numpy(fam, u, xb, y, trials, x, obs_starts, z_columns)
    for a, b, c in zip(gathered, given, reference, strict=True):
        np.testing.assert_array_equal(a, b)  # same sums in the same order
        assert np.max(np.abs(a - c) / np.maximum(np.abs(c), 1.0)) < 1e-12


def test_custom_family_subclass_uses_numpy_path():
    class Shifted(pg.Bernoulli):
        def all_terms(self, eta, y, trials):
            return super().all_terms(eta + 1.0, y, trials)

    n = 10
    zu = np.zeros((2, n))
    args = (zu, np.zeros(n), np.ones(n), np.ones(n), np.ones((n, 1)),
            np.zeros(n, dtype=np.intp), np.array([0], dtype=np.intp))
    loglik, _, _ = fused_pass(Shifted(), *args)
    assert loglik[0, 0] == pytest.approx(-n * np.log1p(np.exp(-1.0)))


def test_fit_is_identical_whatever_the_number_of_kernel_threads(booth_hobert):
    """Each draw is reduced by one thread in a fixed order: threads change no bit."""
    import numba

    before = numba.get_num_threads()
    try:
        fits = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            fits.append(pg.glmm("y ~ 0 + x1", "~ 0 + z1", booth_hobert, m=1_500, rng=11))
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(fits[0].params().to_numpy(), fits[1].params().to_numpy())
    assert np.array_equal(fits[0].loglike_hessian, fits[1].loglike_hessian)


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_with_slope_values_and_weights_matches_numpy(family: str, weighted: bool):
    """Z entries other than 1 (random slopes) and prior weights: kernel = numpy twin."""
    rng = np.random.default_rng(11)
    n, m, p = 600, 40, 3
    z_columns = np.column_stack([rng.integers(0, 50, n), rng.integers(50, 80, n)])
    z_values = np.column_stack([np.ones(n), rng.normal(size=n)])
    u = rng.normal(size=(m, 80))
    xb = rng.normal(size=n)
    x = rng.normal(size=(n, p))
    trials = rng.integers(1, 6, n).astype(float) if family == "binomial" else np.ones(n)
    y = (rng.poisson(2, n).astype(float) if family == "poisson"
         else rng.binomial(trials.astype(int), 0.4).astype(float))
    obs_block = np.repeat(np.arange(3), n // 3)
    obs_starts = np.array([0, n // 3, 2 * n // 3])
    weights = rng.integers(0, 4, n).astype(float) if weighted else None
    fam = pg.get_family(family)
    kernel = fused_pass(fam, u, xb, y, trials, x, obs_block, obs_starts, z_columns,
                        z_values, weights)
    reference = fused_pass_numpy(fam, u, xb, y, trials, x, obs_starts, z_columns, z_values,
                                 weights)
    given = fused_pass(fam, z_gather(z_columns, u, z_values), xb, y, trials, x, obs_block,
                       obs_starts, weights=weights)
    for a, b, c in zip(kernel, reference, given, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(c, b, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rows", [3, 500])
def test_gather_rows_is_z_gather_to_the_last_bit(weighted, rows):
    """Compiled (500 rows) or numpy (3 rows), ``Z u`` is the same sums in the same order."""
    from pyglmm.design import z_gather
    from pyglmm.kernels import gather_rows

    rng = np.random.default_rng(rows)
    u = rng.normal(size=(rows, 50))
    columns = np.stack([rng.integers(0, 20, 300), rng.integers(20, 45, 300),
                        rng.integers(45, 50, 300)], axis=1).astype(np.intp)
    values = rng.normal(size=(300, 3)) if weighted else None
    np.testing.assert_array_equal(gather_rows(columns, u, values),
                                  z_gather(columns, u, values))
    np.testing.assert_array_equal(gather_rows(columns, u[0], values),
                                  z_gather(columns, u[0], values))


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
@pytest.mark.parametrize("general", [False, True])
def test_each_draw_is_swept_as_if_alone(family: str, general: bool):
    """The kernel takes four draws at a time; every draw's numbers are those of the
    draw passed alone, to the last bit, for chunks of any length (the last group of a
    chunk of 1, 5 or 7 draws repeats its last draw into lanes that are dropped)."""
    rng = np.random.default_rng(12)
    n, q = 530, 40  # a block longer than a run of 256
    z_columns = np.column_stack([rng.integers(0, 25, n), rng.integers(25, q, n)])
    z_values = np.column_stack([np.ones(n), rng.normal(size=n)]) if general else None
    weights = rng.integers(0, 3, n).astype(float) if general else None
    xb, x = rng.normal(size=n), rng.normal(size=(n, 2))
    trials = rng.integers(1, 6, n).astype(float) if family == "binomial" else np.ones(n)
    y = (rng.poisson(2, n).astype(float) if family == "poisson"
         else rng.binomial(trials.astype(int), 0.4).astype(float))
    obs_block = np.repeat(np.arange(2), [n - 30, 30]).astype(np.intp)
    obs_starts = np.array([0, n - 30], dtype=np.intp)
    fam = pg.get_family(family)
    for m in (1, 5, 7, 12):
        u = rng.normal(0, 1.5, (m, q))
        together = fused_pass(fam, u, xb, y, trials, x, obs_block, obs_starts, z_columns,
                              z_values, weights)
        for k in range(m):
            alone = fused_pass(fam, u[k:k + 1], xb, y, trials, x, obs_block, obs_starts,
                               z_columns, z_values, weights)
            for a, b in zip(together, alone, strict=True):
                assert a.shape[0] == m
                np.testing.assert_array_equal(a[k:k + 1], b)
