"""What-if scenarios on real BTC data (IV = Deribit DVOL, Binance funding) with a real engine.

The engine here is assembled from the train package's public pieces on the real BTC history:
the vol-path, jump and vol-scale stages are fitted (aurora_jax.models), the trend / flow networks are at
their seeded initialisation (training them takes minutes; every property below holds for any
parameters), and the version is registered in a temporary registry so that the loading path
(`load_latest`, orbax restore) is the one the CLI and the service use.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from aurora_jax.errors import InvalidParameterError, ModelUnavailableError

pytestmark = pytest.mark.xdist_group("scenario_engine")   # one worker builds the engine (--dist loadgroup)

ASSET = "BTC-USD"
AS_OF = "2024-01-05"
H = 5
PATHS = 256
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def _overrides(tmp) -> list[str]:
    return [
        "model=engine", f"model.train.registry_dir={tmp / 'registry'}", f"model.explain.dir={tmp / 'explain'}",
        f"outputs_dir={tmp / 'outputs'}", f"serving.calibration_dir={tmp / 'calibration'}", "progress=false",
        "forecast.min_paths=64", "model.trend.student.d_model=8", "model.trend.student.state_dim=8",
        "model.trend.student.n_blocks=1", "model.trend.student.latent_dim=4", "model.trend.student.hidden=16",
        "model.trend.tcn.channels=8", "model.trend.tcn.dilations=[1,2,4]", "model.trend.tcn.hidden=16",
        "model.flow.width=32", "model.flow.depth=1", "model.flow.sample_steps=2", "model.jumps.fit_steps=40",
        "model.explain.fit.days=200", "model.explain.fit.dates=72", "model.explain.fit.paths=64",
        "model.explain.fit.chunk=24", "model.explain.fit.min_train=12", "model.explain.horizons=[1,5]",
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory, real_store):
    """(cfg, store, engine handle, base conditioning set at AS_OF)."""
    from aurora_jax.config import load_config
    from aurora_jax.features.inputs import fit_vol_params_on, history, snapshot_for_inputs
    from aurora_jax.forecast.engine import EngineParams
    from aurora_jax.forecast.scenario import load_engine, prepare_base
    from aurora_jax.models.jump_model import fit_jump_model, jump_data
    from aurora_jax.models.trend_ensemble import TrendEnsemble
    from aurora_jax.models.vol_scale import fit_vol_scale
    from aurora_jax.train import stages
    from aurora_jax.train.dataset import attach_inputs, build_dataset
    from aurora_jax.train.registry import RegistryEntry, inputs_signature, make_version, register, registry_dir

    tmp = tmp_path_factory.mktemp("scenario")
    cfg = load_config([*_overrides(tmp), f"data.root={real_store.root}"])
    snap, hourly = snapshot_for_inputs(real_store, ASSET, "2023-12-01", cfg)
    hist = history(snap, cfg, hourly)
    vol = fit_vol_params_on(hist, cfg)
    jumps, _ = fit_jump_model([jump_data(ASSET, hist, vol)], cfg.model.jumps, hist.layout)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    trend = TrendEnsemble(stages.init_student(cfg, k1), stages.init_ar(cfg), stages.init_tcn(cfg, k2),
                          jnp.zeros((3, 3)), float(cfg.model.trend.ewaf.eta))
    # the vol scale fitted as the pipeline does, on the real normalized future returns (trend 0)
    tcfg = OmegaConf.merge(cfg, {"model": {"train": {"start": "2021-01-01", "end": "2023-12-01"}}})
    data = attach_inputs(build_dataset(real_store, ASSET, tcfg), vol, tcfg)
    tr = data.train
    vol_scale, _ = fit_vol_scale(data.y[tr], data.y_mask[tr], np.asarray(data.inputs.iv_path)[tr], data.scale[tr],
                                 cfg.model.vol_scale)
    params = EngineParams(trend=trend, jumps=jumps, flow=stages.init_flow(cfg, k3), vol_path=vol,
                          flow_steps=int(cfg.model.flow.sample_steps), horizon_max=int(cfg.model.inputs.horizon_max),
                          vol_scale=vol_scale)
    now = pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime()
    entry = RegistryEntry(version=make_version(ASSET, "scenario_test", params, now), asset_id=ASSET,
                          experiment="scenario_test", created_at=now.isoformat(), seed=0, git_sha="test",
                          data_ranges={}, hyperparameters={}, teacher="none: networks at initialisation",
                          inputs_signature=inputs_signature(cfg))
    register(registry_dir(cfg), entry, params)
    engine = load_engine(cfg, ASSET)
    base = prepare_base(real_store, ASSET, AS_OF, cfg, engine.params.vol_path)
    return cfg, real_store, engine, base


@pytest.fixture(scope="module")
def surrogate(env):
    """The driver surrogate of the test engine, fitted on its forecasts and saved for its version."""
    from aurora_jax.forecast.explain.fit import fit_engine_surrogate, surrogate_path

    cfg, store, engine, _ = env
    sur = fit_engine_surrogate(cfg, engine.params, store, ASSET, engine_version=engine.version,
                               end=pd.Timestamp(AS_OF, tz="UTC"))
    sur.save(surrogate_path(cfg, engine.version))
    return sur


def run(env, overrides, **kw):
    from aurora_jax.forecast.scenario import run_scenario

    cfg, _, engine, base = env
    return run_scenario(engine, base, overrides, cfg, horizon=H, num_paths=PATHS, levels=LEVELS, **kw)


def field_of(excinfo) -> str:
    return excinfo.value.field


# ---------------------------------------------------------------------------------------------
def test_iv_override_changes_the_conditioning_set_not_history(env):
    from aurora_jax.features.regime_vector import regime_layout
    from aurora_jax.forecast.scenario import scenario_inputs

    cfg, store, _, base = env
    frame_before = base.snap.frame.copy()
    stored_before = store.series(ASSET, "iv_30d_atm", end=base.as_of)
    x, info = scenario_inputs(base, {"iv_30d_atm": 90.0}, cfg)
    lay = regime_layout(int(x.regime.shape[0]))
    b = base.inputs
    # the past is the same: returns, RevIN statistics, spot
    for k in ("returns", "returns_mask", "revin_loc", "revin_scale", "spot", "rv_level"):
        np.testing.assert_array_equal(np.asarray(getattr(x, k)), np.asarray(getattr(b, k)))
    # the override reaches the IV entries exactly and the IV path starts from it
    assert float(x.regime[lay.index("log_iv")]) == pytest.approx(np.log(0.90), abs=1e-6)
    d = np.log(0.90) - float(b.regime[lay.index("log_iv")])
    assert float(x.regime[lay.index("log_iv_change_1")] - b.regime[lay.index("log_iv_change_1")]) == pytest.approx(d, abs=1e-5)
    assert float(x.regime[lay.index("log_iv_over_rv")] - b.regime[lay.index("log_iv_over_rv")]) == pytest.approx(d, abs=1e-5)
    assert float(x.regime[lay.index("iv_z")]) > float(b.regime[lay.index("iv_z")]) + 1.0
    assert float(x.iv_path[0]) > float(b.iv_path[0]) * 1.2
    assert np.all(np.diff(np.asarray(x.iv_path)) < 0)                  # 90% mean-reverts down
    # blocks the override does not touch are identical
    for blk in ("funding", "onchain", "dxy", "equity", "realized"):
        idx = list(lay.blocks[blk])
        np.testing.assert_array_equal(np.asarray(x.regime)[idx], np.asarray(b.regime)[idx])
    assert info.iv_source == "implied"
    # historical data untouched: the base snapshot and the store
    pd.testing.assert_frame_equal(base.snap.frame, frame_before)
    pd.testing.assert_series_equal(store.series(ASSET, "iv_30d_atm", end=base.as_of), stored_before)


def test_same_key_makes_the_difference_the_override(env):
    iv_now = float(env[3].snap.frame["iv_30d_atm"].iloc[-1])
    same = run(env, {"iv_30d_atm": iv_now})                 # the observed value: no effective change
    assert same.conditional is True
    assert same.changes == []
    np.testing.assert_array_equal(same.scenario.quantiles, same.base.quantiles)
    np.testing.assert_array_equal(same.difference, 0.0)
    hi = run(env, {"iv_30d_atm": 95.0})
    again = run(env, {"iv_30d_atm": 95.0})
    np.testing.assert_array_equal(hi.scenario.quantiles, again.scenario.quantiles)     # deterministic
    np.testing.assert_array_equal(hi.base.quantiles, same.base.quantiles)              # base is the same cone
    assert np.abs(hi.difference).max() > 0
    assert {c["input"] for c in hi.changes} >= {"regime.log_iv", "iv_path", "mm_indices.Gamma_Squeeze_Index"}
    # the quantiles stay monotone across levels in both cones
    assert np.all(np.diff(hi.scenario.quantiles, axis=1) >= 0)
    d = hi.to_dict()
    assert d["conditional"] is True and len(d["difference"]) == H and d["overrides"] == {"iv_30d_atm": 95.0}


def test_iv_what_if_widens_the_cone_as_iv_rises(env):
    """Raising the implied vol widens the P5-P95 band at every step, lowering it narrows it: the
    residuals scale with the IV path (beta fitted on the real BTC history, > 0 there)."""
    cfg, _, engine, base = env
    assert float(engine.params.vol_scale.beta) > 0.2
    s = cfg.model.scenario
    lo = base.rv_long / float(s.iv_below_rv_factor) * 1.05 * 100.0
    hi = min(base.rv_long * float(s.iv_above_rv_factor) * 0.95, float(s.iv_bounds[1])) * 100.0
    widths = []
    for iv in np.linspace(lo, hi, 4):
        q = run(env, {"iv_30d_atm": float(iv)}).scenario.quantiles
        widths.append(q[:, -1] - q[:, 0])
    assert np.all(np.diff(np.asarray(widths), axis=0) > 0), np.asarray(widths)


def test_index_and_funding_overrides(env):
    res = run(env, {"gamma_squeeze_index": 2.5, "inventory_unwind_index": -1.0})
    changed = {c["input"]: c for c in res.changes}
    assert changed["mm_indices.Gamma_Squeeze_Index"]["scenario"] == pytest.approx(2.5)
    assert changed["mm_indices.Inventory_Unwind_Index"]["scenario"] == pytest.approx(-1.0)
    assert not any(k.startswith("regime.") for k in changed)            # indices only
    hist = env[3].histories["funding_rate"]
    f = run(env, {"funding_rate": hist.hi})
    names = {c["input"] for c in f.changes}
    assert {"regime.funding_z", "regime.funding_annual"} <= names
    assert not any(n.startswith("regime.log_iv") for n in names)


def test_sanity_bounds_and_cross_checks_are_422(env):
    from aurora_jax.forecast.scenario import validate_overrides

    cfg, _, _, base = env
    iv_unit = 100.0
    fh = base.histories["funding_rate"]
    beyond = fh.hi + 1.0 * (fh.hi - fh.lo)                                     # inside the bounds, past history
    assert beyond < float(cfg.model.scenario.funding_bounds[1])
    cases = [
        ({"iv_30d_atm": 90, "vix": 3}, "scenario_overrides"),                   # not whitelisted
        ({"iv_30d_atm": float("nan")}, "scenario_overrides.iv_30d_atm"),
        ({"iv_30d_atm": 400.0}, "scenario_overrides.iv_30d_atm"),               # outside iv_bounds
        ({"iv_30d_atm": base.rv_long / 2.5 * iv_unit}, "scenario_overrides.iv_30d_atm"),   # << realized vol
        ({"funding_rate": 0.01}, "scenario_overrides.funding_rate"),           # outside funding_bounds
        ({"funding_rate": beyond}, "scenario_overrides.funding_rate"),
        ({"iv_skew": -5.0}, "scenario_overrides.iv_skew"),                      # BTC has no skew series
        ({"corr_btc": 0.5}, "scenario_overrides.corr_btc"),                     # BTC with BTC is 1
        ({"gamma_squeeze_index": 3.5}, "scenario_overrides.gamma_squeeze_index"),
        ({"gamma_squeeze_index": 2.5, "iv_30d_atm": base.rv_short * 2.5 * iv_unit}, "scenario_overrides"),
        ({"inventory_unwind_index": 2.5, "funding_rate": base.histories["funding_rate"].lo}, "scenario_overrides"),
        ({}, "scenario_overrides"),
    ]
    for overrides, field in cases:
        with pytest.raises(InvalidParameterError) as exc:
            validate_overrides(overrides, base, cfg)
        assert exc.value.status == 422
        assert field_of(exc) == field, (overrides, str(exc.value))
    with pytest.raises(InvalidParameterError, match="below the realized vol"):
        validate_overrides({"iv_30d_atm": base.rv_long / 2.5 * iv_unit}, base, cfg)
    with pytest.raises(InvalidParameterError, match="historical extremes"):
        validate_overrides({"funding_rate": beyond}, base, cfg)
    with pytest.raises(InvalidParameterError, match="inconsistent combination"):
        validate_overrides({"gamma_squeeze_index": 2.5, "iv_30d_atm": base.rv_short * 2.5 * iv_unit}, base, cfg)
    # consistent ones pass unchanged (as floats)
    ok = {"iv_30d_atm": base.rv_long * 1.2 * iv_unit, "gamma_squeeze_index": -0.5, "corr_btc": 1.0}
    assert validate_overrides(ok, base, cfg) == pytest.approx(ok)


def test_skew_override_needs_and_uses_a_skew_series(env):
    """No skew in the shared data: a test-built 25d risk reversal (AR(1) around -2 vol points) is
    added to the real snapshot; the override then moves the skew z-scores and nothing else."""
    from aurora_jax.features.regime_vector import regime_layout
    from aurora_jax.forecast.scenario import base_from_snapshot, scenario_inputs, validate_overrides

    cfg, store, engine, base = env
    frame = base.snap.frame.copy()
    rng = np.random.default_rng(3)
    s = np.empty(len(frame))
    s[0] = -2.0
    for i in range(1, len(s)):
        s[i] = -2.0 + 0.9 * (s[i - 1] + 2.0) + 0.5 * rng.standard_normal()
    frame["skew_25d_rr"] = s
    snap = dataclasses.replace(base.snap, frame=frame, column_groups=dict(base.snap.column_groups, skew_25d_rr="iv"))
    b2 = base_from_snapshot(snap, base.hourly, cfg, engine.params.vol_path, store)
    h = b2.histories["iv_skew"]
    assert h.lo == pytest.approx(s.min()) and h.hi == pytest.approx(s.max())
    with pytest.raises(InvalidParameterError, match="historical extremes"):
        validate_overrides({"iv_skew": h.hi + 2 * (h.hi - h.lo)}, b2, cfg)
    target = h.lo                                      # a historically seen, bearish skew
    x, _ = scenario_inputs(b2, validate_overrides({"iv_skew": target}, b2, cfg), cfg)
    lay = regime_layout(int(x.regime.shape[0]))
    sk = np.asarray(x.regime)[list(lay.blocks["skew"])] - np.asarray(b2.inputs.regime)[list(lay.blocks["skew"])]
    assert np.all(sk < 0)                              # both skew z-scores fall
    other = [i for i in range(len(lay.names)) if i not in lay.blocks["skew"]]
    np.testing.assert_array_equal(np.asarray(x.regime)[other], np.asarray(b2.inputs.regime)[other])


def test_scenarios_never_enter_calibration_buffers(env):
    from aurora_jax.calibrate.conformal import ConformalCalibrator
    from aurora_jax.forecast.scenario import calibrate_scenario

    cfg = env[0]
    cal = ConformalCalibrator.from_config(cfg.calibration)
    rng = np.random.default_rng(0)
    for i in range(60):                                 # ordinary forecasts fill the buffers
        q = {lv: 100.0 + 10.0 * (lv - 0.5) for lv in cal.config.levels}
        assert cal.update(q, 100.0 + 5.0 * rng.standard_normal(), "normal", 1 + i % 14, key=f"f{i}").applied
    sizes = cal.sizes()
    res = run(env, {"iv_30d_atm": 95.0})
    out = calibrate_scenario(res, cal)
    assert out["base"].shape == out["scenario"].shape == (H, len(LEVELS))
    assert not np.allclose(out["scenario"], res.scenario.quantiles)      # it was calibrated ...
    assert cal.sizes() == sizes                                          # ... and nothing was added
    realized = float(res.scenario.quantiles[0, 2])
    q0 = dict(zip(LEVELS, res.scenario.quantiles[0]))
    # an attempt to learn from the scenario (its key, or its conditional label) is refused
    for kw in ({"key": res.calibration_key("scenario", 1)}, {"key": "any", "conditional": res.conditional}):
        r = cal.update(q0, realized, res.scenario.regime, 1, **kw)
        assert not r.applied and r.reason in ("scenario_key", "conditional")
    assert cal.sizes() == sizes
    assert cal.update(q0, realized, res.scenario.regime, 1, key="a forecast of record").applied   # not vacuous
    assert cal.sizes() != sizes


def test_drivers_with_the_engine(env, surrogate):
    from aurora_jax.forecast.explain.blocks import BLOCKS

    cfg = env[0]
    sur = surrogate
    assert sur.horizons == (1, 5) and sur.n_test >= 10
    assert np.isfinite(sur.fidelity).sum() >= 4
    res = run(env, {"iv_30d_atm": 95.0}, surrogate=sur)
    for cone in (res.base, res.scenario):
        d = cone.drivers
        assert d["horizon"] == 5 and d["trend_components"] == "given"
        for role in ("upside", "downside", "trend"):
            r = d[role]
            t = sur.target_index(5, role)
            fid = sur.fidelity[t]
            assert r["reliable"] == bool(np.isfinite(fid) and fid >= float(cfg.model.explain.min_fidelity))
            if r["reliable"]:
                assert 1 <= len(r["drivers"]) <= 3 and {x["block"] for x in r["drivers"]} <= set(BLOCKS)
                eff = [abs(x["effect"]) for x in r["drivers"]]
                assert eff == sorted(eff, reverse=True)
            else:
                assert r["drivers"] == [] and "fidelity" in r["reason"]


def test_cli_writes_overlay_png(env, surrogate, tmp_path):
    from aurora_jax import cli

    cfg, store, _engine, _ = env
    tmp = tmp_path
    mine = [a for a in _overrides(tmp) if not a.startswith(("model.train.registry_dir=", "model.explain.dir="))]
    args = ["scenario", *mine, f"data.root={store.root}", f"asset={ASSET}", f"as_of={AS_OF}",
            f"horizon={H}", f"num_paths={PATHS}", f"quantiles=[{','.join(map(str, LEVELS))}]",
            f"model.train.registry_dir={cfg.model.train.registry_dir}", f"model.explain.dir={cfg.model.explain.dir}",
            "+scenario.iv_30d_atm=90", "gamma_squeeze_index:1.0"]
    assert cli.main(args) == 0
    runs = sorted((tmp / "outputs").rglob("scenario.json"))
    assert len(runs) == 1
    out = json.loads(runs[0].read_text())
    assert out["conditional"] is True and out["overrides"] == {"iv_30d_atm": 90.0, "gamma_squeeze_index": 1.0}
    assert out["base"]["drivers"] is not None
    png = runs[0].parent / "scenario.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (runs[0].parent / "drivers_scenario.png").exists()
    # a refused override is an error exit, not a crash
    bad = [a if not a.startswith("+scenario.") else "+scenario.iv_30d_atm=1" for a in args]
    assert cli.main(bad) == 1


def test_post_scenario(env, surrogate, tmp_path):
    from litestar import Litestar
    from litestar.testing import TestClient

    from aurora_jax.calibrate.conformal import ConformalCalibrator
    from serving.app import error_handler
    from serving.scenario import ScenarioController, scenario_dependencies

    cfg, store, _, base = env
    cal = ConformalCalibrator.from_config(cfg.calibration)
    rng = np.random.default_rng(1)
    spot = float(base.inputs.spot)
    for i in range(80):
        q = {lv: spot * (1 + 0.05 * (lv - 0.5)) for lv in cal.config.levels}
        cal.update(q, spot * (1 + 0.03 * rng.standard_normal()), "normal", 1 + i % 14, key=f"n{i}")
    path = cal.save(tmp_path / "calibration" / f"{ASSET}.json")
    cfg = copy.deepcopy(cfg)
    cfg.serving.calibration_dir = str(tmp_path / "calibration")
    before = path.read_bytes()
    app = Litestar(route_handlers=[ScenarioController], dependencies=scenario_dependencies(cfg, store),
                   exception_handlers={Exception: error_handler})
    body = {"asset_id": ASSET, "as_of": AS_OF, "horizon": H, "num_paths": PATHS, "quantiles": list(LEVELS),
            "overrides": {"iv_30d_atm": 95.0}}
    with TestClient(app) as client:
        r = client.post("/scenario", json=body)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["conditional"] is True and d["model_name"] == "aurora"
        assert len(d["base"]["quantiles"]) == len(d["scenario"]["quantiles"]) == len(d["difference"]) == H
        assert d["base"]["calibration"]["status"] == "calibrated"
        k = H - 1
        for n in ("q05", "q50", "q95"):
            diff = d["scenario"]["quantiles"][k]["raw"][n] - d["base"]["quantiles"][k]["raw"][n]
            assert d["difference"][k]["raw"][n] == pytest.approx(diff, rel=1e-9, abs=1e-9)
        assert any(c["input"] == "regime.log_iv" for c in d["inputs_changed"])
        assert d["base"]["drivers"] is not None                  # the saved surrogate of this version
        r = client.post("/scenario", json={**body, "overrides": {"iv_30d_atm": 1.0}})
        assert r.status_code == 422 and r.json()["field"] == "scenario_overrides.iv_30d_atm"
        r = client.post("/scenario", json={**body, "overrides": {"spx_crash": 1.0}})
        assert r.status_code == 422 and r.json()["field"] == "scenario_overrides"
        r = client.post("/scenario", json={**body, "asset_id": "DOGE-USD"})
        assert r.status_code == 404
        r = client.post("/scenario", json={**body, "asset_id": "ETH-USD"})        # no trained engine
        assert r.status_code == 503
    assert path.read_bytes() == before                            # calibration state untouched


def test_no_engine_is_model_unavailable(env, tmp_path):
    from aurora_jax.forecast.scenario import load_engine

    cfg = copy.deepcopy(env[0])
    cfg.model.train.registry_dir = str(tmp_path / "empty")
    with pytest.raises(ModelUnavailableError):
        load_engine(cfg, ASSET)


def test_corr_btc_override_sets_the_cross_asset_entry_for_eth(env):
    """For ETH the override replaces the regime entry corr_btc (and nothing else); values beyond
    ETH's own correlation history (widened by the margin) or outside [-1, 1] are 422s."""
    from aurora_jax.features.regime_vector import regime_layout
    from aurora_jax.forecast.scenario import input_changes, prepare_base, scenario_inputs, validate_overrides

    cfg, store, engine, _ = env
    base = prepare_base(store, "ETH-USD", "2024-01-05", cfg, engine.params.vol_path)
    lay = regime_layout(int(base.inputs.regime.shape[0]))
    h = base.histories["corr_btc"]
    assert 0.3 < h.lo < h.hi <= 1.0 and h.n > 600                       # two years of daily values
    now = float(base.inputs.regime[lay.index("corr_btc")])
    assert h.lo <= now <= h.hi
    target = h.lo                                                      # a decoupling seen in the window
    x, _ = scenario_inputs(base, validate_overrides({"corr_btc": target}, base, cfg), cfg)
    assert input_changes(base.inputs, x) == [
        {"input": "regime.corr_btc", "base": pytest.approx(now), "scenario": pytest.approx(target)}]
    span = h.hi - h.lo
    for bad in (h.lo - 0.6 * span, 1.5):
        with pytest.raises(InvalidParameterError) as exc:
            validate_overrides({"corr_btc": bad}, base, cfg)
        assert field_of(exc) == "scenario_overrides.corr_btc" and exc.value.status == 422
