"""The ``market_features`` store: Parquet partitioned by asset and feature group, read via DuckDB.

Layout under ``root``::

    store/asset_id=<A>/feature_group=<G>/part-<uuid>.parquet   one live file per partition
    store/_manifest.json                                        which file is live, per partition
    market.duckdb                                               view ``market_features`` over them

Ingest is idempotent (a row whose key ``(asset_id, feature_name, timestamp)`` exists is a
duplicate, or a conflict when its value differs; the stored value is kept) and atomic: new
partition files are written first and become live together when the manifest is replaced, so a
failure at any point leaves the store as it was.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aurora_jax.atomic import atomic_write_json
from aurora_jax.data.schema import ARROW_SCHEMA, FEATURE_GROUPS, LONG_COLUMNS
from aurora_jax.data.validate import Rejection
from aurora_jax.errors import InvalidParameterError, UnknownAssetError


@dataclass
class IngestReport:
    """What one ingest did: rows added, exact duplicates skipped, conflicting values kept as
    stored, and rows rejected with reasons."""

    path: str
    added: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)  # "asset/group" -> rows added

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejected:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out

    def as_dict(self) -> dict:
        return {
            "path": self.path, "added": self.added, "duplicates": self.duplicates,
            "conflicts": self.conflicts, "rejected": len(self.rejected),
            "rejected_reasons": self.reasons(),
            "rejected_lines": [(r.line, r.reason) for r in self.rejected[:50]],
            "partitions": self.partitions,
        }


ROW_GROUP_ROWS = 16_384  # rows sorted by (feature, time): small groups let time filters skip data


def _epoch_us(t) -> int:
    t = pd.Timestamp(t)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value // 1000)


def _key(asset_id: str, group: str) -> str:
    return f"{asset_id}/{group}"


class MarketStore:
    """Read and write the store under ``root`` (default ``data/``)."""

    def __init__(self, root: str | Path = "data"):
        self.root = Path(root)
        self.store_dir = self.root / "store"
        self.manifest_path = self.store_dir / "_manifest.json"
        self.duckdb_path = self.root / "market.duckdb"
        self._con = duckdb.connect()  # in-memory: queries Parquet directly, never locks the file
        self._con.execute("SET TimeZone='UTC'")
        self._con.execute("SET threads=1")  # small as-of queries: threads cost more than they give
        self._lock = threading.Lock()
        self._manifest_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None
        self._range_cache: dict[tuple, tuple[pd.Timestamp, pd.Timestamp]] = {}

    # -- manifest -----------------------------------------------------------------------------
    def manifest(self) -> dict[str, str]:
        """``"asset/group" -> relative path`` of each live partition file."""
        try:
            st = self.manifest_path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._manifest_cache is None or self._manifest_cache[0] != stamp:
            self._manifest_cache = (stamp, json.loads(self.manifest_path.read_text())["files"])
        return dict(self._manifest_cache[1])

    def manifest_stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the live data changes (for caches keyed on the store's content)."""
        self.manifest()
        return None if self._manifest_cache is None else self._manifest_cache[0]

    def assets(self) -> list[str]:
        return sorted({k.split("/")[0] for k in self.manifest()})

    def groups(self, asset_id: str) -> list[str]:
        return sorted(k.split("/")[1] for k in self.manifest() if k.split("/")[0] == asset_id)

    def is_empty(self) -> bool:
        return not self.manifest()

    def require_asset(self, asset_id: str) -> None:
        if asset_id not in self.assets():
            raise UnknownAssetError(asset_id, self.assets())

    # -- reading ------------------------------------------------------------------------------
    def _files(self, assets: Iterable[str] | None, groups: Iterable[str] | None) -> list[str]:
        assets = set(assets) if assets is not None else None
        groups = set(groups) if groups is not None else None
        out = []
        for key, rel in sorted(self.manifest().items()):
            a, g = key.split("/")
            if (assets is None or a in assets) and (groups is None or g in groups):
                out.append(str(self.store_dir / rel))
        return out

    def read_long(
        self,
        assets: Iterable[str] | None = None,
        groups: Iterable[str] | None = None,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        feature_names: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Rows with ``start < timestamp <= end`` (either bound optional), sorted by asset,
        feature and time."""
        files = self._files(assets, groups)
        if not files:
            return pd.DataFrame({c: pd.Series(dtype=ARROW_SCHEMA.field(c).type.to_pandas_dtype())
                                 for c in LONG_COLUMNS})
        where, params = [], [files]
        if start is not None:
            where.append("timestamp > make_timestamp(?::BIGINT)")
            params.append(_epoch_us(start))
        if end is not None:
            where.append("timestamp <= make_timestamp(?::BIGINT)")
            params.append(_epoch_us(end))
        if feature_names is not None:
            names = list(feature_names)
            where.append(f"feature_name IN ({', '.join('?' * len(names))})")
            params.extend(names)
        sql = "SELECT * FROM read_parquet(?)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY asset_id, feature_name, timestamp"
        with self._lock:
            table = self._con.sql(sql, params=params).to_arrow_table()
        return table.to_pandas()

    def series(
        self, asset_id: str, feature_name: str, start=None, end=None
    ) -> pd.Series:
        """One feature as a float Series on a UTC index (observable time), ``start < t <= end``."""
        self.require_asset(asset_id)
        df = self.read_long([asset_id], None, start, end, [feature_name])
        if df.empty and feature_name not in self.feature_names(asset_id):
            raise InvalidParameterError(
                "feature_name", feature_name, f"one of {self.feature_names(asset_id)}",
                reason=f"no such feature for {asset_id}",
            )
        s = pd.Series(df["value"].to_numpy(), index=pd.DatetimeIndex(df["timestamp"]), name=feature_name)
        return s

    def time_range(self, asset_id: str, group: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last timestamp of one asset's feature group (cached until the data changes)."""
        self.require_asset(asset_id)
        key = (asset_id, group, self.manifest_stamp())
        if key not in self._range_cache:
            files = self._files([asset_id], [group])
            if not files:
                raise InvalidParameterError(
                    "feature_group", group, f"one of {self.groups(asset_id)}", reason=f"no {group} data for {asset_id}"
                )
            with self._lock:
                first, last = self._con.execute(
                    "SELECT epoch_us(min(timestamp)), epoch_us(max(timestamp)) FROM read_parquet(?)", [files]
                ).fetchall()[0]
            self._range_cache[key] = (pd.Timestamp(first, unit="us", tz="UTC"),
                                      pd.Timestamp(last, unit="us", tz="UTC"))
        return self._range_cache[key]

    def feature_names(self, asset_id: str) -> list[str]:
        files = self._files([asset_id], None)
        if not files:
            return []
        with self._lock:
            rows = self._con.execute(
                "SELECT DISTINCT feature_name FROM read_parquet(?) ORDER BY 1", [files]
            ).fetchall()
        return [r[0] for r in rows]

    def summary(self) -> pd.DataFrame:
        """Row counts and time ranges per asset, group and feature."""
        files = self._files(None, None)
        if not files:
            return pd.DataFrame(columns=["asset_id", "feature_group", "feature_name", "rows", "first", "last"])
        with self._lock:
            table = self._con.sql(
                "SELECT asset_id, feature_group, feature_name, count(*) AS rows, min(timestamp) AS first,"
                " max(timestamp) AS last FROM read_parquet(?) GROUP BY ALL ORDER BY ALL", params=[files]
            ).to_arrow_table()
        return table.to_pandas()

    # -- writing ------------------------------------------------------------------------------
    def ingest_frame(
        self, long: pd.DataFrame, *, path: str = "<frame>", rejected: list[Rejection] | None = None
    ) -> IngestReport:
        """Add long-format rows (columns :data:`LONG_COLUMNS`; ``ingested_at`` defaults to now)."""
        report = IngestReport(path=path, rejected=list(rejected or []))
        if long.empty:
            return report
        long = long.copy()
        if "ingested_at" not in long:
            long["ingested_at"] = pd.Timestamp.now(tz="UTC")
        bad_groups = set(long["feature_group"]) - set(FEATURE_GROUPS)
        if bad_groups:
            raise InvalidParameterError("feature_group", sorted(bad_groups), f"one of {FEATURE_GROUPS}")
        long["timestamp"] = pd.to_datetime(long["timestamp"], utc=True).astype("datetime64[us, UTC]")
        long["ingested_at"] = pd.to_datetime(long["ingested_at"], utc=True).astype("datetime64[us, UTC]")
        with self._lock:
            manifest = self.manifest()
            new_manifest = dict(manifest)
            written: list[Path] = []
            try:
                for (asset, group), part in long.groupby(["asset_id", "feature_group"], sort=True):
                    key = _key(asset, group)
                    merged, added, dups, conflicts = self._merge(manifest.get(key), part)
                    report.duplicates += dups
                    report.conflicts += conflicts
                    if added == 0:
                        continue
                    rel = f"asset_id={asset}/feature_group={group}/part-{uuid.uuid4().hex}.parquet"
                    target = self.store_dir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(merged, target, row_group_size=ROW_GROUP_ROWS)
                    written.append(target)
                    new_manifest[key] = rel
                    report.added += added
                    report.partitions[key] = added
                if new_manifest != manifest:
                    atomic_write_json(self.manifest_path, {"files": new_manifest})
            except BaseException:
                for p in written:
                    p.unlink(missing_ok=True)
                raise
            for key, rel in manifest.items():
                if new_manifest.get(key) != rel:
                    (self.store_dir / rel).unlink(missing_ok=True)
            if new_manifest != manifest:
                self._write_duckdb_view(new_manifest)
        return report

    def _merge(self, rel: str | None, part: pd.DataFrame) -> tuple[pa.Table, int, int, int]:
        new = part[list(LONG_COLUMNS)].sort_values(["feature_name", "timestamp"])
        if rel is None:
            return pa.Table.from_pandas(new, schema=ARROW_SCHEMA, preserve_index=False), len(new), 0, 0
        old = pq.read_table(self.store_dir / rel).to_pandas()
        joined = new.merge(
            old[["feature_name", "timestamp", "value"]], on=["feature_name", "timestamp"],
            how="left", suffixes=("", "_old"), indicator=True,
        )
        exists = (joined["_merge"] == "both").to_numpy()
        same = exists & (joined["value"].to_numpy() == joined["value_old"].to_numpy())
        fresh = new[~exists]
        merged = pd.concat([old, fresh], ignore_index=True).sort_values(["feature_name", "timestamp"])
        table = pa.Table.from_pandas(merged[list(LONG_COLUMNS)], schema=ARROW_SCHEMA, preserve_index=False)
        return table, len(fresh), int(same.sum()), int((exists & ~same).sum())

    def _write_duckdb_view(self, manifest: Mapping[str, str]) -> None:
        files = [str((self.store_dir / rel).resolve()) for rel in sorted(manifest.values())]
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        try:
            con = duckdb.connect(str(self.duckdb_path))
        except duckdb.IOException:  # another process holds the file; the Parquet data is live anyway
            return
        try:
            con.execute(f"CREATE OR REPLACE VIEW market_features AS SELECT * FROM read_parquet([{listing}])")
        finally:
            con.close()
