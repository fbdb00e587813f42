"""The nightly batch on the embedded S&P 500 / NASDAQ data: outputs, outcome updates that are
idempotent, calibration buffers, scores, and resuming after a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aurora_jax.calibrate.conformal import ConformalCalibrator
from aurora_jax.eval.scoring import crps_sample
from serving import nightly


@pytest.fixture
def store_dir(spx_store):
    """The session's embedded store, as ``data.root``."""
    return str(spx_store.root)


def test_nightly_outputs_outcomes_and_idempotence(make_cfg, store_dir, capsys):
    first = nightly.run(make_cfg("serving.assets=[NDX,SPX]", "serving.nightly.as_of=2018-06-01",
                                 f"data.root={store_dir}"))
    night = first["out_dir"]
    table = pd.read_parquet(f"{night}/quantiles.parquet")
    assert sorted(table["asset_id"].unique()) == ["NDX", "SPX"] and len(table) == 10   # 2 assets x 5 horizons
    q = table[["q05", "q10", "q25", "q50", "q75", "q90", "q95"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()
    for asset in ("NDX", "SPX"):
        png = Path(f"{night}/fan_{asset}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        widths = table[table["asset_id"] == asset].sort_values("horizon").eval("q95 - q05").to_numpy()
        assert widths[-1] > widths[0]                   # the cone widens
    assert first["outcomes_added"] == {"NDX": 0, "SPX": 0}
    out = capsys.readouterr().out
    assert "P5/P50/P95 at h = 5" in out and "SPX" in out

    kw = ("serving.assets=[NDX,SPX]", "serving.nightly.as_of=2018-06-25", f"data.root={store_dir}")
    second = nightly.run(make_cfg(*kw))
    assert second["outcomes_added"] == {"NDX": 5, "SPX": 5}   # every horizon of 06-01 is known by 06-25
    out_root = second["out_dir"].rsplit("/", 1)[0]
    scores = pd.read_parquet(f"{out_root}/scores.parquet")
    assert len(scores) == 10 and scores["key"].is_unique
    from aurora_jax.data.store import MarketStore

    close = MarketStore(store_dir).series("SPX", "close")
    row = scores[(scores["asset_id"] == "SPX") & (scores["horizon"] == 5)].iloc[0]
    assert row["realized"] == close.loc[row["target_ds"]]        # the close of the target day
    assert row["covered_90"] == (row["q05"] <= row["realized"] <= row["q95"])
    grid_row = table[(table["asset_id"] == "SPX") & (table["horizon"] == 5)].iloc[0]
    expected = crps_sample(np.log(np.asarray(grid_row["grid"]) / grid_row["spot"]),
                           float(np.log(row["realized"] / grid_row["spot"])))
    assert abs(row["crps"] - expected) < 1e-12
    summary = {s["asset_id"]: s for s in second["summary"]}
    assert summary["SPX"]["scored_outcomes"] == 5
    assert summary["SPX"]["coverage_p10_p90_to_date"] == scores[scores["asset_id"] == "SPX"]["covered_80"].mean()

    cal_path = f"{make_cfg(*kw).serving.calibration_dir}/SPX.json"
    cal = ConformalCalibrator.load(cal_path)
    assert sum(cal.sizes().values()) == 5 and cal.counters["added"] == 5
    before = Path(cal_path).read_text()

    third = nightly.run(make_cfg(*kw))                           # same night again: nothing twice
    assert third["outcomes_added"] == {"NDX": 0, "SPX": 0} and third["resumed"] == ["NDX", "SPX"]
    assert len(pd.read_parquet(f"{out_root}/scores.parquet")) == 10
    assert json.loads(Path(cal_path).read_text())["keys"] == json.loads(before)["keys"]


def test_nightly_resumes_after_a_crash(make_cfg, store_dir, monkeypatch):
    cfg = make_cfg("serving.assets=[NDX,SPX]", "serving.nightly.as_of=2017-03-01", f"data.root={store_dir}")
    real = nightly.forecast_asset
    calls: list[str] = []

    def crash_on_spx(forecaster, calib, asset, *a, **k):
        calls.append(asset)
        if asset == "SPX":
            raise RuntimeError("power cut")
        return real(forecaster, calib, asset, *a, **k)

    monkeypatch.setattr(nightly, "forecast_asset", crash_on_spx)
    with pytest.raises(RuntimeError, match="power cut"):
        nightly.run(cfg)
    night = f"{cfg.serving.nightly.out_dir}/2017-03-01"
    part = f"{night}/parts/NDX.parquet"
    stamp = os.stat(part).st_mtime_ns

    def record(forecaster, calib, asset, *a, **k):
        calls.append(asset)
        return real(forecaster, calib, asset, *a, **k)

    calls.clear()
    monkeypatch.setattr(nightly, "forecast_asset", record)
    result = nightly.run(cfg)
    assert calls == ["SPX"] and result["resumed"] == ["NDX"]     # NDX was not redone
    assert os.stat(part).st_mtime_ns == stamp
    assert len(pd.read_parquet(f"{night}/quantiles.parquet")) == 10
