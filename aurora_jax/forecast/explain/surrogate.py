"""A small additive surrogate of the engine: block aggregates -> drift and widths of the cone.

Targets, per horizon ``h`` (log-returns ``q_tau = log(Q_tau / spot)`` of the engine's forecast):

    trend    = q_50                         (P50 drift)
    upside   = q_95 - q_50                  (upper width; its log when ``log_widths``)
    downside = q_50 - q_05                  (lower width; its log when ``log_widths``)

Model: standardize each feature ``z_j = (x_j - m_j) / s_j`` (training statistics; a missing value
becomes ``z_j = 0``, i.e. the training mean), expand ``phi_j(z) = (z_j, c_j^2)`` (``quadratic``) with
``c_j = clip(z_j, lo_j, hi_j)`` clipped to the training range (the linear term extrapolates, e.g. a
width proportional to vol; the curvature does not) and centre each basis column on the training
set; then per target ``t``

    f_t(x) = b_t + sum_j  phi_j(z_j) . beta_{j,t}         (additive over features, no interactions)

fitted by ridge regression ``min ||Y - b - Phi B||^2 + lambda_t n ||B||^2``. Per target, ``lambda_t``
(from ``ridge_grid``) and whether the quadratic terms enter at all (a linear target keeps zero
quadratic coefficients) are chosen by blocked cross-validation: the fitting rows are cut into
``cv_folds`` contiguous blocks in time, each predicted by a fit on the others, and the pooled
squared error decides. Since the basis is centred, ``b_t`` is the training-mean forecast and the
contribution of a block ``G`` at ``x``,

    c_{G,t}(x) = sum_{j in G} phi_j(z_j) . beta_{j,t},     f_t(x) = b_t + sum_G c_{G,t}(x),

is exactly the interventional Shapley value of block ``G`` with the training set as background
(for an additive model, replacing ``G`` by background draws changes ``f`` by ``c_G`` on average).

Fidelity: the chosen model is refitted on all fitting rows and scored by ``R^2`` on the last
``test_fraction`` of the (time-ordered) forecasts, which neither the fit nor the choice saw.
Permutation importance: the drop in test ``R^2`` when a block's columns are permuted jointly
across test rows (``permutation_repeats`` draws from a seeded numpy Generator).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from jaxtyping import Float

from aurora_jax.atomic import atomic_write_json
from aurora_jax.errors import InvalidParameterError
from aurora_jax.forecast.explain.blocks import BLOCKS, FeatureSpec

TARGET_KINDS: tuple[str, ...] = ("trend", "upside", "downside")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SurrogateConfig:
    """``model.explain`` (configs/model/engine.yaml)."""

    horizons: tuple[int, ...] = (1, 7, 14)
    levels: tuple[float, float, float] = (0.05, 0.5, 0.95)
    log_widths: bool = True
    quadratic: bool = False
    ridge_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    cv_folds: int = 5
    test_fraction: float = 0.25
    min_train: int = 40
    permutation_repeats: int = 5
    seed: int = 0
    trend_steps: int = 1
    min_fidelity: float = 0.5
    top_k: int = 3

    def __post_init__(self) -> None:
        hs = tuple(int(h) for h in self.horizons)
        if not hs or any(h < 1 for h in hs) or any(b <= a for a, b in itertools.pairwise(hs)):
            raise InvalidParameterError("explain.horizons", list(self.horizons), "strictly increasing integers >= 1")
        object.__setattr__(self, "horizons", hs)
        lo, mid, hi = (float(v) for v in self.levels)
        if not 0.0 < lo < mid < hi < 1.0:
            raise InvalidParameterError("explain.levels", list(self.levels), "three levels 0 < lo < mid < hi < 1")
        object.__setattr__(self, "levels", (lo, mid, hi))
        grid = tuple(float(v) for v in self.ridge_grid)
        if not grid or any(not v > 0 for v in grid):
            raise InvalidParameterError("explain.ridge_grid", list(self.ridge_grid), "a non-empty list of values > 0")
        object.__setattr__(self, "ridge_grid", grid)
        if not 0.0 < float(self.test_fraction) < 0.5:
            raise InvalidParameterError("explain.fit.test_fraction", self.test_fraction, "in (0, 0.5)")
        if isinstance(self.cv_folds, bool) or int(self.cv_folds) < 2:
            raise InvalidParameterError("explain.fit.cv_folds", self.cv_folds, "an integer >= 2")
        if int(self.min_train) < 5 or int(self.permutation_repeats) < 1 or int(self.top_k) < 1:
            raise InvalidParameterError("explain.fit.min_train", self.min_train,
                                        ">= 5 (and permutation_repeats >= 1, top_k >= 1)")
        if int(self.trend_steps) < 1:
            raise InvalidParameterError("explain.trend_steps", self.trend_steps, "an integer >= 1")
        if not -math.inf < float(self.min_fidelity) <= 1.0:
            raise InvalidParameterError("explain.min_fidelity", self.min_fidelity, "a number <= 1")

    @classmethod
    def from_config(cls, explain) -> SurrogateConfig:
        f = explain.fit
        return cls(
            horizons=tuple(int(h) for h in explain.horizons), levels=tuple(float(v) for v in explain.levels),
            log_widths=bool(explain.log_widths), quadratic=bool(explain.quadratic),
            ridge_grid=tuple(float(v) for v in f.ridge_grid), cv_folds=int(f.cv_folds),
            test_fraction=float(f.test_fraction), min_train=int(f.min_train),
            permutation_repeats=int(f.permutation_repeats), seed=int(f.seed),
            trend_steps=int(explain.trend_steps), min_fidelity=float(explain.min_fidelity),
            top_k=int(explain.top_k),
        )

    def target_names(self) -> list[str]:
        return [f"h{h}/{k}" for h in self.horizons for k in TARGET_KINDS]


def forecast_targets(log_q: Float[np.ndarray, "n steps 3"], horizons: Sequence[int], log_widths: bool
                     ) -> Float[np.ndarray, "n targets"]:
    """``(n, 3 len(horizons))`` targets (module docstring) from ``log_q`` of shape ``(n, H, 3)``
    (levels lo, mid, hi of ``log(Q / spot)``); horizon-major, :data:`TARGET_KINDS` within."""
    log_q = np.asarray(log_q, dtype=np.float64)
    if log_q.ndim != 3 or log_q.shape[2] != 3 or log_q.shape[1] < max(horizons):
        raise InvalidParameterError("log_q", log_q.shape, f"(n, >= {max(horizons)}, 3)")
    cols = []
    for h in horizons:
        lo, mid, hi = log_q[:, h - 1, 0], log_q[:, h - 1, 1], log_q[:, h - 1, 2]
        up, down = np.maximum(hi - mid, 1e-12), np.maximum(mid - lo, 1e-12)
        if log_widths:
            up, down = np.log(up), np.log(down)
        cols += [mid, up, down]
    return np.stack(cols, axis=1)


def r2_score(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column ``1 - SSE / SST`` (NaN for a constant column)."""
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    sst = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    sse = np.sum((y - pred) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - sse / sst
    return np.where(sst > 1e-18 * max(len(y), 1), r2, np.nan)


@dataclass(frozen=True)
class Surrogate:
    """Fitted surrogate (module docstring); numpy arrays, JSON round-trip with :meth:`save`."""

    feature_names: tuple[str, ...]
    feature_blocks: tuple[str, ...]
    horizons: tuple[int, ...]
    log_widths: bool
    quadratic: bool
    trend_steps: int
    x_mean: np.ndarray          # (F,)
    x_sd: np.ndarray            # (F,) 0 for an inactive (constant) feature
    z_lo: np.ndarray            # (F,) training range of z (clips the quadratic term)
    z_hi: np.ndarray            # (F,)
    phi_mean: np.ndarray        # (P,)
    coef: np.ndarray            # (P, T)
    intercept: np.ndarray       # (T,)
    lam: np.ndarray             # (T,) chosen ridge penalty per target
    quad_used: np.ndarray       # (T,) 1 where the quadratic terms were chosen
    fidelity: np.ndarray        # (T,) test R^2 (NaN: undefined)
    val_r2: np.ndarray          # (T,) blocked cross-validation R^2 of the chosen model
    importance: np.ndarray      # (T, B) permutation importance (test R^2 drop) per block
    n_train: int
    n_test: int
    meta: dict = field(default_factory=dict)

    # ---- layout ---------------------------------------------------------------------------
    @property
    def target_names(self) -> list[str]:
        return [f"h{h}/{k}" for h in self.horizons for k in TARGET_KINDS]

    def target_index(self, horizon: int, kind: str) -> int:
        return self.horizons.index(int(horizon)) * len(TARGET_KINDS) + TARGET_KINDS.index(kind)

    def horizon_for(self, horizon: int | None) -> int:
        """The smallest fitted horizon >= ``horizon`` (the largest when none is; None -> largest)."""
        if horizon is None:
            return self.horizons[-1]
        if isinstance(horizon, bool) or int(horizon) < 1:
            raise InvalidParameterError("horizon", horizon, "an integer >= 1")
        return next((h for h in self.horizons if h >= int(horizon)), self.horizons[-1])

    def phi_blocks(self) -> dict[str, np.ndarray]:
        """Basis columns of each block."""
        F = len(self.feature_names)
        reps = 2 if self.quadratic else 1
        out = {}
        for b in BLOCKS:
            cols = [i for i, fb in enumerate(self.feature_blocks) if fb == b]
            out[b] = np.asarray([i + r * F for r in range(reps) for i in cols], dtype=int)
        return out

    # ---- evaluation -----------------------------------------------------------------------
    def basis(self, X: np.ndarray) -> np.ndarray:
        """Centred basis ``Phi`` of shape ``(n, P)`` (NaN features imputed at the training mean)."""
        return _basis(np.atleast_2d(np.asarray(X, np.float64)), self.x_mean, self.x_sd, self.z_lo, self.z_hi,
                      self.quadratic) - self.phi_mean

    def predict(self, X: Float[np.ndarray, "n features"]) -> Float[np.ndarray, "n targets"]:
        """``(n, T)`` predicted targets."""
        return self.intercept + self.basis(X) @ self.coef

    def contributions(self, X: Float[np.ndarray, "n features"]) -> Float[np.ndarray, "n blocks targets"]:
        """``(n, B, T)`` block contributions ``c_G`` (sum over blocks + intercept = prediction)."""
        phi = self.basis(X)
        blocks = self.phi_blocks()
        return np.stack([phi[:, blocks[b]] @ self.coef[blocks[b]] for b in BLOCKS], axis=1)

    # ---- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: _jsonable(v) for k, v in asdict(self).items()}
        d["importance_blocks"] = list(BLOCKS)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Surrogate:
        if int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise InvalidParameterError("format_version", d.get("format_version"), str(FORMAT_VERSION))
        if list(d.get("importance_blocks", [])) != list(BLOCKS):
            raise InvalidParameterError("importance_blocks", d.get("importance_blocks"), str(list(BLOCKS)))
        arr = lambda k: np.asarray(_unjson(d[k]), np.float64)
        return cls(
            feature_names=tuple(d["feature_names"]), feature_blocks=tuple(d["feature_blocks"]),
            horizons=tuple(int(h) for h in d["horizons"]), log_widths=bool(d["log_widths"]),
            quadratic=bool(d["quadratic"]), trend_steps=int(d["trend_steps"]),
            x_mean=arr("x_mean"), x_sd=arr("x_sd"), z_lo=arr("z_lo"), z_hi=arr("z_hi"), phi_mean=arr("phi_mean"), coef=arr("coef"),
            intercept=arr("intercept"), lam=arr("lam"), quad_used=arr("quad_used"), fidelity=arr("fidelity"), val_r2=arr("val_r2"),
            importance=arr("importance"), n_train=int(d["n_train"]), n_test=int(d["n_test"]),
            meta=dict(d.get("meta", {})),
        )

    def save(self, path: str | Path) -> Path:
        """Atomic JSON write."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Surrogate:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def report(self) -> dict:
        """Fidelity and permutation importance per target (JSON-ready)."""
        out = {}
        for t, name in enumerate(self.target_names):
            imp = self.importance[t]
            order = np.argsort(-np.nan_to_num(imp, nan=-np.inf))
            out[name] = {
                "test_r2": _f(self.fidelity[t]), "cv_r2": _f(self.val_r2[t]), "ridge_lambda": float(self.lam[t]),
                "quadratic": bool(self.quad_used[t]),
                "permutation_importance": {BLOCKS[i]: _f(imp[i]) for i in order},
            }
        return {"targets": out, "n_train": self.n_train, "n_test": self.n_test, "meta": self.meta}


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _jsonable(v):
    """Arrays and numpy scalars to lists / floats, non-finite floats to None (strict JSON)."""
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()] if v.ndim else _jsonable(v.item())
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _unjson(v):
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return np.nan if v is None else v


def _z(X: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    active = sd > 0
    z = np.where(active, (X - mean) / np.where(active, sd, 1.0), 0.0)
    return np.where(np.isfinite(z), z, 0.0)


def _basis(X: np.ndarray, mean: np.ndarray, sd: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           quadratic: bool) -> np.ndarray:
    z = _z(X, mean, sd)
    if not quadratic:
        return z
    c = np.clip(z, lo, hi)
    return np.concatenate([z, c * c], axis=1)


def _standardize_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.nanstd(np.where(np.isfinite(X), X, np.nan), axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-9 * np.maximum(1.0, np.abs(mean))), sd, 0.0)
    return mean, sd


def _ridge_paths(phi: np.ndarray, yc: np.ndarray, lams: Sequence[float]) -> list[np.ndarray]:
    """Ridge coefficients ``(P, T)`` for each ``lambda`` (penalty ``lambda n``), one eigendecomposition."""
    n = phi.shape[0]
    d, V = np.linalg.eigh(phi.T @ phi)
    d = np.maximum(d, 0.0)
    proj = V.T @ (phi.T @ yc)
    return [V @ (proj / (d + lam * n)[:, None]) for lam in lams]


def _fit_stats(X: np.ndarray, quadratic: bool):
    mean, sd = _standardize_stats(X)
    z = _z(X, mean, sd)
    lo, hi = z.min(axis=0), z.max(axis=0)
    phi = _basis(X, mean, sd, lo, hi, quadratic)
    phi_mean = phi.mean(axis=0)
    return mean, sd, lo, hi, phi - phi_mean, phi_mean


def _candidates(X_tr, Y_tr, X_ev, cfg: SurrogateConfig) -> np.ndarray:
    """Predictions ``(C, n_ev, T)`` of every candidate (basis x lambda) fitted on ``X_tr``."""
    mean, sd, lo, hi, phi, phi_mean = _fit_stats(X_tr, cfg.quadratic)
    ybar = Y_tr.mean(axis=0)
    phi_ev = _basis(X_ev, mean, sd, lo, hi, cfg.quadratic) - phi_mean
    F = X_tr.shape[1]
    preds = [ybar + phi_ev[:, :F] @ B for B in _ridge_paths(phi[:, :F], Y_tr - ybar, cfg.ridge_grid)]
    if cfg.quadratic:
        preds += [ybar + phi_ev @ B for B in _ridge_paths(phi, Y_tr - ybar, cfg.ridge_grid)]
    return np.stack(preds)


def fit_surrogate(X: Float[np.ndarray, "n features"], Y: Float[np.ndarray, "n targets"], spec: FeatureSpec,
                  cfg: SurrogateConfig,
                  meta: Mapping | None = None) -> Surrogate:
    """Fit on time-ordered rows ``X (n, F)``, ``Y (n, T)`` (module docstring)."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    T = len(cfg.horizons) * len(TARGET_KINDS)
    if X.ndim != 2 or X.shape[1] != spec.dim:
        raise InvalidParameterError("X", X.shape, f"(n, {spec.dim}) features of the block spec")
    if Y.shape != (X.shape[0], T):
        raise InvalidParameterError("Y", Y.shape, f"({X.shape[0]}, {T}) targets (horizons x {TARGET_KINDS})")
    ok = np.isfinite(Y).all(axis=1)
    X, Y = X[ok], Y[ok]
    n = X.shape[0]
    n_test = math.ceil(cfg.test_fraction * n)
    n_fit = n - n_test
    if n_fit - math.ceil(n_fit / cfg.cv_folds) < int(cfg.min_train):
        raise InvalidParameterError("explain.fit.dates", f"{n} forecasts with finite targets",
                                    f"enough for >= explain.fit.min_train={cfg.min_train} training rows per "
                                    f"cross-validation fold after the test split (got {n_fit} fitting rows)")
    Xf, Yf = X[:n_fit], Y[:n_fit]
    # 1. basis and lambda per target by blocked cross-validation on the fitting rows
    edges = np.linspace(0, n_fit, int(cfg.cv_folds) + 1).round().astype(int)
    L = len(cfg.ridge_grid)
    sse = 0.0
    for a, b in itertools.pairwise(edges):
        keep = np.r_[0:a, b:n_fit]
        preds = _candidates(Xf[keep], Yf[keep], Xf[a:b], cfg)                  # (C, m, T)
        sse = sse + np.sum((preds - Yf[a:b][None]) ** 2, axis=1)                # (C, T)
    sst = np.sum((Yf - Yf.mean(axis=0)) ** 2, axis=0)
    best = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=0)          # (T,)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv_r2 = np.where(sst > 0, 1.0 - sse[best, np.arange(T)] / sst, np.nan)
    quad_used = best >= L
    lam = np.asarray(cfg.ridge_grid)[best % L]
    # 2. refit the chosen model per target on every fitting row, score on the test split
    mean, sd, lo, hi, phi, phi_mean = _fit_stats(Xf, cfg.quadratic)
    ybar = Yf.mean(axis=0)
    F = X.shape[1]
    lin = _ridge_paths(phi[:, :F], Yf - ybar, cfg.ridge_grid)
    quad = _ridge_paths(phi, Yf - ybar, cfg.ridge_grid) if cfg.quadratic else []
    coef = np.zeros((phi.shape[1], T))
    for t in range(T):
        if quad_used[t]:
            coef[:, t] = quad[best[t] - L][:, t]
        else:
            coef[:F, t] = lin[best[t]][:, t]
    sur = Surrogate(
        feature_names=spec.names, feature_blocks=spec.blocks, horizons=cfg.horizons, log_widths=cfg.log_widths,
        quadratic=cfg.quadratic, trend_steps=cfg.trend_steps, x_mean=mean, x_sd=sd, z_lo=lo, z_hi=hi,
        phi_mean=phi_mean, coef=coef, intercept=ybar, lam=lam, quad_used=quad_used.astype(float),
        fidelity=np.full(T, np.nan), val_r2=cv_r2, importance=np.full((T, len(BLOCKS)), np.nan),
        n_train=int(n_fit), n_test=int(n_test), meta=dict(meta or {}),
    )
    fidelity = r2_score(Y[n_fit:], sur.predict(X[n_fit:]))
    importance = permutation_importance(sur, X[n_fit:], Y[n_fit:], cfg.permutation_repeats, cfg.seed)
    return dataclasses.replace(sur, fidelity=fidelity, importance=importance)


def permutation_importance(sur: Surrogate, X: np.ndarray, Y: np.ndarray, repeats: int, seed: int) -> np.ndarray:
    """``(T, B)``: mean drop of ``R^2`` when a block's columns are permuted jointly across rows."""
    rng = np.random.default_rng(seed)
    base = r2_score(Y, sur.predict(X))
    out = np.zeros((len(base), len(BLOCKS)))
    for j, b in enumerate(BLOCKS):
        cols = [i for i, fb in enumerate(sur.feature_blocks) if fb == b]
        drops = []
        for _ in range(int(repeats)):
            Xp = X.copy()
            Xp[:, cols] = X[rng.permutation(len(X))][:, cols]
            drops.append(base - r2_score(Y, sur.predict(Xp)))
        out[:, j] = np.mean(drops, axis=0)
    return out
