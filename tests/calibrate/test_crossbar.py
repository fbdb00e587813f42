import numpy as np

from aurora_jax.calibrate.crossbar import TransFlag, crossbar_index


def _arma(rng, n, phi, theta):
    e = rng.standard_normal(n + 100)
    x = np.zeros(n + 100)
    for t in range(1, n + 100):
        x[t] = phi * x[t - 1] + e[t] + theta * e[t - 1]
    return x[100:]


def test_aci_small_for_pure_ar_large_with_ma():
    rng = np.random.default_rng(0)
    ar = [crossbar_index(_arma(rng, 300, 0.5, 0.0)).aci for _ in range(10)]
    ma = [crossbar_index(_arma(rng, 300, 0.5, 0.7)).aci for _ in range(10)]
    assert np.median(ar) < 1.5
    assert np.median(ma) > 3.0


def test_aci_formula():
    rng = np.random.default_rng(1)
    res = crossbar_index(_arma(rng, 300, 0.3, 0.4), p=1, eps=1e-6)
    assert np.isclose(res.aci, np.linalg.norm(res.phi_ar - res.phi_arma) / (res.sigma_phi + 1e-6))


def test_trans_flag_hysteresis_and_change_points():
    flag = TransFlag(aci_on := 2.0, 1.0, 1, cp_hold=3)
    del aci_on
    aci = np.array([0.5, 1.5, 2.5, 1.8, 1.2, 0.9, 1.5, 0.5, 0.5, 0.5])
    assert flag(aci).tolist() == [False, False, True, True, True, False, False, False, False, False]
    cp = np.zeros(10, dtype=bool)
    cp[7] = True
    out = flag(aci, cp)
    assert out[7:10].tolist() == [True, True, True]
