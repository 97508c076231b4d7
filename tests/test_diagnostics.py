"""Tests of :mod:`pyglmm.diagnostics`: Pareto k-hat, the m recommendation, the checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pyglmm.diagnostics import (
    LARGE_BLOCK,
    MCSE_SE_RATIO_MAX,
    diagnose,
    fit_generalized_pareto,
    pareto_k_hat,
    recommend_m,
)
from pyglmm.mcla import tail_size


def top_of(log_weights: np.ndarray) -> np.ndarray:
    """The largest log-weights the fit keeps (tail plus threshold), sorted ascending."""
    count = tail_size(log_weights.shape[-1]) + 1
    return np.sort(log_weights, axis=-1)[..., -count:]


@pytest.mark.parametrize("shape", [-0.3, 0.2, 0.5, 0.9])
def test_generalized_pareto_fit_agrees_with_maximum_likelihood(shape: float) -> None:
    draws = stats.genpareto.rvs(shape, scale=2.0, size=4000, random_state=11)
    k_hat, sigma_hat = fit_generalized_pareto(draws, weak_prior=False)
    k_mle, _, sigma_mle = stats.genpareto.fit(draws, floc=0.0)
    assert abs(k_hat - k_mle) < 0.03
    assert abs(sigma_hat / sigma_mle - 1.0) < 0.05
    assert abs(k_hat - shape) < 0.1


def test_weak_prior_shrinks_towards_one_half() -> None:
    draws = stats.genpareto.rvs(0.1, size=50, random_state=3)
    raw, _ = fit_generalized_pareto(draws, weak_prior=False)
    shrunk, _ = fit_generalized_pareto(draws)
    assert shrunk == pytest.approx((50 * raw + 10 * 0.5) / 60, rel=1e-12)


def test_generalized_pareto_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_generalized_pareto([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        fit_generalized_pareto(np.zeros(10))
    with pytest.raises(ValueError):
        fit_generalized_pareto([-1.0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("shape", [0.3, 0.5, 0.8, 1.0])
def test_k_hat_of_pareto_weights_is_near_the_tail_shape(shape: float) -> None:
    """Weights ``U^-k`` are Pareto with tail index ``1/k``: k-hat should be near ``k``."""
    rng = np.random.default_rng(20240611)
    log_weights = -shape * np.log(rng.uniform(size=(12, 10_000)))
    k_hat = pareto_k_hat(top_of(log_weights))
    assert k_hat.shape == (12,)
    assert abs(k_hat.mean() - shape) < 0.08
    assert np.all(np.abs(k_hat - shape) < 0.35)


def test_k_hat_of_bounded_and_light_tailed_weights_is_small() -> None:
    rng = np.random.default_rng(5)
    uniform_weights = np.log(rng.uniform(size=(4, 10_000)))  # bounded: GPD shape -1
    assert np.all(pareto_k_hat(top_of(uniform_weights)) < -0.5)
    normal_logs = rng.standard_normal((4, 10_000))  # log-normal weights
    assert np.all(pareto_k_hat(top_of(normal_logs)) < 0.5)


def test_k_hat_is_invariant_to_order_and_to_a_common_shift() -> None:
    rng = np.random.default_rng(8)
    top = top_of(-0.6 * np.log(rng.uniform(size=10_000)))
    reference = float(pareto_k_hat(top))
    assert float(pareto_k_hat(rng.permutation(top))) == pytest.approx(reference, abs=1e-12)
    assert float(pareto_k_hat(top - 700.0)) == pytest.approx(reference, abs=1e-9)


def test_k_hat_per_block_equals_one_block_at_a_time() -> None:
    rng = np.random.default_rng(9)
    blocks = top_of(-0.4 * np.log(rng.uniform(size=(300, 2_000))))  # more than one batch
    together = pareto_k_hat(blocks)
    one_by_one = np.array([float(pareto_k_hat(row)) for row in blocks])
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-12)


def test_k_hat_is_nan_where_it_cannot_be_estimated() -> None:
    assert np.isnan(pareto_k_hat(np.arange(5.0)))  # fewer than 5 tail weights
    assert np.isnan(pareto_k_hat(np.zeros(30)))  # a flat tail
    assert np.isnan(pareto_k_hat(np.r_[np.arange(30.0), np.nan]))
    assert pareto_k_hat(np.zeros((3, 0))).shape == (3,)


def test_recommend_m_scales_with_the_square_of_the_ratio() -> None:
    assert recommend_m(10_000, 0.35) == 130_000
    assert recommend_m(2_000, 0.3) == 18_000
    for m, ratio in [(1_000, 0.21), (10_000, 0.75), (123_456, 0.4)]:
        needed = m * (ratio / 0.1) ** 2
        assert needed <= recommend_m(m, ratio) < 1.1 * needed
    assert recommend_m(10_000, 0.05) == 10_000
    assert recommend_m(10_000, float("nan")) == 10_000


def _healthy(**changes):
    rng = np.random.default_rng(2)
    arguments = dict(
        m=10_000,
        block_ess=[9000.0, 8000.0],
        top_log_weights=top_of(rng.standard_normal((2, 10_000))),
        mcse=[0.01, 0.02],
        se=[0.4, 0.5],
        parameter_names=["a", "b"],
    )
    return diagnose(**(arguments | changes))


def test_diagnose_passes_healthy_weights() -> None:
    result = _healthy()
    assert result.messages == ()
    assert result.min_ess == 8000.0
    assert result.max_mcse_se_ratio == pytest.approx(0.04)
    assert result.worst_parameter == "b"
    assert result.recommended_m == 10_000


def test_diagnose_warns_on_low_ess_heavy_tails_and_large_mcse() -> None:
    low_ess = _healthy(block_ess=[9000.0, 50.0])
    assert len(low_ess.messages) == 1 and "ESS" in low_ess.messages[0]
    assert "block 1" in low_ess.messages[0]

    heavy = -1.2 * np.log(np.random.default_rng(3).uniform(size=(2, 10_000)))
    tails = _healthy(top_log_weights=top_of(heavy))
    assert tails.max_pareto_k > 0.7
    assert any("Pareto k" in message for message in tails.messages)

    noisy = _healthy(mcse=[0.01, 0.2])  # ratio 0.4 for b
    assert noisy.max_mcse_se_ratio > MCSE_SE_RATIO_MAX
    assert noisy.recommended_m == recommend_m(10_000, 0.4) == 160_000
    assert any("m = 160000" in message and "b" in message for message in noisy.messages)


def test_diagnose_advice_names_another_sampler() -> None:
    glmm_proposal = _healthy(block_ess=[9000.0, 50.0], importance="glmm")
    assert "importance='laplace'" in glmm_proposal.messages[0]
    laplace = _healthy(block_ess=[9000.0, 50.0], importance="laplace", zeta=6.0)
    assert "zeta=3" in laplace.messages[0]


def test_diagnose_blames_the_dimension_of_a_large_block() -> None:
    """A failing block of LARGE_BLOCK effects or more gets no proposal advice."""
    small = _healthy(block_ess=[9000.0, 50.0], block_sizes=[20, LARGE_BLOCK - 1])
    assert "zeta=" in small.messages[0]
    large = _healthy(block_ess=[9000.0, 50.0], block_sizes=[20, LARGE_BLOCK])
    message = large.messages[0]
    assert f"Block 1 has {LARGE_BLOCK} random effects" in message
    assert "whatever the proposal" in message and "zeta=" not in message
    # the block that fails decides, not the largest block
    other = _healthy(block_ess=[50.0, 9000.0], block_sizes=[20, 5000])
    assert "zeta=" in other.messages[0]
