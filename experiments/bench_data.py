"""``just bench data``: as-of snapshot latency from the DuckDB/Parquet store.

Ours: ``snapshot(BTC-USD, daily, 90 days, all groups)`` at random as-of dates.
Reference in the same run: the naive way, reading the same source CSV/JSON files with pandas
and slicing them as of the date (what a script without a store does).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.data.snapshot import snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import ConfigError


def _naive(source_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    frames = [pd.read_csv(source_dir / "ohlcv" / "BTC-USD_1d.csv", parse_dates=["timestamp"], index_col=0)]
    for p in sorted((source_dir / "features").glob("*/*.csv")):
        frames.append(pd.read_csv(p, parse_dates=["timestamp"], index_col=0, date_format="mixed")
                      .rename(columns={"value": p.stem}))
    kl = json.loads((source_dir / "ohlcv" / "BTCUSDT_1h_markprice.json").read_text())
    frames.append(pd.DataFrame({"mark_close": [float(k[4]) for k in kl]},
                               index=pd.to_datetime([k[6] + 1 for k in kl], unit="ms")))
    out = []
    for f in frames:
        f.index = pd.to_datetime(f.index, utc=True, format="mixed")
        out.append(f[(f.index <= as_of) & (f.index > as_of - pd.Timedelta(days=90))])
    return pd.concat(out, axis=1)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    store = MarketStore(cfg.data.root)
    if "BTC-USD" not in store.assets():
        raise ConfigError(f"BTC-USD is not in the store at {store.root}: run `just ingest data.source_dir=../shared/data`")
    rng = np.random.default_rng(int(cfg.seed))
    start, end = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2024-06-30", tz="UTC")
    dates = [start + pd.Timedelta(days=int(d)) for d in rng.integers(0, (end - start).days, 60)]
    snapshot_from_config(store, "BTC-USD", dates[0], cfg.data)  # warm the connection
    ours = []
    for d in dates:
        t0 = time.perf_counter()
        snapshot_from_config(store, "BTC-USD", d, cfg.data)
        ours.append(time.perf_counter() - t0)
    results = {"snapshot_btc_daily_90d_all_groups_ms": {
        "median": 1e3 * float(np.median(ours)), "p90": 1e3 * float(np.percentile(ours, 90)), "n": len(ours)}}
    source = Path(cfg.data.source_dir or "../shared/data")
    if (source / "ohlcv" / "BTC-USD_1d.csv").exists():
        naive = []
        for d in dates[:5]:
            t0 = time.perf_counter()
            _naive(source, d)
            naive.append(time.perf_counter() - t0)
        results["naive_pandas_read_files_ms"] = {
            "median": 1e3 * float(np.median(naive)), "p90": 1e3 * float(np.percentile(naive, 90)), "n": len(naive)}
    table = Table(title="bench data: as-of snapshot, BTC-USD daily, 90 days, all groups")
    for col in ("method", "median ms", "p90 ms", "n"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['median']:.1f}", f"{r['p90']:.1f}", str(r["n"]))
    if "naive_pandas_read_files_ms" in results:
        ratio = results["naive_pandas_read_files_ms"]["median"] / results["snapshot_btc_daily_90d_all_groups_ms"]["median"]
        results["speedup_vs_naive"] = ratio
        table.caption = f"store snapshot is {ratio:.1f}x faster than re-reading the files"
    Console().print(table)
    return results
