"""The compiled record sums against their numpy reference (1e-12 relative: only the
order of the sums differs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pyglmm.recordsums import record_sums, record_sums_numpy


@pytest.mark.parametrize(("m", "n_blocks", "p", "n_stats", "n_random", "n_batches"),
                         [(200, 3, 2, 1, 1, 8), (97, 1, 3, 3, 2, 0), (64, 5, 1, 2, 3, 32)])
def test_record_sums_match_numpy(m, n_blocks, p, n_stats, n_random, n_batches) -> None:
    rng = np.random.default_rng(m)
    sizes = rng.integers(1, 6, n_blocks)
    obs_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    args = (
        rng.normal(-40.0, 3.0, (m, n_blocks)),  # log weights far from 0
        rng.normal(size=(m, n_blocks, p)),
        rng.gamma(2.0, size=(m, n_blocks, n_stats)),
        rng.normal(size=(n_stats, n_random)),
        rng.normal(size=(n_blocks, n_random)),
        rng.uniform(0.0, 0.25, (m, int(sizes.sum()))),
        obs_starts,
        n_batches,
    )
    compiled, reference = record_sums(*args), record_sums_numpy(*args)
    for field in dataclasses.fields(compiled):
        got, want = getattr(compiled, field.name), getattr(reference, field.name)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(),
                                   err_msg=field.name)
