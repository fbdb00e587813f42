import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aurora_jax.calibrate.kappa import KappaConfig, kappa, kappa_plus
from aurora_jax.errors import InvalidParameterError

CFG = KappaConfig()


@given(st.floats(0, 10), st.floats(0, 1), st.floats(0.01, 100), st.floats(0, 1))
def test_kappa_bounded(spread, ent, width, cov):
    k = kappa(spread, ent, width, CFG)
    assert 0.0 <= k <= 1.0
    assert 0.0 <= kappa_plus(k, cov, CFG) <= 1.0


def test_kappa_formula_and_monotonicity():
    k = kappa(0.25, 0.5, math.e ** 0.7, CFG)
    expected = (0.4 * math.tanh(1.0) + 0.3 * 0.5 + 0.3 * math.tanh(1.0)) / 1.0
    assert math.isclose(k, expected)
    assert kappa(0.5, 0.5, 1.0, CFG) > kappa(0.1, 0.5, 1.0, CFG)
    assert kappa(0.1, 0.9, 1.0, CFG) > kappa(0.1, 0.1, 1.0, CFG)
    assert kappa(0.1, 0.5, 3.0, CFG) > kappa(0.1, 0.5, 1.0, CFG) == kappa(0.1, 0.5, 0.5, CFG)
    # missing components are dropped and weights renormalised
    assert math.isclose(kappa(None, 0.5, None, CFG), 0.5)
    assert kappa(None, None, None, CFG) == 0.0


def test_kappa_plus_blends_coverage_error():
    assert kappa_plus(0.2, None, CFG) == 0.2
    assert math.isclose(kappa_plus(0.2, 0.80, CFG), 0.1)  # on target: only kappa's half
    assert math.isclose(kappa_plus(0.2, 0.65, CFG), 0.5 * 0.2 + 0.5 * 1.0)
    assert math.isclose(kappa_plus(0.2, 0.75, CFG), 0.5 * 0.2 + 0.5 * 0.5)


def test_bad_config():
    with pytest.raises(InvalidParameterError, match="beta"):
        KappaConfig(beta=2.0)
    with pytest.raises(InvalidParameterError, match="band"):
        KappaConfig(band=(0.6, 0.9))
