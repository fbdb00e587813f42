"""``just train experiment=<name>``: train every module of the engine and register the version."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from aurora_jax.atomic import atomic_write_json
from aurora_jax.train.pipeline import train_experiment
from aurora_jax.train.registry import RegistryEntry


def run(cfg: DictConfig, targets: list[str], run_dir: Path) -> RegistryEntry:
    """Train (targets are not used: the experiment names the asset) and write ``train.json``."""
    entry = train_experiment(cfg, progress=bool(cfg.get("progress", True)), run_dir=run_dir)
    atomic_write_json(Path(run_dir) / "train.json", entry.as_dict())
    print(entry.version)
    return entry
