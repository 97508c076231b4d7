"""The compiled factorisation of small-block stacks is pinned to numpy's LAPACK."""

from __future__ import annotations

import numpy as np
import pytest

from pyglmm.smallblocks import cholesky_stack, lower_inverse_stack


def _spd_stack(rng: np.random.Generator, n_blocks: int, d: int) -> np.ndarray:
    a = rng.normal(size=(n_blocks, d, d))
    return a @ np.swapaxes(a, 1, 2) + d * np.eye(d)


@pytest.mark.parametrize(("n_blocks", "d"), [(6, 20), (500, 1), (40, 3), (1, 48), (0, 4)])
def test_factor_and_inverse_match_lapack(n_blocks: int, d: int) -> None:
    """Factors and inverses agree with numpy's to rounding (a few ulps of their size)."""
    rng = np.random.default_rng(d)
    matrix = _spd_stack(rng, n_blocks, d)
    factor = cholesky_stack(matrix)
    np.testing.assert_allclose(factor, np.linalg.cholesky(matrix), rtol=1e-12, atol=1e-13)
    assert np.all(np.triu(factor, 1) == 0.0)
    inverse = lower_inverse_stack(factor)
    identity = np.broadcast_to(np.eye(d), matrix.shape)
    np.testing.assert_allclose(inverse, np.tril(np.linalg.solve(factor, identity)),
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(inverse @ factor, identity, atol=1e-12)


def test_only_the_lower_triangle_is_read() -> None:
    rng = np.random.default_rng(3)
    matrix = _spd_stack(rng, 4, 5)
    garbage = matrix + np.triu(rng.normal(size=matrix.shape), 1)
    np.testing.assert_array_equal(cholesky_stack(garbage), cholesky_stack(matrix))


@pytest.mark.parametrize("bad", ["negative", "nan"])
def test_a_block_that_is_not_positive_definite_raises_numpys_error(bad: str) -> None:
    rng = np.random.default_rng(4)
    matrix = _spd_stack(rng, 3, 4)
    if bad == "negative":
        matrix[1] = -matrix[1]
    else:
        matrix[1, 2, 2] = np.nan
    with pytest.raises(np.linalg.LinAlgError, match="block 1"):
        cholesky_stack(matrix)
