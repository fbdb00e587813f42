import numpy as np
import pytest

from aurora_jax.calibrate.hysteresis import HysteresisFilter
from aurora_jax.errors import InvalidParameterError


def test_band_prevents_chatter_around_threshold():
    f = HysteresisFilter((0.5,), band=0.1, min_dwell=1)
    x = np.array([0.2, 0.55, 0.45, 0.58, 0.61, 0.55, 0.45, 0.41, 0.39, 0.45])
    # goes up only above 0.6, comes back only below 0.4
    assert f(x).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]


def test_min_dwell_holds_a_state():
    f = HysteresisFilter((0.0,), band=0.0, min_dwell=3)
    # the wish to move up at t=1,2 waits for 3 steps in state 0; the wish to come back down at
    # t=4,5 waits for 3 steps in state 1
    x = np.array([-1, 1, 1, 1, -1, -1, -1, 1, -1])
    s = f(x)
    assert s.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    runs = np.diff(np.flatnonzero(np.diff(s) != 0))
    assert (runs >= 3).all()


def test_three_states_can_jump_and_nan_keeps_state():
    f = HysteresisFilter((0.33, 0.67), band=0.05, min_dwell=1)
    s = f([0.1, 0.9, np.nan, 0.5, 0.2])
    assert s.tolist() == [0, 2, 2, 1, 0]
    assert f([np.nan, 0.5]).tolist() == [-1, 1]


def test_bad_thresholds():
    with pytest.raises(InvalidParameterError, match="thresholds"):
        HysteresisFilter((0.7, 0.3))
    with pytest.raises(InvalidParameterError, match="min_dwell"):
        HysteresisFilter((0.5,), min_dwell=0)
