"""Model registry: one folder per trained engine version, written atomically.

Layout under ``model.train.registry_dir`` (relative paths are relative to the repository)::

    <version>/entry.json        RegistryEntry: version id, asset, experiment, data ranges,
                                hyperparameters, seed, git sha, stage reports, metrics
    <version>/params/           EngineParams (orbax arrays + skeleton, aurora_jax.train.checkpoint)
    <version>/ewaf/<asset>.json the online EWAF state (updated as forecasts are made)

A version is assembled in ``.tmp-<version>-<uuid>/`` and renamed into place, so a reader never
sees a half-written model. The version id is ``<asset>-<experiment>-<UTC stamp>-<params hash>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_json
from aurora_jax.config import REPO_ROOT
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.train.checkpoint import restore_pytree, save_pytree

ENTRY = "entry.json"
PARAMS = "params"


@dataclass
class RegistryEntry:
    version: str
    asset_id: str
    experiment: str
    created_at: str
    seed: int
    git_sha: str
    data_ranges: dict
    hyperparameters: dict
    teacher: str
    stages: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    path: str = ""
    inputs_signature: str = ""   # inputs_signature() of the config it was trained with

    @property
    def folder(self) -> Path:
        return Path(self.path)

    def ewaf_path(self, asset_id: str | None = None) -> Path:
        return self.folder / "ewaf" / f"{asset_id or self.asset_id}.json"

    def as_dict(self) -> dict:
        return asdict(self)


def registry_dir(cfg) -> Path:
    """``model.train.registry_dir`` resolved (relative paths: relative to the repository)."""
    train = cfg.model.get("train") if "model" in cfg else None
    base = Path(train.registry_dir if train is not None else "models/registry")
    return base if base.is_absolute() else REPO_ROOT / base


def inputs_signature(cfg) -> str:
    """Hash of what fixes the engine's input shapes and meaning: the regime-vector layout (every
    entry's name), ``inputs.lookback_days``, ``inputs.horizon_max`` and the engine format
    (:data:`~aurora_jax.forecast.engine.ENGINE_FORMAT`). A model registered under another signature
    cannot read today's :class:`~aurora_jax.features.inputs.ModelInputs` or predates a change of the
    engine's parts."""
    from aurora_jax.features.inputs import engine_config
    from aurora_jax.features.regime_vector import regime_layout
    from aurora_jax.forecast.engine import ENGINE_FORMAT

    e = engine_config(cfg)
    spec = {"regime": list(regime_layout(int(e.inputs.regime_dim)).names),
            "lookback_days": int(e.inputs.lookback_days), "horizon_max": int(e.inputs.horizon_max),
            "engine_format": ENGINE_FORMAT}
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]


def params_hash(params) -> str:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(params, eqx.is_array))]
    return hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()[:10]


def make_version(asset_id: str, experiment: str, params, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    slug = asset_id.lower().replace("/", "-")
    return f"{slug}-{experiment}-{now.strftime('%Y%m%dT%H%M%S')}-{params_hash(params)}"


def register(root: Path, entry: RegistryEntry, params, ewaf_state: dict | None = None) -> RegistryEntry:
    """Write a new version folder atomically; returns the entry with its final ``path``."""
    root = Path(root)
    final = root / entry.version
    if final.exists():
        raise InvalidParameterError("version", entry.version, "a version id not already registered")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{entry.version}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        save_pytree(tmp / PARAMS, params)
        entry.path = str(final)
        if ewaf_state is not None:
            atomic_write_json(tmp / "ewaf" / f"{entry.asset_id}.json", ewaf_state)
        atomic_write_json(tmp / ENTRY, entry.as_dict())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def read_entry(folder: Path) -> RegistryEntry:
    d = json.loads((Path(folder) / ENTRY).read_text())
    d["path"] = str(Path(folder).resolve())
    return RegistryEntry(**d)


def list_entries(root: Path, asset_id: str | None = None, experiment: str | None = None) -> list[RegistryEntry]:
    """Registered versions (oldest first by creation time), optionally for one asset/experiment."""
    root = Path(root)
    if not root.exists():
        return []
    out = []
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / ENTRY).exists():
            e = read_entry(p)
            if (asset_id is None or e.asset_id == asset_id) and (experiment is None or e.experiment == experiment):
                out.append(e)
    return sorted(out, key=lambda e: (e.created_at, e.version))


def compatible_entries(cfg, asset_id: str | None = None, experiment: str | None = None) -> list[RegistryEntry]:
    """:func:`list_entries` restricted to versions whose inputs signature matches ``cfg``'s."""
    sig = inputs_signature(cfg)
    return [e for e in list_entries(registry_dir(cfg), asset_id, experiment) if e.inputs_signature == sig]


def load_params(entry: RegistryEntry):
    return restore_pytree(entry.folder / PARAMS)


def load_version(cfg, version: str):
    """``(EngineParams, RegistryEntry)`` of one version id."""
    folder = registry_dir(cfg) / version
    if not (folder / ENTRY).exists():
        raise ModelUnavailableError(f"model version {version!r} is not registered under {registry_dir(cfg)}")
    entry = read_entry(folder)
    return load_params(entry), entry


def load_latest(cfg, asset_id: str, experiment: str | None = None):
    """``(EngineParams, RegistryEntry)`` of the newest version trained for ``asset_id`` on the
    current config's model inputs (:func:`inputs_signature`)."""
    root = registry_dir(cfg)
    entries = compatible_entries(cfg, asset_id, experiment)
    if not entries and list_entries(root, asset_id, experiment):
        raise ModelUnavailableError(
            f"the engines registered for {asset_id} under {root} were trained on other model inputs (regime "
            f"vector layout / lookback / horizon than the current config) or by an older engine format: retrain "
            f"with `just train experiment=<name>`")
    if not entries:
        raise ModelUnavailableError(
            f"no trained engine for {asset_id} under {root}: run `just train experiment=<name>` "
            f"(an experiment whose asset is {asset_id})")
    entry = entries[-1]
    return load_params(entry), entry


def _fmt_range(r) -> str:
    return f"{r[0][:10]}..{r[1][:10]}" if r else "-"


def run_list(cfg: DictConfig, targets: list[str], run_dir: Path) -> list[dict]:
    """``just models``: a table of registered versions (``targets``: asset ids to filter on)."""
    root = registry_dir(cfg)
    entries = [e for e in list_entries(root) if not targets or e.asset_id in targets]
    table = Table(title=f"registered engine versions ({root})")
    table.add_column("version", overflow="fold")
    for col in ("asset", "experiment", "created (UTC)", "train", "val", "seed", "git sha", "teacher",
                "val CRPS h1/h7/h14"):
        table.add_column(col)
    rows = []
    for e in entries:
        crps = e.metrics.get("val_crps", {})
        cells = "/".join(f"{crps[k]:.4f}" if k in crps else "-" for k in ("1", "7", "14"))
        table.add_row(e.version, e.asset_id, e.experiment, e.created_at[:19], _fmt_range(e.data_ranges.get("train")),
                      _fmt_range(e.data_ranges.get("val")), str(e.seed), e.git_sha[:12], e.teacher.split(" ")[0],
                      cells)
        rows.append(e.as_dict())
    Console().print(table if entries else f"no registered versions under {root}")
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "models.json", rows)
    return rows
