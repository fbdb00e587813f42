"""``train_experiment``: train every module of the engine in order and register the result.

Stages (one rich progress bar each for the gradient-trained ones):

0. data      -- one long as-of history of the experiment's asset; time splits (train | val)
1. teacher   -- a saved NFSDE teacher without look-ahead, else fitted, else moment-initialised
                (:mod:`aurora_jax.train.teacher_data`), simulated at training dates
2. vol path  -- :func:`aurora_jax.models.vol_path.fit_vol_path` on the training history; it is
                fitted before the trend because every ModelInputs (the trend's input) carries
                its IV path
3. student   -- SSM student: ELBO + distillation (signature MMD, Hill tail index, latent KL)
4. AR / TCN  -- local AR (closed form, nothing to fit); TCN-lite by masked MSE
5. meta      -- per-regime meta-weights on the validation split; EWAF state replayed over it
6. jumps     -- :func:`aurora_jax.models.jump_model.fit_jump_model` on the training history
7. flow      -- the vol scale ``g`` (:mod:`aurora_jax.models.vol_scale`) and a rectified flow on the
                 residual paths ``(y - trend - realized jumps / scale) / g``
8. register  -- EngineParams + entry (data ranges, hyperparameters, seed, git sha, metrics)

Every random draw comes from ``jax.random.PRNGKey(cfg.seed)`` split per stage, so the same
experiment and seed give bit-identical parameters (and forecasts) on the same machine.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from aurora_jax.config import config_dir, git_sha
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import ConfigError
from aurora_jax.eval.scoring import crps_sample
from aurora_jax.forecast.engine import EngineParams, engine_forecast
from aurora_jax.models.jump_model import fit_jump_model, jump_data
from aurora_jax.models.trend_ensemble import COMPONENTS, EwafState
from aurora_jax.models.vol_path import fit_vol_path, vol_path_data
from aurora_jax.models.vol_scale import fit_vol_scale
from aurora_jax.train import stages
from aurora_jax.train.checkpoint import save_pytree
from aurora_jax.train.dataset import EngineData, attach_inputs, build_dataset
from aurora_jax.train.distill import DistillLoss, evaluate_distillation, teacher_arrays
from aurora_jax.train.loop import stage_rng
from aurora_jax.train.registry import RegistryEntry, inputs_signature, make_version, register, registry_dir
from aurora_jax.train.teacher_data import obtain_teacher, simulate_teacher_set

STAGE_KEYS = ("teacher", "student", "tcn", "flow", "eval")


def engine_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``model`` = the engine config (``model=engine``) under its own ``model`` overrides.

    A root config composed with ``model=garch`` (the baseline) gets the engine
    sections merged in, its own ``model.*`` values (experiment overrides) winning."""
    if "trend" in cfg.model and "inputs" in cfg.model:
        return cfg
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        engine = compose(config_name="config", overrides=["model=engine"]).model
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    merged = OmegaConf.merge(engine, out.model)
    merged.name = engine.name
    out.model = merged
    return out


def quick_config(cfg: DictConfig) -> DictConfig:
    """The "small default" engine of ``cfg``'s experiment: ``forecast.quick_train`` (dotlist overrides of
    ``model.train`` budgets) applied, registered as experiment ``<name>_quick``. What ``just forecast``
    trains when no engine is registered for the asset; ``just train`` trains the full one."""
    out = engine_config(cfg)
    overrides = list(cfg.forecast.get("quick_train") or [])
    out = OmegaConf.merge(out, OmegaConf.from_dotlist(overrides))
    out.experiment_name = f"{cfg.get('experiment_name') or 'custom'}_quick"
    return out


def open_store(cfg) -> MarketStore:
    from aurora_jax.forecast.api import open_store as _open

    return _open(cfg)


def realized_jumps(data: EngineData, jump_params, vol_params) -> np.ndarray:
    """``(n, H)`` raw log-returns of the future steps flagged as jumps by the jump model's rule
    (``|r_t| > c * vol_{t-1} / sqrt(bars_per_year)``), 0 elsewhere."""
    jd = jump_data(data.asset_id, data.hist, vol_params)
    s = np.exp(jd.log_vol) / np.sqrt(jump_params.bars_per_year)
    r = data.hist.returns
    flag = np.isfinite(r) & np.isfinite(s) & (np.abs(r) > jump_params.threshold * s)
    jumps = np.where(flag, r, 0.0)
    H = data.y.shape[1]
    idx = data.rows[:, None] + np.arange(1, H + 1)[None, :]
    return jumps[idx]


def validation_crps(cfg, params: EngineParams, data: EngineData, key) -> dict:
    """Raw CRPS of the h-day log-return on evenly spaced validation dates (registry metric)."""
    t = cfg.model.train
    H = params.horizon_max
    n = min(int(t.eval_dates), len(data.val))
    pos = data.val[np.unique(np.linspace(0, len(data.val) - 1, n).round().astype(int))]
    levels = jnp.asarray([0.1, 0.9])
    hs = [h for h in (1, 7, 14) if h <= H]
    scores = {str(h): [] for h in hs}
    cover = []
    for p, k in zip(pos, jax.random.split(key, len(pos))):
        x = jax.tree_util.tree_map(lambda a, p=p: a[p], data.inputs)
        out = engine_forecast(params, x, k, levels, jnp.zeros((0,)), H, int(t.eval_paths))
        paths = np.asarray(out.log_paths)
        realized = np.cumsum(data.y_raw[p])
        for h in hs:
            scores[str(h)].append(crps_sample(paths[:, h - 1], realized[h - 1]))
        q = np.quantile(paths[:, -1], [0.1, 0.9])
        cover.append(q[0] <= realized[-1] <= q[1])
    return {"val_crps": {h: float(np.mean(v)) for h, v in scores.items()}, "val_dates": len(pos),
            "val_cover_p10_p90_last_step": float(np.mean(cover)), "eval_paths": int(t.eval_paths)}


def train_experiment(cfg: DictConfig, progress: bool = True, run_dir: Path | None = None) -> RegistryEntry:
    """Train every module for ``cfg.asset`` (module docstring) and register the version."""
    cfg = engine_config(cfg)
    console = Console(stderr=True, quiet=not progress)
    asset = str(cfg.asset)
    e, t = cfg.model, cfg.model.train
    H = int(e.inputs.horizon_max)
    if int(cfg.horizon) > H:
        raise ConfigError(f"horizon={cfg.horizon} exceeds model.inputs.horizon_max={H}")
    seed = int(cfg.seed)
    keys = dict(zip(STAGE_KEYS, jax.random.split(jax.random.PRNGKey(seed), len(STAGE_KEYS))))
    ckpt_dir = Path(run_dir) / "checkpoints" if (run_dir is not None and bool(t.checkpoints)) else None
    timings: dict[str, float] = {}
    reports: dict[str, dict] = {}

    def done(stage: str, t0: float, **info):
        timings[stage] = round(time.perf_counter() - t0, 2)
        reports[stage] = info
        console.print(f"[green]✓[/] {stage} ({timings[stage]:.1f}s)")

    def checkpoint(stage: str, tree):
        if ckpt_dir is not None:
            save_pytree(ckpt_dir / stage, tree)

    t0 = time.perf_counter()
    store = open_store(cfg)
    store.require_asset(asset)
    data = build_dataset(store, asset, cfg)
    done("data", t0, **data.ranges())

    t0 = time.perf_counter()
    k_obtain, k_sim = jax.random.split(keys["teacher"])
    teacher, source = obtain_teacher(cfg, store, data, k_obtain, run_dir)
    tset = simulate_teacher_set(cfg, teacher, data, k_sim, source)
    done("teacher", t0, **tset.describe())

    t0 = time.perf_counter()
    h_train = data.history_until(data.train_history_end)
    vol_params, vol_report = fit_vol_path([vol_path_data(asset, h_train.desc, h_train.regime)], e.vol_path,
                                          h_train.layout)
    attach_inputs(data, vol_params, cfg)
    checkpoint("vol_path", vol_params)
    done("vol_path", t0, **vol_report)

    t0 = time.perf_counter()
    s_cfg = t.student
    distill = DistillLoss.from_cfg(tset, s_cfg, cfg.sim.estimators.tails, int(e.trend.student.latent_dim))
    t_arrays = teacher_arrays(tset, data.inputs)
    res_s = stages.train_student(cfg, data, keys["student"], stage_rng(seed, "student"), progress, distill, t_arrays)
    checkpoint("student", res_s.model)
    done("student", t0, **res_s.summary(),
         distillation=evaluate_distillation(res_s.model, distill, t_arrays, stage_rng(seed, "distill-eval")))

    t0 = time.perf_counter()
    res_t = stages.train_tcn(cfg, data, keys["tcn"], stage_rng(seed, "tcn"), progress)
    checkpoint("tcn", res_t.model)
    done("ar_tcn", t0, tcn=res_t.summary(), ar=dict(e.trend.ar))

    t0 = time.perf_counter()
    trend, meta_report = stages.fit_ensemble(cfg, data, res_s.model, res_t.model)
    ewaf_path = meta_report.pop("ewaf_path")             # (n_val, 3) EWAF losses over the validation dates
    checkpoint("trend", trend)
    done("meta_weights", t0, **meta_report)

    t0 = time.perf_counter()
    jump_params, jump_report = fit_jump_model([jump_data(asset, h_train, vol_params)], e.jumps, h_train.layout)
    checkpoint("jumps", jump_params)
    done("jumps", t0, **jump_report)

    t0 = time.perf_counter()
    cond, trend_mean = (np.asarray(a) for a in stages.flow_conditions(trend, data.inputs))
    resid = stages.residual_targets(data, trend_mean, realized_jumps(data, jump_params, vol_params))
    iv_path = np.asarray(data.inputs.iv_path)
    vol_scale, vs_report = fit_vol_scale(resid[data.train], data.y_mask[data.train], iv_path[data.train],
                                         data.scale[data.train], e.vol_scale)
    resid = resid / np.asarray(vol_scale(iv_path, data.scale))
    res_f = stages.train_flow(cfg, data, cond, resid, keys["flow"], stage_rng(seed, "flow"), progress)
    checkpoint("flow", res_f.model)
    done("flow", t0, **res_f.summary(), resid_std=float(np.std(resid[data.train])), vol_scale=vs_report)

    params = EngineParams(trend=trend, jumps=jump_params, flow=res_f.model, vol_path=vol_params,
                          flow_steps=int(e.flow.sample_steps), horizon_max=H, flow_solver=str(e.flow.solver),
                          vol_scale=vol_scale)
    t0 = time.perf_counter()
    metrics = validation_crps(cfg, params, data, keys["eval"])
    done("eval", t0, **metrics)

    known_at = data.hist.index[data.rows[data.val] + 1]      # when each first-step error is realized
    ewaf = EwafState(losses=[float(v) for v in ewaf_path[-1]], n_updates=len(data.val),
                     last_as_of=known_at[-1].isoformat(),
                     history=[[t.isoformat(), [float(v) for v in row]] for t, row in zip(known_at, ewaf_path)])
    now = dt.datetime.now(dt.UTC)
    experiment = str(cfg.get("experiment_name") or "custom")
    entry = RegistryEntry(
        version=make_version(asset, experiment, params, now), asset_id=asset, experiment=experiment,
        created_at=now.isoformat(), seed=int(cfg.seed), git_sha=git_sha(), data_ranges=data.ranges(),
        hyperparameters=OmegaConf.to_container(e, resolve=True), teacher=source,
        stages={"seconds": timings, **reports}, metrics=metrics, inputs_signature=inputs_signature(cfg))
    entry = register(registry_dir(cfg), entry, params, ewaf_state=asdict(ewaf) | {"components": list(COMPONENTS)})
    console.print(f"[bold]registered[/] {entry.version} -> {entry.path}")
    return entry

