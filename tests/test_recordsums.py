"""The compiled record sums against a plain numpy version of them (1e-12 relative: only
the order of the sums differs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pyglmm.recordsums import RecordSums, record_sums


def _record_sums_numpy(*args) -> RecordSums:
    """:func:`record_sums` of the same arguments, in numpy."""
    log_weight, fixed, stats, score_stat, score_const, variance, obs_starts, n_batches = args
    m, n_blocks = log_weight.shape
    top = log_weight.max(axis=0)
    weight = np.exp(log_weight - top)  # (m, B)
    scores = np.concatenate([fixed, stats @ score_stat + score_const[None]], axis=2)
    weight_sum = weight.sum(axis=0)
    score_sum = np.einsum("kb,kbj->bj", weight, scores)
    centred = scores - (score_sum / weight_sum[:, None])[None]
    sq = weight * weight
    batches = max(n_batches, 1)
    label = np.arange(m) % batches
    batch_weight = np.stack([weight[label == c].sum(axis=0) for c in range(batches)], 1)
    batch_score = np.stack([np.einsum("kb,kbj->bj", weight[label == c], scores[label == c])
                            for c in range(batches)], 1)
    bounds = np.append(obs_starts, variance.shape[1])
    variance_sum = np.concatenate([weight[:, b] @ variance[:, bounds[b]:bounds[b + 1]]
                                   for b in range(n_blocks)])
    return RecordSums(
        max_log_weight=top, weight_sum=weight_sum, score_sum=score_sum,
        score_scatter=np.einsum("kb,kbi,kbj->bij", weight, centred, centred),
        sq_weight_sum=sq.sum(axis=0), sq_score_sum=np.einsum("kb,kbj->bj", sq, scores),
        sq_score_outer=np.einsum("kb,kbi,kbj->bij", sq, scores, scores),
        stat_sum=np.einsum("kb,kbs->bs", weight, stats), variance_sum=variance_sum,
        batch_weight=batch_weight, batch_score=batch_score,
    )


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
    compiled, reference = record_sums(*args), _record_sums_numpy(*args)
    for field in dataclasses.fields(compiled):
        got, want = getattr(compiled, field.name), getattr(reference, field.name)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(),
                                   err_msg=field.name)
