"""The teacher stage: obtain an NFSDE teacher without look-ahead, simulate it at training dates.

Which teacher (``train.teacher.mode``):

* ``auto`` (default): the newest saved teacher (``sim.teacher.dir`` or ``<registry>/teachers``)
  that is usable, else fit one
  (``aurora_jax.sim.teacher.run_fit``) when the teacher asset is in the store, else the
  moment-initialised NFSDE below;
* ``saved`` / ``fit`` / ``moments``: only that source (an error when impossible).

Usable means no look-ahead: when the teacher's asset is the experiment's asset, its fitting
windows must end no later than the last day the engine itself is trained on (``train.end``:
training and validation splits; a fit is then restricted to that date), so an evaluation after
``train.end`` is out of sample for the teacher too. A teacher of another asset is a cross-asset prior and is used as saved.
``moments`` is :func:`aurora_jax.sim.teacher.init_teacher` on the experiment asset's own training
history (an NFSDE whose parameters come from data moments, not fitted) — the fallback for a store
without the teacher asset; the registry records which source was used.

Simulation: for ``train.teacher.dates`` training as-of dates (evenly spaced), the teacher starts
from ``x0 = state_from_history`` (trailing Parkinson variance) and ``z = regime_from_history``
known at the date and simulates ``paths`` paths of ``H`` days with ``substeps`` Euler sub-steps
(:mod:`aurora_jax.train.distill` describes the units).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from rich.console import Console

from aurora_jax.data.store import MarketStore
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.sim.jumps import max_rate_for_cap
from aurora_jax.sim.teacher import (
    Teacher,
    TeacherData,
    TeacherSpec,
    simulate_states,
    init_teacher,
    list_versions,
    load_teacher,
    regime_features,
    run_fit,
    teacher_dir,
    teacher_meta,
)
from aurora_jax.train.dataset import EngineData
from aurora_jax.train.distill import TeacherSet
from aurora_jax.train.registry import registry_dir

MODES = ("auto", "saved", "fit", "moments")


def _window_end(meta: dict) -> pd.Timestamp | None:
    ends = [w[1] for w in (meta.get("daily_window"), meta.get("hourly_window")) if w]
    return max(pd.Timestamp(e, tz="UTC") for e in ends) if ends else None


def teacher_roots(cfg) -> list[Path]:
    """Where teachers are looked up: the simulation's ``sim.teacher.dir`` and the engine's own
    ``<registry_dir>/teachers`` (teachers fitted by training with a cutoff go there, so they never
    become the simulation report's "latest")."""
    return [teacher_dir(cfg), registry_dir(cfg) / "teachers"]


def usable_versions(cfg, asset_id: str, cutoff: pd.Timestamp) -> list[tuple[str, Path]]:
    """Saved ``(version, root)`` without look-ahead for ``asset_id`` at ``cutoff``, oldest first."""
    found = []
    for root in teacher_roots(cfg):
        for v in list_versions(root):
            info = teacher_meta(v, root)
            meta = info.get("meta", {})
            end = _window_end(meta)
            if meta.get("asset", cfg.sim.teacher.asset) != asset_id or (end is not None and end <= cutoff):
                found.append((info.get("saved_at", ""), v, root))
    return [(v, root) for _, v, root in sorted(found)]


def moments_teacher(cfg, data: EngineData, key) -> Teacher:
    """``init_teacher`` on the experiment's training history (data moments, no fit)."""
    tcfg = cfg.sim.teacher
    spec = TeacherSpec.from_cfg(tcfg.model, cfg.sim.fgn.chunk, cfg.sim.jumps.max_per_step, cfg.sim.jumps.tail_tol)
    n = int(np.searchsorted(data.hist.index, data.train_history_end, side="right"))
    r = data.hist.returns[:n]
    ok = np.isfinite(r)
    r, pk = r[ok], data.pk_var[:n][ok]
    z_raw = regime_features(r, pk, int(tcfg.regime.vol_window), int(tcfg.regime.trend_window))
    td = TeacherData(days=data.hist.index[:n][ok], returns=r, pk_var=pk, hourly=np.zeros((0, 24)),
                     hourly_days=pd.DatetimeIndex([], tz="UTC"), z_raw=z_raw)
    return init_teacher(spec, td, key)


def obtain_teacher(cfg, store: MarketStore, data: EngineData, key, run_dir=None) -> tuple[Teacher, str]:
    """The teacher and a description of its source (module docstring)."""
    mode = str(cfg.model.train.teacher.mode)
    if mode not in MODES:
        raise InvalidParameterError("train.teacher.mode", mode, f"one of {list(MODES)}")
    cutoff = data.hist.index[-1]       # the last observation the trained model may see (train.end)
    tcfg = cfg.sim.teacher
    if mode in ("auto", "saved"):
        ok = usable_versions(cfg, data.asset_id, cutoff)
        if ok:
            version, root = ok[-1]
            return load_teacher(version, root), f"saved:{version}"
        if mode == "saved":
            raise ModelUnavailableError(f"no saved teacher under {teacher_roots(cfg)} usable for {data.asset_id} "
                                        f"at {cutoff.date()} (fitting windows must end by then)")
    if mode in ("auto", "fit") and tcfg.asset in store.assets():
        fit_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        if tcfg.asset == data.asset_id:
            day = str(cutoff.date() - pd.Timedelta(days=1))
            for k in ("daily_end", "hourly_end"):
                fit_cfg.sim.teacher[k] = min(str(tcfg[k]), day)
        fit_cfg.data.root = str(store.root)
        fit_cfg.sim.teacher.dir = str(teacher_roots(cfg)[1])
        fit_cfg.sim.teacher.version = None
        steps = cfg.model.train.teacher.fit_steps
        try:
            teacher, version, _ = run_fit(fit_cfg, run_dir, steps=None if steps is None else int(steps))
            return teacher, f"fitted:{version}"
        except InvalidParameterError as exc:   # e.g. no hourly data before the cutoff
            if mode == "fit":
                raise
            Console(stderr=True).print(f"[yellow]teacher fit impossible ({exc}); using the moment-initialised NFSDE")
    elif mode == "fit":
        raise ModelUnavailableError(f"cannot fit the teacher: {tcfg.asset} is not in the store {store.root}")
    return moments_teacher(cfg, data, key), f"moments:{data.asset_id} (NFSDE initialised from data moments, not fitted)"


def simulate_teacher_set(cfg, teacher: Teacher, data: EngineData, key, source: str) -> TeacherSet:
    """Teacher paths and latent log-vols at evenly spaced training dates (module docstring)."""
    t_cfg = cfg.model.train.teacher
    H = int(cfg.model.inputs.horizon_max)
    n_dates, n_paths, sub = int(t_cfg.dates), int(t_cfg.paths), int(t_cfg.substeps)
    chunk = max(1, int(t_cfg.chunk_dates))
    tcfg = cfg.sim.teacher
    hist = data.hist
    r = np.where(np.isfinite(hist.returns), hist.returns, 0.0)
    pk = np.where(np.isfinite(data.pk_var) & (data.pk_var > 0), data.pk_var, np.nan)
    z_raw = regime_features(r, np.nan_to_num(pk, nan=float(np.nanmedian(pk))), int(tcfg.regime.vol_window),
                            int(tcfg.regime.trend_window))
    z_all = (z_raw - np.asarray(teacher.z_mean)) / np.asarray(teacher.z_std)
    trail = pd.Series(pk).rolling(int(tcfg.fit.state_window), min_periods=1).mean().to_numpy()
    cand = data.train[np.isfinite(z_all[data.rows[data.train]]).all(axis=1) & np.isfinite(trail[data.rows[data.train]])]
    if len(cand) == 0:
        raise InvalidParameterError("train.teacher.dates", n_dates, "training dates with a teacher regime/state")
    pos = cand[np.unique(np.linspace(0, len(cand) - 1, min(n_dates, len(cand))).round().astype(int))]
    rows = data.rows[pos]
    x0 = np.stack([np.asarray(teacher.state_from_variance(jnp.log(trail[i]))) for i in rows])
    z = z_all[rows].astype(np.float32)
    h = 1.0 / sub
    rate = float(max_rate_for_cap(teacher.spec.cap, h, teacher.spec.tail_tol))
    d = teacher.spec.latent_dim
    ys, lvs = [], []
    pad = (-len(rows)) % chunk
    x0p = np.concatenate([x0, np.repeat(x0[-1:], pad, 0)]) if pad else x0
    zp = np.concatenate([z, np.repeat(z[-1:], pad, 0)]) if pad else z
    sigma = jax.jit(jax.vmap(jax.vmap(lambda s: teacher.sde.diffusion.sigma(s[:d]))))
    for c, k in zip(range(0, len(x0p), chunk), jax.random.split(key, len(x0p) // chunk)):
        xs = jnp.repeat(jnp.asarray(x0p[c:c + chunk], jnp.float32), n_paths, axis=0)
        zs = jnp.repeat(jnp.asarray(zp[c:c + chunk], jnp.float32), n_paths, axis=0)
        states = simulate_states(teacher, k, xs, zs, jnp.float32(h), jnp.float32(rate), n_paths=chunk * n_paths,
                                  n_sub=H * sub, save_every=sub, differentiable=False)   # (N, H+1, d+1)
        ys.append(np.asarray(jnp.diff(states[..., -1], axis=1)).reshape(chunk, n_paths, H))
        lvs.append(np.log(np.asarray(sigma(states[:, :-1]))).reshape(chunk, n_paths, H))
    y_raw = np.concatenate(ys)[: len(rows)]
    log_vol = np.concatenate(lvs)[: len(rows)]
    scale = data.scale[pos]
    y = y_raw / scale[:, None, None]          # scaled units z = r / scale, as the student models them
    lv = log_vol - np.log(scale)[:, None, None]
    ok = np.isfinite(y).all(axis=(1, 2)) & np.isfinite(lv).all(axis=(1, 2))
    if not ok.any():
        raise ModelUnavailableError(f"the teacher ({source}) produced no finite paths")
    return TeacherSet(pos[ok], y[ok].astype(np.float32), lv[ok].astype(np.float32), source)
