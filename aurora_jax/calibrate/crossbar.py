"""ARMA Crossbar Index (ACI) and the TRANS(ition) flag.

On a trailing window, fit AR(p) by OLS and ARMA(p,1) by CSS (:mod:`aurora_jax.calibrate.arma`):

    ACI = || phi_AR - phi_ARMA ||_2 / (sigma_phi + eps),

with ``sigma_phi = sqrt(||se(phi_AR)||^2 + ||se(phi_ARMA)||^2)``, the standard error of the
difference (OLS errors for AR, Gauss–Newton errors for the CSS fit). A stable linear structure
gives ``phi_AR ~ phi_ARMA`` (ACI of order 1); when a moving-average component appears the two
AR estimates cross apart and ACI grows. When the ARMA is not identified (near white noise,
``phi ~ -theta``) its AR coefficient wanders but its standard error is large, so ACI stays small. TRANS is on when ACI rises above ``on`` and off again
when it falls below ``off`` (hysteresis, ``min_dwell`` steps), or while a change-point alarm is
younger than ``cp_hold`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Bool, Float
from omegaconf import DictConfig

from aurora_jax.calibrate.arma import fit_ar, fit_arma
from aurora_jax.calibrate.hysteresis import HysteresisFilter
from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class CrossbarResult:
    aci: float
    phi_ar: np.ndarray
    phi_arma: np.ndarray
    sigma_phi: float


def crossbar_index(x: Float[np.ndarray, " n"], p: int = 1, eps: float = 1e-6) -> CrossbarResult:
    """ACI of one window of returns."""
    ar = fit_ar(x, p)
    arma = fit_arma(x, p)
    sigma = float(np.sqrt(np.sum(ar.phi_se**2) + np.sum(arma.phi_se**2)))
    aci = float(np.linalg.norm(ar.phi - arma.phi)) / (sigma + eps)
    return CrossbarResult(aci, ar.phi, arma.phi, sigma)


@dataclass(frozen=True)
class TransFlag:
    """Hysteresis on ACI (on above ``on``, off below ``off``) OR a recent change-point alarm."""

    on: float = 2.0
    off: float = 1.0
    min_dwell: int = 1
    cp_hold: int = 14

    def __post_init__(self) -> None:
        if not 0 <= self.off < self.on:
            raise InvalidParameterError("off", self.off, f"0 <= off < on={self.on}")

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TransFlag:
        return cls(float(cfg.aci_on), float(cfg.aci_off), int(cfg.min_dwell), int(cfg.cp_hold))

    def filter(self) -> HysteresisFilter:
        mid = 0.5 * (self.on + self.off)
        return HysteresisFilter((mid,), band=0.5 * (self.on - self.off), min_dwell=self.min_dwell)

    def __call__(
        self,
        aci: Float[np.ndarray, " t"],
        cp_alarm: Bool[np.ndarray, " t"] | None = None,
    ) -> Bool[np.ndarray, " t"]:
        aci = np.asarray(aci, dtype=float)
        trans = self.filter()(aci) == 1
        if cp_alarm is not None:
            cp = np.asarray(cp_alarm, dtype=bool)
            if cp.shape != aci.shape:
                raise InvalidParameterError("cp_alarm", cp.shape, f"shape {aci.shape}")
            recent = np.zeros_like(cp)
            last = -(10**9)
            for t, a in enumerate(cp):
                if a:
                    last = t
                recent[t] = t - last < self.cp_hold
            trans = trans | recent
        return trans
