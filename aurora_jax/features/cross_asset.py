"""Cross-asset input: the reference asset's close on another asset's snapshot grid.

For an asset ``a`` other than the reference ``b`` (``regime.cross.reference``, BTC-USD), column
``xref_close`` of the snapshot frame at grid time ``t`` is ``b``'s last close stamped ``<= t``
(as-of sampling: nothing after ``t`` is ever read, so the column is as past-only as the rest of
the frame). The regime descriptor ``corr_btc`` (:mod:`aurora_jax.features.descriptors`) is the
rolling correlation of the two assets' daily log-returns built from it. The reference asset
itself, or a store without it, gets no column: the ``cross`` block is then masked.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from aurora_jax.data.snapshot import Snapshot, as_of_sample
from aurora_jax.data.store import MarketStore
from aurora_jax.features.descriptors import REFERENCE_CLOSE


def reference_asset(cfg) -> str:
    """``regime.cross.reference`` of the engine config (``cfg``: engine or root config)."""
    from aurora_jax.features.inputs import engine_config

    return str(engine_config(cfg).regime.cross.reference)


def with_reference_close(store: MarketStore, snap: Snapshot, cfg) -> Snapshot:
    """``snap`` with ``xref_close`` added to a copy of its frame (unchanged when not applicable)."""
    ref = reference_asset(cfg)
    if snap.asset_id == ref or ref not in store.assets() or not len(snap.frame):
        return snap
    grid = snap.frame.index
    closes = store.series(ref, "close", start=grid[0] - pd.Timedelta(days=7), end=snap.as_of)
    closes = closes.sort_index()
    frame = snap.frame.copy()
    frame[REFERENCE_CLOSE] = as_of_sample(closes.index.as_unit("ns").asi8, closes.to_numpy(float),
                                          grid.as_unit("ns").asi8)
    return dataclasses.replace(snap, frame=frame, column_groups={**snap.column_groups, REFERENCE_CLOSE: "price"})
