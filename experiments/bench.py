"""``just bench <target> ...``: run ``experiments/bench_<target>.py`` and save its figures.

Each target module has ``run(cfg, run_dir) -> dict``; it prints our figures next to the peers'
figures measured in the same run. Results land in ``<run_dir>/bench_<target>.json``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig

from aurora_jax.atomic import atomic_write_json
from aurora_jax.errors import ConfigError

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def run(cfg: DictConfig, targets: list[str], run_dir: Path) -> dict:
    targets = targets or available()
    unknown = [t for t in targets if t not in available()]
    if unknown:
        raise ConfigError(f"unknown bench target(s) {unknown}: allowed {available()}")
    results = {}
    for target in targets:
        module = importlib.import_module(f"experiments.bench_{target}")
        results[target] = module.run(cfg, run_dir)
        atomic_write_json(run_dir / f"bench_{target}.json", results[target])
    print(run_dir)
    return results
