"""Three volatility regimes (calm / normal / volatile) from realized and implied volatility.

Realized vol ``RV_t = sqrt(A / w * sum_{i<w} r_{t-i}^2)`` (annualised, ``A`` days per year,
``w = rv_window``). Each vol measure is ranked within its own trailing ``lookback_days``
(percentile rank ``p_t`` in (0, 1], causal); the regime score is the mean of the RV rank and,
where the implied vol has enough history, the IV rank. Its log-vol z-score
``z_t = (log RV_t - mean) / sd`` over the same trailing window is exposed for the dynamic alpha.

Labels come from :class:`HysteresisFilter` on the score with thresholds ``quantiles``
(calm below the first, volatile above the second), a hysteresis ``band`` and ``min_dwell``
days, so labels do not flip daily. Everything at ``t`` uses data stamped ``<= t`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.calibrate.hysteresis import HysteresisFilter
from aurora_jax.errors import InvalidParameterError

REGIMES: tuple[str, str, str] = ("calm", "normal", "volatile")


def align_asof(series: pd.Series | None, index: pd.DatetimeIndex, max_stale_days: float) -> pd.Series:
    """Last value of ``series`` stamped ``<= t`` for each ``t`` in ``index``; NaN when older
    than ``max_stale_days`` or absent."""
    if series is None or len(series) == 0:
        return pd.Series(np.nan, index=index)
    s = series.dropna().sort_index()
    left = pd.DataFrame({"t": index})
    right = pd.DataFrame({"t": s.index, "v": s.to_numpy(dtype=float), "ts": s.index})
    left["t"] = left["t"].astype(right["t"].dtype)
    merged = pd.merge_asof(left, right, on="t", direction="backward")
    stale = (merged["t"] - merged["ts"]) > pd.Timedelta(days=max_stale_days)
    vals = merged["v"].where(~stale)
    return pd.Series(vals.to_numpy(dtype=float), index=index)


@dataclass(frozen=True)
class VolRegimeClassifier:
    """Causal calm / normal / volatile labels with hysteresis and minimum dwell."""

    rv_window: int = 20
    annualization: float = 365.0
    lookback_days: int = 730
    min_history: int = 180
    iv_min_history: int = 90
    iv_max_stale_days: float = 3.0
    quantiles: tuple[float, float] = (0.33, 0.67)
    band: float = 0.05
    min_dwell: int = 10

    def __post_init__(self) -> None:
        if self.rv_window < 2:
            raise InvalidParameterError("rv_window", self.rv_window, "an integer >= 2")
        if not self.min_history <= self.lookback_days:
            raise InvalidParameterError(
                "min_history", self.min_history, f"<= lookback_days={self.lookback_days}"
            )
        lo, hi = self.quantiles
        if not 0.0 < lo < hi < 1.0:
            raise InvalidParameterError("quantiles", self.quantiles, "0 < lo < hi < 1")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> VolRegimeClassifier:
        return cls(
            rv_window=int(cfg.rv_window),
            annualization=float(cfg.annualization),
            lookback_days=int(cfg.lookback_days),
            min_history=int(cfg.min_history),
            iv_min_history=int(cfg.iv_min_history),
            iv_max_stale_days=float(cfg.iv_max_stale_days),
            quantiles=(float(cfg.quantiles[0]), float(cfg.quantiles[1])),
            band=float(cfg.band),
            min_dwell=int(cfg.min_dwell),
        )

    def features(self, returns: pd.Series, iv: pd.Series | None = None) -> pd.DataFrame:
        """Columns ``rv`` (annualised %), ``iv``, ``rank_rv``, ``rank_iv``, ``score``, ``z``."""
        r = returns.astype(float)
        rv = np.sqrt(self.annualization * (r**2).rolling(self.rv_window).mean()) * 100.0
        log_rv = np.log(rv.clip(lower=1e-8))
        roll = log_rv.rolling(self.lookback_days, min_periods=self.min_history)
        rank_rv = roll.rank(pct=True)
        z = (log_rv - roll.mean()) / roll.std()
        ivs = align_asof(iv, r.index, self.iv_max_stale_days)
        rank_iv = np.log(ivs.clip(lower=1e-8)).rolling(
            self.lookback_days, min_periods=self.iv_min_history
        ).rank(pct=True)
        score = pd.concat([rank_rv, rank_iv], axis=1).mean(axis=1, skipna=True)
        score[rank_rv.isna()] = np.nan
        return pd.DataFrame(
            {"rv": rv, "iv": ivs, "rank_rv": rank_rv, "rank_iv": rank_iv, "score": score, "z": z}
        )

    def classify(self, returns: pd.Series, iv: pd.Series | None = None) -> pd.DataFrame:
        """``features`` plus ``state`` (0/1/2, -1 before enough history) and ``label``."""
        feats = self.features(returns, iv)
        filt = HysteresisFilter(self.quantiles, band=self.band, min_dwell=self.min_dwell)
        states = filt(feats["score"].to_numpy())
        feats["state"] = states
        feats["label"] = [REGIMES[s] if s >= 0 else "unknown" for s in states]
        return feats

    def label_at(self, returns: pd.Series, iv: pd.Series | None, as_of: pd.Timestamp) -> str:
        """The label at ``as_of`` using only data stamped ``<= as_of``."""
        r = returns[returns.index <= as_of]
        ivs = None if iv is None else iv[iv.index <= as_of]
        lab = self.classify(r, ivs)["label"]
        return str(lab.iloc[-1]) if len(lab) else "unknown"
