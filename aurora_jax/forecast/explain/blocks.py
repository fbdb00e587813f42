"""High-level feature-block aggregates of one forecast's conditioning set (the surrogate's inputs).

A forecast is conditioned on :class:`~aurora_jax.features.inputs.ModelInputs` and, inside the
engine, on the trend ensemble's mean paths. The surrogate sees a short vector ``x`` of named
aggregates grouped into the blocks of :data:`BLOCKS`:

* ``trend``  -- trend components: the combined trend and each component's (SSM, AR, TCN) mean
  normalized return over the first ``trend_steps`` steps, RevIN ``loc / scale``, short/long
  momentum z-scores and the drawdown;
* ``vol``    -- IV / vol: ``log iv_1`` (first step of the IV path), the IV path's log slope,
  ``log rv``, ``log scale`` (RevIN), IV over realized vol, the IV z-score and change, the
  realized-vol ratios, skew (option skew z-scores, return skewness / kurtosis), regime id;
* ``market_maker`` -- Gamma_Squeeze, Inventory_Unwind, Basis_Pressure indices;
* ``funding_basis`` -- funding percentile / z / annualised level, basis percentile / z;
* ``onchain`` -- on-chain activity z-scores and the volume z-score;
* ``macro``  -- DXY, rates and equity change z-scores, and the correlation with BTC (cross-asset).

Regime entries of masked blocks are 0 in the regime vector, so a missing modality contributes
nothing. Trend-component features need the engine's trend output; without it they are NaN and
the surrogate imputes its training mean (a neutral contribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from jaxtyping import Float

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.regime_vector import RegimeLayout, regime_layout

TREND_PATHS: tuple[str, ...] = ("combined", "ssm", "ar", "tcn")
"""Rows of the ``trend_paths`` argument: the combined trend, then the components (COMPONENTS order)."""

_REGIME_FEATURES: dict[str, tuple[str, ...]] = {
    "trend": ("ret_short_z", "ret_long_z", "drawdown", "drawdown_age"),
    "vol": ("log_iv_over_rv", "iv_z", "log_iv_change_short", "log_rv_ratio", "log_rv_hourly_ratio",
            "skew_z", "skew_change_short_z", "skew_slow", "kurt_slow"),
    "funding_basis": ("funding_pct", "funding_z", "funding_annual", "basis_pct", "basis_z"),
    "onchain": ("onchain_0_z", "onchain_1_z", "onchain_2_z", "onchain_3_z", "log_volume_z"),
    "macro": ("dxy_change_short_z", "dxy_change_long_z", "rates_change_short_z", "rates_change_long_z",
              "equity_change_short_z", "equity_change_long_z", "corr_btc"),
}

_DERIVED: dict[str, tuple[str, ...]] = {
    "trend": tuple(f"trend_{p}" for p in TREND_PATHS) + ("loc_over_scale",),
    "vol": ("log_iv_1", "log_iv_slope", "log_rv", "log_scale", "regime_id"),
    "market_maker": ("gamma_squeeze", "inventory_unwind", "basis_pressure"),
}

BLOCKS: tuple[str, ...] = ("trend", "vol", "market_maker", "funding_basis", "onchain", "macro")
"""The feature blocks drivers are reported for."""

BLOCK_LABELS: dict[str, str] = {
    "trend": "trend components", "vol": "IV / vol", "market_maker": "market-maker indices",
    "funding_basis": "funding & basis", "onchain": "on-chain flows", "macro": "macro & cross-asset",
}


@dataclass(frozen=True)
class FeatureSpec:
    """Names, blocks and regime-vector positions of the surrogate's input features."""

    names: tuple[str, ...]
    blocks: tuple[str, ...]                 # block of each feature
    regime_pos: tuple[int, ...]             # regime index of each regime feature (-1: derived)
    regime_dim: int

    @property
    def dim(self) -> int:
        return len(self.names)

    def block_columns(self, block: str) -> np.ndarray:
        return np.asarray([i for i, b in enumerate(self.blocks) if b == block], dtype=int)


@lru_cache(maxsize=8)
def feature_spec(regime_dim: int) -> FeatureSpec:
    """The feature layout for regime vectors of length ``regime_dim``."""
    lay: RegimeLayout = regime_layout(int(regime_dim))
    names, blocks, pos = [], [], []
    for b in BLOCKS:
        for n in _DERIVED.get(b, ()):
            names.append(n)
            blocks.append(b)
            pos.append(-1)
        for n in _REGIME_FEATURES.get(b, ()):
            names.append(n)
            blocks.append(b)
            pos.append(lay.index(n))
    return FeatureSpec(tuple(names), tuple(blocks), tuple(pos), int(regime_dim))


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def block_features(inputs, trend_paths: Float[np.ndarray, "*batch 4 steps"] | None = None,
                   trend_steps: int = 1) -> Float[np.ndarray, "*batch features"]:
    """``x`` of shape ``(..., spec.dim)`` from (stacked) ModelInputs and optional trend paths.

    ``trend_paths``: ``(..., 4, h)`` normalized mean paths (:data:`TREND_PATHS` order) or None;
    the trend features are the means over the first ``min(trend_steps, h)`` steps.
    """
    if int(trend_steps) < 1:
        raise InvalidParameterError("explain.trend_steps", trend_steps, "an integer >= 1")
    regime = _arr(inputs.regime)
    spec = feature_spec(int(regime.shape[-1]))
    batch = regime.shape[:-1]
    iv = np.maximum(_arr(inputs.iv_path), 1e-6)
    rv = np.maximum(_arr(inputs.rv_level), 1e-6)
    loc, scale = _arr(inputs.revin_loc), np.maximum(_arr(inputs.revin_scale), 1e-12)
    mm = _arr(inputs.mm_indices)
    if trend_paths is None:
        trend = np.full(batch + (len(TREND_PATHS),), np.nan)
    else:
        tp = _arr(trend_paths)
        if tp.shape[-2] != len(TREND_PATHS) or tp.shape[:-2] != batch:
            raise InvalidParameterError("trend_paths", tp.shape, f"{batch + (len(TREND_PATHS),)} + (steps,)")
        k = min(int(trend_steps), tp.shape[-1])
        trend = tp[..., :k].mean(axis=-1)
    derived = {
        **{f"trend_{p}": trend[..., j] for j, p in enumerate(TREND_PATHS)},
        "loc_over_scale": loc / scale,
        "log_iv_1": np.log(iv[..., 0]),
        "log_iv_slope": np.log(iv[..., -1]) - np.log(iv[..., 0]),
        "log_rv": np.log(rv),
        "log_scale": np.log(scale),
        "regime_id": _arr(inputs.regime_id),
        "gamma_squeeze": mm[..., 0], "inventory_unwind": mm[..., 1], "basis_pressure": mm[..., 2],
    }
    out = np.empty(batch + (spec.dim,), dtype=np.float64)
    for i, (n, p) in enumerate(zip(spec.names, spec.regime_pos)):
        out[..., i] = derived[n] if p < 0 else regime[..., p]
    return out


def trend_paths_of(output) -> Float[np.ndarray, "*batch 4 steps"]:
    """``(..., 4, h)`` trend paths from an :class:`~aurora_jax.forecast.engine.EngineOutput`."""
    mean = _arr(output.trend_mean)
    comps = _arr(output.components)
    return np.concatenate([mean[..., None, :], comps], axis=-2)
