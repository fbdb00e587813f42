"""The store: row counts from the real folder, idempotency, rejections and atomicity."""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aurora_jax.data.ingest import IngestSettings, ingest_table
from aurora_jax.data.readers import read_ohlcv_csv
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import IngestError, UnknownAssetError

DAY = pd.Timedelta(days=1)


def _rows(store: MarketStore) -> dict[str, int]:
    s = store.summary()
    return s.groupby(["asset_id", "feature_group"])["rows"].sum().to_dict()


def test_real_folder_row_counts(real_store):
    rows = _rows(real_store)
    assert rows[("BTC-USD", "price")] == 3575 * 5 + 35481 * 4  # daily OHLCV + hourly mark OHLC
    assert rows[("ETH-USD", "price")] == 35481 * 4 + 601
    assert rows[("BTC-USD", "iv")] == 603
    assert set(real_store.assets()) == {"BTC-USD", "ETH-USD", "MACRO", "CRYPTO"}
    dvol = real_store.series("BTC-USD", "iv_30d_atm")
    assert dvol.index.tz is not None and 20 < dvol.median() < 120


def test_duckdb_file_has_market_features_view(real_store):
    con = duckdb.connect(str(real_store.duckdb_path), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM market_features WHERE asset_id = 'BTC-USD'").fetchall()[0][0]
        cols = [c[0] for c in con.execute("DESCRIBE market_features").fetchall()]
    finally:
        con.close()
    assert n == sum(v for (a, _), v in _rows(real_store).items() if a == "BTC-USD")
    assert cols[:7] == ["asset_id", "timestamp", "feature_group", "feature_name", "value", "source", "ingested_at"]


def test_reingest_is_idempotent(tmp_path, shared_data_dir, data_cfg):
    store = MarketStore(tmp_path)
    settings = IngestSettings(data_cfg)
    path = shared_data_dir / "ohlcv" / "BTC-USD_1d.csv"
    first = ingest_table(store, read_ohlcv_csv(path, "BTC-USD", DAY), settings)
    manifest = store.manifest()
    second = ingest_table(store, read_ohlcv_csv(path, "BTC-USD", DAY), settings)
    assert first.added == 3575 * 5 and first.duplicates == 0
    assert second.added == 0 and second.duplicates == first.added and second.conflicts == 0
    assert store.manifest() == manifest  # nothing rewritten


def _write(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("timestamp,open,high,low,close,volume\n" + body)
    return p


def test_rejections_name_line_and_reason(tmp_path, data_cfg):
    store = MarketStore(tmp_path / "s")
    p = _write(tmp_path, "T_1d.csv", "\n".join([
        "2020-01-01,10,12,9,11,1",      # ok (line 2)
        "2020-01-02,10,8,9,11,1",       # high < low (3)
        "2020-01-03,-1,12,-2,11,1",     # negative price (4)
        "2020-01-04,10,abc,9,11,1",     # non-numeric (5)
        "2020-01-04,10,12,9,11,1",      # ok, first valid on 01-04 (6)
        "2020-01-04,10,12,9,11,1",      # duplicate timestamp (7)
        "2020-01-03,10,12,9,11,1",      # non-monotonic (8)
        "2099-01-01,10,12,9,11,1",      # future (9)
        "2020-01-05,10,12,9,11,-5",     # negative volume (10)
    ]) + "\n")
    report = ingest_table(store, read_ohlcv_csv(p, "T", DAY), IngestSettings(data_cfg))
    reasons = {r.line: r.reason for r in report.rejected}
    assert report.added == 2 * 5
    assert "OHLC inconsistent" in reasons[3]
    assert "non-positive price" in reasons[4]
    assert "non-numeric" in reasons[5]
    assert reasons[7] == "duplicate timestamp"
    assert reasons[8] == "non-monotonic timestamp"
    assert "future timestamp" in reasons[9]
    assert "negative value" in reasons[10]
    assert set(reasons) == {3, 4, 5, 7, 8, 9, 10}


def test_strict_mode_failure_leaves_store_unchanged(tmp_path, data_cfg, shared_data_dir):
    store = MarketStore(tmp_path / "s")
    settings = IngestSettings(data_cfg)
    ingest_table(store, read_ohlcv_csv(shared_data_dir / "ohlcv" / "BTC-USD_1d.csv", "BTC-USD", DAY), settings)
    before = (store.manifest(), _rows(store))
    strict = IngestSettings({**dict(data_cfg), "on_invalid_rows": "fail"})
    p = _write(tmp_path, "BTC-USD_1d.csv", "2030-01-01,10,12,9,11,1\n2030-01-02,10,8,9,11,1\n")
    with pytest.raises(IngestError) as err:
        ingest_table(store, read_ohlcv_csv(p, "BTC-USD", DAY), strict, now=pd.Timestamp("2031-01-01", tz="UTC"))
    assert err.value.line == 3 and "OHLC" in str(err.value)
    assert (store.manifest(), _rows(store)) == before


def test_crash_mid_ingest_leaves_store_unchanged(tmp_path, data_cfg, shared_data_dir, monkeypatch):
    """A failure while writing the second partition of a file: no partition becomes live."""
    store = MarketStore(tmp_path / "s")
    settings = IngestSettings(data_cfg)
    ingest_table(store, read_ohlcv_csv(shared_data_dir / "ohlcv" / "BTC-USD_1d.csv", "BTC-USD", DAY), settings)
    files_before = sorted(p.name for p in (tmp_path / "s").rglob("*.parquet"))
    before = (store.manifest(), _rows(store))
    frame = pd.DataFrame({
        "asset_id": ["BTC-USD", "BTC-USD"], "timestamp": pd.to_datetime(["2030-01-01", "2030-01-01"], utc=True),
        "feature_group": ["iv", "price"], "feature_name": ["iv_30d_atm", "close"], "value": [50.0, 1.0],
        "source": ["t", "t"],
    })
    real_write = pq.write_table
    calls = {"n": 0}

    def flaky(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):
        store.ingest_frame(frame)
    assert (store.manifest(), _rows(store)) == before
    assert sorted(p.name for p in (tmp_path / "s").rglob("*.parquet")) == files_before


def test_conflicting_value_is_reported_and_stored_value_kept(tmp_path):
    store = MarketStore(tmp_path)
    base = dict(asset_id="A", timestamp=pd.Timestamp("2020-01-01", tz="UTC"), feature_group="macro",
                feature_name="x", source="t")
    store.ingest_frame(pd.DataFrame([{**base, "value": 1.0}]))
    rep = store.ingest_frame(pd.DataFrame([{**base, "value": 2.0}]))
    assert rep.conflicts == 1 and rep.added == 0
    assert store.series("A", "x").iloc[0] == 1.0


def test_unknown_asset(real_store):
    with pytest.raises(UnknownAssetError, match="known assets") as err:
        real_store.series("DOGE-USD", "close")
    assert "BTC-USD" in err.value.known
