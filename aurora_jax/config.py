"""Hydra configuration: compose ``configs/`` with command-line overrides, and record runs.

Every run gets ``<outputs_dir>/<date>/<time>/`` holding the resolved ``config.yaml`` and
``meta.json`` (command, seed, git sha, start time).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from aurora_jax.atomic import atomic_write_json, atomic_write_text
from aurora_jax.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """``$AURORA_CONFIG_DIR`` if set, else the repository's ``configs/``."""
    return Path(os.environ.get("AURORA_CONFIG_DIR", REPO_ROOT / "configs")).resolve()


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``config.yaml`` with Hydra overrides such as ``experiment=btc_daily``."""
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except HydraException as exc:  # unknown experiment, malformed override, missing key
        raise ConfigError(f"invalid configuration override {list(overrides)}: {exc}") from exc
    return cfg


def git_sha(cwd: Path = REPO_ROOT) -> str:
    """The checked-out commit, with ``-dirty`` when the tree has changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def start_run(cfg: DictConfig, command: str, now: dt.datetime | None = None) -> Path:
    """Create the run folder and write the resolved config and metadata into it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    base = Path(cfg.outputs_dir) / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    run_dir = base
    n = 1
    while run_dir.exists():
        run_dir = base.with_name(f"{base.name}-{n}")
        n += 1
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_json(
        run_dir / "meta.json",
        {
            "command": command,
            "seed": int(cfg.seed),
            "git_sha": git_sha(),
            "started_at": now.isoformat(),
            "experiment": cfg.get("experiment_name"),
        },
    )
    return run_dir
