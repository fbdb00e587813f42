"""Jump model: per path, jump counts (Poisson or Hawkes), times and heavy-tailed signed sizes.

On the engine's step grid (one step = one bar, ``k = 0..horizon-1``) with conditioning from
:class:`~aurora_jax.features.inputs.ModelInputs`::

    base intensity   lambda0_k = exp(b0 + w . regime[intensity_features] + w_iv log iv_k + w_mm . mm)
    Poisson          N_k ~ Poisson(lambda0_k)
    Hawkes           lambda_k = lambda0_k + E_k,  N_k ~ Poisson(lambda_k),
                     E_{k+1} = b E_k + a N_k,  b = exp(-beta),  a = n (1 - b),  E_0 = 0
    times            k + U_(j)  (sorted uniforms inside the step)
    direction        P(up) = sigmoid(d0 + d . regime[direction_features] + d_mm . mm)
    size             |J| = c s_k Y,  s_k = iv_k / sqrt(bars_per_year),  Y ~ Pareto(alpha, 1)
                     (P(Y > y) = y^-alpha, y >= 1), alpha = tail_min + softplus(raw) > 2

Each (path, step) draws one uniform for its count; each path draws ``B`` uniforms for its jumps,
used in time order (the ``i``-th jump of a path over the horizon takes the ``i``-th uniform, which
decides the sign and, rescaled, is the Pareto draw). Sizes are i.i.d. and independent of the
counts, so this is the law of one draw per (path, step, slot) with far fewer random numbers. As
every step's intensity is clipped at ``rate_max``, a path's total count is stochastically below
``Poisson(horizon * rate_max)``; ``B`` (:func:`path_budget`) is the smallest count that this
exceeds with probability ``<= tail_tol``, the tolerance of the per-step cap (``B = 17`` instead of
``14 x 4 = 56`` slots for the engine's defaults); jumps beyond ``B`` are dropped. Uniforms lie on
the open interval (0, 1), so ``Y <= 2^(24/alpha)`` is always finite.

so a jump is a move beyond ``c = detect_threshold`` implied per-bar sigmas, with a power-law
tail. The Hawkes branching ratio ``n = branching_max sigmoid(raw) < 1`` by construction (each
event adds ``a`` to the intensity, decaying by ``b`` per step; expected offspring
``sum_j a b^j = n``), ``beta = softplus(raw) > 0``.

Counts are capped at ``max_per_step`` per step (sampled by CDF inversion, jumps beyond the cap
are dropped; intensities are clipped at ``rate_max``, where ``P(Poisson(rate_max) > cap) =
tail_tol``). The output of :func:`sample_jumps` is the per-step sum of signed sizes; with
``compensate`` the expected sum ``E[N_k] E[sign |J|]`` is subtracted so contributions are
mean-zero per step.

Count moments over ``T`` steps (:func:`count_moments`) are exact for this recursion. With
``m_k = E E_k``, ``P_k = Var E_k``, ``Q_k = Cov(E_k, S_k)``, ``R_k = Var S_k``,
``S_k = sum_{j<k} N_j``, ``L_k = lambda0_k + m_k`` (so ``E N_k = L_k``, ``Var N_k = L_k + P_k``,
``Cov(N_k, E_k) = P_k``, ``Cov(N_k, S_k) = Q_k``)::

    m' = b m + a L,   P' = (a+b)^2 P + a^2 L,   Q' = (a+b) Q + b P + a (L + P),
    R' = R + L + P + 2 Q.

For Poisson (``n = 0``) ``E S_T = Var S_T = sum_k lambda0_k``; for a stationary Hawkes
``E N_k -> lambda0 / (1 - n)`` and ``Var S_T / T -> lambda0 / (1 - n)^3`` (counts are an
ARMA(1,1) with AR root ``a + b`` and MA root ``-b``).

Fitting (:func:`fit_jump_model`, optax Adam, seconds): on daily returns, a jump at bar ``t`` is
``|r_t| > c s_{t-1}`` (``s`` from the vol at ``t-1``: IV, else ``exp(log_vrp) rv_L``); the
count/intensity/direction parameters maximise the Bernoulli likelihood of "at least one jump"
(``P = 1 - exp(-lambda_t)``, Hawkes state driven by the detected jumps) plus the logistic
likelihood of the jump signs, with a ridge; ``alpha`` is the Pareto MLE ``n / sum log y`` of
``y = |r_t| / (c s_{t-1})``.

API::

    data = jump_data(name, hist, vol_params)                      # features.inputs.History
    params, report = fit_jump_model([data, ...], cfg.model.jumps, layout)   # -> JumpParams
    x = sample_jumps(params, inputs, key, horizon, num_paths)     # [paths, horizon], jit once per shape
    ev = sample_jump_events(params, inputs, key, horizon, num_paths)  # counts, times, sizes, mask
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.regime_vector import RegimeLayout

KINDS = ("poisson", "hawkes")
_TAIL_TOL = 1e-6


def max_rate(cap: int, tol: float = _TAIL_TOL) -> float:
    """Largest ``r`` with ``P(Poisson(r) > cap) <= tol``."""
    lo, hi = 0.0, float(cap) + 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stats.poisson.sf(cap, mid) <= tol else (lo, mid)
    return lo


class JumpParams(eqx.Module):
    """Parameters (unconstrained where a link is noted; see module docstring)."""

    intensity_bias: Float[Array, ""]
    intensity_w: Float[Array, " fi"]
    intensity_iv: Float[Array, ""]
    intensity_mm: Float[Array, "3"]
    direction_bias: Float[Array, ""]
    direction_w: Float[Array, " fd"]
    direction_mm: Float[Array, "3"]
    tail_raw: Float[Array, ""]  # alpha = tail_min + softplus(tail_raw)
    branching_raw: Float[Array, ""]  # n = branching_max * sigmoid(branching_raw)  (hawkes)
    decay_raw: Float[Array, ""]  # beta = softplus(decay_raw) per step           (hawkes)
    kind: str = eqx.field(static=True)
    intensity_features: tuple[int, ...] = eqx.field(static=True)
    direction_features: tuple[int, ...] = eqx.field(static=True)
    threshold: float = eqx.field(static=True)  # c, in per-bar implied sigmas
    bars_per_year: float = eqx.field(static=True)
    cap: int = eqx.field(static=True)
    rate_max: float = eqx.field(static=True)
    branching_max: float = eqx.field(static=True)
    tail_min: float = eqx.field(static=True)
    compensate: bool = eqx.field(static=True)
    tail_tol: float = eqx.field(static=True, default=1e-4)   # truncation tolerance (rate_max, path_budget)

    def __check_init__(self):
        if self.kind not in KINDS:
            raise InvalidParameterError("jumps.kind", self.kind, f"one of {list(KINDS)}")
        if not 0.0 <= self.branching_max < 1.0:
            raise InvalidParameterError(
                "jumps.branching_max", self.branching_max, "0 <= branching_max < 1"
            )
        if not self.tail_min > 1.0:
            raise InvalidParameterError("jumps.tail_min", self.tail_min, "> 1 (finite mean size)")
        if int(self.cap) < 1:
            raise InvalidParameterError("jumps.max_per_step", self.cap, "an integer >= 1")
        if not 0.0 < float(self.tail_tol) < 1.0:
            raise InvalidParameterError("jumps.tail_tol", self.tail_tol, "0 < tail_tol < 1")
        if not self.threshold > 0 or not self.bars_per_year > 0:
            raise InvalidParameterError("jumps.detect_threshold", self.threshold, "> 0")

    # ---- constrained quantities
    @property
    def alpha(self) -> Float[Array, ""]:
        return self.tail_min + jax.nn.softplus(self.tail_raw)

    @property
    def branching(self) -> Float[Array, ""]:
        if self.kind == "poisson":
            return jnp.zeros((), jnp.float32)
        return self.branching_max * jax.nn.sigmoid(self.branching_raw)

    @property
    def decay(self) -> Float[Array, ""]:
        return jax.nn.softplus(self.decay_raw)

    def hawkes_ab(self) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """``(a, b)`` of the discrete recursion (``a = 0`` for Poisson)."""
        b = jnp.exp(-self.decay)
        return self.branching * (1.0 - b), b

    def base_intensity(
        self, regime: Float[Array, " dim"], iv: Float[Array, " h"], mm: Float[Array, "3"]
    ) -> Float[Array, " h"]:
        eta = (
            self.intensity_bias
            + regime[..., np.asarray(self.intensity_features, dtype=np.int32)] @ self.intensity_w
            + mm @ self.intensity_mm
        )
        lam = jnp.exp(eta + self.intensity_iv * jnp.log(iv))
        return jnp.minimum(lam, self.rate_max)

    def p_up(self, regime: Float[Array, " dim"], mm: Float[Array, "3"]) -> Float[Array, ""]:
        return jax.nn.sigmoid(
            self.direction_bias
            + regime[..., np.asarray(self.direction_features, dtype=np.int32)] @ self.direction_w
            + mm @ self.direction_mm
        )

    def step_scale(self, iv: Float[Array, " h"]) -> Float[Array, " h"]:
        """``c s_k``: the smallest jump size per step (log-return units)."""
        return self.threshold * iv / jnp.sqrt(self.bars_per_year)


class JumpEvents(eqx.Module):
    """Sampled events: ``counts[p, k]``; per slot ``j < cap``: ``times``, signed ``sizes`` and
    ``mask`` (1 for the first ``counts[p, k]`` slots)."""

    counts: Int[Array, "paths horizon"]
    times: Float[Array, "paths horizon cap"]
    sizes: Float[Array, "paths horizon cap"]
    mask: Float[Array, "paths horizon cap"]


@functools.lru_cache(maxsize=256)
def path_budget(horizon: int, cap: int, rate_max: float, tol: float) -> int:
    """Jumps represented per path over ``horizon`` steps: the smallest ``B`` with
    ``P(Poisson(horizon * rate_max) > B) <= tol`` (module docstring), at most ``horizon * cap``."""
    b = int(stats.poisson.isf(tol, horizon * rate_max))
    while stats.poisson.sf(b, horizon * rate_max) > tol:
        b += 1
    return max(1, min(b, horizon * cap))


def _conditioning(params: JumpParams, inputs, horizon: int):
    iv = jnp.asarray(inputs.iv_path, jnp.float32)[:horizon]
    lam0 = params.base_intensity(inputs.regime, iv, inputs.mm_indices)
    return iv, lam0, params.p_up(inputs.regime, inputs.mm_indices)


def _open_uniform(key: PRNGKeyArray, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Uniforms on the open interval (0, 1): the midpoints ``(m + 1/2) 2^-23`` of the 2^23 cells
    of float32's grid on [0, 1), from the top 23 bits of one 32-bit draw each. Never 0 or 1, so
    ``u^(-1/alpha)`` stays finite (drawn flat and reshaped: XLA compiles a multi-dimensional
    threefry draw far slower)."""
    bits = jax.random.bits(key, (int(np.prod(shape)),), dtype=jnp.uint32) >> 9
    return (bits.astype(jnp.float32) * 2.0**-23 + 2.0**-24).reshape(shape)


def _poisson_from_uniform(
    u: Float[Array, "..."], lam: Float[Array, "..."], cap: int
) -> Int[Array, "..."]:
    """``N = #{j < cap : u > F(j)}``, the CDF built by ``p_j = p_{j-1} lam / j``."""
    lam = jnp.maximum(lam, 1e-30)
    pj, cdf, n = jnp.exp(-lam), jnp.zeros_like(lam), jnp.zeros(lam.shape, jnp.int32)
    for j in range(cap):
        cdf = cdf + pj
        n = n + (u > cdf)
        pj = pj * lam / (j + 1.0)
    return n


def poisson_capped(key: PRNGKeyArray, lam: Float[Array, "..."], cap: int) -> Int[Array, "..."]:
    """``min(N, cap)`` with ``N ~ Poisson(lam)``, by inverting the CDF at one uniform:
    ``N = #{j < cap : U > F(j)}`` (exact law on ``0..cap-1``; ``P(N = cap) = P(Poisson >= cap)``)."""
    return _poisson_from_uniform(_open_uniform(key, lam.shape), lam, cap)


def _counts(
    params: JumpParams, lam0: Float[Array, " h"], key: PRNGKeyArray, num_paths: int
) -> Int[Array, "paths h"]:
    a, b = params.hawkes_ab()
    u = _open_uniform(key, (lam0.shape[0], num_paths))
    if params.kind == "poisson":
        return _poisson_from_uniform(u, jnp.broadcast_to(lam0[:, None], u.shape), params.cap).T

    def step(E, inp):
        lam0_k, u_k = inp
        n = _poisson_from_uniform(u_k, jnp.minimum(lam0_k + E, params.rate_max), params.cap)
        return b * E + a * n, n

    _, n = jax.lax.scan(step, jnp.zeros((num_paths,), jnp.float32), (lam0, u))
    return n.T


def _path_draws(params: JumpParams, p_up: Float[Array, ""], key: PRNGKeyArray, num_paths: int,
                horizon: int) -> Float[Array, "paths budget"]:
    """The signed size factors ``+-Y`` of each path's jumps in time order (module docstring). One
    uniform ``u`` per jump gives both: up iff ``u < p_up``, and the rescaled ``u / p_up`` (up) or
    ``(u - p_up) / (1 - p_up)`` (down) is again uniform and independent of the direction, so it
    drives the Pareto draw ``Y = r^(-1/alpha)``."""
    budget = path_budget(horizon, int(params.cap), float(params.rate_max), float(params.tail_tol))
    u = _open_uniform(key, (num_paths, budget))
    up = u < p_up
    r = jnp.where(up, u / p_up, (u - p_up) / (1.0 - p_up))
    y = jnp.clip(r, 2.0**-24, 1.0) ** (-1.0 / params.alpha)  # Pareto(alpha, 1)
    return jnp.where(up, y, -y)


def _exclusive_cumsum(x: Float[Array, "paths n"], m: int) -> Float[Array, "paths m"]:
    """``out[:, j] = sum_{i < j} x[:, i]`` for ``j < m``, as one small matmul with a triangular
    matrix (XLA's cumsum on CPU is several times slower for these short rows; counts stay exact)."""
    n = x.shape[1]
    tri = (jnp.arange(n)[:, None] < jnp.arange(m)[None, :]).astype(x.dtype)
    return jnp.dot(x, tri, precision=jax.lax.Precision.HIGHEST)


def _first_jump(counts: Int[Array, "paths h"]) -> Int[Array, "paths h"]:
    """The path's jump number of each step's first jump: ``sum_{l<k} N_l``."""
    return _exclusive_cumsum(counts.astype(jnp.float32), counts.shape[1]).astype(jnp.int32)


def _slot_sizes(
    params: JumpParams, iv: Float[Array, " h"], p_up: Float[Array, ""], counts: Int[Array, "paths h"],
    key: PRNGKeyArray,
) -> tuple[Float[Array, "paths h cap"], Float[Array, "paths h cap"]]:
    """Signed sizes of the ``cap`` slots of every (path, step), zero beyond ``counts``, and the
    slot mask: slot ``j`` of step ``k`` is the path's jump number ``i = sum_{l<k} N_l + j``
    (dropped when ``i >= path_budget``)."""
    num_paths, horizon = counts.shape
    signed = _path_draws(params, p_up, key, num_paths, horizon)
    budget = signed.shape[1]
    first = _first_jump(counts)
    slot = jnp.arange(params.cap)[None, None, :]
    i = first[..., None] + slot                                              # (paths, h, cap)
    mask = ((slot < counts[..., None]) & (i < budget)).astype(jnp.float32)
    picked = jnp.take_along_axis(signed, jnp.minimum(i, budget - 1).reshape(num_paths, -1), axis=1)
    sizes = picked.reshape(num_paths, horizon, params.cap) * params.step_scale(iv)[None, :, None]
    return sizes * mask, mask


def _step_sums(
    params: JumpParams, iv: Float[Array, " h"], p_up: Float[Array, ""], counts: Int[Array, "paths h"],
    key: PRNGKeyArray,
) -> Float[Array, "paths h"]:
    """``_slot_sizes(...)[0].sum(-1)`` without the slots: a step's jumps are the consecutive
    draws ``first_k .. first_k + N_k - 1`` of its path, so their sum is a difference of the
    path's cumulative sums (two gathers per step instead of one per slot)."""
    num_paths, horizon = counts.shape
    signed = _path_draws(params, p_up, key, num_paths, horizon)
    budget = signed.shape[1]
    cs = _exclusive_cumsum(signed, budget + 1)                               # cs[:, j] = sum of draws < j
    first = _first_jump(counts)
    lo = jnp.minimum(first, budget)
    hi = jnp.minimum(first + counts, budget)
    s = jnp.take_along_axis(cs, hi, axis=1) - jnp.take_along_axis(cs, lo, axis=1)
    return s * params.step_scale(iv)[None, :]


def _check_shape(inputs, horizon: int, num_paths: int) -> None:
    if horizon < 1 or horizon > inputs.iv_path.shape[-1]:
        raise InvalidParameterError(
            "horizon", horizon, f"1..{inputs.iv_path.shape[-1]} (len(iv_path))"
        )
    if num_paths < 1:
        raise InvalidParameterError("num_paths", num_paths, ">= 1")


def _draws(params: JumpParams, inputs, key: PRNGKeyArray, horizon: int, num_paths: int):
    """``(counts, iv, p_up, key for sizes, key for times)``: the draws shared by events and sums
    (same key, same jumps)."""
    _check_shape(inputs, horizon, num_paths)
    iv, lam0, p_up = _conditioning(params, inputs, horizon)
    k_n, k_s, k_t = jax.random.split(key, 3)
    return _counts(params, lam0, k_n, num_paths), iv, p_up, k_s, k_t


@eqx.filter_jit
def sample_jump_events(
    params: JumpParams, inputs, key: PRNGKeyArray, horizon: int, num_paths: int
) -> JumpEvents:
    """Counts, times (in steps from the as-of), signed log-sizes and slot mask per path. The
    times ``k + U_(j)`` are sorted uniforms inside each step (the sizes do not depend on them)."""
    counts, iv, p_up, k_s, k_t = _draws(params, inputs, key, horizon, num_paths)
    sizes, mask = _slot_sizes(params, iv, p_up, counts, k_s)
    u_t = _open_uniform(k_t, sizes.shape)
    times = jnp.arange(horizon, dtype=jnp.float32)[None, :, None] + jnp.sort(u_t, -1)
    return JumpEvents(counts, times, sizes, mask)


def expected_jump_sum(params: JumpParams, inputs, horizon: int) -> Float[Array, " horizon"]:
    """``E[sum of signed sizes in step k]`` = ``E N_k * (2 p_up - 1) c s_k alpha / (alpha - 1)``."""
    iv, lam0, p_up = _conditioning(params, inputs, horizon)
    mean_n, _ = _moments(params, lam0)
    mean_y = params.alpha / (params.alpha - 1.0)
    return mean_n * (2.0 * p_up - 1.0) * params.step_scale(iv) * mean_y


@eqx.filter_jit
def sample_jumps(
    params: JumpParams, inputs, key: PRNGKeyArray, horizon: int, num_paths: int
) -> Float[Array, "paths horizon"]:
    """Per-step log-jump contributions ``[num_paths, horizon]`` (compensated when
    ``params.compensate``). Jit-compiled once per (shape, horizon, num_paths)."""
    counts, iv, p_up, k_s, _ = _draws(params, inputs, key, horizon, num_paths)
    x = _step_sums(params, iv, p_up, counts, k_s)
    if params.compensate:
        x = x - expected_jump_sum(params, inputs, horizon)[None, :]
    return x


def _moments(params: JumpParams, lam0: Float[Array, " h"]):
    """Per-step ``E N_k`` and ``Var S_T`` (total count) by the exact recursion (module docstring),
    carried in central moments so float32 does not cancel."""
    a, b = params.hawkes_ab()

    def step(c, l0):
        m, P, Q, R = c  # E E_k, Var E_k, Cov(E_k, S_k), Var S_k
        L = l0 + m
        var_n = L + P
        new = (
            b * m + a * L,
            (a + b) ** 2 * P + a**2 * L,
            (a + b) * Q + b * P + a * var_n,
            R + var_n + 2.0 * Q,
        )
        return new, L

    z = jnp.zeros((), jnp.float32)
    (_, _, _, var), mean_n = jax.lax.scan(step, (z, z, z, z), lam0)
    return mean_n, var


def count_moments(
    params: JumpParams, inputs, horizon: int
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Exact mean and variance of the total jump count over ``horizon`` steps (no cap)."""
    _, lam0, _ = _conditioning(params, inputs, horizon)
    mean_n, var = _moments(params, lam0)
    return mean_n.sum(), var


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class JumpData:
    """One asset's daily history for fitting, aligned so row ``t`` holds the return ``r_t`` and the
    conditioning known at ``t - 1``."""

    name: str
    returns: np.ndarray  # [n] r_t
    log_vol: np.ndarray  # [n] log annualised vol at t-1 (IV, else log rv_L + log_vrp)
    regime: np.ndarray  # [n, dim] at t-1
    mm: np.ndarray  # [n, 3] at t-1
    bars_per_year: float


def jump_data(name: str, hist, vol_params=None) -> JumpData:
    """From a :class:`aurora_jax.features.inputs.History` (and the fitted vol path's ``log_vrp``)."""
    vrp = float(vol_params.log_vrp) if vol_params is not None else 0.0
    liv = hist.desc["log_iv"].to_numpy(float)
    lv = np.where(np.isfinite(liv), liv, hist.desc["log_rv_long"].to_numpy(float) + vrp)
    idx = hist.index
    span_years = (idx[-1] - idx[0]) / np.timedelta64(1, "D") / 365.25 if len(idx) > 1 else 1.0
    bpy = (len(idx) - 1) / span_years if span_years > 0 else 365.25
    lag = lambda a: np.concatenate([np.full((1,) + a.shape[1:], np.nan), a[:-1]])
    return JumpData(name, hist.returns, lag(lv), lag(hist.regime), lag(hist.mm), float(bpy))


def _positions(names, layout: RegimeLayout, field: str) -> tuple[int, ...]:
    bad = [n for n in names if n not in layout.names]
    if bad:
        raise InvalidParameterError(field, bad, "names in the regime layout")
    return tuple(layout.index(n) for n in names)


def _objective(th: dict, batch: dict, hawkes: bool) -> Float[Array, ""]:
    """Mean negative log-likelihood (jump / no jump, jump signs) plus the ridge (module docstring)."""
    N, UP = batch["N"], batch["UP"]
    lam0 = jnp.exp(
        th["b0"] + batch["Xi"] @ th["w"] + th["w_iv"] * batch["LV"] + batch["MM"] @ th["w_mm"]
    )
    if hawkes:
        n_br = batch["bmax"] * jax.nn.sigmoid(th["n_raw"])
        b = jnp.exp(-jax.nn.softplus(th["beta_raw"]))
        a = n_br * (1.0 - b)

        def step(E, inp):
            n_prev, st = inp
            E = jnp.where(st, 0.0, b * E + a * n_prev)
            return E, E

        n_prev = jnp.concatenate([jnp.zeros(1), N[:-1]])
        _, E = jax.lax.scan(step, jnp.zeros(()), (n_prev, batch["START"]))
        lam = lam0 + E
    else:
        lam = lam0
    ll_n = N * jnp.log(-jnp.expm1(-lam) + 1e-12) - (1.0 - N) * lam
    p = jax.nn.sigmoid(th["d0"] + batch["Xd"] @ th["d"] + batch["MM"] @ th["d_mm"])
    ll_d = N * (UP * jnp.log(p + 1e-12) + (1.0 - UP) * jnp.log(1.0 - p + 1e-12))
    pen = batch["ridge"] * (
        jnp.sum(th["w"] ** 2)
        + th["w_iv"] ** 2
        + jnp.sum(th["w_mm"] ** 2)
        + jnp.sum(th["d"] ** 2)
        + jnp.sum(th["d_mm"] ** 2)
    )
    return -(ll_n.mean() + ll_d.mean()) + pen


@functools.partial(jax.jit, static_argnames=("hawkes", "steps", "learning_rate"))
def _optimise(theta0: dict, batch: dict, hawkes: bool, steps: int, learning_rate: float):
    """Adam on :func:`_objective` (data as arguments, not constants: compiles once per shape)."""
    opt = optax.adam(learning_rate)

    def body(carry, _):
        th, st = carry
        loss, g = jax.value_and_grad(_objective)(th, batch, hawkes)
        up, st = opt.update(g, st, th)
        return (optax.apply_updates(th, up), st), loss

    (th, _), losses = jax.lax.scan(body, (theta0, opt.init(theta0)), None, length=steps)
    return th, losses


def fit_jump_model(
    data: Sequence[JumpData], jump_cfg, layout: RegimeLayout
) -> tuple[JumpParams, dict]:
    """Fit on the pooled histories (module docstring); returns ``(params, report)``.

    ``jump_cfg`` = ``model.jumps`` (kind, thresholds, features, optimiser settings).
    """
    kind = str(jump_cfg.kind)
    if kind not in KINDS:
        raise InvalidParameterError("jumps.kind", kind, f"one of {list(KINDS)}")
    c = float(jump_cfg.detect_threshold)
    if not c > 0 or int(jump_cfg.fit_steps) < 1:
        raise InvalidParameterError("jumps.detect_threshold", c, "> 0 (and jumps.fit_steps >= 1)")
    fi = _positions(list(jump_cfg.intensity_features), layout, "jumps.intensity_features")
    fd = _positions(list(jump_cfg.direction_features), layout, "jumps.direction_features")
    if not data:
        raise InvalidParameterError("data", "[]", "at least one JumpData")
    rows = []
    for d in data:
        s = np.exp(d.log_vol) / np.sqrt(d.bars_per_year)
        ok = (
            np.isfinite(d.returns)
            & np.isfinite(s)
            & np.isfinite(d.regime).all(1)
            & np.isfinite(d.mm).all(1)
        )
        seg_start = np.zeros(ok.sum(), bool)
        seg_start[:1] = True
        # a gap in usable rows restarts the Hawkes state
        pos = np.flatnonzero(ok)
        seg_start[1:] |= np.diff(pos) > 1
        y = np.abs(d.returns[ok]) / (c * s[ok])
        rows.append((d.returns[ok], y, d.log_vol[ok], d.regime[ok], d.mm[ok], seg_start))
    r, y, lv, reg, mm, start = (np.concatenate([x[i] for x in rows]) for i in range(6))
    jump = y > 1.0
    n_rows, n_jumps = len(r), int(jump.sum())
    if n_rows < 50:
        raise InvalidParameterError(
            "data", f"{n_rows} usable rows", ">= 50 rows with returns and a vol scale"
        )
    tail_min = float(jump_cfg.tail_min)
    if n_jumps >= 2:
        alpha_hat = n_jumps / max(float(np.log(y[jump]).sum()), 1e-9)
    else:
        alpha_hat = tail_min + 1.0
    alpha_hat = max(alpha_hat, tail_min + 1e-3)
    tail_raw = float(np.log(np.expm1(alpha_hat - tail_min)))
    bpy = float(np.mean([d.bars_per_year for d in data]))
    cap = int(jump_cfg.max_per_step)
    bmax = float(jump_cfg.branching_max)
    rate0 = max(n_jumps, 1) / n_rows

    batch = {
        "Xi": jnp.asarray(reg[:, list(fi)], jnp.float32),
        "Xd": jnp.asarray(reg[:, list(fd)], jnp.float32),
        "MM": jnp.asarray(mm, jnp.float32),
        "LV": jnp.asarray(lv - lv.mean(), jnp.float32),
        "N": jnp.asarray(jump, jnp.float32),
        "UP": jnp.asarray(r > 0, jnp.float32),
        "START": jnp.asarray(start),
        "ridge": jnp.asarray(float(jump_cfg.ridge) / n_rows, jnp.float32),
        "bmax": jnp.asarray(bmax, jnp.float32),
    }
    # log vol is centred so b0 starts at the log base rate; undone below
    lv_mean = float(np.mean(lv))
    theta0 = {
        "b0": jnp.asarray(np.log(rate0), jnp.float32),
        "w": jnp.zeros(len(fi), jnp.float32),
        "w_iv": jnp.zeros((), jnp.float32),
        "w_mm": jnp.zeros(3, jnp.float32),
        "d0": jnp.zeros((), jnp.float32),
        "d": jnp.zeros(len(fd), jnp.float32),
        "d_mm": jnp.zeros(3, jnp.float32),
        "n_raw": jnp.asarray(-1.0, jnp.float32),
        "beta_raw": jnp.asarray(0.0, jnp.float32),
    }
    hawkes = kind == "hawkes"
    th, losses = _optimise(
        theta0, batch, hawkes, int(jump_cfg.fit_steps), float(jump_cfg.learning_rate)
    )
    null = float(_objective(theta0, batch, hawkes))
    params = JumpParams(
        intensity_bias=th["b0"] - th["w_iv"] * lv_mean,
        intensity_w=th["w"],
        intensity_iv=th["w_iv"],
        intensity_mm=th["w_mm"],
        direction_bias=th["d0"],
        direction_w=th["d"],
        direction_mm=th["d_mm"],
        tail_raw=jnp.asarray(tail_raw, jnp.float32),
        branching_raw=th["n_raw"],
        decay_raw=th["beta_raw"],
        kind=kind,
        intensity_features=fi,
        direction_features=fd,
        threshold=c,
        bars_per_year=bpy,
        cap=cap,
        rate_max=max_rate(cap, float(jump_cfg.tail_tol)),
        branching_max=bmax,
        tail_min=tail_min,
        compensate=bool(jump_cfg.compensate),
        tail_tol=float(jump_cfg.tail_tol),
    )
    report = {
        "rows": n_rows,
        "jumps": n_jumps,
        "jump_rate": n_jumps / n_rows,
        "up_share": float((r > 0)[jump].mean()) if n_jumps else None,
        "alpha": float(params.alpha),
        "branching": float(params.branching),
        "decay": float(params.decay),
        "loss": float(losses[-1]),
        "loss_at_start": null,
        "kind": kind,
        "bars_per_year": bpy,
        "fitted_on": ",".join(d.name for d in data),
    }
    return params, report
