"""Adaptive miscoverage level: online update from the signed coverage error (Gibbs & Candès 2021).

For a one-sided quantile with nominal miss rate ``a`` (``1 - tau`` above the median, ``tau``
below) the working level follows

    a_{t+1} = clip(a_t + gamma_t * (a - err_t), a * min_ratio, a * max_ratio),

``err_t = 1`` when the outcome fell beyond the issued quantile. The learning rate is
``lr_trans`` while the TRANS flag is on and for ``cooldown`` updates after it went off, else
``lr``. The clip bounds the inflation (``min_ratio``: at most ``1/min_ratio`` times fewer
misses allowed) and the deflation (``max_ratio``).

The dynamic level multiplies the working level before use,

    a_eff = clip(a_t * exp(-c_z * max(z - z0, 0) - c_aci * max(ACI - aci0, 0)), same bounds),

with ``z`` the volatility z-score and ``ACI`` the ARMA Crossbar Index at forecast time, so that
bands widen in stressed or structurally unstable markets (``c_z = c_aci = 0`` disables it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class AdaptiveAlphaConfig:
    enabled: bool = True
    lr: float = 0.01
    lr_trans: float = 0.03
    cooldown: int = 20
    min_ratio: float = 0.5
    max_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.lr < 0 or self.lr_trans < 0:
            raise InvalidParameterError("adaptive_alpha.lr", (self.lr, self.lr_trans), ">= 0")
        if self.cooldown < 0:
            raise InvalidParameterError("adaptive_alpha.cooldown", self.cooldown, ">= 0")
        if not 0 < self.min_ratio <= 1.0 <= self.max_ratio:
            raise InvalidParameterError(
                "adaptive_alpha.min_ratio/max_ratio", (self.min_ratio, self.max_ratio),
                "0 < min_ratio <= 1 <= max_ratio",
            )

    @classmethod
    def from_config(cls, cfg: DictConfig) -> AdaptiveAlphaConfig:
        return cls(bool(cfg.enabled), float(cfg.lr), float(cfg.lr_trans), int(cfg.cooldown),
                   float(cfg.min_ratio), float(cfg.max_ratio))


@dataclass(frozen=True)
class DynamicAlphaConfig:
    z_coef: float = 0.0
    z_threshold: float = 1.0
    aci_coef: float = 0.0
    aci_threshold: float = 2.0

    def __post_init__(self) -> None:
        if self.z_coef < 0 or self.aci_coef < 0:
            raise InvalidParameterError("dynamic_alpha coefs", (self.z_coef, self.aci_coef), ">= 0")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DynamicAlphaConfig:
        return cls(float(cfg.z_coef), float(cfg.z_threshold), float(cfg.aci_coef),
                   float(cfg.aci_threshold))

    def multiplier(self, z: float | None, aci: float | None) -> float:
        """``exp(-c_z max(z - z0, 0) - c_aci max(ACI - aci0, 0))``; missing inputs count as 0."""
        e = 0.0
        if z is not None and math.isfinite(z):
            e += self.z_coef * max(z - self.z_threshold, 0.0)
        if aci is not None and math.isfinite(aci):
            e += self.aci_coef * max(aci - self.aci_threshold, 0.0)
        return math.exp(-e)


def bounds(a_nominal: float, cfg: AdaptiveAlphaConfig) -> tuple[float, float]:
    return a_nominal * cfg.min_ratio, min(a_nominal * cfg.max_ratio, 0.5)


def update_alpha(
    a_t: float, a_nominal: float, miss: float, in_trans_or_cooldown: bool, cfg: AdaptiveAlphaConfig
) -> float:
    """One Gibbs–Candès step ``a + lr (a_nominal - miss)`` with the bounded range (``miss`` is
    1/0, or 1/2 for the half-level of a symmetric pair)."""
    if not cfg.enabled:
        return a_nominal
    lr = cfg.lr_trans if in_trans_or_cooldown else cfg.lr
    lo, hi = bounds(a_nominal, cfg)
    return min(max(a_t + lr * (a_nominal - float(miss)), lo), hi)


def effective_alpha(
    a_t: float, a_nominal: float, z: float | None, aci: float | None,
    cfg: AdaptiveAlphaConfig, dyn: DynamicAlphaConfig,
) -> float:
    """Working level times the dynamic multiplier, clipped to the same bounds."""
    lo, hi = bounds(a_nominal, cfg)
    return min(max(a_t * dyn.multiplier(z, aci), lo), hi)
