"""Acceptance state machine PASS / DERISK / BLOCK for forecast-driven trading.

Each observation carries (any may be missing): the calibration certificate ``kappa+``
(higher is better), whether the realized value fell inside the forecast band (a miss
extends the *miss streak*, a hit resets it), the forecast latency, and the surprisal
``-log p(realized)`` under the forecast. Severity of an observation is the worst of

    BLOCK   if kappa+ < kappa_block  or streak >= miss_streak_block  or latency > latency_block
            or surprisal > surprisal_block
    DERISK  same with the *_derisk thresholds
    PASS    otherwise.

Transitions:
* worsening is immediate: the state jumps to the severity computed with the entry thresholds;
* improving needs hysteresis and dwell: the severity is recomputed with exit thresholds
  shifted by the hysteresis margins (kappa+ must exceed ``kappa_x + kappa_hysteresis``,
  latency stay below ``latency_x - latency_hysteresis_ms``, surprisal below
  ``surprisal_x - surprisal_hysteresis``), the current state must have lasted at least
  ``min_dwell`` observations, and the state improves one level per step
  (BLOCK -> DERISK -> PASS).

The size multiplier is 1 in PASS, ``derisk_multiplier`` in DERISK, 0 in BLOCK.
States are plain frozen dataclasses; :meth:`AcceptanceState.to_dict` / ``from_dict`` are
used by :mod:`aurora_jax.risk.snapshot`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import IntEnum

from aurora_jax.errors import InvalidParameterError


class Level(IntEnum):
    PASS = 0
    DERISK = 1
    BLOCK = 2


@dataclass(frozen=True)
class AcceptanceConfig:
    """``cfg.risk.acceptance``."""

    kappa_derisk: float
    kappa_block: float
    kappa_hysteresis: float
    miss_streak_derisk: int
    miss_streak_block: int
    latency_derisk_ms: float
    latency_block_ms: float
    latency_hysteresis_ms: float
    surprisal_derisk: float
    surprisal_block: float
    surprisal_hysteresis: float
    min_dwell: int
    derisk_multiplier: float

    def __post_init__(self) -> None:
        if not self.kappa_block <= self.kappa_derisk:
            raise InvalidParameterError("acceptance.kappa_block", self.kappa_block, f"<= kappa_derisk = {self.kappa_derisk}")
        if not 1 <= self.miss_streak_derisk <= self.miss_streak_block:
            raise InvalidParameterError("acceptance.miss_streak_derisk", self.miss_streak_derisk, f"in [1, miss_streak_block = {self.miss_streak_block}]")
        if not self.latency_derisk_ms <= self.latency_block_ms:
            raise InvalidParameterError("acceptance.latency_derisk_ms", self.latency_derisk_ms, f"<= latency_block_ms = {self.latency_block_ms}")
        if not self.surprisal_derisk <= self.surprisal_block:
            raise InvalidParameterError("acceptance.surprisal_derisk", self.surprisal_derisk, f"<= surprisal_block = {self.surprisal_block}")
        for name in ("kappa_hysteresis", "latency_hysteresis_ms", "surprisal_hysteresis"):
            if getattr(self, name) < 0:
                raise InvalidParameterError(f"acceptance.{name}", getattr(self, name), ">= 0")
        if self.min_dwell < 0:
            raise InvalidParameterError("acceptance.min_dwell", self.min_dwell, ">= 0")
        if not 0 <= self.derisk_multiplier <= 1:
            raise InvalidParameterError("acceptance.derisk_multiplier", self.derisk_multiplier, "in [0, 1]")

    @classmethod
    def from_cfg(cls, c) -> AcceptanceConfig:
        ints = {"miss_streak_derisk", "miss_streak_block", "min_dwell"}
        return cls(**{k: (int(c[k]) if k in ints else float(c[k])) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Observation:
    """One evaluation of the forecast (``None`` = not available, ignored)."""

    kappa_plus: float | None = None
    covered: bool | None = None
    latency_ms: float | None = None
    surprisal: float | None = None


@dataclass(frozen=True)
class AcceptanceState:
    level: Level = Level.PASS
    dwell: int = 0
    miss_streak: int = 0
    steps: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["level"] = self.level.name
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AcceptanceState:
        if d.get("level") not in Level.__members__:
            raise InvalidParameterError("acceptance.level", d.get("level"), f"one of {list(Level.__members__)}")
        return cls(Level[d["level"]], int(d["dwell"]), int(d["miss_streak"]), int(d["steps"]))


def _severity(obs: Observation, streak: int, cfg: AcceptanceConfig, margin: float) -> Level:
    """Worst level triggered; ``margin`` = 0 for entry, 1 for exit thresholds (hysteresis)."""
    hk, hl, hs = (cfg.kappa_hysteresis * margin, cfg.latency_hysteresis_ms * margin,
                  cfg.surprisal_hysteresis * margin)
    sev = Level.PASS
    if obs.kappa_plus is not None:
        if obs.kappa_plus < cfg.kappa_block + hk:
            return Level.BLOCK
        if obs.kappa_plus < cfg.kappa_derisk + hk:
            sev = Level.DERISK
    if streak >= cfg.miss_streak_block:
        return Level.BLOCK
    if streak >= cfg.miss_streak_derisk:
        sev = Level.DERISK
    if obs.latency_ms is not None:
        if obs.latency_ms > cfg.latency_block_ms - hl:
            return Level.BLOCK
        if obs.latency_ms > cfg.latency_derisk_ms - hl:
            sev = Level.DERISK
    if obs.surprisal is not None:
        if obs.surprisal > cfg.surprisal_block - hs:
            return Level.BLOCK
        if obs.surprisal > cfg.surprisal_derisk - hs:
            sev = Level.DERISK
    return sev


def step(state: AcceptanceState, obs: Observation, cfg: AcceptanceConfig) -> AcceptanceState:
    """Apply one observation (rules in the module docstring)."""
    streak = state.miss_streak
    if obs.covered is not None:
        streak = 0 if obs.covered else streak + 1
    entry = _severity(obs, streak, cfg, 0.0)
    if entry > state.level:
        return AcceptanceState(entry, 0, streak, state.steps + 1)
    exit_sev = _severity(obs, streak, cfg, 1.0)
    if exit_sev < state.level and state.dwell >= cfg.min_dwell:
        return AcceptanceState(Level(state.level - 1), 0, streak, state.steps + 1)
    return replace(state, dwell=state.dwell + 1, miss_streak=streak, steps=state.steps + 1)


def size_multiplier(level: Level, cfg: AcceptanceConfig) -> float:
    """1 (PASS), ``derisk_multiplier`` (DERISK) or 0 (BLOCK)."""
    return {Level.PASS: 1.0, Level.DERISK: cfg.derisk_multiplier, Level.BLOCK: 0.0}[level]
