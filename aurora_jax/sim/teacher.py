"""The simulation teacher: a rough-Lévy NFSDE fitted to BTC, saved and loaded by version.

Use (e.g. for distillation into the forecast engine)::

    from aurora_jax.sim.teacher import load_teacher
    teacher = load_teacher("latest")            # or a version id, or a folder path
    z = teacher.regime_from_history(daily_log_returns, daily_parkinson_var)   # (zdim,)
    x0 = teacher.state_from_history(daily_parkinson_var)                      # (d,)
    paths = teacher.simulate(key, x0, z, n_paths=10_000, n_steps=14, dt=1.0, substeps=24)
    # paths: Float[Array, "paths steps"] daily log-returns; compiled once per
    # (n_paths, n_steps, substeps): new keys, states, regimes, dt or teacher parameters reuse it.

``Teacher.simulate_intraday`` returns the sub-step log-returns (``(paths, steps*substeps)``);
``Teacher.simulate_batch`` takes one state and regime per path and also returns the final
latent states (to chain blocks with an updated regime). ``daily_parkinson_var`` is
``(ln(high/low))^2 / (4 ln 2)`` per day; a day's realised variance (sum of squared intraday
returns) is an unbiased substitute when high/low are not at hand.

The model is :class:`aurora_jax.sim.nfsde.NFSDE` (latent rough log-variance factors driven by
fGn with Hurst ``H``, Brownian log-price with leverage, Hawkes jumps with double-exponential
or Student-t marks; regime vector ``z`` = standardised (log 30-day realised variance,
30-day trend t-statistic)). Time unit: days; returns: log-returns.

Fit (:func:`fit_teacher`, optax Adam on)::

    loss = w_ret  * (-mean daily jump-diffusion quasi-log-lik of r_t given v_t)
         + w_lvl  * mean (log v_t - c - 1^T x*(z_t))^2 / (2 var log v)   (Gaussian level QL,
                    x*(z) the fixed point of the latent drift: pins the long-run variance)
         + w_whit * Whittle QL of the daily log Parkinson variance
         + w_var  * (log mean r^2 - log mean_t E_model[r^2 | z_t])^2   (variance moment)
         + w_md   * signature-MMD^2(real 14-day daily segments, simulated)
         + w_mh   * signature-MMD^2(real 72-hour hourly segments, simulated)
         + w_l1   * mean jump intensity           (L1: jumps only where they pay)
         + w_sm   * E (d log sigma)^2 / dt        (diffusion smoothness)

with ``v_t = exp(delta) * Vloo_t`` (``Vloo_t`` = mean Parkinson variance of the neighbouring
days, day ``t`` left out so its own jump is not absorbed; ``delta`` learned). Simulated segments
start from the real segment's state ``x0 = (log V_t + delta - c)/d`` and regime ``z_t``.

Saved with orbax under ``<dir>/<version>/`` (``state/`` arrays + ``teacher.json`` spec and fit
metadata), written to a temporary folder and renamed into place (atomic).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.atomic import atomic_write_json
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.sim._checks import check_finite, check_positive, check_positive_int
from aurora_jax.sim.fbm_path import IncrementPath
from aurora_jax.sim.fgn import sample_fgn
from aurora_jax.sim.hawkes import HawkesParams, hawkes_counts
from aurora_jax.sim.jumps import DoubleExponentialMarks, StudentTMarks, mark_sums, max_rate_for_cap
from aurora_jax.sim.nfsde import NFSDE
from aurora_jax.sim.quasi_likelihood import (
    jump_diffusion_loglik,
    latent_spectral_density,
    periodogram,
    whittle_objective,
)
from aurora_jax.sim.signature import (
    batch_signature,
    mmd2_unbiased,
    normalise_levels,
    returns_to_path,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PARKINSON = 1.0 / (4.0 * np.log(2.0))


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TeacherData:
    """BTC inputs of the fit and the report (numpy, aligned on UTC days)."""

    days: pd.DatetimeIndex  # the day each daily return covers (bar date)
    returns: np.ndarray  # daily close-to-close log-returns
    pk_var: np.ndarray  # daily Parkinson variance (ln(H/L))^2 / (4 ln 2)
    hourly: np.ndarray  # (hdays, 24) hourly mark-price log-returns, complete days
    hourly_days: pd.DatetimeIndex  # the UTC day of each hourly row
    z_raw: np.ndarray  # (n, 2) raw regime features known at the end of day t


def regime_features(
    returns: np.ndarray, pk_var: np.ndarray, vol_window: int, trend_window: int
) -> np.ndarray:
    """Raw regime ``(log mean Parkinson var over vol_window, trend t-stat over trend_window)``
    known at the end of each day (NaN before enough history)."""
    pv = pd.Series(pk_var).rolling(vol_window).mean()
    r = pd.Series(returns)
    trend = r.rolling(trend_window).sum() / (r.rolling(trend_window).std() * np.sqrt(trend_window))
    return np.column_stack([np.log(pv.to_numpy()), trend.to_numpy()])


def load_teacher_data(cfg) -> TeacherData:
    """Read BTC daily OHLC and hourly mark prices from the store ``cfg.data.root``."""
    from aurora_jax.data.store import MarketStore

    tcfg = cfg.sim.teacher
    store = MarketStore(cfg.data.root)
    asset = tcfg.asset
    if asset not in store.assets():
        raise ModelUnavailableError(
            f"the data store at {cfg.data.root!r} has no {asset}: run "
            "`just ingest data.source_dir=../shared/data` first"
        )
    day = pd.Timedelta(days=1)
    start, end = pd.Timestamp(tcfg.daily_start, tz="UTC"), pd.Timestamp(tcfg.daily_end, tz="UTC")
    # daily bars are stamped at their close (bar date + 1 day)
    cols = {f: store.series(asset, f, start, end + day) for f in ("close", "high", "low")}
    df = pd.DataFrame(cols).dropna()
    df.index = df.index - day
    df = df[(df.index >= start) & (df.index <= end)]
    full = pd.date_range(df.index[0], df.index[-1], freq="D")
    df = df.reindex(full).ffill()
    ret = np.log(df["close"]).diff().to_numpy()[1:]
    hl = np.log(df["high"] / df["low"]).to_numpy()[1:]
    pk = np.maximum(hl**2 * PARKINSON, 1e-8)
    days = full[1:]

    hs, he = pd.Timestamp(tcfg.hourly_start, tz="UTC"), pd.Timestamp(tcfg.hourly_end, tz="UTC")
    hp = store.series(asset, tcfg.hourly_feature, hs, he + day)
    hp.index = hp.index - pd.Timedelta(hours=1)  # bar open time
    hr = np.log(hp).diff().dropna()
    hr = hr[(hr.index >= hs) & (hr.index < he + day)]
    dkey = hr.index.floor("D")
    counts = hr.groupby(dkey).size()
    full_days = counts[counts == 24].index
    hr = hr[dkey.isin(full_days)]
    hourly = hr.to_numpy().reshape(-1, 24)
    z_raw = regime_features(ret, pk, int(tcfg.regime.vol_window), int(tcfg.regime.trend_window))
    return TeacherData(days, ret, pk, hourly, pd.DatetimeIndex(full_days), z_raw)


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class TeacherSpec:
    """Static hyper-parameters (saved as JSON, used to rebuild the module on load)."""

    latent_dim: int = 2
    zdim: int = 2
    delta: float = 0.02
    width: int = 16
    depth: int = 1
    u_max: float = 0.5
    nu_max: float = 2.0
    lev_max: float = 1.0
    sigma_max: float = 0.5
    j_max: float = 1.0
    gamma_max: float = 1.0
    h_lo: float = 0.02
    h_hi: float = 0.98
    branching_max: float = 0.95
    marks: str = "double_exponential"
    cap: int = 3
    tail_tol: float = 1e-6
    fgn_chunk: int = 1024

    def __post_init__(self):
        if self.marks not in ("double_exponential", "student_t"):
            raise InvalidParameterError("marks", self.marks, "'double_exponential' or 'student_t'")
        if not (0.0 < self.h_lo < self.h_hi < 1.0):
            raise InvalidParameterError("h_lo/h_hi", (self.h_lo, self.h_hi), "0 < h_lo < h_hi < 1")
        if not (0.0 < self.branching_max < 1.0):
            raise InvalidParameterError(
                "branching_max", self.branching_max, "0 < branching_max < 1"
            )

    @staticmethod
    def from_cfg(mcfg, fgn_chunk: int, cap: int, tail_tol: float) -> TeacherSpec:
        names = {f.name for f in dataclasses.fields(TeacherSpec)}
        kw = {k: v for k, v in dict(mcfg).items() if k in names}
        return TeacherSpec(**kw, fgn_chunk=int(fgn_chunk), cap=int(cap), tail_tol=float(tail_tol))


class Teacher(eqx.Module):
    """NFSDE + fractional/jump parameters + regime standardisation (module docstring)."""

    sde: NFSDE
    hurst_raw: Float[Array, ""]
    hawkes_raw: Float[Array, " 3"]
    hawkes_w: Float[Array, " zdim"]
    marks_raw: Float[Array, " 3"]
    proxy_bias: Float[Array, ""]
    proxy_noise_raw: Float[Array, ""]
    z_mean: Float[Array, " zdim"]
    z_std: Float[Array, " zdim"]
    spec: TeacherSpec = eqx.field(static=True)

    # -- parameters ------------------------------------------------------------------------
    @property
    def hurst(self):
        s = self.spec
        return s.h_lo + (s.h_hi - s.h_lo) * jax.nn.sigmoid(self.hurst_raw)

    def hawkes(self, z) -> HawkesParams:
        r = self.hawkes_raw
        return HawkesParams.from_unconstrained(
            r[0] + z @ self.hawkes_w, r[1], r[2], self.spec.branching_max
        )

    def marks(self):
        m = self.marks_raw
        if self.spec.marks == "student_t":
            return StudentTMarks(2.0 + jax.nn.softplus(m[0]), jax.nn.softplus(m[1]) + 1e-4)
        return DoubleExponentialMarks(
            jax.nn.sigmoid(m[0]), jax.nn.softplus(m[1]) + 1e-4, jax.nn.softplus(m[2]) + 1e-4
        )

    def summary(self) -> dict:
        """Human-readable parameter values at the mean regime ``z = 0``."""
        z0 = jnp.zeros((self.spec.zdim,))
        hk = self.hawkes(z0)
        mk = self.marks()
        a = self.sde.drift.a(z0)
        out = {
            "hurst": float(self.hurst),
            "A_eigenvalues_real": [float(v) for v in np.linalg.eigvals(np.asarray(a)).real],
            "nu": np.asarray(self.sde.diffusion.nu).tolist(),
            "leverage": np.asarray(self.sde.diffusion.leverage).tolist(),
            "log_variance_c": float(self.sde.diffusion.c),
            "mu_per_day": float(self.sde.mu(z0)),
            "jump_baseline_per_day": float(hk.baseline),
            "jump_branching": float(hk.branching),
            "jump_decay_per_day": float(hk.decay),
            "jump_rate_per_day": float(hk.stationary_rate()),
            "jump_price_gamma": float(self.sde.jump.gamma),
            "proxy_bias": float(self.proxy_bias),
        }
        if isinstance(mk, DoubleExponentialMarks):
            out.update(
                mark_p_up=float(mk.p_up),
                mark_mean_up=float(mk.mean_up),
                mark_mean_down=float(mk.mean_down),
            )
        else:
            out.update(mark_df=float(mk.df), mark_scale=float(mk.scale))
        return out

    def stationary_latent(self, z, iters: int = 8) -> Float[Array, " d"]:
        """Fixed point ``x*`` of the time-of-day-averaged latent drift,
        ``A(z) x + b(z) + mean_t u(x, t, z) = 0`` (Newton from the linear solution)."""
        drift = self.sde.drift
        ts = jnp.asarray([0.0, 0.25, 0.5, 0.75])
        a = drift.a(z)
        b = drift.mean_reversion(z)

        def f(x):
            return a @ x + b + jnp.mean(jax.vmap(lambda t: drift.neural(t, x, z))(ts), axis=0)

        def newton(x, _):
            return x - jnp.linalg.solve(jax.jacfwd(f)(x), f(x)), None

        x0 = -jnp.linalg.solve(a, b)
        x, _ = jax.lax.scan(newton, x0, None, length=iters)
        return x

    # -- state and regime from data -------------------------------------------------------
    def regime_from_history(self, returns, pk_var, vol_window: int = 30, trend_window: int = 30):
        """Standardised regime ``z`` at the end of the given daily history (numpy inputs)."""
        raw = regime_features(np.asarray(returns), np.asarray(pk_var), vol_window, trend_window)[-1]
        if not np.all(np.isfinite(raw)):
            raise InvalidParameterError(
                "returns",
                f"{len(returns)} days",
                f"at least {max(vol_window, trend_window)} finite days",
            )
        return jnp.asarray((raw - np.asarray(self.z_mean)) / np.asarray(self.z_std), jnp.float32)

    def state_from_history(self, pk_var, window: int = 5):
        """Latent state from the mean Parkinson variance of the last ``window`` days."""
        v = float(np.mean(np.asarray(pk_var, dtype=np.float64)[-window:]))
        check_positive("pk_var", v)
        return self.state_from_variance(jnp.log(v))

    def state_from_variance(self, log_var) -> Float[Array, " d"]:
        d = self.spec.latent_dim
        x = (log_var + self.proxy_bias - self.sde.diffusion.c) / d
        return jnp.broadcast_to(x, (d,)).astype(jnp.float32)

    # -- simulation -----------------------------------------------------------------------
    def _check(self, x0, z, n_paths, n_steps, dt, substeps):
        check_positive_int("n_paths", n_paths)
        check_positive_int("n_steps", n_steps)
        check_positive_int("substeps", substeps)
        check_positive("dt", dt)
        for name, val, dim in (("x0", x0, self.spec.latent_dim), ("z", z, self.spec.zdim)):
            shape = tuple(np.shape(val))
            if shape != (dim,):
                raise InvalidParameterError(name, f"shape {shape}", f"shape ({dim},)")
            check_finite(name, val)

    def simulate(
        self, key: PRNGKeyArray, x0, z, n_paths: int, n_steps: int, dt=1.0, substeps: int = 24
    ) -> Float[Array, "paths steps"]:
        """``n_paths`` paths of ``n_steps`` log-returns over steps of length ``dt`` (days),
        each solved with ``substeps`` Euler sub-steps; compiled once per shape."""
        self._check(x0, z, n_paths, n_steps, dt, substeps)
        ys = self._run(key, x0, z, n_paths, n_steps, dt, substeps, save_every=substeps)
        return jnp.diff(ys[..., -1], axis=1)

    def simulate_intraday(
        self, key: PRNGKeyArray, x0, z, n_paths: int, n_steps: int, dt=1.0, substeps: int = 24
    ) -> Float[Array, "paths substeps_total"]:
        """Like :meth:`simulate` but returns every sub-step's log-return."""
        self._check(x0, z, n_paths, n_steps, dt, substeps)
        ys = self._run(key, x0, z, n_paths, n_steps, dt, substeps, save_every=1)
        return jnp.diff(ys[..., -1], axis=1)

    def simulate_batch(
        self, key: PRNGKeyArray, x0s, zs, n_steps: int, dt=1.0, substeps: int = 24
    ) -> tuple[Float[Array, "paths substeps_total"], Float[Array, "paths d"]]:
        """Per-path states ``x0s`` ``(paths, d)`` and regimes ``zs`` ``(paths, zdim)``: the
        sub-step log-returns and each path's final latent state (to continue a simulation
        with an updated regime, as the closed-loop report does)."""
        x0s, zs = np.asarray(x0s), np.asarray(zs)
        n_paths = x0s.shape[0]
        self._check(x0s[0], zs[0], n_paths, n_steps, dt, substeps)
        if x0s.shape != (n_paths, self.spec.latent_dim) or zs.shape != (n_paths, self.spec.zdim):
            raise InvalidParameterError(
                "x0s/zs",
                f"shapes {x0s.shape}/{zs.shape}",
                f"(paths, {self.spec.latent_dim}) and (paths, {self.spec.zdim})",
            )
        check_finite("x0s", x0s)
        check_finite("zs", zs)
        h = float(dt) / substeps
        rate_max = max_rate_for_cap(self.spec.cap, h, self.spec.tail_tol)
        ys = simulate_states(
            self,
            key,
            jnp.asarray(x0s, jnp.float32),
            jnp.asarray(zs, jnp.float32),
            jnp.float32(h),
            jnp.float32(rate_max),
            n_paths=n_paths,
            n_sub=n_steps * substeps,
            save_every=1,
            differentiable=False,
        )
        return jnp.diff(ys[..., -1], axis=1), ys[:, -1, : self.spec.latent_dim]

    def _run(self, key, x0, z, n_paths, n_steps, dt, substeps, save_every):
        h = float(dt) / substeps
        rate_max = max_rate_for_cap(self.spec.cap, h, self.spec.tail_tol)
        x0s = jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n_paths, self.spec.latent_dim))
        zs = jnp.broadcast_to(jnp.asarray(z, jnp.float32), (n_paths, self.spec.zdim))
        return simulate_states(
            self,
            key,
            x0s,
            zs,
            jnp.float32(h),
            jnp.float32(rate_max),
            n_paths=n_paths,
            n_sub=n_steps * substeps,
            save_every=save_every,
            differentiable=False,
        )


def _simulate_core(
    teacher: Teacher, key, x0s, zs, h, rate_max, n_paths, n_sub, save_every, differentiable
):
    spec = teacher.spec
    d = spec.latent_dim
    k_fgn, k_hk, k_mk, k_bm = jax.random.split(key, 4)
    fgn = sample_fgn(k_fgn, teacher.hurst, n_sub, n_paths * d, h, chunk=spec.fgn_chunk)
    fgn = fgn.reshape(n_paths, d, n_sub).transpose(0, 2, 1)
    hk = jax.vmap(teacher.hawkes)(zs)
    counts, lams = hawkes_counts(k_hk, hk, n_paths, n_sub, h, spec.cap, rate_max)
    marks = teacher.marks()
    sums = mark_sums(k_mk, marks, counts, spec.cap)
    comp = sums - lams * h * marks.mean()
    if differentiable:
        # reverse-mode: pre-sampled N(0, h) increments on the grid (the Brownian law on the
        # grid, exactly); diffrax's VirtualBrownianTree gives the same law at ~3x compile time
        bdraw = jax.random.normal(k_bm, (n_paths, n_sub, 1), jnp.float32) * jnp.sqrt(h)
    else:
        bdraw = jax.random.split(k_bm, n_paths)

    def one(x0, z, inc, jc, bk):
        y0 = jnp.concatenate([x0, jnp.zeros((1,), jnp.float32)])
        if differentiable:
            bm = IncrementPath(0.0, h, bk)
            # store every step for the backward pass: cheaper to compile than recursive
            # checkpointing, and the memory (paths x steps x state) is small here
            adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=n_sub)
        else:
            bm = diffrax.UnsafeBrownianPath(shape=(1,), key=bk)
            adjoint = diffrax.ForwardMode()
        return teacher.sde.solve(
            y0,
            z,
            h,
            n_sub,
            IncrementPath(0.0, h, inc),
            bm,
            IncrementPath(0.0, h, jc[:, None]),
            save_every=save_every,
            adjoint=adjoint,
        )

    return jax.vmap(one)(x0s, zs, fgn, comp, bdraw)


simulate_states = eqx.filter_jit(_simulate_core)
"""``simulate_states(teacher, key, x0s, zs, h, rate_max, n_paths, n_sub, save_every, differentiable)``:
the teacher's latent state paths for a batch of start states ``x0s`` and conditioning ``zs`` (one
jit-compiled call; the distillation data of :mod:`aurora_jax.train.teacher_data` come from it)."""


def _build_sde(spec: TeacherSpec, key: PRNGKeyArray) -> NFSDE:
    """The NFSDE with the architecture and bounds of ``spec`` (fresh weights from ``key``)."""
    return NFSDE(
        spec.latent_dim, spec.zdim, delta=spec.delta, width=spec.width, depth=spec.depth,
        u_max=spec.u_max, nu_max=spec.nu_max, lev_max=spec.lev_max, sigma_max=spec.sigma_max,
        j_max=spec.j_max, gamma_max=spec.gamma_max, key=key,
    )


def init_teacher(spec: TeacherSpec, data: TeacherData, key: PRNGKeyArray) -> Teacher:
    """Initial parameters from simple moments of the data (a sane start for the optimiser)."""
    zr = data.z_raw[np.all(np.isfinite(data.z_raw), axis=1)]
    z_mean, z_std = zr.mean(axis=0), zr.std(axis=0) + 1e-8
    sde = _build_sde(spec, key)
    # neural drift starts at zero: zero the last layer
    last = sde.drift.mlp.layers[-1]
    sde = eqx.tree_at(lambda m: m.drift.mlp.layers[-1].weight, sde, jnp.zeros_like(last.weight))
    sde = eqx.tree_at(lambda m: m.drift.mlp.layers[-1].bias, sde, jnp.zeros_like(last.bias))
    c0 = float(np.log(np.mean(data.returns**2)))
    sde = eqx.tree_at(lambda m: m.diffusion.c, sde, jnp.asarray(c0, jnp.float32))
    # nu ~ 0.3 of nu_max, mild negative leverage
    nu0 = float(np.log(0.3 / 0.7))
    sde = eqx.tree_at(lambda m: m.diffusion.nu_raw, sde, jnp.full((spec.latent_dim,), nu0))
    sde = eqx.tree_at(lambda m: m.diffusion.lev_raw, sde, jnp.full((spec.latent_dim,), -0.1))
    if spec.marks == "student_t":
        marks_raw = jnp.asarray([1.0, float(np.log(np.expm1(0.03))), 0.0])
    else:
        marks_raw = jnp.asarray([0.0, float(np.log(np.expm1(0.04))), float(np.log(np.expm1(0.05)))])
    return _strong_f32(
        Teacher(
            sde=sde,
            hurst_raw=jnp.asarray(float(np.log((0.2 - spec.h_lo) / (spec.h_hi - 0.2)))),
            hawkes_raw=jnp.asarray(
                [float(np.log(np.expm1(0.1))), 0.0, float(np.log(np.expm1(1.0)))]
            ),
            hawkes_w=jnp.zeros((spec.zdim,)),
            marks_raw=marks_raw,
            proxy_bias=jnp.asarray(0.0),
            proxy_noise_raw=jnp.asarray(0.0),
            z_mean=jnp.asarray(z_mean, jnp.float32),
            z_std=jnp.asarray(z_std, jnp.float32),
            spec=spec,
        )
    )


def _strong_f32(tree):
    """Every inexact array as a strongly-typed float32 (weak types would recompile after the
    first optimiser update)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(np.asarray(x), jnp.float32) if eqx.is_inexact_array(x) else x, tree
    )


def trainable_filter(teacher: Teacher, regime_drift: bool = False):
    """Everything inexact is trained except the regime standardisation and, unless
    ``regime_drift``, the regime loading of the price drift ``mu_w`` (kept at 0): a drift that
    follows the trend feature is barely identified on 2014–2023 and, once the regime is fed
    back from simulated history, turns into spurious momentum."""
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, teacher)
    spec = eqx.tree_at(lambda t: (t.z_mean, t.z_std), spec, (False, False))
    if not regime_drift:
        spec = eqx.tree_at(lambda t: t.sde.mu_w, spec, False)
    return spec


# ----------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitArrays:
    """Everything the loss reads, built once from :class:`TeacherData` (numpy)."""

    r: np.ndarray  # daily returns in the QL window
    vloo: np.ndarray  # leave-one-out local Parkinson variance for each QL day
    z_ql: np.ndarray  # standardised regime per QL day
    w: np.ndarray  # Whittle frequencies
    per: np.ndarray  # periodogram of the daily log Parkinson variance
    z: np.ndarray  # standardised regime of every day (NaN before enough history)
    trail_var: np.ndarray  # trailing mean Parkinson variance (state proxy) of every day
    seg_starts: np.ndarray  # valid start days of daily segments
    hseg_starts: np.ndarray  # valid start rows (hourly days) of hourly segments
    hday_to_daily: np.ndarray  # daily index of each hourly row
    daily_scale: float
    hourly_scale: float


def _local_var(pk: np.ndarray, half: int) -> np.ndarray:
    """Centred mean of ``pk`` over ``t-half..t+half`` excluding ``t`` (edges: available days)."""
    s = pd.Series(pk)
    tot = s.rolling(2 * half + 1, center=True, min_periods=1).sum()
    cnt = s.rolling(2 * half + 1, center=True, min_periods=1).count()
    return ((tot - s) / (cnt - 1)).to_numpy()


def _trailing_var(pk: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(pk).rolling(window, min_periods=1).mean().to_numpy()


def build_fit_arrays(data: TeacherData, fcfg, z_mean, z_std) -> FitArrays:
    seg_days = int(fcfg.segment_days)
    hseg_days = -(-int(fcfg.hourly_segment_hours) // 24)
    z = (data.z_raw - np.asarray(z_mean)) / np.asarray(z_std)
    ok = np.all(np.isfinite(z), axis=1)
    first = int(np.argmax(ok))
    vloo = _local_var(data.pk_var, int(fcfg.local_var_half_window))
    w, per = periodogram(np.log(data.pk_var))
    # a segment starting on day i uses the state and regime known at the end of day i-1
    starts = np.arange(first + 1, len(data.returns) - seg_days + 1)
    pos = {d: i for i, d in enumerate(data.days)}
    h2d = np.array([pos.get(d, -1) for d in data.hourly_days])
    hstarts = np.array(
        [
            j
            for j in range(len(h2d) - hseg_days + 1)
            if h2d[j] > first and h2d[j + hseg_days - 1] - h2d[j] == hseg_days - 1
        ],
        dtype=int,
    )
    if starts.size == 0 or hstarts.size == 0:
        raise InvalidParameterError(
            "sim.teacher dates",
            f"{data.days[0].date()}..{data.days[-1].date()}",
            "a window long enough for the regime warm-up plus one daily and one hourly segment",
        )
    return FitArrays(
        r=data.returns[first:].astype(np.float32),
        vloo=vloo[first:].astype(np.float32),
        z_ql=z[first:].astype(np.float32),
        w=w.astype(np.float32),
        per=per.astype(np.float32),
        z=z.astype(np.float32),
        trail_var=_trailing_var(data.pk_var, int(fcfg.state_window)),
        seg_starts=starts,
        hseg_starts=hstarts,
        hday_to_daily=h2d,
        daily_scale=float(np.std(data.returns) * np.sqrt(seg_days)),
        hourly_scale=float(np.std(data.hourly) * np.sqrt(int(fcfg.hourly_segment_hours))),
    )


def _sig_feats(returns, scale, depth):
    paths = returns_to_path(returns, scale)
    return normalise_levels(batch_signature(paths, depth), paths.shape[-1], depth)


def loss_terms(teacher: Teacher, key, batch: dict, arrays: dict, hp: dict) -> dict:
    """All objective terms (module docstring) for one minibatch; a dict of scalars."""
    spec = teacher.spec
    d = spec.latent_dim
    z0 = jnp.zeros((spec.zdim,))
    # (1) jump-diffusion QL of daily returns
    v = jnp.exp(teacher.proxy_bias) * arrays["vloo"]
    lam_day = jax.vmap(lambda z: teacher.hawkes(z).stationary_rate())(arrays["z_ql"])
    mu_t = jax.vmap(teacher.sde.mu)(arrays["z_ql"])  # regime drift identified by the QL
    ll = jump_diffusion_loglik(arrays["r"], v, mu_t, lam_day, teacher.marks())
    ql_ret = -jnp.mean(ll)
    # (1b) level QL: the stationary log-variance of the model at each day's regime vs the
    # proxy's (Gaussian, scaled by the proxy's variance); pins long-run volatility
    xstar = jax.vmap(teacher.stationary_latent)(arrays["z_ql"])
    y = teacher.proxy_bias + jnp.log(arrays["vloo"])
    m = teacher.sde.diffusion.c + jnp.sum(xstar, axis=1)
    ql_level = 0.5 * jnp.mean((y - m) ** 2) / jnp.var(jnp.log(arrays["vloo"]))
    # (2) Whittle QL of the log Parkinson variance
    f = latent_spectral_density(
        arrays["w"],
        teacher.sde.drift.a(z0),
        teacher.sde.diffusion.nu,
        teacher.sde.diffusion.leverage,
        teacher.hurst,
        jax.nn.softplus(teacher.proxy_noise_raw),
    )
    ql_whittle = whittle_objective(arrays["w"], arrays["per"], f)
    # (2b) moment: unconditional daily return variance, model vs data. The model's
    # E[r^2 | z] = exp(c + 1^T x*(z) + V/2) + lambda(z) E u^2 + mu^2, with V the stationary
    # variance of 1^T x from the latent spectral density (no proxy noise): V = int f over [-pi, pi]
    f_lat = latent_spectral_density(
        arrays["w"],
        teacher.sde.drift.a(z0),
        teacher.sde.diffusion.nu,
        teacher.sde.diffusion.leverage,
        teacher.hurst,
        0.0,
    )
    var_lat = 2.0 * jnp.sum(f_lat) * (arrays["w"][1] - arrays["w"][0])
    ev = (
        jnp.exp(m + 0.5 * var_lat)
        + lam_day * teacher.marks().second_moment()
        + teacher.sde.mu(z0) ** 2
    )
    mom_var = (jnp.log(jnp.mean(arrays["r"] ** 2)) - jnp.log(jnp.mean(ev))) ** 2
    # (3) signature MMDs on daily and hourly segments: one solve for both batches
    sub = hp["substeps"]
    per_hour = sub // 24
    h = 1.0 / sub
    b = hp["batch"]
    x0 = jax.vmap(teacher.state_from_variance)(jnp.concatenate([batch["logv_d"], batch["logv_h"]]))
    zs = jnp.concatenate([batch["z_d"], batch["z_h"]])
    ys = _simulate_core(
        teacher, key, x0, zs, h, hp["rate_max"], 2 * b, hp["seg_days"] * sub, per_hour, True
    )
    hourly = jnp.diff(ys[..., -1], axis=1)  # (2b, seg_days*24)
    sim_d = hourly[:b].reshape(b, hp["seg_days"], 24).sum(-1)
    sim_h = hourly[b:, : hp["hseg_hours"]]
    mmd_d = mmd2_unbiased(
        _sig_feats(batch["real_d"], hp["daily_scale"], hp["depth"]),
        _sig_feats(sim_d, hp["daily_scale"], hp["depth"]),
    )
    mmd_h = mmd2_unbiased(
        _sig_feats(batch["real_h"], hp["hourly_scale"], hp["depth"]),
        _sig_feats(sim_h, hp["hourly_scale"], hp["depth"]),
    )
    # (4) separation penalty: L1 on the jump intensity + smoothness of the diffusion
    l1_jump = jnp.mean(lam_day)
    logsig = jax.vmap(jax.vmap(lambda y: jnp.log(teacher.sde.diffusion.sigma(y[:d]))))(ys)
    smooth = jnp.mean(jnp.diff(logsig, axis=1) ** 2) * 24.0  # per day, hourly increments
    return {
        "ql_returns": ql_ret,
        "ql_level": ql_level,
        "ql_whittle": ql_whittle,
        "mom_var": mom_var,
        "mmd_daily": mmd_d,
        "mmd_hourly": mmd_h,
        "l1_jump": l1_jump,
        "smooth": smooth,
    }


def sample_batch(rng: np.random.Generator, data: TeacherData, fa: FitArrays, fcfg, n: int) -> dict:
    """A minibatch of real daily and hourly segments with their starting state and regime."""
    seg = int(fcfg.segment_days)
    hours = int(fcfg.hourly_segment_hours)
    hdays = -(-hours // 24)
    s = rng.choice(fa.seg_starts, size=n, replace=fa.seg_starts.size < n)
    hs = rng.choice(fa.hseg_starts, size=n, replace=fa.hseg_starts.size < n)
    real_d = np.stack([data.returns[i : i + seg] for i in s])
    real_h = np.stack([data.hourly[j : j + hdays].reshape(-1)[:hours] for j in hs])
    di = fa.hday_to_daily[hs]
    return {
        "real_d": jnp.asarray(real_d, jnp.float32),
        "logv_d": jnp.asarray(np.log(fa.trail_var[s - 1]), jnp.float32),
        "z_d": jnp.asarray(fa.z[s - 1], jnp.float32),
        "real_h": jnp.asarray(real_h, jnp.float32),
        "logv_h": jnp.asarray(np.log(fa.trail_var[di - 1]), jnp.float32),
        "z_h": jnp.asarray(fa.z[di - 1], jnp.float32),
    }


WEIGHT_KEYS = (
    "ql_returns",
    "ql_level",
    "ql_whittle",
    "mom_var",
    "mmd_daily",
    "mmd_hourly",
    "l1_jump",
    "smooth",
)


@dataclass
class FitResult:
    teacher: Teacher
    history: list[dict]
    seconds: float


def fit_teacher(
    cfg, data: TeacherData, steps: int | None = None, progress: bool | None = None
) -> FitResult:
    """Fit the teacher on ``data`` with optax (settings: ``cfg.sim.teacher``)."""
    import time

    from rich.progress import Progress

    tcfg = cfg.sim.teacher
    fcfg = tcfg.fit
    steps = int(fcfg.steps if steps is None else steps)
    check_positive_int("sim.teacher.fit.steps", steps)
    spec = TeacherSpec.from_cfg(
        tcfg.model, cfg.sim.fgn.chunk, cfg.sim.jumps.max_per_step, cfg.sim.jumps.tail_tol
    )
    key = jax.random.key(int(fcfg.seed))
    k_init, key = jax.random.split(key)
    teacher = init_teacher(spec, data, k_init)
    fa = build_fit_arrays(data, fcfg, teacher.z_mean, teacher.z_std)
    weights = {k: float(fcfg.weights[k]) for k in WEIGHT_KEYS}
    substeps = int(fcfg.substeps)
    if substeps % 24:
        raise InvalidParameterError(
            "sim.teacher.fit.substeps",
            substeps,
            "a multiple of 24 (hourly output for the hourly MMD)",
        )
    if int(fcfg.hourly_segment_hours) > 24 * int(fcfg.segment_days):
        raise InvalidParameterError(
            "sim.teacher.fit.hourly_segment_hours",
            int(fcfg.hourly_segment_hours),
            f"<= 24 * segment_days = {24 * int(fcfg.segment_days)}",
        )
    hp = {
        "substeps": substeps,
        "rate_max": float(max_rate_for_cap(spec.cap, 1.0 / substeps, spec.tail_tol)),
        "batch": int(fcfg.batch_paths),
        "seg_days": int(fcfg.segment_days),
        "hseg_hours": int(fcfg.hourly_segment_hours),
        "daily_scale": fa.daily_scale,
        "hourly_scale": fa.hourly_scale,
        "depth": int(fcfg.sig_depth),
    }
    arrays = {k: jnp.asarray(getattr(fa, k)) for k in ("r", "vloo", "z_ql", "w", "per")}
    # cosine decay to lr_final: late iterates average out the minibatch noise of the MMD terms
    schedule = optax.cosine_decay_schedule(
        float(fcfg.lr), steps, alpha=float(fcfg.lr_final) / float(fcfg.lr)
    )
    opt = optax.chain(optax.clip_by_global_norm(float(fcfg.clip_norm)), optax.adam(schedule))
    filt = trainable_filter(teacher, bool(fcfg.regime_drift))
    params, static = eqx.partition(teacher, filt)
    opt_state = opt.init(params)

    @eqx.filter_jit
    def step(params, opt_state, key, batch, arrays):
        def total(p):
            terms = loss_terms(eqx.combine(p, static), key, batch, arrays, hp)
            return sum(weights[k] * terms[k] for k in WEIGHT_KEYS), terms

        (loss, terms), grads = eqx.filter_value_and_grad(total, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state, loss, terms

    rng = np.random.default_rng(int(fcfg.seed))
    history = []
    show = bool(cfg.get("progress", True) if progress is None else progress)
    t0 = time.perf_counter()
    with Progress(disable=not show, transient=True) as bar:
        task = bar.add_task("fitting teacher", total=steps)
        for i in range(steps):
            key, sk = jax.random.split(key)
            batch = sample_batch(rng, data, fa, fcfg, hp["batch"])
            params, opt_state, loss, terms = step(params, opt_state, sk, batch, arrays)
            rec = {"step": i, "loss": float(loss), **{k: float(v) for k, v in terms.items()}}
            if not np.isfinite(rec["loss"]):
                raise ModelUnavailableError(f"teacher fit diverged at step {i}: {rec}")
            history.append(rec)
            bar.update(task, advance=1, description=f"fitting teacher  loss={rec['loss']:.4f}")
    return FitResult(eqx.combine(params, static), history, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- save / load


def teacher_dir(cfg=None, root: str | Path | None = None) -> Path:
    """``sim.teacher.dir`` (relative paths are relative to the repository)."""
    base = Path(
        root if root is not None else (cfg.sim.teacher.dir if cfg is not None else "models/teacher")
    )
    return base if base.is_absolute() else REPO_ROOT / base


def make_version(teacher: Teacher, prefix: str = "btc") -> str:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(teacher, eqx.is_array))]
    digest = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()[:8]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{digest}"


def save_teacher(
    teacher: Teacher, root: str | Path, version: str, meta: dict | None = None
) -> Path:
    """Write ``<root>/<version>/`` atomically (temp folder + rename); refuse to overwrite."""
    import orbax.checkpoint as ocp

    if not version or "/" in version or version.startswith("."):
        raise InvalidParameterError("version", version, "a non-empty name without '/'")
    root = Path(root)
    final = root / version
    if final.exists():
        raise InvalidParameterError(
            "version", version, "a version id not already saved", reason=str(final)
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        arrays = eqx.filter(teacher, eqx.is_array)
        leaves = {
            f"leaf_{i:03d}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(arrays))
        }
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save((tmp / "state").resolve(), leaves)
        atomic_write_json(
            tmp / "teacher.json",
            {
                "version": version,
                "spec": dataclasses.asdict(teacher.spec),
                "saved_at": dt.datetime.now(dt.UTC).isoformat(),
                "meta": meta or {},
            },
        )
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _skeleton(spec: TeacherSpec) -> Teacher:
    sde = _build_sde(spec, jax.random.key(0))
    z = jnp.zeros((spec.zdim,))
    return _strong_f32(
        Teacher(
            sde,
            jnp.asarray(0.0),
            jnp.zeros(3),
            z,
            jnp.zeros(3),
            jnp.asarray(0.0),
            jnp.asarray(0.0),
            z,
            jnp.ones((spec.zdim,)),
            spec,
        )
    )


def list_versions(root: str | Path | None = None) -> list[str]:
    """Saved versions under ``root`` (oldest first by save time)."""
    base = teacher_dir(root=root)
    if not base.exists():
        return []
    found = []
    for p in base.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / "teacher.json").exists():
            found.append((json.loads((p / "teacher.json").read_text())["saved_at"], p.name))
    return [name for _, name in sorted(found)]


def load_teacher(path_or_version: str | Path = "latest", root: str | Path | None = None) -> Teacher:
    """Load a saved teacher: a folder path, a version id under ``root`` (default
    ``models/teacher`` in the repository), or ``"latest"``."""
    import orbax.checkpoint as ocp

    p = Path(path_or_version)
    if not (p.is_dir() and (p / "teacher.json").exists()):
        base = teacher_dir(root=root)
        if str(path_or_version) == "latest":
            versions = list_versions(base)
            if not versions:
                raise ModelUnavailableError(
                    f"no saved teacher under {base}: fit one with "
                    "`just eval-sim fit experiment=teacher_btc`"
                )
            p = base / versions[-1]
        else:
            p = base / str(path_or_version)
        if not (p / "teacher.json").exists():
            raise ModelUnavailableError(
                f"teacher version {path_or_version!r} not found under {base}; "
                f"saved: {list_versions(base)}"
            )
    info = json.loads((p / "teacher.json").read_text())
    spec = TeacherSpec(**info["spec"])
    skel = _skeleton(spec)
    arrays, static = eqx.partition(skel, eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(arrays)
    target = {f"leaf_{i:03d}": np.asarray(x) for i, x in enumerate(leaves)}
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore((p / "state").resolve(), target)
    new = [
        jnp.asarray(np.asarray(restored[f"leaf_{i:03d}"]), jnp.float32) for i in range(len(leaves))
    ]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)


def teacher_meta(path_or_version: str | Path = "latest", root: str | Path | None = None) -> dict:
    p = Path(path_or_version)
    if not (p / "teacher.json").exists():
        base = teacher_dir(root=root)
        p = base / (
            list_versions(base)[-1] if str(path_or_version) == "latest" else str(path_or_version)
        )
    return json.loads((p / "teacher.json").read_text())


def run_fit(
    cfg, run_dir: Path | None = None, steps: int | None = None
) -> tuple[Teacher, str, Path]:
    """Load BTC from the store, fit, save under a new version id; returns (teacher, version, path)."""
    data = load_teacher_data(cfg)
    res = fit_teacher(cfg, data, steps=steps)
    version = cfg.sim.teacher.version or make_version(res.teacher)
    meta = {
        "asset": cfg.sim.teacher.asset,
        "daily_window": [str(data.days[0].date()), str(data.days[-1].date())],
        "hourly_window": [str(data.hourly_days[0].date()), str(data.hourly_days[-1].date())],
        "fit_seconds": res.seconds,
        "steps": len(res.history),
        "final_terms": res.history[-1],
        "summary": res.teacher.summary(),
    }
    path = save_teacher(res.teacher, teacher_dir(cfg), version, meta)
    if run_dir is not None:
        atomic_write_json(
            Path(run_dir) / "teacher_fit.json",
            {"version": version, "path": str(path), **meta, "history": res.history},
        )
    return res.teacher, version, path
