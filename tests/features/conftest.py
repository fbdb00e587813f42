"""Shared real-data fixtures for the conditioning tests (engine config, snapshots, histories)."""

from __future__ import annotations

import pytest

from aurora_jax.data.snapshot import snapshot, snapshot_from_config


@pytest.fixture(scope="session")
def engine_cfg():
    from aurora_jax.config import load_config

    return load_config(["model=engine"])


@pytest.fixture(scope="session")
def btc_full(real_store, engine_cfg):
    """BTC daily snapshot over the whole history (2014-2024) and its hourly mark-price snapshot."""
    daily = snapshot_from_config(
        real_store, "BTC-USD", "2024-06-30", engine_cfg.data, lookback_days=3700
    )
    hourly = snapshot(
        real_store,
        "BTC-USD",
        "2024-06-30",
        lookback_days=1700,
        groups=("price",),
        freq="1h",
        shared_assets=(),
    )
    return daily, hourly


@pytest.fixture(scope="session")
def btc_history(btc_full, engine_cfg):
    from aurora_jax.features.inputs import history

    daily, hourly = btc_full
    return history(daily, engine_cfg, hourly)


@pytest.fixture(scope="session")
def spx_history(spx_store, engine_cfg):
    """SPX (embedded arch data, VIX as IV) over 1999-2018."""
    from aurora_jax.features.inputs import history

    snap = snapshot_from_config(spx_store, "SPX", "2019-01-01", engine_cfg.data, lookback_days=7400)
    return history(snap, engine_cfg)
