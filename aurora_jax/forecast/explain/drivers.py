"""Per-forecast drivers: the top blocks behind upside risk, downside risk and trend direction.

For one forecast with block aggregates ``x`` (:func:`~aurora_jax.forecast.explain.blocks.block_features`)
the surrogate gives, per target ``t`` of the horizon, the block contributions ``c_{G,t}(x)``
(:mod:`~aurora_jax.forecast.explain.surrogate`: exact additive Shapley values against the training
forecasts). The drivers of a target are the ``top_k`` blocks by ``|c_G|``, each with

* ``sign``: ``+`` raises the quantity (a wider upper / lower tail, a higher P50 drift), ``-`` lowers it;
* ``effect``: ``c_G`` in the target's units (log width or log-return);
* ``effect_pct``: for widths modelled in logs, ``100 (exp(c_G) - 1)`` = percent change of the width;
  otherwise ``100 c_G`` = percentage points of price.

A target whose held-out fidelity ``R^2`` is below ``min_fidelity`` (or undefined) is reported as
unreliable with the reason, and no drivers are listed for it.

The call is numpy only (no JAX dispatch): a few microseconds of arithmetic on ~40 features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aurora_jax.errors import InvalidParameterError
from aurora_jax.forecast.explain.blocks import BLOCK_LABELS, BLOCKS, block_features, trend_paths_of
from aurora_jax.forecast.explain.surrogate import TARGET_KINDS, Surrogate

ROLES: dict[str, str] = {"upside": "upside", "downside": "downside", "trend": "trend"}
QUANTITY: dict[str, str] = {
    "upside": "P95 - P50 of the log-return (upper width)",
    "downside": "P50 - P5 of the log-return (lower width)",
    "trend": "P50 of the log-return (drift)",
}


@dataclass(frozen=True)
class Explainable:
    """What one forecast is explained from: its ModelInputs and, when available, the engine's
    trend paths ``(4, h)`` (combined, SSM, AR, TCN) of the same forecast."""

    inputs: object
    trend_paths: np.ndarray | None = None


def as_explainable(x) -> Explainable:
    """Accepts an :class:`Explainable`, a ModelInputs, or ``(ModelInputs, EngineOutput)``."""
    if isinstance(x, Explainable):
        return x
    if isinstance(x, tuple) and len(x) == 2:
        inputs, out = x
        return Explainable(inputs, None if out is None else trend_paths_of(out))
    if hasattr(x, "regime") and hasattr(x, "iv_path"):
        return Explainable(x, None)
    raise InvalidParameterError("inputs_or_forecast", type(x).__name__,
                                "ModelInputs, (ModelInputs, EngineOutput) or Explainable")


def _target_summary(kind: str, contrib: np.ndarray, pred: float, base: float, r2: float, top_k: int,
                    min_fidelity: float, log_width: bool) -> dict:
    fid = float(r2) if math.isfinite(float(r2)) else None
    out: dict = {"quantity": QUANTITY[kind], "fidelity_r2": fid, "predicted": float(pred), "baseline": float(base),
                 "units": "log width" if (log_width and kind != "trend") else "log-return"}
    if fid is None or fid < min_fidelity:
        why = ("undefined (the engine's forecasts do not vary in this quantity)" if fid is None
               else f"{fid:.3f}")
        out.update(reliable=False, drivers=[],
                   reason=f"surrogate fidelity R^2 {why} < explain.min_fidelity={min_fidelity:g} on held-out "
                          f"forecasts: drivers for this quantity would be invented, so none are given")
        return out
    order = np.argsort(-np.abs(contrib), kind="stable")[:top_k]
    drivers = []
    for j in order:
        c = float(contrib[j])
        pct = 100.0 * math.expm1(c) if (log_width and kind != "trend") else 100.0 * c
        drivers.append({"block": BLOCKS[j], "label": BLOCK_LABELS[BLOCKS[j]], "sign": "+" if c >= 0 else "-",
                        "effect": c, "effect_pct": pct})
    out.update(reliable=True, drivers=drivers, reason=None)
    return out


def drivers_for(inputs_or_forecast, surrogate: Surrogate, horizon: int | None = None, *,
                top_k: int = 3, min_fidelity: float = 0.5) -> dict:
    """Top ``top_k`` drivers of upside risk, downside risk and trend direction (module docstring).

    ``inputs_or_forecast``: ModelInputs, ``(ModelInputs, EngineOutput)`` or :class:`Explainable`
    for ONE forecast; ``horizon``: the forecast's horizon (the surrogate's nearest fitted horizon
    at or above it is used). ``top_k`` / ``min_fidelity`` default to ``model.explain``'s values
    when the caller passes them from the config.
    """
    if isinstance(top_k, bool) or int(top_k) < 1:
        raise InvalidParameterError("explain.top_k", top_k, "an integer >= 1")
    ex = as_explainable(inputs_or_forecast)
    x = block_features(ex.inputs, ex.trend_paths, surrogate.trend_steps)
    if x.ndim != 1 or x.shape[0] != len(surrogate.feature_names):
        raise InvalidParameterError("inputs_or_forecast", x.shape,
                                    f"one forecast with {len(surrogate.feature_names)} block features")
    h = surrogate.horizon_for(horizon)
    cols = [surrogate.target_index(h, k) for k in TARGET_KINDS]
    contrib = surrogate.contributions(x[None, :])[0][:, cols]          # (B, 3)
    pred = surrogate.intercept[cols] + contrib.sum(axis=0)
    out = {"horizon": h, "requested_horizon": None if horizon is None else int(horizon),
           "trend_components": "given" if ex.trend_paths is not None else "not given (neutral)",
           "surrogate": {k: surrogate.meta.get(k) for k in ("engine_version", "asset_id", "fitted_at")}}
    for i, kind in enumerate(TARGET_KINDS):
        out[ROLES[kind]] = _target_summary(kind, contrib[:, i], pred[i], surrogate.intercept[cols[i]],
                                           surrogate.fidelity[cols[i]], int(top_k), float(min_fidelity),
                                           surrogate.log_widths)
    out["reliable"] = all(out[ROLES[k]]["reliable"] for k in TARGET_KINDS)
    return out


def drivers_from_config(inputs_or_forecast, surrogate: Surrogate, explain_cfg, horizon: int | None = None) -> dict:
    """:func:`drivers_for` with ``top_k`` / ``min_fidelity`` from ``model.explain``."""
    return drivers_for(inputs_or_forecast, surrogate, horizon, top_k=int(explain_cfg.top_k),
                       min_fidelity=float(explain_cfg.min_fidelity))


def ranked_blocks(drivers: dict, role: str) -> Sequence[str]:
    """Block names of one role's drivers, strongest first."""
    return [d["block"] for d in drivers[role]["drivers"]]
