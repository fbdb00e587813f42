"""The smoke engine, trained once per test run (shared by xdist workers through a file lock):
the smoke experiment trained twice with the same seed into a temporary registry."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest


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
