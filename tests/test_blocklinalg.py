"""Block-diagonal Cholesky factors: entries of the inverse against a dense inverse."""

from __future__ import annotations

import numpy as np

from pyglmm.blocklinalg import BlockCholesky, SizeGroup


def test_inverse_entries_match_the_dense_inverse() -> None:
    rng = np.random.default_rng(7)
    sizes = [3, 3, 5, 60]  # two stacked blocks, a lone one, one above SMALL_BLOCK
    starts = np.cumsum([0, *sizes[:-1]])
    groups = (SizeGroup(np.array([0, 1]), starts[:2, None] + np.arange(3)),
              SizeGroup(np.array([2]), starts[2] + np.arange(5)[None, :]),
              SizeGroup(np.array([3]), starts[3] + np.arange(60)[None, :]))
    matrices = []
    dense = np.zeros((sum(sizes), sum(sizes)))
    for group in groups:
        d = group.index.shape[1]
        stack = []
        for index in group.index:
            a = rng.normal(size=(d, d))
            block = a @ a.T + d * np.eye(d)
            dense[np.ix_(index, index)] = block
            stack.append(block)
        matrices.append(np.array(stack))
    chol = BlockCholesky.from_blocks(groups, tuple(matrices), 4)
    inverse = np.linalg.inv(dense)
    rows, cols = [], []
    for group in groups:
        for index in group.index:
            a, b = np.meshgrid(index, index)
            rows.append(a.ravel())
            cols.append(b.ravel())
    r, c = np.concatenate(rows), np.concatenate(cols)
    entries = chol.inverse_entries(r, c)
    assert entries is not None
    np.testing.assert_allclose(entries, inverse[r, c], rtol=0,
                               atol=1e-12 * np.abs(inverse).max())
