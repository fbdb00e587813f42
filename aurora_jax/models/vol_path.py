"""Vol path engine: the 30-day IV level over the horizon, with a realized-vol fallback.

State ``x_t = log sigma_t`` reverts geometrically toward a level set by realized vol and the
regime (``u_t = [1, regime_t[features]]``, ``features`` = ``vol_path.features``: realized vols
and a few regime descriptors, by name; ``theta`` fitted)::

    mu_t      = theta . u_t
    x_{t+k}   = mu_t + (1 - kappa)^k (x_t - mu_t),        k = 1..horizon_max,   0 < kappa < 1

so every path moves monotonically from today's level toward ``mu_t`` (half-life
``log 2 / -log(1 - kappa)`` steps). Two such models share the form:

* ``implied``: ``x = log IV`` (30d ATM implied vol, fraction);
* ``skew`` (when a ``skew_*`` column exists): ``x`` = the skew level, same form, features without
  IV/skew descriptors, prior level = the mean skew of the fitting rows;
* ``realized`` (used when IV is missing or stale): ``x = log rv_L`` (realized vol over
  ``regime.long_days``), features without the IV/skew descriptors (so it sees the same inputs with
  or without IV); its path is shifted by ``log_vrp``, the mean ``log IV - log rv_L`` over the ``n``
  fitting rows that have both, shrunk toward the prior ``vrp_prior`` with the weight of
  ``vrp_prior_rows = n0`` rows: ``log_vrp = (sum gaps + n0 vrp_prior) / (n + n0)`` (implied-vol
  units; the prior alone when no IV was there to fit, so an engine trained before IV existed
  still compares a later observed IV with realized vol plus a premium, not with realized vol).

A feature whose regime block is masked at a row enters as 0 (its masked value).

Fitting (:func:`fit_vol_path`) minimises the multi-step squared error over ``k = 1..H``
(``vol_path.fit_horizon``) plus a ridge toward the prior ``mu = log rv_M (+ vrp)``::

    sum_{t,k} (x_{t+k} - rho_k x_t - (1 - rho_k) theta . u_t)^2 / N + sum_j lam_j (theta_j - theta0_j)^2

which for fixed ``kappa`` (``rho_k = (1-kappa)^k``) is a ridge regression solved in closed form
(all grid points in one batched solve). ``kappa`` is chosen on a log-spaced grid of half-lives by
the loss on the time-ordered last ``val_fraction`` of the rows (theta fitted on the rows before),
which keeps a short history from picking a spuriously fast reversion; theta is then refitted on
all rows. Fewer than ``min_fit_rows`` rows: the prior (half-life ``prior_half_life``). Well under a
second at any size.

API (called by the training pipeline, ``aurora_jax/train/``)::

    hist = aurora_jax.features.inputs.history(snapshot, cfg, hourly)     # one asset, all rows
    data = vol_path_data(name, hist.desc, hist.regime)                    # -> VolPathData
    params, report = fit_vol_path([data, ...], cfg.model.vol_path, hist.layout)   # -> VolPathParams
    iv = iv_path(params, regime, log_iv0, log_rv0, has_iv, horizon_max)  # [..., horizon_max]
    sk = skew_path(params, regime, skew0, horizon_max)                    # when skew is observed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Bool, Float

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.regime_vector import RegimeLayout

IV_BLOCKS = ("iv", "skew")
VOL_FEATURES = ("log_rv_short", "log_rv_long", "log_rv_slow", "log_iv")


class LogMeanReversion(eqx.Module):
    """``x_{t+k} = mu + (1-kappa)^k (x_t - mu)``, ``mu = theta . [1, regime[features]]``."""

    kappa: Float[Array, ""]
    theta: Float[Array, " p"]
    features: tuple[int, ...] = eqx.field(static=True)  # regime positions entering mu

    def level(self, regime: Float[Array, "... dim"]) -> Float[Array, "..."]:
        return (
            self.theta[0] + regime[..., np.asarray(self.features, dtype=np.int32)] @ self.theta[1:]
        )

    def path(
        self, x0: Float[Array, "..."], regime: Float[Array, "... dim"], horizon: int
    ) -> Float[Array, "... horizon"]:
        mu = self.level(regime)
        rho = (1.0 - self.kappa) ** jnp.arange(1, horizon + 1, dtype=jnp.float32)
        return mu[..., None] + rho * (x0 - mu)[..., None]

    @property
    def half_life(self) -> float:
        return float(np.log(2.0) / -np.log1p(-float(self.kappa)))


class VolPathParams(eqx.Module):
    """Fitted vol path engine (see module docstring)."""

    implied: LogMeanReversion
    realized: LogMeanReversion
    skew: LogMeanReversion  # on the skew level itself (not its log)
    log_vrp: Float[Array, ""]
    fitted_on: str = eqx.field(static=True, default="")


def iv_path(
    params: VolPathParams,
    regime: Float[Array, "... dim"],
    log_iv0: Float[Array, "..."],
    log_rv0: Float[Array, "..."],
    has_iv: Bool[Array, "..."],
    horizon_max: int,
) -> Float[Array, "... horizon_max"]:
    """Forecast IV (annualised fraction) for steps ``1..horizon_max``: the implied model where
    ``has_iv``, else the realized model shifted by ``log_vrp``. Pure; vmaps over leading axes."""
    regime = jnp.asarray(regime, jnp.float32)
    has_iv = jnp.asarray(has_iv, bool)
    x_iv = jnp.where(has_iv, jnp.nan_to_num(jnp.asarray(log_iv0, jnp.float32)), 0.0)
    p_iv = params.implied.path(x_iv, regime, horizon_max)
    p_rv = (
        params.realized.path(jnp.asarray(log_rv0, jnp.float32), regime, horizon_max)
        + params.log_vrp
    )
    return jnp.exp(jnp.where(has_iv[..., None], p_iv, p_rv))


def skew_path(
    params: VolPathParams,
    regime: Float[Array, "... dim"],
    skew0: Float[Array, "..."],
    horizon_max: int,
) -> Float[Array, "... horizon_max"]:
    """Forecast skew level for steps ``1..horizon_max`` (where a skew column exists)."""
    return params.skew.path(
        jnp.asarray(skew0, jnp.float32), jnp.asarray(regime, jnp.float32), horizon_max
    )


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class VolPathData:
    """One asset's history on its grid: states and regime rows (NaN state = unobserved)."""

    name: str
    log_iv: np.ndarray  # [n]
    log_rv: np.ndarray  # [n]  log rv_L
    log_rv_slow: np.ndarray  # [n]  log rv_M
    regime: np.ndarray  # [n, dim]
    skew: np.ndarray | None = None  # [n] skew level (descriptor ``skew_level``), None/NaN = absent


def vol_path_data(name: str, desc: pd.DataFrame, regime: np.ndarray) -> VolPathData:
    """From a descriptor frame and its regime matrix (``aurora_jax.features.inputs.History``)."""
    if len(desc) != len(regime):
        raise InvalidParameterError(
            "regime", f"{len(regime)} rows", f"{len(desc)} rows (one per descriptor row)"
        )
    skew = desc["skew_level"].to_numpy(float) if "skew_level" in desc else None
    return VolPathData(
        name,
        desc["log_iv"].to_numpy(float),
        desc["log_rv_long"].to_numpy(float),
        desc["log_rv_slow"].to_numpy(float),
        np.asarray(regime, float),
        skew,
    )


def _kappa_grid(vol_cfg) -> np.ndarray:
    lo, hi, n = vol_cfg.half_life_grid
    if not (0 < float(lo) < float(hi)) or int(n) < 2:
        raise InvalidParameterError(
            "vol_path.half_life_grid",
            list(vol_cfg.half_life_grid),
            "[min > 0, max > min, count >= 2]",
        )
    return 1.0 - 0.5 ** (1.0 / np.geomspace(float(lo), float(hi), int(n)))


def _kappa_from_half_life(hl: float) -> float:
    if not hl > 0:
        raise InvalidParameterError("vol_path.prior_half_life", hl, "> 0 bars")
    return float(1.0 - 0.5 ** (1.0 / hl))


def feature_positions(vol_cfg, layout: RegimeLayout, which: str) -> tuple[int, ...]:
    """Regime positions of ``vol_path.features`` (IV/skew ones dropped for ``realized``)."""
    names = list(vol_cfg.features)
    bad = [n for n in names if n not in layout.names or n.startswith(("mask:", "pad:"))]
    if bad:
        raise InvalidParameterError(
            "vol_path.features", bad, "descriptor names of the regime layout"
        )
    if which in ("realized", "skew"):
        iv_names = {layout.names[i] for b in IV_BLOCKS for i in layout.blocks[b]}
        names = [n for n in names if n not in iv_names]
    return tuple(layout.index(n) for n in names)


def _stack(
    data: Sequence[VolPathData], which: str, H: int, feats: tuple[int, ...], val_fraction: float
):
    """Rows ``(x_t, u_t, targets x_{t+1..t+H}, is_validation)`` pooled over assets (targets never
    cross assets). Each asset's last ``val_fraction`` of rows is validation; the targets of the
    rows before it that would reach into it are dropped for the validation fit only (``Y_fit``)."""
    xs, us, ys, yfs, vs = [], [], [], [], []
    for d in data:
        n = len(d.log_rv)
        if which == "skew":
            x = d.skew if d.skew is not None else np.full(n, np.nan)
        else:
            x = d.log_iv if which == "implied" else d.log_rv
        tgt = np.full((n, H), np.nan)
        for k in range(1, min(H, n - 1) + 1):
            tgt[: n - k, k - 1] = x[k:]
        reg = d.regime[:, list(feats)]
        ok = np.isfinite(x) & np.isfinite(reg).all(axis=1) & np.isfinite(tgt).any(axis=1)
        rows = np.flatnonzero(ok)
        n_val = int(round(val_fraction * len(rows)))
        v0 = rows[len(rows) - n_val] if n_val > 0 else n
        t_fit = tgt.copy()
        reach = np.arange(n)[:, None] + np.arange(1, H + 1)[None, :]
        t_fit[(np.arange(n)[:, None] < v0) & (reach >= v0)] = np.nan
        xs.append(x[ok])
        us.append(np.concatenate([np.ones((len(rows), 1)), reg[ok]], axis=1))
        ys.append(tgt[ok])
        yfs.append(t_fit[ok])
        vs.append(rows >= v0)
    return (
        np.concatenate(xs),
        np.concatenate(us),
        np.concatenate(ys),
        np.concatenate(yfs),
        np.concatenate(vs),
    )


def _ridge_path(x, U, Y, kappas, lam, theta0, thetas=None):
    """Per kappa in ``kappas``: the ridge ``theta`` (unless given), the multi-step MSE and the penalty."""
    n, p = U.shape
    H = Y.shape[1]
    M = np.isfinite(Y)
    Yz = np.where(M, Y, 0.0)
    N = max(int(M.sum()), 1)
    rho = (1.0 - kappas[:, None]) ** np.arange(1, H + 1)[None, :]  # [K, H]
    w = 1.0 - rho
    if thetas is None:
        # one BLAS call each (many small calls are slow when BLAS threads are oversubscribed)
        W = (M[:, :, None] * U[:, None, :]).reshape(n, H * p)
        G = (W.T @ U).reshape(H, p, p)  # sum_t m_tk u_t u_t'
        c = Yz.T @ U  # [H, p] sum_t y_tk u_t
        d = (W.T @ x).reshape(H, p)  # sum_t m_tk x_t u_t
        A = np.einsum("qk,kij->qij", w**2, G) / N + np.diag(lam)[None]
        A[:, 0, 0] += 1e-9
        b = (
            np.einsum("qk,qkj->qj", w, c[None] - rho[:, :, None] * d[None]) / N
            + (lam * theta0)[None]
        )
        thetas = np.linalg.solve(A, b[..., None])[..., 0]  # [K, p]
    level = U @ thetas.T  # [n, K]
    pred = rho.T[None] * x[:, None, None] + w.T[None] * level[:, None, :]  # [n, H, K]
    sse = (((Yz[:, :, None] - pred) * M[:, :, None]) ** 2).sum(axis=(0, 1)) / N
    return thetas, sse, ((thetas - theta0[None]) ** 2 * lam[None]).sum(axis=1)


def _fit_one(
    x,
    U,
    Y,
    Y_fit,
    is_val,
    vrp0: float,
    vol_cfg,
    layout: RegimeLayout,
    feats: tuple[int, ...],
    vol_prior: bool = True,
) -> tuple[LogMeanReversion, dict]:
    n, p = U.shape
    names = [layout.names[i] for i in feats]
    theta0 = np.zeros(p)
    theta0[0] = vrp0
    if vol_prior and "log_rv_slow" in names:  # prior: mu = log rv_M (+ vrp)
        theta0[1 + names.index("log_rv_slow")] = 1.0
    lam = np.array(
        [0.0]
        + [float(vol_cfg.ridge_vol) if nm in VOL_FEATURES else float(vol_cfg.ridge) for nm in names]
    )
    if n < int(vol_cfg.min_fit_rows):
        k0 = _kappa_from_half_life(float(vol_cfg.prior_half_life))
        model = LogMeanReversion(
            jnp.asarray(k0, jnp.float32), jnp.asarray(theta0, jnp.float32), feats
        )
        return model, {
            "rows": int(n),
            "source": "prior",
            "half_life": float(vol_cfg.prior_half_life),
        }
    kappas = _kappa_grid(vol_cfg)
    # kappa: chosen on each asset's time-ordered validation tail (theta fitted on the rows
    # before it), then theta refitted on all rows at that kappa
    tr = ~is_val
    if is_val.sum() >= 10 and tr.sum() >= int(vol_cfg.min_fit_rows) // 2:
        th_tr, _, _ = _ridge_path(x[tr], U[tr], Y_fit[tr], kappas, lam, theta0)
        _, val_mse, _ = _ridge_path(
            x[is_val], U[is_val], Y[is_val], kappas, lam, theta0, thetas=th_tr
        )
        q = int(np.argmin(val_mse))
    else:
        q = None
    thetas, mse, pen = _ridge_path(x, U, Y, kappas if q is None else kappas[q : q + 1], lam, theta0)
    j = int(np.argmin(mse + pen)) if q is None else 0
    q = j if q is None else q
    sse = mse[j]
    rw = float(np.nanmean((Y - x[:, None]) ** 2))
    model = LogMeanReversion(
        jnp.asarray(kappas[q], jnp.float32), jnp.asarray(thetas[j], jnp.float32), feats
    )
    return model, {
        "rows": int(n),
        "source": "fit",
        "half_life": model.half_life,
        "mse": float(sse),
        "mse_random_walk": rw,
        "features": names,
    }


def fit_vol_path(
    data: Sequence[VolPathData], vol_cfg, layout: RegimeLayout
) -> tuple[VolPathParams, dict]:
    """Fit both models on the pooled histories; returns ``(params, report)``.

    ``vol_cfg`` = ``model.vol_path``; ``report`` gives rows, half-lives and the in-sample
    multi-step MSE next to the random walk's (``x_{t+k} = x_t``).
    """
    H = int(vol_cfg.fit_horizon)
    if H < 1:
        raise InvalidParameterError("vol_path.fit_horizon", H, "an integer >= 1")
    if not data:
        raise InvalidParameterError("data", "[]", "at least one VolPathData")
    _kappa_grid(vol_cfg), _kappa_from_half_life(float(vol_cfg.prior_half_life))  # validate settings
    for key in ("ridge", "ridge_vol"):
        if not float(vol_cfg[key]) >= 0:
            raise InvalidParameterError(f"vol_path.{key}", vol_cfg[key], ">= 0")
    gaps = np.concatenate([d.log_iv - d.log_rv for d in data])
    gaps = gaps[np.isfinite(gaps)]
    prior, n0 = float(vol_cfg.vrp_prior), float(vol_cfg.vrp_prior_rows)
    if not np.isfinite(prior):
        raise InvalidParameterError("vol_path.vrp_prior", vol_cfg.vrp_prior, "a finite log(IV / realized vol)")
    if not n0 >= 0:
        raise InvalidParameterError("vol_path.vrp_prior_rows", vol_cfg.vrp_prior_rows, ">= 0")
    log_vrp = (float(gaps.sum()) + n0 * prior) / (len(gaps) + n0) if len(gaps) + n0 > 0 else 0.0
    fi, fr = (
        feature_positions(vol_cfg, layout, "implied"),
        feature_positions(vol_cfg, layout, "realized"),
    )
    vf = float(vol_cfg.val_fraction)
    if not 0.0 <= vf < 1.0:
        raise InvalidParameterError("vol_path.val_fraction", vf, "0 <= val_fraction < 1")
    imp, rep_i = _fit_one(*_stack(data, "implied", H, fi, vf), log_vrp, vol_cfg, layout, fi)
    rea, rep_r = _fit_one(*_stack(data, "realized", H, fr, vf), 0.0, vol_cfg, layout, fr)
    fs = feature_positions(vol_cfg, layout, "skew")
    sk = np.concatenate([d.skew for d in data if d.skew is not None] or [np.array([])])
    sk_mean = float(np.nanmean(sk)) if np.isfinite(sk).any() else 0.0  # prior level: mean skew
    ske, rep_s = _fit_one(
        *_stack(data, "skew", H, fs, vf), sk_mean, vol_cfg, layout, fs, vol_prior=False
    )
    name = ",".join(d.name for d in data)
    params = VolPathParams(imp, rea, ske, jnp.asarray(log_vrp, jnp.float32), fitted_on=name)
    return params, {
        "implied": rep_i,
        "realized": rep_r,
        "skew": rep_s,
        "log_vrp": log_vrp,
        "vrp_rows": int(len(gaps)),
        "fitted_on": name,
    }
