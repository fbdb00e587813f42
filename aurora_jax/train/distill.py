"""Distillation of the NFSDE teacher into the SSM student.

Teacher data: for ``train.teacher.dates`` training as-of dates ``t`` the teacher
(:class:`aurora_jax.sim.teacher.Teacher`) starts from the state and regime it reads from the
asset's own history up to ``t`` (Parkinson variance, returns) and simulates ``paths`` daily
log-return paths of ``H`` steps, with its latent log-variance factors ``x``. Both are put in
the student's scaled units (the as-of's RevIN std): ``y = r / scale_t`` and
``log vol = log sigma(x) - log scale_t``.

Per step the student draws ``P`` prior paths for ``D`` teacher dates and pays

    w_sig  * mean_dates MMD^2_sig(student paths, teacher paths)
  + w_tail * (xi_Hill(|y_student|) - xi_Hill(|y_teacher|))^2
  + w_kl   * mean_{dates, k} KL(N(m_T, v_T) || N(m_S, v_S))

* signature MMD: :func:`aurora_jax.sim.signature.signature_mmd` (RBF kernel, median bandwidth)
  on the paths ``(t, cumsum y / sqrt(H), cumsum y^2 / H)`` of :func:`returns_to_path`;
* Hill: :func:`hill_xi` below, the differentiable (sort-based) form of
  :func:`aurora_jax.sim.estimators.tails.hill_tail_index` with the same ``k`` rule
  (:func:`~aurora_jax.sim.estimators.tails.choose_k`), on the pooled absolute returns;
* latent KL: per date and step, Gaussians moment-matched over paths to the teacher's log
  diffusive vol ``log sigma(x_k)`` and the student's log return scale
  ``log tau_k + 1/2 log(nu / (nu - 2))`` (the log standard deviation of its Student-t emission).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from aurora_jax.features.inputs import ModelInputs
from aurora_jax.models.ssm_student import SSMStudent
from aurora_jax.models.trend_ensemble import context_vector
from aurora_jax.sim.estimators.tails import choose_k
from aurora_jax.sim.signature import returns_to_path, signature_mmd
from aurora_jax.train.loop import normal, take, uniform_open


def hill_xi(x: Float[Array, " n"], k: int) -> Float[Array, ""]:
    """Hill estimate ``xi = mean(log X_(1..k)) - log X_(k+1)`` of the right tail of positive ``x``
    (``k`` static); differentiable through the sort."""
    top = jnp.sort(x)[::-1][: k + 1]
    logs = jnp.log(jnp.maximum(top, 1e-12))
    return jnp.mean(logs[:k]) - logs[k]


def gaussian_kl(m_p, v_p, m_q, v_q):
    """``KL(N(m_p, v_p) || N(m_q, v_q))`` elementwise."""
    return 0.5 * (jnp.log(v_q / v_p) + (v_p + (m_p - m_q) ** 2) / v_q - 1.0)


@dataclass
class TeacherSet:
    """Teacher simulations at training dates (normalized units)."""

    positions: np.ndarray            # positions into EngineData.rows (training split)
    y: np.ndarray                    # (dates, paths, H) scaled daily returns r / scale
    log_vol: np.ndarray              # (dates, paths, H) log sigma(x) - log scale at each day's start
    source: str                      # which teacher (version / how obtained)

    def describe(self) -> dict:
        return {"dates": len(self.positions), "paths": int(self.y.shape[1]), "source": self.source,
                "mean_abs_y": float(np.mean(np.abs(self.y))), "std_y": float(np.std(self.y))}


def distill_terms(student: SSMStudent, inputs: ModelInputs, t_y, t_logvol, noise: dict, sig_depth: int,
                  k_student: int, k_teacher: int) -> dict[str, Array]:
    """The three distillation terms for a batch of ``D`` dates (module docstring); ``noise`` holds
    the student's prior draws ``eps (D, P, H, L)`` and Bailey uniforms ``u, v (D, P, H)``."""
    h = t_y.shape[2]
    ctx = jax.vmap(context_vector)(inputs)
    s0 = jax.vmap(student.encode)(inputs.returns, inputs.returns_mask, ctx)
    y_s, log_tau = jax.vmap(student.sample_with_noise)(s0, noise["eps"], noise["u"], noise["v"])   # (D, P, H)
    scale = jnp.sqrt(float(h))
    sig = jax.vmap(lambda a, b: signature_mmd(returns_to_path(a, scale), returns_to_path(b, scale), sig_depth)
                   )(y_s, t_y)
    nu = student.nu
    xi_s = hill_xi(jnp.abs(y_s).reshape(-1), k_student)
    xi_t = hill_xi(jnp.abs(t_y).reshape(-1), k_teacher)
    log_sd = log_tau + 0.5 * jnp.log(nu / (nu - 2.0))
    kl = gaussian_kl(jnp.mean(t_logvol, 1), jnp.var(t_logvol, 1) + 1e-4,
                     jnp.mean(log_sd, 1), jnp.var(log_sd, 1) + 1e-4)
    return {"signature_mmd": jnp.mean(sig), "tail": (xi_s - jax.lax.stop_gradient(xi_t)) ** 2,
            "latent_kl": jnp.mean(kl), "xi_student": xi_s, "xi_teacher": xi_t}


@dataclass(frozen=True)
class DistillLoss:
    """``w_sig MMD^2 + w_tail (xi_S - xi_T)^2 + w_kl KL`` on ``dates`` random teacher dates
    (``data = {"inputs", "y", "log_vol"}`` of the teacher set); hashable, for the loop cache."""

    dates: int
    paths: int
    depth: int
    k_student: int
    k_teacher: int
    w_sig: float
    w_tail: float
    w_kl: float
    latent_dim: int

    @classmethod
    def from_cfg(cls, tset: TeacherSet, s_cfg, tail_cfg, latent_dim: int) -> DistillLoss:
        dates = min(int(s_cfg.distill_dates), len(tset.positions))
        paths = int(s_cfg.distill_paths)
        h = tset.y.shape[2]
        rule = {"threshold_rule": str(tail_cfg.threshold_rule), "fraction": float(tail_cfg.fraction),
                "k_min": int(tail_cfg.k_min)}
        return cls(dates, paths, int(s_cfg.signature_depth), choose_k(np.ones(dates * paths * h), **rule),
                   choose_k(np.ones(dates * tset.y.shape[1] * h), **rule), float(s_cfg.weight_signature),
                   float(s_cfg.weight_tail), float(s_cfg.weight_latent_kl), int(latent_dim))

    def noise(self, rng: np.random.Generator, data: dict) -> dict:
        n_dates, _, h = data["y"].shape
        shape = (self.dates, self.paths, h)
        return {"idx": rng.choice(n_dates, self.dates, replace=False).astype(np.int32),
                "eps": normal(rng, (*shape, self.latent_dim)), "u": uniform_open(rng, shape),
                "v": uniform_open(rng, shape)}

    def terms(self, student: SSMStudent, data: dict, noise: dict) -> dict[str, Array]:
        idx = noise["idx"]
        return distill_terms(student, take(data["inputs"], idx), data["y"][idx], data["log_vol"][idx], noise,
                             self.depth, self.k_student, self.k_teacher)

    def __call__(self, student: SSMStudent, data: dict, noise: dict) -> Array:
        t = self.terms(student, data, noise)
        return self.w_sig * t["signature_mmd"] + self.w_tail * t["tail"] + self.w_kl * t["latent_kl"]


def teacher_arrays(tset: TeacherSet, data_inputs: ModelInputs) -> dict:
    return {"inputs": take(data_inputs, jnp.asarray(tset.positions)), "y": jnp.asarray(tset.y, jnp.float32),
            "log_vol": jnp.asarray(tset.log_vol, jnp.float32)}


def evaluate_distillation(student: SSMStudent, loss: DistillLoss, data: dict, rng: np.random.Generator
                          ) -> dict[str, float]:
    """The distillation terms on one random batch of teacher dates (for the registry)."""
    terms = eqx.filter_jit(loss.terms)(student, data, loss.noise(rng, data))
    return {k: float(v) for k, v in terms.items()}
