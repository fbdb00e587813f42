"""The training stages of the engine (called in order by :mod:`aurora_jax.train.pipeline`).

All losses are in RevIN-normalized return units and use the time splits of
:class:`~aurora_jax.train.dataset.EngineData` (training rows for gradients, validation rows for
early stopping and the meta-weights).

* student: ``-ELBO / H`` (Student-t emission, :class:`~aurora_jax.models.ssm_student.SSMStudent`)
  on training rows, plus the distillation terms of :mod:`aurora_jax.train.distill` on teacher
  paths; early stopping on the validation ``-ELBO / H``;
* TCN-lite: masked mean squared error of the mean path;
* meta-weights: :func:`~aurora_jax.models.trend_ensemble.fit_meta_logits` on validation rows
  (out of sample for every component), and the EWAF replay over them;
* flow: rectified-flow loss on residual paths ``y - trend - jump/scale`` (realized jumps detected
  by the jump model's rule), early stopping on the validation flow loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from aurora_jax.features.inputs import ModelInputs
from aurora_jax.models.ar_local import ARLocal
from aurora_jax.models.rectified_flow import ResidualFlow
from aurora_jax.models.ssm_student import SSMStudent
from aurora_jax.models.tcn_lite import TCNLite
from aurora_jax.models.trend_ensemble import (
    COMPONENTS,
    TrendEnsemble,
    context_dim,
    context_vector,
    fit_meta_logits,
    replay_ewaf,
    revin_shift,
)
from aurora_jax.train.dataset import EngineData
from aurora_jax.train.distill import DistillLoss
from aurora_jax.train.loop import FitResult, LoopSettings, fit_module, normal, take


def _split(data: EngineData, which: np.ndarray):
    inputs = take(data.inputs, jnp.asarray(which))
    return inputs, jnp.asarray(data.y[which], jnp.float32), jnp.asarray(data.y_mask[which], jnp.float32)


def dims(cfg) -> tuple[int, int]:
    e = cfg.model
    return int(e.inputs.regime_dim), int(e.inputs.horizon_max)


# -- construction -------------------------------------------------------------------------------
def init_student(cfg, key) -> SSMStudent:
    s = cfg.model.trend.student
    regime_dim, H = dims(cfg)
    return SSMStudent(context_dim(regime_dim, H), H, d_model=int(s.d_model), state_dim=int(s.state_dim),
                      n_blocks=int(s.n_blocks), latent_dim=int(s.latent_dim), hidden=int(s.hidden),
                      nu_min=float(s.nu_min), key=key)


def init_ar(cfg) -> ARLocal:
    a = cfg.model.trend.ar
    return ARLocal(int(a.order), int(a.window), float(a.ridge), float(a.intercept_ridge))


def init_tcn(cfg, key) -> TCNLite:
    t = cfg.model.trend.tcn
    regime_dim, H = dims(cfg)
    return TCNLite(context_dim(regime_dim, H), H, channels=int(t.channels), kernel=int(t.kernel),
                   dilations=[int(d) for d in t.dilations], hidden=int(t.hidden), key=key)


def init_flow(cfg, key) -> ResidualFlow:
    from aurora_jax.forecast.engine import flow_cond_dim

    f = cfg.model.flow
    regime_dim, H = dims(cfg)
    return ResidualFlow(flow_cond_dim(regime_dim, H, int(cfg.model.trend.student.latent_dim)), H,
                        width=int(f.width), depth=int(f.depth), n_freq=int(f.n_freq), key=key)


# -- student ------------------------------------------------------------------------------------
def student_elbo(student: SSMStudent, inputs: ModelInputs, y, mask, eps):
    """Mean ELBO per step over a batch of normalized targets ``y`` (modelled in scaled units
    ``z = y + loc / scale``; ``eps``: ``(batch, samples, H, latent)`` draws)."""
    ctx = jax.vmap(context_vector)(inputs)
    s0 = jax.vmap(student.encode)(inputs.returns, inputs.returns_mask, ctx)
    z = y + jax.vmap(revin_shift)(inputs)[:, None]
    elbo = jax.vmap(student.elbo)(s0, z, mask, eps)
    return jnp.mean(elbo) / y.shape[1]


@dataclass(frozen=True)
class StudentLoss:
    """``-ELBO / H`` on a random training batch (+ the distillation loss on teacher dates)."""

    batch_size: int
    elbo_samples: int
    latent_dim: int
    distill: DistillLoss | None = None

    def noise(self, rng: np.random.Generator, data: dict) -> dict:
        n, h = data["y"].shape
        out = {"idx": rng.integers(0, n, self.batch_size).astype(np.int32),
               "eps": normal(rng, (self.batch_size, self.elbo_samples, h, self.latent_dim))}
        if self.distill is not None:
            out["distill"] = self.distill.noise(rng, data["teacher"])
        return out

    @property
    def parts(self) -> tuple:
        """The ELBO and (if any) the distillation term, differentiated separately (loop doc)."""
        elbo = StudentELBOPart(self.batch_size, self.elbo_samples, self.latent_dim)
        return (elbo,) if self.distill is None else (elbo, StudentDistillPart(self.distill))

    def __call__(self, model: SSMStudent, data: dict, noise: dict):
        return sum(part(model, data, noise) for part in self.parts)


@dataclass(frozen=True)
class StudentELBOPart:
    batch_size: int
    elbo_samples: int
    latent_dim: int

    def __call__(self, model: SSMStudent, data: dict, noise: dict):
        idx = noise["idx"]
        return -student_elbo(model, take(data["inputs"], idx), data["y"][idx], data["mask"][idx], noise["eps"])


@dataclass(frozen=True)
class StudentDistillPart:
    distill: DistillLoss

    def __call__(self, model: SSMStudent, data: dict, noise: dict):
        return self.distill(model, data["teacher"], noise["distill"])


def student_val_loss(model: SSMStudent, data: dict):
    """``-ELBO / H`` on every validation row with fixed draws ``data["eps"]``."""
    return -student_elbo(model, data["inputs"], data["y"], data["mask"], data["eps"])


def split_arrays(data: EngineData, which: np.ndarray) -> dict:
    inputs, y, m = _split(data, which)
    return {"inputs": inputs, "y": y, "mask": m}


def train_student(cfg, data: EngineData, key, rng: np.random.Generator, progress: bool,
                  distill: DistillLoss | None = None, teacher_data: dict | None = None) -> FitResult:
    """Fit the SSM student (ELBO on training rows, plus the distillation loss when given)."""
    t = cfg.model.train
    s_cfg = t.student
    student = init_student(cfg, key)
    train = split_arrays(data, data.train)
    if distill is not None:
        train["teacher"] = teacher_data
    val = split_arrays(data, data.val)
    val["eps"] = normal(rng, (len(data.val), int(s_cfg.val_samples), data.y.shape[1], student.latent_dim))
    loss = StudentLoss(int(t.batch_size), int(s_cfg.elbo_samples), student.latent_dim, distill)
    return fit_module(student, loss, student_val_loss, train, val, LoopSettings.from_cfg(s_cfg, "student"), rng,
                      name="student (SSM)", progress=progress)


# -- TCN ----------------------------------------------------------------------------------------
def tcn_mse(tcn: TCNLite, inputs: ModelInputs, y, mask):
    """Masked MSE of the normalized targets (the TCN predicts scaled returns ``z = y + loc/scale``)."""
    ctx = jax.vmap(context_vector)(inputs)
    pred = jax.vmap(tcn)(inputs.returns, inputs.returns_mask, ctx) - jax.vmap(revin_shift)(inputs)[:, None]
    return jnp.sum(mask * (y - pred) ** 2) / jnp.sum(mask)


@dataclass(frozen=True)
class TCNLoss:
    batch_size: int

    def noise(self, rng: np.random.Generator, data: dict) -> dict:
        return {"idx": rng.integers(0, data["y"].shape[0], self.batch_size).astype(np.int32)}

    def __call__(self, model: TCNLite, data: dict, noise: dict):
        idx = noise["idx"]
        return tcn_mse(model, take(data["inputs"], idx), data["y"][idx], data["mask"][idx])


def tcn_val_loss(model: TCNLite, data: dict):
    return tcn_mse(model, data["inputs"], data["y"], data["mask"])


def train_tcn(cfg, data: EngineData, key, rng: np.random.Generator, progress: bool) -> FitResult:
    t = cfg.model.train
    return fit_module(init_tcn(cfg, key), TCNLoss(int(t.batch_size)), tcn_val_loss,
                      split_arrays(data, data.train), split_arrays(data, data.val),
                      LoopSettings.from_cfg(t.tcn, "tcn"), rng, name="TCN-lite", progress=progress)


# -- ensemble -----------------------------------------------------------------------------------
@eqx.filter_jit
def component_means(trend: TrendEnsemble, inputs: ModelInputs):
    """``(n, 3, H)`` component mean paths of stacked inputs."""
    return jax.vmap(lambda x: trend.component_means(x)[0])(inputs)


def fit_ensemble(cfg, data: EngineData, student: SSMStudent, tcn: TCNLite) -> tuple[TrendEnsemble, dict]:
    """Meta-weights on the validation split and the EWAF losses replayed over it."""
    m = cfg.model.trend.meta
    n_reg = int(m.n_regimes)
    ens = TrendEnsemble(student, init_ar(cfg), tcn, jnp.zeros((n_reg, len(COMPONENTS))),
                        float(cfg.model.trend.ewaf.eta))
    va_inputs, va_y, va_m = _split(data, data.val)
    comps = np.asarray(component_means(ens, va_inputs))
    rid = np.asarray(va_inputs.regime_id)
    theta = fit_meta_logits(comps, np.asarray(va_y), np.asarray(va_m), rid, n_reg, float(m.l2), int(m.steps),
                            float(m.learning_rate))
    ens = eqx.tree_at(lambda e: e.meta_logits, ens, theta)
    y, mask = np.asarray(va_y), np.asarray(va_m)
    mse = {c: float(np.sum(mask * (y - comps[:, j]) ** 2) / mask.sum()) for j, c in enumerate(COMPONENTS)}
    w = np.asarray(jax.nn.softmax(theta, axis=-1))
    combined = np.einsum("nj,njh->nh", w[np.clip(rid, 0, n_reg - 1)], comps)
    mse["ensemble"] = float(np.sum(mask * (y - combined) ** 2) / mask.sum())
    mse["zero"] = float(np.sum(mask * y**2) / mask.sum())
    path = replay_ewaf(comps, y, mask, float(cfg.model.trend.ewaf.discount))
    losses = path[-1]
    report = {"val_mse": mse, "meta_weights": {str(r): dict(zip(COMPONENTS, map(float, w[r]))) for r in range(n_reg)},
              "regime_counts_val": np.bincount(rid, minlength=n_reg).tolist(),
              "ewaf_losses": dict(zip(COMPONENTS, map(float, losses))), "ewaf_path": path}
    return ens, report


# -- flow ---------------------------------------------------------------------------------------
@eqx.filter_jit
def flow_conditions(trend: TrendEnsemble, inputs: ModelInputs):
    """``(n, cond)`` flow conditioning vectors and ``(n, H)`` trend means (pure meta-weights)."""
    from aurora_jax.forecast.engine import flow_condition

    def one(x):
        out = trend(x)
        return flow_condition(x, out), out.mean

    return jax.vmap(one)(inputs)


def residual_targets(data: EngineData, trend_mean: np.ndarray, realized_jumps: np.ndarray) -> np.ndarray:
    """``resid = y - trend - jump / scale`` (normalized units), shape ``(n, H)``."""
    return data.y - trend_mean - realized_jumps / data.scale[:, None]


@dataclass(frozen=True)
class FlowLoss:
    batch_size: int

    def noise(self, rng: np.random.Generator, data: dict) -> dict:
        n, h = data["x"].shape
        return {"idx": rng.integers(0, n, self.batch_size).astype(np.int32),
                "t": rng.random(self.batch_size, dtype=np.float32), "x0": normal(rng, (self.batch_size, h))}

    def __call__(self, model: ResidualFlow, data: dict, noise: dict):
        idx = noise["idx"]
        return model.loss(data["x"][idx], data["cond"][idx], data["mask"][idx], noise["t"], noise["x0"])


def flow_val_loss(model: ResidualFlow, data: dict):
    return model.loss(data["x"], data["cond"], data["mask"], data["t"], data["x0"])


def train_flow(cfg, data: EngineData, cond: np.ndarray, resid: np.ndarray, key, rng: np.random.Generator,
               progress: bool) -> FitResult:
    t = cfg.model.train
    f_cfg = t.flow
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    train = {"x": f32(resid[data.train]), "cond": f32(cond[data.train]), "mask": f32(data.y_mask[data.train])}
    draws = int(f_cfg.val_draws)
    rep = lambda a: f32(np.repeat(a[data.val], draws, axis=0))
    val = {"x": rep(resid), "cond": rep(cond), "mask": rep(data.y_mask)}
    n_val = val["x"].shape[0]
    val["t"] = f32(rng.random(n_val, dtype=np.float32))
    val["x0"] = f32(normal(rng, val["x"].shape))
    return fit_module(init_flow(cfg, key), FlowLoss(int(t.batch_size)), flow_val_loss, train, val,
                      LoopSettings.from_cfg(f_cfg, "flow"), rng, name="residual flow", progress=progress)
