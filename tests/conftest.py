"""Shared fixtures. Real data comes from ``../shared/data`` beside the checkout; its absence is
a failure, not a skip (CI must exercise the real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AURORA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "ohlcv" / "BTC-USD_1d.csv").exists():
        pytest.fail(f"real data not found at {SHARED_DATA}: the tests need ../shared/data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_cfg():
    from aurora_jax.config import load_config

    return load_config().data


@pytest.fixture(scope="session")
def real_store(tmp_path_factory, shared_data_dir, data_cfg):
    """A store with everything in ../shared/data ingested (once per test worker)."""
    from aurora_jax.data.ingest import IngestSettings, folder_readers, ingest_all
    from aurora_jax.data.store import MarketStore

    store = MarketStore(tmp_path_factory.mktemp("real_store"))
    settings = IngestSettings(data_cfg)
    ingest_all(store, folder_readers(shared_data_dir, settings), settings)
    return store


@pytest.fixture(scope="session")
def spx_store(tmp_path_factory, data_cfg):
    """A store with the embedded default (arch's S&P 500, NASDAQ, VIX)."""
    from aurora_jax.data.ingest import ingest_default
    from aurora_jax.data.store import MarketStore

    store = MarketStore(tmp_path_factory.mktemp("spx_store"))
    ingest_default(store, data_cfg)
    return store


@pytest.fixture
def smoke_cfg(tmp_path):
    """The smoke experiment with data and outputs in a temp folder."""
    from aurora_jax.config import load_config

    return load_config(["experiment=smoke", f"data.root={tmp_path / 'data'}",
                        f"outputs_dir={tmp_path / 'outputs'}", "progress=false"])
