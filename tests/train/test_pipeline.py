"""Training the smoke experiment end to end: registry entry, orbax round trip, stage checkpoints,
bit-identical forecasts from two trainings with the same seed, splits in time, `just models`."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from aurora_jax.errors import ModelUnavailableError
from aurora_jax.forecast.engine import EngineParams, engine_forecast
from aurora_jax.train.checkpoint import restore_pytree
from aurora_jax.train.dataset import attach_inputs, build_dataset
from aurora_jax.train.registry import (
    list_entries,
    load_latest,
    load_version,
    params_hash,
    registry_dir,
    run_list,
)

LEVELS = jnp.asarray([0.05, 0.25, 0.5, 0.75, 0.95])


def _val_forecasts(cfg, params, store, n_dates=3):
    data = build_dataset(store, "SPX", cfg)
    attach_inputs(data, params.vol_path, cfg)
    outs = []
    for j, p in enumerate(data.val[:: max(1, len(data.val) // n_dates)][:n_dates]):
        x = jax.tree_util.tree_map(lambda a, p=p: a[p], data.inputs)
        outs.append(engine_forecast(params, x, jax.random.PRNGKey(100 + j), LEVELS, jnp.zeros((0,)), 5, 1000))
    return data, outs


def test_registry_entry_describes_the_model(smoke_run):
    cfg = smoke_run.cfg
    entries = list_entries(registry_dir(cfg), "SPX", "smoke")
    assert [e.version for e in entries] == smoke_run.versions
    e = entries[-1]
    assert e.version.startswith("spx-smoke-") and e.asset_id == "SPX" and e.seed == int(cfg.seed)
    assert e.git_sha and e.created_at
    tr, va = e.data_ranges["train"], e.data_ranges["val"]
    assert pd.Timestamp(tr[1]) < pd.Timestamp(va[0]) and e.data_ranges["n_train"] > 100
    assert {"trend", "flow", "train", "inputs", "jumps", "vol_path"} <= set(e.hyperparameters)
    assert e.teacher.startswith("moments:SPX")
    crps = e.metrics["val_crps"]
    assert set(crps) == {"1", "7", "14"} and 0 < crps["1"] < crps["7"] < crps["14"] < 0.2
    for stage in ("data", "teacher", "vol_path", "student", "ar_tcn", "meta_weights", "jumps", "flow", "eval"):
        assert stage in e.stages["seconds"]
    d = e.stages["student"]["distillation"]
    assert all(np.isfinite(d[k]) for k in ("signature_mmd", "tail", "latent_kl"))
    w = e.stages["meta_weights"]["meta_weights"]
    for r in w.values():
        assert abs(sum(r.values()) - 1) < 1e-5
    folder = e.folder
    assert (folder / "params" / "skeleton.pkl").exists() and (folder / "ewaf" / "SPX.json").exists()
    assert not [p for p in registry_dir(cfg).iterdir() if p.name.startswith(".tmp")]
    ewaf = json.loads((folder / "ewaf" / "SPX.json").read_text())
    assert len(ewaf["losses"]) == 3 and len(ewaf["history"]) == e.data_ranges["n_val"]
    # replayed over the validation dates; each entry dated when its error was realized
    assert pd.Timestamp(va[1]) < pd.Timestamp(ewaf["last_as_of"]) == pd.Timestamp(ewaf["history"][-1][0])
    assert ewaf["history"][-1][1] == ewaf["losses"] and ewaf["pending"] is None


def test_same_seed_gives_bit_identical_forecasts(smoke_run, spx_store):
    cfg = smoke_run.cfg
    p1, e1 = load_version(cfg, smoke_run.versions[0])
    p2, e2 = load_version(cfg, smoke_run.versions[1])
    assert params_hash(p1) == params_hash(p2) and e1.metrics == e2.metrics
    _, f1 = _val_forecasts(cfg, p1, spx_store)
    _, f2 = _val_forecasts(cfg, p2, spx_store)
    for a, b in zip(f1, f2):
        np.testing.assert_array_equal(np.asarray(a.log_paths), np.asarray(b.log_paths))
        np.testing.assert_array_equal(np.asarray(a.quantiles), np.asarray(b.quantiles))


def test_trained_forecast_is_sane(smoke_run, spx_store):
    cfg = smoke_run.cfg
    params, entry = load_latest(cfg, "SPX")
    assert isinstance(params, EngineParams) and entry.version == smoke_run.versions[-1]
    _, outs = _val_forecasts(cfg, params, spx_store)
    for o in outs:
        q = np.asarray(o.quantiles)
        assert np.all(np.diff(q, axis=1) >= 0) and np.all(np.isfinite(q))
        lp = np.asarray(o.log_paths)
        # one-day spread close to the RevIN scale of daily S&P 500 returns (about 1%)
        assert 0.003 < lp[:, 0].std() < 0.04
        assert abs(np.median(lp[:, -1])) < 0.03


def test_stage_checkpoints_restore(smoke_run):
    ck = smoke_run.run_dirs[0] / "checkpoints"
    assert {"vol_path", "student", "tcn", "trend", "jumps", "flow"} <= {p.name for p in ck.iterdir()}
    flow = restore_pytree(ck / "flow")
    params, _ = load_version(smoke_run.cfg, smoke_run.versions[0])
    for a, b in zip(jax.tree_util.tree_leaves(flow), jax.tree_util.tree_leaves(params.flow)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    train = json.loads((smoke_run.run_dirs[0] / "train.json").read_text())
    assert train["version"] == smoke_run.versions[0]


def test_models_command_and_missing_model(smoke_run, tmp_path, capsys):
    rows = run_list(smoke_run.cfg, [], tmp_path)
    assert [r["version"] for r in rows] == smoke_run.versions
    assert json.loads((tmp_path / "models.json").read_text())[0]["asset_id"] == "SPX"
    assert "registered engine versions" in capsys.readouterr().out
    with pytest.raises(ModelUnavailableError, match="BTC-USD"):
        load_latest(smoke_run.cfg, "BTC-USD")


def test_forecast_from_snapshot_updates_the_ewaf_state(smoke_run, spx_store, tmp_path):
    """The integration point: snapshot -> inputs (model's vol path) -> engine, EWAF persisted,
    point in time and repeatable. (On a copy of the registry: the state is written next to the
    model, and the other tests read the shared smoke registry.)"""
    import shutil

    from omegaconf import OmegaConf

    from aurora_jax.features.inputs import build_inputs, snapshot_for_inputs
    from aurora_jax.forecast.engine import forecast_from_snapshot
    from aurora_jax.models.trend_ensemble import EwafTracker

    reg = tmp_path / "registry"
    shutil.copytree(smoke_run.cfg.model.train.registry_dir, reg, ignore=shutil.ignore_patterns(".*"))
    cfg = OmegaConf.merge(smoke_run.cfg, {"model": {"train": {"registry_dir": str(reg)}}})
    params, entry = load_latest(cfg, "SPX")
    tracker = EwafTracker(entry.ewaf_path(), float(cfg.model.trend.ewaf.discount))
    before = tracker.load()
    t0 = pd.Timestamp(before.last_as_of) + pd.Timedelta(days=30)
    snap, hourly = snapshot_for_inputs(spx_store, "SPX", t0, cfg)
    key = jax.random.PRNGKey(5)
    out, info = forecast_from_snapshot(params, entry, snap, hourly, cfg, key, 5, 1000, thresholds=[1900.0, 2200.0])
    assert info.asset_id == "SPX" and "price" in info.groups_used
    x, _ = build_inputs(snap, cfg, vol_params=params.vol_path, hourly=hourly)
    ref = engine_forecast(params, x, key, jnp.asarray([0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95]),
                          jnp.log(jnp.asarray([1900.0, 2200.0]) / x.spot), 5, 1000, jnp.asarray(before.losses_array()))
    np.testing.assert_allclose(np.asarray(out.quantiles), np.asarray(ref.quantiles), rtol=1e-6)
    first = tracker.load()
    assert pd.Timestamp(first.last_as_of) == snap.as_of and first.pending is not None
    assert first.n_updates == before.n_updates          # nothing was pending after training
    # the same request again: same numbers, same state
    again, _ = forecast_from_snapshot(params, entry, snap, hourly, cfg, key, 5, 1000, thresholds=[1900.0, 2200.0])
    np.testing.assert_array_equal(np.asarray(again.quantiles), np.asarray(out.quantiles))
    assert tracker.load() == first
    # an older as-of leaves the persisted state alone; a later one scores the pending forecasts
    old, old_h = snapshot_for_inputs(spx_store, "SPX", t0 - pd.Timedelta(days=10), cfg)
    forecast_from_snapshot(params, entry, old, old_h, cfg, key, 5, 1000)
    assert tracker.load() == first
    later, later_h = snapshot_for_inputs(spx_store, "SPX", t0 + pd.Timedelta(days=7), cfg)
    forecast_from_snapshot(params, entry, later, later_h, cfg, key, 5, 1000)
    third = tracker.load()
    assert third.n_updates == first.n_updates + 1 and len(third.history) == len(first.history) + 1
    assert third.losses != first.losses and pd.Timestamp(third.history[-1][0]) == later.as_of
