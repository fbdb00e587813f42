"""Ingest source files into the store: the embedded ``arch`` datasets or a data folder.

A data folder has the layout of ``../shared/data``::

    ohlcv/<ASSET>_1d.csv                 Yahoo-style daily OHLCV
    ohlcv/<SYMBOL>_<interval>_markprice.json | <SYMBOL>_<interval>.json   Binance kline arrays
    features/<ASSET>/<feature_name>.csv  timestamp,value

Each file is validated, then written atomically; a malformed file raises :class:`IngestError`
naming the file and line and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aurora_jax.atomic import atomic_write_json
from aurora_jax.data.readers import (
    read_arch_datasets, read_binance_klines, read_feature_csv, read_ohlcv_csv,
)
from aurora_jax.data.store import IngestReport, MarketStore
from aurora_jax.data.table import RawTable
from aurora_jax.data.validate import validate
from aurora_jax.errors import IngestError, InvalidParameterError


class IngestSettings:
    """The ``data`` config values ingest needs."""

    def __init__(self, data_cfg: DictConfig | dict):
        d = OmegaConf.to_container(data_cfg, resolve=True) if isinstance(data_cfg, DictConfig) else data_cfg
        self.feature_groups: dict[str, str] = dict(d["feature_groups"])
        self.asset_aliases: dict[str, str] = dict(d.get("asset_aliases") or {})
        self.date_only_lag = pd.Timedelta(hours=float(d["date_only_lag_hours"]))
        self.max_future = pd.Timedelta(minutes=float(d["max_future_minutes"]))
        self.source_scale: dict[str, float] = {k: float(v) for k, v in (d.get("source_scale") or {}).items()}
        self.on_invalid_rows: str = d["on_invalid_rows"]
        if self.on_invalid_rows not in ("reject", "fail"):
            raise InvalidParameterError("data.on_invalid_rows", self.on_invalid_rows, "'reject' or 'fail'")


def ingest_table(
    store: MarketStore, table: RawTable, settings: IngestSettings, now: pd.Timestamp | None = None
) -> IngestReport:
    """Validate one parsed file and add it to the store (all or nothing)."""
    now = now or pd.Timestamp.now(tz="UTC")
    long, rejected = validate(
        table, feature_groups=settings.feature_groups, now=now, max_future=settings.max_future,
        ingested_at=now,
    )
    if rejected and settings.on_invalid_rows == "fail":
        r = rejected[0]
        raise IngestError(r.path, r.line, f"{r.reason} ({len(rejected)} invalid rows; data.on_invalid_rows=fail)")
    return store.ingest_frame(long, path=table.path, rejected=rejected)


def folder_readers(source_dir: Path, settings: IngestSettings) -> list[tuple[str, Callable[[], RawTable]]]:
    """``(label, read)`` for every recognised file under ``source_dir``, in a stable order."""
    if not source_dir.is_dir():
        raise InvalidParameterError("data.source_dir", str(source_dir), "an existing folder")
    lag = settings.date_only_lag
    jobs: list[tuple[str, Callable[[], RawTable]]] = []
    for path in sorted((source_dir / "ohlcv").glob("*.csv")):
        asset = settings.asset_aliases.get(path.stem.split("_")[0], path.stem.split("_")[0])
        jobs.append((str(path), lambda p=path, a=asset: read_ohlcv_csv(p, a, lag)))
    for path in sorted((source_dir / "ohlcv").glob("*.json")):
        symbol = path.stem.split("_")[0]
        asset = settings.asset_aliases.get(symbol, symbol)
        mark = "markprice" in path.stem.lower()
        jobs.append((str(path), lambda p=path, a=asset, m=mark: read_binance_klines(p, a, m)))
    for path in sorted((source_dir / "features").glob("*/*.csv")):
        asset = path.parent.name
        scale = settings.source_scale.get(path.relative_to(source_dir).as_posix(), 1.0)
        jobs.append((str(path), lambda p=path, a=asset, n=path.stem, k=scale: scaled(read_feature_csv(p, a, n, lag), k)))
    if not jobs:
        raise InvalidParameterError(
            "data.source_dir", str(source_dir), "a folder with ohlcv/*.csv|*.json or features/<ASSET>/*.csv"
        )
    return jobs


def scaled(table: RawTable, factor: float) -> RawTable:
    """Multiply every value column by ``factor`` (a configured unit fix, ``data.source_scale``)."""
    if factor != 1.0:
        for col in table.value_columns:
            table.frame[col] = pd.to_numeric(table.frame[col], errors="coerce") * factor
        table.source += f" (x{factor:g})"
    return table


def fetched_table(frame: pd.DataFrame, source: str) -> list[RawTable]:
    """A connector's long frame as one :class:`RawTable` per asset, so it is validated like a file."""
    tables = []
    for asset, part in frame.groupby("asset_id", sort=True):
        wide = part.pivot(index="timestamp", columns="feature_name", values="value").reset_index()
        wide["timestamp"] = pd.to_datetime(wide["timestamp"], utc=True)
        wide["line"] = range(1, len(wide) + 1)
        cols = [c for c in wide.columns if c not in ("timestamp", "line")]
        bars = {}
        for role in ("open", "high", "low", "close"):
            match = [c for c in cols if c.removeprefix("mark_").split("_")[0] == role]
            if len(match) == 1:
                bars[role] = match[0]
        tables.append(RawTable(
            path=source, asset_id=str(asset), source=source, frame=wide,
            price_columns=tuple(bars.values()),
            nonnegative_columns=tuple(c for c in cols if c.startswith("volume")),
            bar_columns=bars if len(bars) == 4 else {},
        ))
    return tables


def fetch_readers(data_cfg: DictConfig) -> list[tuple[str, Callable[[], RawTable]]]:
    """Download ``data.fetch`` through the HTTP connectors (needs internet)."""
    from aurora_jax.data.connectors import ConnectorSettings, fetch_to_frame

    f = data_cfg.fetch
    if not f.symbol or not f.start:
        raise InvalidParameterError("data.fetch.symbol/start", (f.symbol, f.start), "both set for data.fetch.source")
    kw = {}
    if f.interval:
        kw["resolution" if f.source == "deribit_dvol" else "interval"] = str(f.interval)
    end = f.end or pd.Timestamp.now(tz="UTC")
    result = fetch_to_frame(str(f.source), str(f.symbol), f.start, end,
                            ConnectorSettings.from_config(data_cfg.connectors),
                            aliases=dict(data_cfg.asset_aliases), **kw)
    if result.gaps:
        Console(stderr=True).print(f"[yellow]{len(result.gaps)} gaps in {f.source} {f.symbol}:[/] {result.gaps[:5]}")
    return [(t.path, lambda t=t: t) for t in fetched_table(result.frame, f"{f.source}:{f.symbol}")]


def arch_readers(settings: IngestSettings) -> list[tuple[str, Callable[[], RawTable]]]:
    tables = read_arch_datasets(settings.date_only_lag)
    return [(t.path, lambda t=t: t) for t in tables]


def ingest_all(
    store: MarketStore, jobs: Iterable[tuple[str, Callable[[], RawTable]]], settings: IngestSettings,
    progress: bool = False,
) -> list[IngestReport]:
    jobs = list(jobs)
    reports = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("ingesting", total=len(jobs))
        for label, read in jobs:
            bar.update(task, description=f"ingesting {Path(label).name}")
            reports.append(ingest_table(store, read(), settings))
            bar.advance(task)
    return reports


def ingest_default(store: MarketStore, data_cfg) -> list[IngestReport]:
    """Load the embedded default (arch's S&P 500, NASDAQ and VIX)."""
    settings = IngestSettings(data_cfg)
    return ingest_all(store, arch_readers(settings), settings)


def run(cfg: DictConfig, targets: list[str], run_dir: Path) -> list[IngestReport]:
    """``just ingest [data.source_dir=...]``: ingest and print rows added per file."""
    settings = IngestSettings(cfg.data)
    store = MarketStore(cfg.data.root)
    if cfg.data.fetch.source:
        jobs = fetch_readers(cfg.data)
    elif cfg.data.source_dir:
        jobs = folder_readers(Path(cfg.data.source_dir), settings)
    else:
        jobs = arch_readers(settings)
    reports = ingest_all(store, jobs, settings, progress=bool(cfg.progress))
    table = Table(title=f"ingest into {store.root}")
    for col in ("file", "added", "duplicates", "conflicts", "rejected", "reasons"):
        table.add_column(col, justify="right" if col in ("added", "duplicates", "conflicts", "rejected") else "left")
    for r in reports:
        reasons = "; ".join(f"{k}: {v}" for k, v in r.reasons().items())
        table.add_row(Path(r.path).name, str(r.added), str(r.duplicates), str(r.conflicts),
                      str(len(r.rejected)), reasons)
    console = Console()
    console.print(table)
    summary = store.summary()
    counts = summary.groupby(["asset_id", "feature_group"])["rows"].sum().reset_index()
    t2 = Table(title="store rows per asset and group")
    for col in ("asset_id", "feature_group", "rows"):
        t2.add_column(col)
    for row in counts.itertuples():
        t2.add_row(row.asset_id, row.feature_group, f"{row.rows:,}")
    console.print(t2)
    atomic_write_json(run_dir / "ingest_report.json", {
        "reports": [r.as_dict() for r in reports],
        "rows": {f"{r.asset_id}/{r.feature_group}": int(r.rows) for r in counts.itertuples()},
    })
    print(run_dir / "ingest_report.json")
    return reports
