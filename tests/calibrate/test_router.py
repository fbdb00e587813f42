import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from aurora_jax.calibrate.arma import MODELS
from aurora_jax.calibrate.router import (
    evaluate_router,
    fit_router,
    label_windows,
    real_windows,
    window_features,
)
from aurora_jax.errors import InvalidParameterError

L = 250


def _ar(rng, phi):
    e = rng.standard_normal(L + 50)
    x = np.zeros(L + 50)
    for t in range(1, L + 50):
        x[t] = phi * x[t - 1] + e[t]
    return 0.01 * x[50:]


def _garch(rng, a=0.2, b=0.75):
    h = 1.0
    out = np.empty(L + 50)
    for t in range(L + 50):
        out[t] = np.sqrt(h) * rng.standard_normal()
        h = 0.05 + a * out[t] ** 2 + b * h
    return 0.01 * out[50:]


def _cfg(**kw):
    base = {"window": L, "stride": 5, "p": 1, "feature_groups": ["likelihood"], "hidden": 8,
            "steps": 300, "learning_rate": 0.01, "weight_decay": 0.001, "sim_windows": 24,
            "teacher_windows": 0, "calib_fraction": 0.25, "ece_bins": 10}
    base.update(kw)
    return OmegaConf.create(base)


def test_features_are_scale_free():
    rng = np.random.default_rng(0)
    w = np.stack([_garch(rng), _ar(rng, 0.3)])
    f = window_features(w)
    np.testing.assert_allclose(window_features(w * 37.0), f, rtol=1e-6, atol=1e-8)
    assert f.shape == (2, 3 * 5 + 2 + 5 + 4)
    assert window_features(w, ("likelihood",)).shape == (2, 4)
    with pytest.raises(InvalidParameterError, match="feature_groups"):
        window_features(w, ("spectral",))


def test_router_learns_bic_labels_on_simulated_windows():
    rng = np.random.default_rng(1)
    kinds = [_garch, lambda r: _ar(r, 0.35)] * 30
    wins = np.stack([k(rng) for k in kinds])
    labels = label_windows(wins)
    assert set(np.unique(labels)) >= {MODELS.index("AR"), MODELS.index("GARCH")}
    calls = []

    def teacher(g, n, length):
        calls.append((n, length))
        return np.stack([_garch(g) for _ in range(n)])

    router, rep = fit_router(wins, labels, _cfg(teacher_windows=12), rng, jax.random.key(0), teacher=teacher)
    assert calls == [(12, L)] and rep.n_train_teacher == 12
    assert rep.temperature > 0 and rep.n_calib >= 10
    test = np.stack([k(rng) for k in [_garch, lambda r: _ar(r, 0.35)] * 15])
    probs = router.predict_proba(test)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    ev = evaluate_router(probs, label_windows(test))
    assert ev["accuracy"] > 0.8
    assert ev["ece"] < 0.2
    label, pr, ent = router.route(np.r_[np.zeros(30), test[0]])  # uses the trailing window
    assert label in MODELS and 0 <= ent <= 1 and np.isclose(pr.sum(), 1)


def test_router_on_real_btc_out_of_sample(btc):
    wins, ends = real_windows(btc.returns, L, 15, end="2019-01-01")
    labels = label_windows(wins)
    router, rep = fit_router(wins, labels, _cfg(stride=15), np.random.default_rng(2), jax.random.key(1))
    test, _ = real_windows(btc.returns, L, 21, start="2019-01-02", end="2021-01-01")
    ev = evaluate_router(router.predict_proba(test), label_windows(test))
    assert ev["n"] >= 30
    assert ev["accuracy"] > 0.7
    assert rep.class_counts_train["GARCH"] > 0


def test_too_few_windows():
    with pytest.raises(InvalidParameterError, match="router windows"):
        fit_router(np.zeros((10, L)), np.zeros(10, dtype=int), _cfg(), np.random.default_rng(0),
                   jax.random.key(0))
