import numpy as np
from scipy.special import softmax

from aurora_jax.calibrate.ece import expected_calibration_error, fit_temperature


def test_ece_hand_computed():
    probs = np.array([
        [0.9, 0.05, 0.05],   # conf 0.9, correct
        [0.8, 0.1, 0.1],     # conf 0.8, wrong
        [0.3, 0.6, 0.1],     # conf 0.6, correct
        [0.2, 0.2, 0.6],     # conf 0.6, wrong
    ])
    labels = np.array([0, 2, 1, 0])
    # bins are (b/10, (b+1)/10]: (0.8,0.9] holds {0.9: right}, (0.7,0.8] holds {0.8: wrong},
    # (0.5,0.6] holds {0.6: right, 0.6: wrong}
    expected = 0.25 * abs(1 - 0.9) + 0.25 * abs(0 - 0.8) + 0.5 * abs(0.5 - 0.6)
    assert np.isclose(expected, 0.275)
    assert np.isclose(expected_calibration_error(probs, labels, 10), expected)
    # one bin: |mean acc - mean conf|
    assert np.isclose(expected_calibration_error(probs, labels, 1), abs(0.5 - 0.725))


def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(0)
    n = 4000
    logits = rng.normal(0, 2.0, (n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits, 1)])
    sharp = logits * 3.0  # overconfident by a factor 3
    t = fit_temperature(sharp, labels)
    assert abs(t - 3.0) < 0.3
    before = expected_calibration_error(softmax(sharp, 1), labels)
    after = expected_calibration_error(softmax(sharp / t, 1), labels)
    assert after < 0.03 < before
