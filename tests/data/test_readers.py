"""Every reader on the real files, and malformed files failing with the file and line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from aurora_jax.data.readers import (
    read_arch_datasets, read_binance_klines, read_feature_csv, read_ohlcv_csv,
)
from aurora_jax.errors import IngestError

DAY = pd.Timedelta(days=1)


def test_yahoo_csv_matches_file_and_is_stamped_at_close(shared_data_dir):
    path = shared_data_dir / "ohlcv" / "BTC-USD_1d.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    t = read_ohlcv_csv(path, "BTC-USD", DAY)
    assert len(t.frame) == len(rows) == 3575
    assert t.frame["timestamp"].iloc[0] == pd.Timestamp(rows[0]["timestamp"], tz="UTC") + DAY
    assert float(t.frame["close"].iloc[-1]) == float(rows[-1]["close"])
    assert float(t.frame["volume"].iloc[10]) == float(rows[10]["volume_usd"])
    assert t.frame["line"].iloc[0] == 2 and t.frame["line"].iloc[-1] == len(rows) + 1


def test_yahoo_header_variant_with_adj_close(tmp_path):
    p = tmp_path / "X_1d.csv"
    p.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,1,2,0.5,1.5,1.4,100\n")
    t = read_ohlcv_csv(p, "X", DAY)
    assert list(t.value_columns) == ["open", "high", "low", "close", "volume"]
    assert float(t.frame["close"].iloc[0]) == 1.5


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_binance_mark_klines_exact_format(shared_data_dir, symbol):
    path = shared_data_dir / "ohlcv" / f"{symbol}_1h_markprice.json"
    raw = json.loads(path.read_text())
    t = read_binance_klines(path, symbol, mark=True)
    assert list(t.value_columns) == ["mark_open_1h", "mark_high_1h", "mark_low_1h", "mark_close_1h"]
    assert len(t.frame) == len(raw)
    # stamped at close: closeTime + 1 ms == openTime + 1 h
    first = t.frame["timestamp"].iloc[0]
    assert first == pd.Timestamp(raw[0][0], unit="ms", tz="UTC") + pd.Timedelta(hours=1)
    assert first == pd.Timestamp(raw[0][6] + 1, unit="ms", tz="UTC")
    np.testing.assert_array_equal(t.frame["mark_close_1h"].astype(float).to_numpy()[:100],
                                  np.array([float(k[4]) for k in raw[:100]]))


def test_binance_spot_daily_klines_use_plain_names(tmp_path):
    day = 86_400_000
    k = [[i * day, "10", "12", "9", "11", "5.5", (i + 1) * day - 1, "60", 3, "1", "11", "0"] for i in range(3)]
    p = tmp_path / "BTCUSDT_1d.json"
    p.write_text(json.dumps(k))
    t = read_binance_klines(p, "BTC-USD", mark=False)
    assert list(t.value_columns) == ["open", "high", "low", "close", "volume"]


def test_feature_csv(shared_data_dir):
    path = shared_data_dir / "features" / "BTC-USD" / "funding_rate.csv"
    t = read_feature_csv(path, "BTC-USD", "funding_rate", DAY)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(t.frame) == len(rows)
    # timestamps with a time of day are kept as they are (no end-of-day lag)
    assert t.frame["timestamp"].iloc[0] == pd.Timestamp(rows[0]["timestamp"])
    iv = read_feature_csv(shared_data_dir / "features" / "BTC-USD" / "iv_30d_atm.csv", "BTC-USD", "iv_30d_atm", DAY)
    assert iv.frame["timestamp"].iloc[0] == pd.Timestamp("2022-11-06", tz="UTC") + DAY


def test_arch_datasets_are_real_spx_ndx_vix():
    tables = {(t.asset_id, tuple(t.value_columns)): t for t in read_arch_datasets(DAY)}
    spx = tables[("SPX", ("open", "high", "low", "close", "volume"))]
    assert len(spx.frame) == 5031
    assert spx.frame["timestamp"].iloc[0] == pd.Timestamp("1999-01-05", tz="UTC")
    vix = tables[("SPX", ("iv_30d_atm",))]
    assert 9 < np.nanmedian(vix.frame["iv_30d_atm"]) < 25  # VIX lives in the teens
    assert ("NDX", ("open", "high", "low", "close", "volume")) in tables


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("timestamp,open,high,low,close,volume\n2020-01-01,1,2,0.5,1,3\n2020-01-02,1,2\n", 3, "expected 6"),
        ("timestamp,open,high,low,close,volume\n2020-01-01,1,2,0.5,1,3\nnot-a-date,1,2,0.5,1,3\n", 3, "unparseable"),
        ("date,price\n2020-01-01,1\n", 1, "header lacks"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "BAD_1d.csv"
    p.write_text(text)
    with pytest.raises(IngestError) as err:
        read_ohlcv_csv(p, "BAD", DAY)
    assert err.value.line == line and words in str(err.value) and str(p) in str(err.value)


def test_malformed_json_and_klines(tmp_path):
    p = tmp_path / "X_1h.json"
    p.write_text('[[1577098800000,"1","2","0.5","1","0",1577102399999,"0",1,"0","0","0"],\n[1,2')
    with pytest.raises(IngestError, match="invalid JSON") as err:
        read_binance_klines(p, "X", mark=True)
    assert err.value.line == 2
    p.write_text(json.dumps([[1577098800000, "1", "2", "0.5", "1", "0", 1577102399999], [5, "x"]]))
    with pytest.raises(IngestError, match="element 2"):
        read_binance_klines(p, "X", mark=True)


def test_feature_csv_bad_header(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("time,val\n2020-01-01,1\n")
    with pytest.raises(IngestError, match="timestamp,value"):
        read_feature_csv(p, "A", "x", DAY)
