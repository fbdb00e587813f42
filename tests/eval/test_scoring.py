import numpy as np
import pytest
from scipy.stats import kstest

from aurora_jax.eval.scoring import (
    band_stats,
    crps_gaussian,
    crps_sample,
    pinball,
    pit,
    quantile_map_samples,
)


def test_crps_sample_matches_brute_force_and_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.3
    brute = np.mean(np.abs(x - y)) - 0.5 * np.mean(np.abs(x[:, None] - x[None, :]))
    assert crps_sample(x, y) == pytest.approx(brute, rel=1e-12)
    big = rng.normal(1.0, 2.0, 200_000)
    for y in (-3.0, 1.0, 4.5):
        assert crps_sample(big, y) == pytest.approx(crps_gaussian(1.0, 2.0, y), rel=0.01)


def test_crps_point_mass_and_sharpness_reward():
    assert crps_sample(np.full(10, 2.0), 2.0) == 0.0
    assert crps_sample(np.full(10, 2.0), 3.5) == pytest.approx(1.5)
    rng = np.random.default_rng(1)
    y = rng.normal(size=2000)
    right = np.mean([crps_sample(rng.normal(size=400), v) for v in y[:300]])
    wide = np.mean([crps_sample(rng.normal(scale=2.0, size=400), v) for v in y[:300]])
    assert right < wide  # proper score: the true distribution wins


def test_pinball_hand_values():
    q = np.array([-1.0, 0.0, 1.0])
    lv = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(pinball(q, lv, 0.5), [0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5])
    np.testing.assert_allclose(pinball(q, lv, -2.0), [0.9 * 1.0, 0.5 * 2.0, 0.1 * 3.0])


def test_pit_uniform_when_calibrated():
    rng = np.random.default_rng(2)
    u = [pit(rng.standard_t(5, 500), rng.standard_t(5)) for _ in range(1500)]
    assert kstest(u, "uniform").pvalue > 0.01
    assert pit(np.array([1.0, 2.0, 2.0, 3.0]), 2.0) == 0.5


def test_band_stats_tail_miss():
    assert band_stats(-1, 1, 0.5) == (True, 2, False)
    assert band_stats(-1, 1, 2.5) == (False, 2, False)
    assert band_stats(-1, 1, 3.5) == (False, 2, True)
    assert band_stats(-1, 1, -3.01)[2]


def test_quantile_map_monotone_and_exact_at_levels():
    raw = np.array([-2.0, -1.0, 0.0, 0.0, 1.0, 2.0])  # a tie
    cal = np.array([-3.0, -1.5, 0.1, 0.2, 1.5, 3.0])
    x = np.linspace(-5, 5, 1001)
    y = quantile_map_samples(x, raw, cal)
    assert np.all(np.diff(y) >= 0)
    np.testing.assert_allclose(quantile_map_samples(np.array([-2.0, -1.0, 1.0, 2.0]), raw, cal),
                               [-3.0, -1.5, 1.5, 3.0])
    assert quantile_map_samples(np.array([-4.0]), raw, cal)[0] == pytest.approx(-5.0)
    assert quantile_map_samples(np.array([5.0]), raw, cal)[0] == pytest.approx(6.0)
