"""Split-conformal calibration of quantile forecasts, per regime x horizon bucket.

A post-processing layer: it never retrains the forecaster. For every realised outcome ``y``
of a forecast with raw quantiles ``q_tau`` it stores the normalised errors

    e_tau = (y - q_tau) / s,

with ``s = q_{0.75} - q_{0.25}`` (``normalized``, the forecast's own spread at ``scale_levels``),
``s = sqrt(h)`` (``sqrt_horizon``: in units of one-day error, the same for every forecast of
that horizon) or ``s = 1`` (``absolute``),

in the buffer of the forecast's (regime, horizon bucket): short 1-3, mid 4-7, long 8-14 days.
A new forecast is calibrated with finite-sample corrected order statistics of those errors
(``n`` scores, ``k = ceil((n + 1)(1 - a))``; the k-th smallest, the largest when ``k > n``,
reported as ``capped``). Two modes, computed from the same buffers:

* ``symmetric`` (default; CQR, Romano et al. 2019): each level pair ``(tau, 1 - tau)`` with
  miscoverage ``a = 2 tau`` gets the score ``S = max(-e_tau, e_{1-tau})`` and
  ``q'_tau = q_tau - s S_(k)``, ``q'_{1-tau} = q_{1-tau} + s S_(k)``, so that
  ``P(q'_tau <= y <= q'_{1-tau}) >= 1 - a`` under exchangeability. The median is left alone:
  the layer widens or narrows the forecaster's bands but does not chase past drift.
* ``per_level``: each level on its own, ``q'_tau = q_tau + s e_(k)`` with ``a = 1 - tau`` above
  the median, ``q'_tau = q_tau - s (-e)_(k)`` with ``a = tau`` below it, the median shifted by
  the median error; corrects skew and location bias too (``P(y <= q'_tau) >= tau`` above the
  median, ``P(y < q'_tau) <= tau`` below it).

A bucket with fewer than ``min_bucket`` scores falls back to the pooled buffer of its horizon
bucket (all regimes), then to all buffers; with fewer than ``min_pooled`` in total the raw
quantiles come back (bucket ``none``). The working level ``a`` adapts online
(:mod:`.adaptive_alpha`; for a pair the update is ``a_pair += lr (a - 1{outside band})``), and
calibrated quantiles are sorted (monotone rearrangement), so they never cross.

Updates are idempotent by key; forecasts marked ``conditional`` (what-if scenarios) never
enter the buffers; ``save``/``load`` round-trip the whole state through an atomic JSON write.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from aurora_jax.atomic import atomic_write_json
from aurora_jax.calibrate.adaptive_alpha import (
    AdaptiveAlphaConfig,
    DynamicAlphaConfig,
    effective_alpha,
    update_alpha,
)
from aurora_jax.calibrate.kappa import KappaConfig, kappa, kappa_plus
from aurora_jax.calibrate.vol_regime import REGIMES
from aurora_jax.errors import InvalidParameterError

FORMAT_VERSION = 1
_TOL = 1e-9


@dataclass(frozen=True)
class ConformalConfig:
    levels: tuple[float, ...]
    buckets: tuple[tuple[str, int, int], ...] = (("short", 1, 3), ("mid", 4, 7), ("long", 8, 14))
    regimes: tuple[str, ...] = REGIMES
    mode: str = "symmetric"
    score: str = "sqrt_horizon"
    scale_levels: tuple[float, float] = (0.25, 0.75)
    min_scale: float = 1e-9
    buffer_size: int = 400
    min_bucket: int = 30
    min_pooled: int = 30
    max_keys: int = 200_000
    adaptive: AdaptiveAlphaConfig = field(default_factory=AdaptiveAlphaConfig)
    dynamic: DynamicAlphaConfig = field(default_factory=DynamicAlphaConfig)
    kappa: KappaConfig = field(default_factory=KappaConfig)

    def __post_init__(self) -> None:
        lv = tuple(float(x) for x in self.levels)
        if not lv or any(not 0 < x < 1 for x in lv) or any(b <= a for a, b in pairwise(lv)):
            raise InvalidParameterError("calibration.levels", self.levels, "strictly increasing in (0, 1)")
        object.__setattr__(self, "levels", lv)
        prev = 0
        for name, lo, hi in self.buckets:
            if lo != prev + 1 or hi < lo:
                raise InvalidParameterError(
                    "calibration.conformal.horizon_buckets", self.buckets,
                    "contiguous [lo, hi] day ranges starting at 1",
                )
            prev = hi
        if self.mode not in ("symmetric", "per_level"):
            raise InvalidParameterError("calibration.conformal.mode", self.mode, "symmetric | per_level")
        if self.score not in ("normalized", "absolute", "sqrt_horizon"):
            raise InvalidParameterError("calibration.conformal.score", self.score,
                                        "normalized | absolute | sqrt_horizon")
        if self.score == "normalized":
            for s in self.scale_levels:
                if not any(abs(s - x) < _TOL for x in lv):
                    raise InvalidParameterError(
                        "calibration.conformal.scale_levels", self.scale_levels,
                        f"levels present in calibration.levels={list(lv)}",
                    )
        for k in ("buffer_size", "min_bucket", "min_pooled", "max_keys"):
            if int(getattr(self, k)) < 1:
                raise InvalidParameterError(f"calibration.conformal.{k}", getattr(self, k), ">= 1")

    @property
    def max_horizon(self) -> int:
        return self.buckets[-1][2]

    def bucket_of(self, horizon: int) -> str:
        for name, lo, hi in self.buckets:
            if lo <= horizon <= hi:
                return name
        raise InvalidParameterError("horizon", horizon, f"1 .. {self.max_horizon}")

    @classmethod
    def from_config(cls, cal: DictConfig) -> ConformalConfig:
        c = cal.conformal
        return cls(
            levels=tuple(float(x) for x in cal.levels),
            buckets=tuple((str(k), int(v[0]), int(v[1])) for k, v in c.horizon_buckets.items()),
            regimes=tuple(str(r) for r in c.regimes),
            mode=str(c.mode),
            score=str(c.score),
            scale_levels=(float(c.scale_levels[0]), float(c.scale_levels[1])),
            min_scale=float(c.min_scale),
            buffer_size=int(c.buffer_size),
            min_bucket=int(c.min_bucket),
            min_pooled=int(c.min_pooled),
            max_keys=int(c.max_keys),
            adaptive=AdaptiveAlphaConfig.from_config(cal.adaptive_alpha),
            dynamic=DynamicAlphaConfig.from_config(cal.dynamic_alpha),
            kappa=KappaConfig.from_config(cal.kappa),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["buckets"] = [list(b) for b in self.buckets]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ConformalConfig:
        d = dict(d)
        d["levels"] = tuple(d["levels"])
        d["buckets"] = tuple(tuple(b) for b in d["buckets"])
        d["regimes"] = tuple(d["regimes"])
        d["scale_levels"] = tuple(d["scale_levels"])
        d["adaptive"] = AdaptiveAlphaConfig(**d["adaptive"])
        d["dynamic"] = DynamicAlphaConfig(**d["dynamic"])
        k = dict(d["kappa"])
        k["band"] = tuple(k["band"])
        d["kappa"] = KappaConfig(**k)
        return cls(**d)


@dataclass(frozen=True)
class CalibrationInfo:
    """What the calibration used: the effective one-sided miss rate per level, kappa, kappa+,
    the buffer (``regime/bucket``, ``pooled/bucket``, ``pooled/all`` or ``none``) and its size."""

    alpha: dict[float, float]
    kappa: float
    kappa_plus: float
    bucket: str
    n: int
    regime: str
    horizon_bucket: str
    conditional: bool
    capped: bool

    def as_dict(self) -> dict:
        d = asdict(self)
        d["alpha"] = {str(k): v for k, v in self.alpha.items()}
        return d


@dataclass(frozen=True)
class CalibratedForecast:
    quantiles: dict[float, float]
    info: CalibrationInfo

    def values(self) -> np.ndarray:
        return np.asarray([self.quantiles[k] for k in sorted(self.quantiles)])


@dataclass(frozen=True)
class UpdateResult:
    applied: bool
    reason: str  # "added" | "duplicate" | "conditional" | "scenario_key"


class _Cell:
    """Scores of one (regime, bucket): a ring buffer of the last ``cap`` normalised error rows."""

    def __init__(self, num_levels: int, cap: int):
        self.cap = cap
        self._rows = np.full((cap, num_levels), np.nan)
        self._scales = np.zeros(cap)
        self._horizons = np.zeros(cap, dtype=int)
        self._next = 0
        self._count = 0

    def add(self, e: np.ndarray, spread: float, horizon: int) -> None:
        """One row of normalised errors and the forecast's band width per sqrt(day)."""
        i = self._next
        self._rows[i] = e
        self._scales[i] = spread
        self._horizons[i] = horizon
        self._next = (i + 1) % self.cap
        self._count = min(self._count + 1, self.cap)

    def _order(self) -> np.ndarray:
        """Indices oldest -> newest."""
        if self._count < self.cap:
            return np.arange(self._count)
        return (np.arange(self.cap) + self._next) % self.cap

    def matrix(self) -> np.ndarray:
        return self._rows[: self._count] if self._count < self.cap else self._rows

    @property
    def scales(self) -> np.ndarray:
        return self._scales[: self._count] if self._count < self.cap else self._scales

    def ordered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = self._order()
        return self._rows[o], self._scales[o], self._horizons[o]

    def __len__(self) -> int:
        return self._count


def _order_stat(sorted_scores: np.ndarray, a: float) -> tuple[float, bool]:
    """``ceil((n+1)(1-a))``-th smallest of ``sorted_scores`` (the largest when k > n)."""
    n = sorted_scores.shape[0]
    k = math.ceil((n + 1) * (1.0 - a) - 1e-12)
    if k > n:
        return float(sorted_scores[-1]), True
    return float(sorted_scores[max(k, 1) - 1]), False


class ConformalCalibrator:
    """Buffers, adaptive levels and rolling coverage for one forecaster (thread-safe)."""

    def __init__(self, config: ConformalConfig):
        self.config = config
        L = len(config.levels)
        self._levels = np.asarray(config.levels)
        self._cells: dict[tuple[str, str], _Cell] = {
            (r, b[0]): _Cell(L, config.buffer_size) for r in config.regimes for b in config.buckets
        }
        self._nominal = np.where(self._levels >= 0.5, 1.0 - self._levels, self._levels)
        self._alpha: dict[tuple[str, str], np.ndarray] = {
            k: self._nominal.copy() for k in self._cells
        }
        self._since_trans: dict[tuple[str, str], int] = {
            k: config.adaptive.cooldown for k in self._cells
        }
        self._covered: dict[tuple[str, str], list[bool]] = {k: [] for k in self._cells}
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._scenario_keys: OrderedDict[str, None] = OrderedDict()
        self.counters = {"added": 0, "duplicate": 0, "conditional": 0, "scenario_key": 0}
        self._lock = threading.RLock()

    @classmethod
    def from_config(cls, cal: DictConfig) -> ConformalCalibrator:
        return cls(ConformalConfig.from_config(cal))

    # -- input checks -------------------------------------------------------------------------
    def _check_regime(self, regime: str) -> None:
        if regime not in self.config.regimes:
            raise InvalidParameterError("regime", regime, f"one of {list(self.config.regimes)}")

    def _level_index(self, levels: Sequence[float]) -> np.ndarray:
        lv = np.asarray(levels, dtype=float)
        idx = np.argmin(np.abs(self._levels[None, :] - lv[:, None]), axis=1)
        bad = np.abs(self._levels[idx] - lv) > _TOL
        if bad.any():
            raise InvalidParameterError(
                "quantile level", float(lv[bad][0]),
                f"one of calibration.levels={list(self.config.levels)}",
            )
        return idx

    def _split(self, quantiles_by_level: Mapping[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not quantiles_by_level:
            raise InvalidParameterError("quantiles_by_level", {}, "a non-empty {level: value} map")
        levels = np.asarray(sorted(float(k) for k in quantiles_by_level))
        values = np.asarray([float(quantiles_by_level[k]) for k in sorted(quantiles_by_level)])
        if not np.all(np.isfinite(values)):
            raise InvalidParameterError("quantiles_by_level", "non-finite value", "finite quantiles")
        return levels, values, self._level_index(levels)

    def _spread(self, levels: np.ndarray, values: np.ndarray, horizon: int) -> float:
        """The forecast's band width at ``scale_levels`` per sqrt(day): kappa's width input."""
        lo, hi = self.config.scale_levels
        il = np.flatnonzero(np.abs(levels - lo) < _TOL)
        ih = np.flatnonzero(np.abs(levels - hi) < _TOL)
        if not il.size or not ih.size:
            return float("nan")
        return float(values[ih[0]] - values[il[0]]) / math.sqrt(horizon)

    def _scale(self, levels: np.ndarray, values: np.ndarray, horizon: int) -> float:
        if self.config.score == "absolute":
            return 1.0
        if self.config.score == "sqrt_horizon":
            return math.sqrt(horizon)
        lo, hi = self.config.scale_levels
        try:
            qlo = values[np.where(np.abs(levels - lo) < _TOL)[0][0]]
            qhi = values[np.where(np.abs(levels - hi) < _TOL)[0][0]]
        except IndexError:
            raise InvalidParameterError(
                "quantiles_by_level", sorted(levels.tolist()),
                f"must include the scale levels {list(self.config.scale_levels)}",
            ) from None
        ref = max(abs(values).max(), 1.0)
        return max(float(qhi - qlo), self.config.min_scale * ref)

    # -- calibration ---------------------------------------------------------------------------
    @staticmethod
    def _pairs(levels: np.ndarray) -> dict[int, int]:
        """``{index of tau: index of 1 - tau}`` for ``tau < 0.5`` with its partner present."""
        out = {}
        for j, lv in enumerate(levels):
            if lv < 0.5 - _TOL:
                m = np.flatnonzero(np.abs(levels - (1.0 - lv)) < 1e-7)
                if m.size:
                    out[j] = int(m[0])
        return out

    def _buffer(self, regime: str, bucket: str) -> tuple[np.ndarray, np.ndarray, str]:
        cell = self._cells[(regime, bucket)]
        if len(cell) >= self.config.min_bucket:
            return cell.matrix(), np.asarray(cell.scales), f"{regime}/{bucket}"
        same = [self._cells[(r, bucket)] for r in self.config.regimes]
        n = sum(len(c) for c in same)
        if n >= self.config.min_pooled:
            return (np.concatenate([c.matrix() for c in same if len(c)]),
                    np.concatenate([c.scales for c in same if len(c)]), f"pooled/{bucket}")
        allc = [c for c in self._cells.values() if len(c)]
        n = sum(len(c) for c in allc)
        if n >= self.config.min_pooled:
            return (np.concatenate([c.matrix() for c in allc]),
                    np.concatenate([c.scales for c in allc]), "pooled/all")
        return np.zeros((0, len(self._levels))), np.zeros(0), "none"

    def rolling_coverage(self, regime: str, horizon: int) -> float | None:
        cov = self._covered[(regime, self.config.bucket_of(horizon))]
        return float(np.mean(cov)) if cov else None

    def calibrate(
        self,
        quantiles_by_level: Mapping[float, float],
        regime: str,
        horizon: int,
        conditional: bool = False,
        *,
        key: str | None = None,
        z: float | None = None,
        aci: float | None = None,
        router_entropy: float | None = None,
        state_spread: float | None = None,
    ) -> CalibratedForecast:
        """Calibrated quantiles (same levels) and :class:`CalibrationInfo`.

        ``conditional=True`` marks a what-if scenario forecast: it is calibrated the same way,
        and if ``key`` is given that key is remembered so that an ``update`` with it is refused.
        ``z`` (volatility z-score) and ``aci`` drive the dynamic alpha; ``router_entropy`` and
        ``state_spread`` feed kappa.
        """
        self._check_regime(regime)
        bucket = self.config.bucket_of(int(horizon))
        levels, values, idx = self._split(quantiles_by_level)
        with self._lock:
            if conditional and key is not None:
                self._remember(self._scenario_keys, str(key))
            scale = self._scale(levels, values, int(horizon))
            mat, scales, used = self._buffer(regime, bucket)
            a_t = self._alpha[(regime, bucket)]
            out = values.copy()
            a_eff = np.asarray([
                effective_alpha(float(a_t[i]), float(self._nominal[i]), z, aci,
                                self.config.adaptive, self.config.dynamic) for i in idx])
            alphas = {float(lv): float(a) for lv, a in zip(levels, a_eff)}
            capped = False
            n_used = 0
            if mat.shape[0]:
                sub = mat[:, idx]
                nfin = np.sum(np.isfinite(sub), axis=0)
                n_used = int(nfin.min())
                pairs = self._pairs(levels) if self.config.mode == "symmetric" else {}
                paired = {j for pr in pairs.items() for j in pr}
                for jl, jh in pairs.items():  # symmetric: one score per level pair
                    sc = np.maximum(-sub[:, jl], sub[:, jh])
                    sc = np.sort(sc[np.isfinite(sc)])
                    if sc.size == 0:
                        continue
                    a_pair = 2.0 * float(a_eff[jh])
                    adj, c = _order_stat(sc, a_pair)
                    capped |= c
                    out[jl] = values[jl] - scale * adj
                    out[jh] = values[jh] + scale * adj
                unpaired = [j for j in range(len(levels)) if j not in paired]
                if unpaired and self.config.mode == "per_level":
                    srt = np.sort(sub[:, unpaired], axis=0)  # NaN last
                    for c_j, j in enumerate(unpaired):
                        n = int(nfin[j])
                        lv = levels[j]
                        if n == 0:
                            continue
                        col = srt[:n, c_j]
                        if abs(lv - 0.5) < _TOL:
                            adj = float(np.median(col))
                        elif lv > 0.5:  # k-th smallest of e
                            adj, c = _order_stat(col, float(a_eff[j]))
                            capped |= c
                        else:  # minus the k-th smallest of -e = the k-th largest of e
                            adj, c = _order_stat(-col[::-1], float(a_eff[j]))
                            adj = -adj
                            capped |= c
                        out[j] = values[j] + scale * adj
            out = np.sort(out)
            ref = float(np.nanmedian(scales)) if np.isfinite(scales).any() else None
            width = self._spread(levels, values, int(horizon))
            k = kappa(state_spread, router_entropy, width / ref if ref else None, self.config.kappa)
            kp = kappa_plus(k, self.rolling_coverage(regime, int(horizon)), self.config.kappa)
        info = CalibrationInfo(alphas, k, kp, used, n_used, regime, bucket, bool(conditional), capped)
        return CalibratedForecast({float(lv): float(v) for lv, v in zip(levels, out)}, info)

    # -- updates ------------------------------------------------------------------------------
    def _remember(self, store: OrderedDict, key: str) -> None:
        store[key] = None
        store.move_to_end(key)
        while len(store) > self.config.max_keys:
            store.popitem(last=False)

    def seen(self, key: str) -> bool:
        return str(key) in self._keys

    def update(
        self,
        forecast_quantiles: Mapping[float, float],
        realized: float,
        regime: str,
        horizon: int,
        key: str,
        *,
        calibrated_quantiles: Mapping[float, float] | None = None,
        conditional: bool = False,
        trans: bool = False,
    ) -> UpdateResult:
        """Add the outcome of a forecast (raw ``forecast_quantiles``) to its buffer.

        Idempotent by ``key``; conditional (scenario) forecasts are refused. The adaptive
        levels are updated from the misses of ``calibrated_quantiles`` (the quantiles that were
        issued; recomputed from the current state when not given); ``trans`` is the TRANS flag
        at update time (larger learning rate, then a cooldown).
        """
        self._check_regime(regime)
        bucket = self.config.bucket_of(int(horizon))
        key = str(key)
        if not math.isfinite(float(realized)):
            raise InvalidParameterError("realized", realized, "a finite number")
        with self._lock:
            if conditional:
                self.counters["conditional"] += 1
                return UpdateResult(False, "conditional")
            if key in self._scenario_keys:
                self.counters["scenario_key"] += 1
                return UpdateResult(False, "scenario_key")
            if key in self._keys:
                self.counters["duplicate"] += 1
                return UpdateResult(False, "duplicate")
            levels, values, idx = self._split(forecast_quantiles)
            if calibrated_quantiles is None:
                issued = self.calibrate(forecast_quantiles, regime, horizon).quantiles
            else:
                issued = {float(k): float(v) for k, v in calibrated_quantiles.items()}
            cell_key = (regime, bucket)
            # adaptive levels from the misses of the issued quantiles
            in_trans = bool(trans) or self._since_trans[cell_key] < self.config.adaptive.cooldown
            a_t = self._alpha[cell_key]
            y = float(realized)
            cfg_a = self.config.adaptive
            if self.config.mode == "symmetric":
                for jl, jh in self._pairs(levels).items():
                    ql, qh = issued.get(float(levels[jl])), issued.get(float(levels[jh]))
                    if ql is None or qh is None:
                        continue
                    # a pair's half-level a: a_pair = 2a follows a_pair += lr (alpha - 1{outside})
                    half_miss = 0.5 * float(y < ql or y > qh)
                    i_l, i_h = idx[jl], idx[jh]
                    new_a = update_alpha(float(a_t[i_h]), float(self._nominal[i_h]), half_miss,
                                         in_trans, cfg_a)
                    a_t[i_l] = a_t[i_h] = new_a
            else:
                for lv, i in zip(levels, idx):
                    q = issued.get(float(lv))
                    if q is None or abs(lv - 0.5) < _TOL:
                        continue
                    miss = y > q if lv > 0.5 else y < q
                    a_t[i] = update_alpha(float(a_t[i]), float(self._nominal[i]), float(miss),
                                          in_trans, cfg_a)
            self._since_trans[cell_key] = 0 if trans else self._since_trans[cell_key] + 1
            lo, hi = self.config.kappa.band
            if lo in issued and hi in issued:
                cov = self._covered[cell_key]
                cov.append(bool(issued[lo] <= y <= issued[hi]))
                if len(cov) > self.config.kappa.window:
                    del cov[: len(cov) - self.config.kappa.window]
            scale = self._scale(levels, values, int(horizon))
            row = np.full(len(self._levels), np.nan)
            row[idx] = (y - values) / scale
            self._cells[cell_key].add(row, self._spread(levels, values, int(horizon)), int(horizon))
            self._remember(self._keys, key)
            self.counters["added"] += 1
        return UpdateResult(True, "added")

    # -- inspection & persistence --------------------------------------------------------------
    def sizes(self) -> dict[str, int]:
        return {f"{r}/{b}": len(c) for (r, b), c in self._cells.items()}

    def alpha_state(self) -> dict[str, dict[str, float]]:
        return {f"{r}/{b}": {str(lv): float(a) for lv, a in zip(self.config.levels, v)}
                for (r, b), v in self._alpha.items()}

    def to_dict(self) -> dict:
        with self._lock:
            cells = {}
            for (r, b), c in self._cells.items():
                rows, scales, horizons = c.ordered()
                cells[f"{r}|{b}"] = {
                    "rows": [[None if not np.isfinite(x) else float(x) for x in row] for row in rows],
                    "scales": [float(s) for s in scales],
                    "horizons": [int(h) for h in horizons],
                }
            return {
                "version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "cells": cells,
                "alpha": {f"{r}|{b}": [float(x) for x in v] for (r, b), v in self._alpha.items()},
                "since_trans": {f"{r}|{b}": int(v) for (r, b), v in self._since_trans.items()},
                "covered": {f"{r}|{b}": [bool(x) for x in v] for (r, b), v in self._covered.items()},
                "keys": list(self._keys),
                "scenario_keys": list(self._scenario_keys),
                "counters": dict(self.counters),
            }

    def save(self, path: str | Path) -> Path:
        """Atomic write (temp file + rename) of the whole state as JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping) -> ConformalCalibrator:
        if int(d.get("version", -1)) != FORMAT_VERSION:
            raise InvalidParameterError("version", d.get("version"), f"{FORMAT_VERSION}")
        cal = cls(ConformalConfig.from_dict(d["config"]))
        for ck, c in d["cells"].items():
            r, b = ck.split("|")
            cell = cal._cells[(r, b)]
            for row, s, h in zip(c["rows"], c["scales"], c["horizons"]):
                cell.add(np.asarray([np.nan if x is None else x for x in row], dtype=float), float(s),
                         int(h))
        for ck, v in d["alpha"].items():
            r, b = ck.split("|")
            cal._alpha[(r, b)] = np.asarray(v, dtype=float)
        for ck, v in d["since_trans"].items():
            r, b = ck.split("|")
            cal._since_trans[(r, b)] = int(v)
        for ck, v in d["covered"].items():
            r, b = ck.split("|")
            cal._covered[(r, b)] = [bool(x) for x in v]
        for k in d["keys"]:
            cal._keys[str(k)] = None
        for k in d["scenario_keys"]:
            cal._scenario_keys[str(k)] = None
        cal.counters.update({k: int(v) for k, v in d["counters"].items()})
        return cal

    @classmethod
    def load(cls, path: str | Path) -> ConformalCalibrator:
        with open(path) as fh:
            return cls.from_dict(json.load(fh))
