import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from aurora_jax.calibrate.adaptive_alpha import AdaptiveAlphaConfig
from aurora_jax.calibrate.conformal import ConformalCalibrator, ConformalConfig
from aurora_jax.calibrate.vol_regime import VolRegimeClassifier
from aurora_jax.errors import InvalidParameterError

LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


Z = norm.ppf(LEVELS)


def _gauss_q(mu, sd):
    return {lv: float(mu + sd * z) for lv, z in zip(LEVELS, Z)}


def _cal(**kw):
    base = {"levels": LEVELS, "min_bucket": 30, "min_pooled": 30}
    base.update(kw)
    return ConformalCalibrator(ConformalConfig(**base))


def _stream(cal, n, rng, shrink=0.6, horizon=1):
    """Heteroscedastic outcomes; the forecaster knows sigma_t but is too narrow by `shrink`."""
    hits80, hits90 = [], []
    for t in range(n):
        sigma = 1.0 + 2.0 * (np.sin(t / 50.0) > 0.3)
        regime = "volatile" if sigma > 1.5 else "calm"
        raw = _gauss_q(0.0, shrink * sigma)
        out = cal.calibrate(raw, regime, horizon)
        q = out.quantiles
        y = sigma * rng.standard_normal()
        hits80.append(q[0.10] <= y <= q[0.90])
        hits90.append(q[0.05] <= y <= q[0.95])
        cal.update(raw, y, regime, horizon, key=f"k{t}", calibrated_quantiles=q)
    return np.asarray(hits80), np.asarray(hits90)


@pytest.mark.parametrize("adaptive", [True, False])
def test_too_narrow_forecaster_reaches_nominal(adaptive):
    rng = np.random.default_rng(0)
    cal = _cal(adaptive=AdaptiveAlphaConfig(enabled=adaptive))
    raw80 = np.mean([abs(x) <= 0.6 * norm.ppf(0.9) for x in rng.standard_normal(5000)])
    assert raw80 < 0.6  # the raw forecaster covers far less than 80%
    h80, h90 = _stream(cal, 3000, rng)
    n = 2600
    se80, se90 = np.sqrt(0.8 * 0.2 / n), np.sqrt(0.9 * 0.1 / n)
    assert abs(h80[400:].mean() - 0.80) < 3 * se80 + 0.01
    assert abs(h90[400:].mean() - 0.90) < 3 * se90 + 0.01


def test_symmetric_pair_order_statistic_hand_case():
    cal = _cal(score="absolute", min_bucket=5, min_pooled=5, mode="symmetric",
               adaptive=AdaptiveAlphaConfig(enabled=False))
    raw = {lv: 0.0 for lv in LEVELS}
    for i, e in enumerate(range(-4, 5)):  # errors y - q = -4..4 -> pair scores |e|
        cal.update(raw, float(e), "calm", 5, key=str(i))
    out = cal.calibrate(raw, "calm", 5)
    q = out.quantiles
    # sorted scores 0,1,1,2,2,3,3,4,4 (n = 9): a = 0.2 -> k = ceil(10 * 0.8) = 8 -> 4;
    # a = 0.5 -> k = 5 -> 2; a = 0.1 -> k = 9 -> 4
    assert (q[0.10], q[0.90]) == (-4.0, 4.0)
    assert (q[0.25], q[0.75]) == (-2.0, 2.0)
    assert (q[0.05], q[0.95]) == (-4.0, 4.0)
    assert q[0.50] == 0.0  # the median is never moved in symmetric mode
    assert not out.info.capped and out.info.bucket == "calm/mid"


def test_finite_sample_order_statistic_hand_case():
    cal = _cal(score="absolute", min_bucket=5, min_pooled=5, mode="per_level",
               adaptive=AdaptiveAlphaConfig(enabled=False))
    raw = {lv: 0.0 for lv in LEVELS}
    for i, e in enumerate(range(1, 10)):  # errors y - q = 1..9
        cal.update(raw, float(e), "normal", 2, key=str(i))
    q = cal.calibrate(raw, "normal", 2).quantiles
    # n = 9: tau = 0.9 -> k = ceil(10 * 0.9) = 9 -> +9; tau = 0.75 -> k = ceil(7.5) = 8 -> +8
    assert q[0.90] == 9.0 and q[0.75] == 8.0 and q[0.95] == 9.0
    # tau = 0.1: scores -e = -9..-1, k = ceil(10 * 0.9) = 9 -> 9th smallest = -1 -> q + 1
    assert q[0.10] == 1.0
    # tau = 0.25: k = ceil(7.5) = 8 -> -2 -> q + 2 ; median: +5
    assert q[0.25] == 2.0 and q[0.50] == 5.0
    info = cal.calibrate(raw, "normal", 2).info
    assert info.capped and info.n == 9 and info.bucket == "normal/short"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=7, max_size=7),
    st.lists(st.floats(-20, 20), min_size=1, max_size=80),
    st.floats(0.01, 3.0),
)
def test_calibrated_quantiles_never_cross(raw_vals, ys, width):
    raw = dict(zip(LEVELS, sorted(raw_vals)))
    raw[0.75] = raw[0.25] + width + (raw[0.75] - raw[0.25])
    raw = dict(zip(LEVELS, sorted(raw.values())))
    cal = _cal(min_bucket=1, min_pooled=1)
    rng = np.random.default_rng(len(ys))
    for i, y in enumerate(ys):
        jitter = {lv: v + rng.normal(0, 0.5) for lv, v in raw.items()}
        jitter = dict(zip(LEVELS, sorted(jitter.values())))
        cal.update(jitter, y, "volatile", 9, key=str(i))
    q = cal.calibrate(raw, "volatile", 9).values()
    assert np.all(np.isfinite(q))
    assert np.all(np.diff(q) >= 0)


def test_persistence_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    cal = _cal(min_bucket=10, min_pooled=10)
    _stream(cal, 300, rng)
    cal.calibrate(_gauss_q(0, 1), "calm", 1, conditional=True, key="what-if-1")
    path = cal.save(tmp_path / "buffers" / "cal.json")
    assert [p.name for p in path.parent.iterdir()] == ["cal.json"]  # no temp file left
    back = ConformalCalibrator.load(path)
    for regime in ("calm", "volatile", "normal"):
        for h in (1, 5, 12):
            a = cal.calibrate(_gauss_q(0.1, 1.3), regime, h, z=1.0, aci=0.5, router_entropy=0.3)
            b = back.calibrate(_gauss_q(0.1, 1.3), regime, h, z=1.0, aci=0.5, router_entropy=0.3)
            assert a == b
    assert back.sizes() == cal.sizes() and back.alpha_state() == cal.alpha_state()
    # idempotency and the scenario guard survive the restart
    assert back.update(_gauss_q(0, 1), 0.3, "calm", 1, key="k5").reason == "duplicate"
    assert back.update(_gauss_q(0, 1), 0.3, "calm", 1, key="what-if-1").reason == "scenario_key"


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    cal = _cal()
    cal.update(_gauss_q(0, 1), 0.5, "calm", 1, key="a")
    path = cal.save(tmp_path / "cal.json")
    before = path.read_text()
    cal.update(_gauss_q(0, 1), 0.7, "calm", 1, key="b")

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(RuntimeError):
        cal.save(path)
    monkeypatch.undo()
    assert path.read_text() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_updates_are_idempotent_by_key():
    cal = _cal()
    r1 = cal.update(_gauss_q(0, 1), 0.5, "calm", 3, key="BTC|2024-01-01|3")
    r2 = cal.update(_gauss_q(0, 1), 9.5, "calm", 3, key="BTC|2024-01-01|3")
    assert r1.applied and not r2.applied and r2.reason == "duplicate"
    assert cal.sizes()["calm/short"] == 1
    assert cal.alpha_state() == _after_one_update()


def _after_one_update():
    cal = _cal()
    cal.update(_gauss_q(0, 1), 0.5, "calm", 3, key="x")
    return cal.alpha_state()


def test_scenario_forecasts_never_enter_buffers():
    cal = _cal(min_bucket=1, min_pooled=1)
    for i in range(5):
        cal.update(_gauss_q(0, 1), 0.1 * i, "normal", 1, key=f"real{i}")
    sizes = cal.sizes()
    alpha = cal.alpha_state()
    out = cal.calibrate(_gauss_q(0, 1), "normal", 1, conditional=True, key="scn-7")
    assert out.info.conditional
    assert cal.update(_gauss_q(0, 1), 50.0, "normal", 1, key="scn-7").reason == "scenario_key"
    assert cal.update(_gauss_q(0, 1), 50.0, "normal", 1, key="scn-8", conditional=True).reason == "conditional"
    assert cal.sizes() == sizes and cal.alpha_state() == alpha
    assert cal.counters["scenario_key"] == 1 and cal.counters["conditional"] == 1


def test_pooled_fallback_when_bucket_is_thin():
    cal = _cal(min_bucket=30, min_pooled=30)
    raw = _gauss_q(0, 1)
    assert cal.calibrate(raw, "volatile", 2).info.bucket == "none"
    assert cal.calibrate(raw, "volatile", 2).quantiles == raw
    for i in range(40):
        cal.update(raw, 2.0 * np.sin(i), "calm", 2, key=str(i))
    assert cal.calibrate(raw, "volatile", 2).info.bucket == "pooled/short"
    assert cal.calibrate(raw, "calm", 2).info.bucket == "calm/short"
    assert cal.calibrate(raw, "calm", 10).info.bucket == "pooled/all"
    assert cal.calibrate(raw, "calm", 10).info.n == 40


def test_adaptive_alpha_inflates_on_misses_bounded_and_faster_in_trans():
    def run(trans):
        cal = _cal(mode="per_level",
                   adaptive=AdaptiveAlphaConfig(lr=0.005, lr_trans=0.02, cooldown=0, min_ratio=0.5))
        for i in range(10):
            cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key=str(i), trans=trans)  # every band missed
        return cal.alpha_state()["calm/short"]

    calm = run(False)
    fast = run(True)
    # tau = 0.75 (nominal miss 0.25): 10 misses move it by 10 * lr * (0.25 - 1)
    assert calm["0.75"] == pytest.approx(0.25 - 10 * 0.005 * 0.75)
    assert fast["0.75"] == pytest.approx(0.125)  # would be 0.1: clipped at 0.5 x nominal
    assert calm["0.95"] == pytest.approx(0.025) and fast["0.95"] == pytest.approx(0.025)
    # lower levels were not missed (y far above): their working level relaxes upwards
    assert 0.05 < calm["0.05"] < fast["0.05"] <= 0.075


def test_symmetric_pair_alpha_follows_band_misses():
    cal = _cal(mode="symmetric", adaptive=AdaptiveAlphaConfig(lr=0.005, lr_trans=0.02, cooldown=0))
    for i in range(10):
        cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key=str(i))  # outside every band
    st = cal.alpha_state()["calm/short"]
    # a pair (0.25, 0.75): half-level 0.25 -> 0.25 + 10 * 0.005 * (0.25 - 1/2)
    assert st["0.25"] == st["0.75"] == pytest.approx(0.25 - 10 * 0.005 * 0.25)
    for i in range(40):
        cal.update(_gauss_q(0, 1), 0.0, "calm", 1, key=f"in{i}")  # inside every band
    st2 = cal.alpha_state()["calm/short"]
    assert st2["0.05"] == st2["0.95"] > st["0.95"]


def test_cooldown_keeps_the_fast_rate():
    cfg = AdaptiveAlphaConfig(lr=0.001, lr_trans=0.02, cooldown=3, min_ratio=0.1)
    cal = _cal(adaptive=cfg, mode="per_level")
    cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key="t", trans=True)
    a0 = cal.alpha_state()["calm/short"]["0.9"]
    cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key="c1")  # inside the cooldown
    a1 = cal.alpha_state()["calm/short"]["0.9"]
    assert a0 - a1 == pytest.approx(0.02 * 0.9)
    for i in range(3):
        cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key=f"c{i + 2}")
    a3 = cal.alpha_state()["calm/short"]["0.9"]
    cal.update(_gauss_q(0, 1), 10.0, "calm", 1, key="late")
    assert a3 - cal.alpha_state()["calm/short"]["0.9"] == pytest.approx(0.001 * 0.9)


def test_bad_input():
    cal = _cal()
    with pytest.raises(InvalidParameterError, match="regime"):
        cal.calibrate(_gauss_q(0, 1), "panic", 1)
    with pytest.raises(InvalidParameterError, match="horizon"):
        cal.calibrate(_gauss_q(0, 1), "calm", 15)
    with pytest.raises(InvalidParameterError, match="quantile level"):
        cal.calibrate({0.3: 1.0, 0.25: 0.0, 0.75: 2.0}, "calm", 1)
    with pytest.raises(InvalidParameterError, match="scale levels"):
        _cal(score="normalized").calibrate({0.05: -1.0, 0.95: 1.0}, "calm", 1)
    with pytest.raises(InvalidParameterError, match="realized"):
        cal.update(_gauss_q(0, 1), float("nan"), "calm", 1, key="n")
    with pytest.raises(InvalidParameterError, match="levels"):
        ConformalConfig(levels=(0.5, 0.4))


def test_real_btc_ewma_gaussian_reaches_nominal(btc, cal_cfg):
    """Conformal on a RiskMetrics Gaussian 1..3-day forecast of BTC, 2018-2024 (daily)."""
    r = btc.returns.loc["2017-01-01":"2024-06-01"]
    labels = VolRegimeClassifier.from_config(cal_cfg.regime).classify(btc.returns, btc.iv)["label"]
    cal = ConformalCalibrator.from_config(cal_cfg)
    levels = cal.config.levels
    zs = norm.ppf(levels)
    x = 100 * r.to_numpy()
    s2 = np.mean(x[:30] ** 2)
    raw_hits, hits = [], []
    pending = []
    for t in range(len(x)):
        # matured outcomes first (h-day sums known at t)
        for (t0, h, raw, cq, reg) in [p for p in pending if p[0] + p[1] <= t]:
            y = float(np.sum(x[t0 + 1 : t0 + h + 1]))
            if t0 > 365:
                raw_hits.append(raw[0.10] <= y <= raw[0.90])
                hits.append((cq[0.10] <= y <= cq[0.90], cq[0.05] <= y <= cq[0.95]))
            cal.update(raw, y, reg, h, key=f"{t0}|{h}", calibrated_quantiles=cq)
        pending = [p for p in pending if p[0] + p[1] > t]
        s2 = 0.94 * s2 + 0.06 * x[t] ** 2
        reg = labels.get(r.index[t], "normal")
        reg = "normal" if reg == "unknown" else reg
        for h in (1, 3):
            raw = {lv: float(np.sqrt(h * s2) * z) for lv, z in zip(levels, zs)}
            cq = cal.calibrate(raw, reg, h).quantiles
            pending.append((t, h, raw, cq, reg))
    hits = np.asarray(hits)
    assert abs(np.mean(raw_hits) - 0.80) > 0.02  # the raw Gaussian is off
    assert abs(hits[:, 0].mean() - 0.80) < 0.03
    assert abs(hits[:, 1].mean() - 0.90) < 0.03


def test_kappa_exposed_and_responds_to_width_and_coverage():
    cal = _cal(min_bucket=10, min_pooled=10)
    rng = np.random.default_rng(5)
    for i in range(60):
        cal.update(_gauss_q(0, 1), float(rng.normal()), "normal", 2, key=str(i))
    usual = cal.calibrate(_gauss_q(0, 1), "normal", 2, router_entropy=0.2, state_spread=0.1).info
    wide = cal.calibrate(_gauss_q(0, 3), "normal", 2, router_entropy=0.2, state_spread=0.1).info
    assert 0 <= usual.kappa < wide.kappa <= 1
    assert usual.kappa_plus != usual.kappa  # the rolling coverage enters kappa+
    cov = cal.rolling_coverage("normal", 2)
    assert usual.kappa_plus == pytest.approx(0.5 * usual.kappa + 0.5 * min(1, abs(cov - 0.8) / 0.1))
