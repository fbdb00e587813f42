import numpy as np
import pytest

from aurora_jax.calibrate.changepoint import Cusum, PageHinkley, detect
from aurora_jax.errors import InvalidParameterError


@pytest.mark.parametrize("detector", [PageHinkley(delta=0.25, threshold=20.0), Cusum(k=0.5, h=8.0, burn_in=100)])
def test_planted_mean_shift_detected_within_bounded_delay(detector):
    rng = np.random.default_rng(0)
    delays, false = [], 0
    for rep in range(20):
        x = np.r_[rng.standard_normal(300), 1.5 + rng.standard_normal(200)]
        alarms, _ = detect(detector, x)
        idx = np.flatnonzero(alarms)
        false += int(np.sum(idx < 300))
        after = idx[idx >= 300]
        assert after.size > 0, "the change was missed"
        if not np.any(idx < 300):  # a false alarm restarts the detector (and its burn-in)
            delays.append(after[0] - 300)
    assert len(delays) >= 18
    # Page-Hinkley: delay ~ threshold / (shift - delta); CUSUM: ~ h / (shift - k)
    assert np.median(delays) <= 20
    assert max(delays) <= 45
    assert false <= 3  # at most a few false alarms in 20 x 300 stationary steps


def test_downward_shift_and_stationary_silence():
    rng = np.random.default_rng(1)
    x = np.r_[rng.standard_normal(400), -2 + rng.standard_normal(100)]
    for det in (PageHinkley(0.25, 20.0), Cusum(0.5, 8.0, 100)):
        alarms, stats = detect(det, x)
        assert not alarms[:400].any() or np.flatnonzero(alarms)[0] >= 380
        assert alarms[400:430].any()
        assert stats.shape == x.shape


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="threshold"):
        PageHinkley(threshold=0)
    with pytest.raises(InvalidParameterError, match="burn_in"):
        Cusum(burn_in=1)
