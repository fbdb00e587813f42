"""Trend ensemble: SSM student + local AR + TCN-lite, meta-weighted per regime, EWAF re-weighted.

Each component forecasts the next ``H`` daily returns in *scaled* units ``z = r / scale``
(``scale`` = the RevIN std), so its neutral output ``z = 0`` means a zero raw drift rather than
a continuation of the lookback mean; in the RevIN-normalized units of the engine,
``y = (r - loc) / scale``, component ``j``'s mean path is ``f_j = g_j - loc / scale``. The trend
is the convex combination

    trend = sum_j w_j f_j,     w = softmax(theta[regime_id] - eta * L)

where ``theta in R^{regimes x components}`` are the meta-weights learned offline (least squares
of the combined forecast on the validation split, :func:`fit_meta_logits`) and ``L`` is the
exponentially weighted average forecaster's (EWAF) state: per-component discounted cumulative
squared errors of realized normalized returns,

    L_j <- discount * L_j + mean_k ((r_k - f_{j,k}) ^ 2)      (k = steps realized since the last update)

so a component that has recently done worse loses weight at rate ``eta`` (Vovk/Cesa-Bianchi
exponential weights with discounting). ``L = 0`` gives the pure meta-weights. The state lives in
a JSON file next to the model (:class:`EwafTracker`), written atomically.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jaxtyping import Array, Float, Int

from aurora_jax.atomic import atomic_write_json
from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.ar_local import ARLocal
from aurora_jax.models.ssm_student import SSMStudent
from aurora_jax.models.tcn_lite import TCNLite

COMPONENTS: tuple[str, ...] = ("ssm", "ar", "tcn")
_TINY = 1e-6


def context_dim(regime_dim: int, horizon_max: int) -> int:
    return int(regime_dim) + 3 + int(horizon_max) + 3


def context_vector(inputs) -> Float[Array, " ctx"]:
    """Static conditioning shared by the components: ``(regime, mm / 3, log(iv_k / rv),
    log rv, loc / scale, log scale)`` with ``rv`` the realized-vol level and ``loc, scale`` the
    RevIN statistics of raw daily returns."""
    rv = jnp.maximum(inputs.rv_level, _TINY)
    return jnp.concatenate([
        inputs.regime,
        inputs.mm_indices / 3.0,
        jnp.log(jnp.maximum(inputs.iv_path, _TINY) / rv),
        jnp.log(rv)[None],
        (inputs.revin_loc / inputs.revin_scale)[None],
        jnp.log(inputs.revin_scale)[None],
    ])


def revin_shift(inputs) -> Float[Array, ""]:
    """``loc / scale``: scaled returns are ``z = y + loc / scale``."""
    return inputs.revin_loc / inputs.revin_scale


class TrendOutput(eqx.Module):
    mean: Float[Array, " horizon_max"]          # combined mean path of normalized returns
    components: Float[Array, "3 horizon_max"]   # f_j per component (COMPONENTS order)
    weights: Float[Array, " 3"]
    latent: Float[Array, " latent"]             # SSM trend latent s_0
    log_tau: Float[Array, " horizon_max"]       # student's emission log-scale path


class TrendEnsemble(eqx.Module):
    student: SSMStudent
    ar: ARLocal
    tcn: TCNLite
    meta_logits: Float[Array, "regimes 3"]
    eta: float = eqx.field(static=True)

    def component_means(self, inputs):
        """``(f, s_0, log tau)``: component mean paths ``f (3, H)`` in normalized units ``y``, the
        trend latent and the student's log-scale path."""
        ctx = context_vector(inputs)
        h = self.student.horizon_max
        shift = revin_shift(inputs)
        s0 = self.student.encode(inputs.returns, inputs.returns_mask, ctx)
        z_ssm, log_tau = self.student.mean_path(s0, h)
        z_ar = self.ar(inputs.returns, inputs.returns_mask, shift, h)
        z_tcn = self.tcn(inputs.returns, inputs.returns_mask, ctx)
        return jnp.stack([z_ssm, z_ar, z_tcn]) - shift, s0, log_tau

    def weights(self, regime_id: Int[Array, ""], ewaf_losses: Float[Array, " 3"]) -> Float[Array, " 3"]:
        rid = jnp.clip(regime_id, 0, self.meta_logits.shape[0] - 1)
        return jax.nn.softmax(self.meta_logits[rid] - self.eta * ewaf_losses)

    def __call__(self, inputs, ewaf_losses: Float[Array, " 3"] | None = None) -> TrendOutput:
        comps, s0, log_tau = self.component_means(inputs)
        losses = jnp.zeros((len(COMPONENTS),)) if ewaf_losses is None else ewaf_losses
        w = self.weights(inputs.regime_id, losses)
        return TrendOutput(mean=w @ comps, components=comps, weights=w, latent=s0, log_tau=log_tau)


# -- offline meta-weights -----------------------------------------------------------------------
def fit_meta_logits(
    comps: Float[np.ndarray, "n 3 h"], y: Float[np.ndarray, "n h"], y_mask: Float[np.ndarray, "n h"],
    regime_id: Int[np.ndarray, " n"], n_regimes: int, l2: float, steps: int, learning_rate: float,
) -> Float[Array, "regimes 3"]:
    """Per-regime softmax logits minimizing the masked squared error of ``sum_j w_j f_j`` plus
    ``l2 * ||theta||^2`` (shrinks a regime with few samples towards equal weights)."""
    if len(y) == 0:
        raise InvalidParameterError("meta-weights data", 0, ">= 1 validation sample")
    comps, y, y_mask = jnp.asarray(comps), jnp.asarray(y), jnp.asarray(y_mask)
    onehot = jax.nn.one_hot(jnp.asarray(regime_id), n_regimes)               # (n, R)

    def loss(theta):
        w = jax.nn.softmax(onehot @ theta, axis=-1)                           # (n, 3)
        pred = jnp.einsum("nj,njh->nh", w, comps)
        return jnp.sum(y_mask * (y - pred) ** 2) / jnp.sum(y_mask) + l2 * jnp.sum(theta**2)

    opt = optax.adam(learning_rate)
    theta = jnp.zeros((n_regimes, len(COMPONENTS)))

    @jax.jit
    def run(theta):
        def body(carry, _):
            th, st = carry
            g = jax.grad(loss)(th)
            upd, st = opt.update(g, st, th)
            return (optax.apply_updates(th, upd), st), None

        (th, _), _ = jax.lax.scan(body, (theta, opt.init(theta)), None, length=steps)
        return th

    return run(theta)


# -- online EWAF state --------------------------------------------------------------------------
def ewaf_update(losses: np.ndarray, errors: np.ndarray, discount: float) -> np.ndarray:
    """``L <- discount * L + errors`` (module docstring)."""
    return discount * np.asarray(losses, dtype=float) + np.asarray(errors, dtype=float)


@dataclass
class EwafState:
    """Persisted EWAF state: discounted losses, their point-in-time history, and the component
    forecasts awaiting their outcome."""

    losses: list[float] = field(default_factory=lambda: [0.0] * len(COMPONENTS))
    n_updates: int = 0
    last_as_of: str | None = None           # ISO time of the pending forecasts
    pending: list[list[float]] | None = None  # (3, H) normalized component means made at last_as_of
    pending_loc: float | None = None
    pending_scale: float | None = None
    components: tuple[str, ...] = COMPONENTS
    history: list[list] = field(default_factory=list)   # [[iso time, [L_1, L_2, L_3]], ...] in time order

    def losses_array(self) -> np.ndarray:
        return np.asarray(self.losses, dtype=np.float32)

    def losses_at(self, as_of) -> np.ndarray:
        """The losses known at ``as_of`` (the last history entry at or before it); zeros (pure
        meta-weights) before the first entry, so a historical forecast never sees later errors."""
        t = pd.Timestamp(as_of)
        known = [v for ts, v in self.history if pd.Timestamp(ts) <= t]
        return np.asarray(known[-1] if known else [0.0] * len(COMPONENTS), dtype=np.float32)


def realized_returns_since(close: pd.Series, since: pd.Timestamp) -> np.ndarray:
    """Raw log-returns of the steps after ``since`` (the first from the last close at or before it)."""
    close = close.dropna()
    before = close[close.index <= since]
    after = close[close.index > since]
    if before.empty or after.empty:
        return np.zeros(0)
    prices = np.concatenate([[before.iloc[-1]], after.to_numpy()])
    return np.diff(np.log(prices))


def ewaf_errors(pending: np.ndarray, loc: float, scale: float, realized_raw: np.ndarray) -> np.ndarray:
    """Mean squared normalized error per component over the realized steps (at most H)."""
    n = min(len(realized_raw), pending.shape[1])
    z = (np.asarray(realized_raw[:n]) - loc) / scale
    return np.mean((z[None, :] - pending[:, :n]) ** 2, axis=1)


class EwafTracker:
    """Load / update / save the EWAF state of one (model version, asset) in ``path`` (JSON).

    An update happens only for an as-of after the stored one (live use); :meth:`score` first
    scores the pending forecasts against the closes realized since (and records the new losses
    in the history), :meth:`set_pending` then stores the forecasts just made."""

    def __init__(self, path: str | Path, discount: float):
        if not 0.0 < discount <= 1.0:
            raise InvalidParameterError("trend.ewaf.discount", discount, "0 < discount <= 1")
        self.path = Path(path)
        self.discount = float(discount)

    def load(self) -> EwafState:
        if not self.path.exists():
            return EwafState()
        d = json.loads(self.path.read_text())
        d["components"] = tuple(d.get("components", COMPONENTS))
        return EwafState(**d)

    def save(self, state: EwafState) -> None:
        atomic_write_json(self.path, asdict(state))

    @staticmethod
    def is_live(state: EwafState, as_of) -> bool:
        return state.last_as_of is None or pd.Timestamp(as_of) > pd.Timestamp(state.last_as_of)

    def score(self, state: EwafState, as_of, close: pd.Series) -> EwafState:
        """Losses updated with the pending forecasts' errors on closes in ``(last_as_of, as_of]``."""
        as_of = pd.Timestamp(as_of)
        if not self.is_live(state, as_of) or state.pending is None or state.last_as_of is None:
            return state
        realized = realized_returns_since(close[close.index <= as_of], pd.Timestamp(state.last_as_of))
        if not len(realized):
            return state
        err = ewaf_errors(np.asarray(state.pending), state.pending_loc, state.pending_scale, realized)
        if not np.all(np.isfinite(err)):
            return state
        losses = [float(v) for v in ewaf_update(np.asarray(state.losses), err, self.discount)]
        return replace(state, losses=losses, n_updates=state.n_updates + 1,
                       history=[*state.history, [as_of.isoformat(), losses]])

    def set_pending(self, state: EwafState, as_of, component_means: np.ndarray, loc: float,
                    scale: float) -> EwafState:
        as_of = pd.Timestamp(as_of)
        if not self.is_live(state, as_of):
            return state
        cm = np.asarray(component_means, dtype=float)
        if cm.ndim != 2 or cm.shape[0] != len(COMPONENTS) or not (math.isfinite(loc) and scale > 0):
            raise InvalidParameterError("component_means", cm.shape, f"({len(COMPONENTS)}, H) with scale > 0")
        return replace(state, last_as_of=as_of.isoformat(), pending=cm.tolist(), pending_loc=float(loc),
                       pending_scale=float(scale))

    def step(self, state: EwafState, as_of: pd.Timestamp, close: pd.Series, component_means: np.ndarray,
             loc: float, scale: float) -> EwafState:
        """:meth:`score` then :meth:`set_pending`. An ``as_of`` not after the last one changes
        nothing (historical queries do not rewrite the online state)."""
        return self.set_pending(self.score(state, as_of, close), as_of, component_means, loc, scale)

    def observe(self, as_of, close: pd.Series, component_means, loc: float, scale: float) -> EwafState:
        """:meth:`step` from the stored state, persisted."""
        state = self.step(self.load(), as_of, close, component_means, loc, scale)
        self.save(state)
        return state


def replay_ewaf(comps: Float[np.ndarray, "n 3 h"], y: Float[np.ndarray, "n h"], y_mask, discount: float
                ) -> np.ndarray:
    """EWAF losses after each of consecutive as-of dates, ``(n, 3)``: date ``i`` adds the first-step
    errors of the forecasts made at ``i`` (realized by date ``i + 1``)."""
    losses = np.zeros(len(COMPONENTS))
    out = np.zeros((len(y), len(COMPONENTS)))
    for i in range(len(y)):
        if y_mask[i, 0] > 0:
            losses = ewaf_update(losses, (y[i, 0] - comps[i, :, 0]) ** 2, discount)
        out[i] = losses
    return out
