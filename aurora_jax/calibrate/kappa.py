"""Meta-uncertainty kappa and its coverage-aware blend kappa+ (both in [0, 1]).

    kappa  = (w_s tanh(spread / s0) + w_e H + w_w tanh(max(log(W / W_ref), 0) / w0)) / (w_s + w_e + w_w)

with ``spread`` the state spread (relative dispersion of the forecaster's latent state,
e.g. of the 1-day volatility across models), ``H`` the router entropy normalised to [0, 1],
``W`` the forecast's band scale and ``W_ref`` the median scale in the calibration buffer.
A missing component is dropped and the weights of the rest renormalised.

    kappa+ = (1 - beta) kappa + beta min(1, |cov_roll - nominal| / tol),

``cov_roll`` the rolling coverage of the calibrated central band in the same buffer (kappa+ =
kappa while there is no rolling coverage yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class KappaConfig:
    w_spread: float = 0.4
    w_entropy: float = 0.3
    w_width: float = 0.3
    spread_scale: float = 0.25
    width_scale: float = 0.7
    beta: float = 0.5
    tolerance: float = 0.1
    window: int = 100
    band: tuple[float, float] = (0.10, 0.90)

    def __post_init__(self) -> None:
        ws = (self.w_spread, self.w_entropy, self.w_width)
        if min(ws) < 0 or sum(ws) <= 0:
            raise InvalidParameterError("kappa weights", ws, "non-negative with a positive sum")
        if self.spread_scale <= 0 or self.width_scale <= 0 or self.tolerance <= 0:
            raise InvalidParameterError(
                "kappa scales", (self.spread_scale, self.width_scale, self.tolerance), "> 0"
            )
        if not 0 <= self.beta <= 1:
            raise InvalidParameterError("kappa.beta", self.beta, "[0, 1]")
        if not 0 < self.band[0] < 0.5 < self.band[1] < 1:
            raise InvalidParameterError("kappa.band", self.band, "0 < lo < 0.5 < hi < 1")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> KappaConfig:
        return cls(float(cfg.w_spread), float(cfg.w_entropy), float(cfg.w_width),
                   float(cfg.spread_scale), float(cfg.width_scale), float(cfg.beta),
                   float(cfg.tolerance), int(cfg.window), (float(cfg.band[0]), float(cfg.band[1])))

    @property
    def nominal(self) -> float:
        return self.band[1] - self.band[0]


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def kappa(
    state_spread: float | None,
    router_entropy: float | None,
    width_ratio: float | None,
    cfg: KappaConfig,
) -> float:
    parts = []
    if _ok(state_spread):
        parts.append((cfg.w_spread, math.tanh(max(state_spread, 0.0) / cfg.spread_scale)))
    if _ok(router_entropy):
        parts.append((cfg.w_entropy, min(max(router_entropy, 0.0), 1.0)))
    if _ok(width_ratio) and width_ratio > 0:
        parts.append((cfg.w_width, math.tanh(max(math.log(width_ratio), 0.0) / cfg.width_scale)))
    wsum = sum(w for w, _ in parts)
    if wsum <= 0:
        return 0.0
    return float(sum(w * v for w, v in parts) / wsum)


def kappa_plus(k: float, rolling_coverage: float | None, cfg: KappaConfig) -> float:
    if not _ok(rolling_coverage):
        return float(k)
    c = min(1.0, abs(rolling_coverage - cfg.nominal) / cfg.tolerance)
    return float((1.0 - cfg.beta) * k + cfg.beta * c)
