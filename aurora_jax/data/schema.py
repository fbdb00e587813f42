"""The long ``market_features`` table: one observation per row.

``timestamp`` is the UTC time the value became observable (a bar is stamped at its close), so an
as-of view ``timestamp <= as_of`` never contains information from after ``as_of``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

import pyarrow as pa

FEATURE_GROUPS: tuple[str, ...] = ("price", "iv", "micro", "derivs", "macro", "onchain", "narrative")

LONG_COLUMNS: tuple[str, ...] = (
    "asset_id", "timestamp", "feature_group", "feature_name", "value", "source", "ingested_at",
)

ARROW_SCHEMA = pa.schema(
    [
        ("asset_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("feature_group", pa.string()),
        ("feature_name", pa.string()),
        ("value", pa.float64()),
        ("source", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


def group_for(feature_name: str, mapping: Mapping[str, str]) -> str:
    """The feature group of ``feature_name``: the first glob in ``mapping`` that matches it."""
    for pattern, group in mapping.items():
        if fnmatch.fnmatchcase(feature_name, pattern):
            if group not in FEATURE_GROUPS:
                raise ValueError(f"feature group {group!r} for {pattern!r} not in {FEATURE_GROUPS}")
            return group
    raise KeyError(f"no feature group matches {feature_name!r}; add a pattern to data.feature_groups")
