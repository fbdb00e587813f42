"""Shared fixtures. Real data comes from ``../shared/data`` beside the checkout; its absence is
a failure, not a skip (CI must exercise the real files)."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
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

    return load_config(["experiment=smoke", "model=garch", f"data.root={tmp_path / 'data'}",
                        f"outputs_dir={tmp_path / 'outputs'}", "progress=false"])


# The smoke engine, trained once per test run (shared by xdist workers through a file lock): the smoke
# experiment trained twice with the same seed into a temporary registry. Tests that need a trained
# engine (train, forecast, serving, eval) use this one instead of training their own.


@dataclass
class SmokeRun:
    cfg: object                 # engine config (smoke experiment, temp data root and registry)
    versions: list[str]         # two trainings, same seed
    run_dirs: list[Path]


def _shared_dir(tmp_path_factory) -> Path:
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    return (base.parent / f"aurora-smoke-{uid}") if uid else (base / "aurora-smoke")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, spx_store) -> SmokeRun:
    from aurora_jax.config import load_config
    from aurora_jax.train.command import run
    from aurora_jax.train.pipeline import engine_config

    shared = _shared_dir(tmp_path_factory)
    shared.mkdir(parents=True, exist_ok=True)
    cfg = engine_config(load_config([
        "experiment=smoke", f"data.root={spx_store.root}", f"outputs_dir={shared / 'outputs'}", "progress=false",
        f"++model.train.registry_dir={shared / 'registry'}"]))
    done = shared / "done.json"
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                dirs = [shared / f"run{i}" for i in range(2)]
                versions = []
                for d in dirs:
                    d.mkdir()
                    versions.append(run(cfg, [], d).version)
                done.write_text(json.dumps({"versions": versions, "dirs": [str(d) for d in dirs]}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    info = json.loads(done.read_text())
    return SmokeRun(cfg, info["versions"], [Path(d) for d in info["dirs"]])
