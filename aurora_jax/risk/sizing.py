"""Position sizing: fractional Kelly with risk multipliers, limits, a lot floor and a CVaR gate.

    q = min( floor_lot(r E M / d),  q_max_lev,  q_max_exp,  floor_lot(tau / CVaR95(unit)) )

* ``r = clip(c * f*, 0, r_max)`` is the fraction of equity ``E`` put at risk, with the Kelly
  fraction of a bet that wins ``b`` per unit risked with probability ``p``:
  ``f* = p - (1 - p) / b`` and ``c`` the fractional-Kelly factor.
* ``d = stop distance + transaction cost`` per unit (price units): costs widen the
  effective loss of a stopped-out trade.
* ``M = lambda_cal * lambda_reg * lambda_liq * lambda_dd * lambda_lat`` in [0, 1]:
    - ``lambda_cal = clip(1 - max(0, -e) / tol, 0, 1)`` with the signed coverage error
      ``e = realized - nominal`` coverage of the forecast band: a cone that covers too
      little under-states risk and shrinks the size; an over-covering cone is already
      conservative (wider stops, larger CVaR) and is not penalised twice,
    - ``lambda_reg = m[regime] * (trans_multiplier if TRANS else 1)``,
    - ``lambda_liq = clip(1 - spread_bps / spread_max_bps, 0, 1)``,
    - ``lambda_dd  = clip(1 - drawdown / drawdown_max, 0, 1) ** drawdown_power``,
    - ``lambda_lat = 1`` up to ``latency_ok``, linear to 0 at ``latency_max``.
* ``q_max_lev = floor_lot(max_leverage E / price)``,
  ``q_max_exp = floor_lot(max_exposure_frac E / price)``.
* CVaR gate: ``q <= tau / CVaR95(unit)``, ``tau = cvar_budget_frac * E`` and ``CVaR95(unit)``
  the 95% expected shortfall of the loss of one unit over the holding horizon (a forecast
  with ``CVaR95(unit) <= 0`` -- no loss even in the tail -- leaves the gate unbound).

``floor_lot(x) = lot * floor(x / lot)``: every term is floored, so ``q`` is a whole number
of lots; each term is non-increasing in costs, tail risk and drawdown, hence so is ``q``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aurora_jax.errors import InvalidParameterError

_ULP_GUARD = 1e-12  # relative: x / lot = 2.9999999999996 (float noise of the division) counts as 3


@dataclass(frozen=True)
class SizingConfig:
    """``cfg.risk.sizing`` (meaning in the module docstring)."""

    kelly_fraction: float
    r_max: float
    max_leverage: float
    max_exposure_frac: float
    cvar_budget_frac: float
    calibration_tolerance: float
    regime_multiplier: Mapping[str, float]
    trans_multiplier: float
    spread_max_bps: float
    drawdown_max: float
    drawdown_power: float
    latency_ok_ms: float
    latency_max_ms: float

    def __post_init__(self) -> None:
        pos = ("kelly_fraction", "r_max", "max_leverage", "max_exposure_frac", "cvar_budget_frac",
               "calibration_tolerance", "spread_max_bps", "drawdown_max", "drawdown_power")
        for name in pos:
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InvalidParameterError(f"sizing.{name}", v, "finite > 0")
        if not 0 <= self.trans_multiplier <= 1:
            raise InvalidParameterError("sizing.trans_multiplier", self.trans_multiplier, "in [0, 1]")
        bad = {k: v for k, v in self.regime_multiplier.items() if not 0 <= v <= 1}
        if bad:
            raise InvalidParameterError("sizing.regime_multiplier", bad, "values in [0, 1]")
        if not 0 <= self.latency_ok_ms < self.latency_max_ms:
            raise InvalidParameterError("sizing.latency_ok_ms", self.latency_ok_ms, f"in [0, latency_max_ms = {self.latency_max_ms})")

    @classmethod
    def from_cfg(cls, c) -> SizingConfig:
        d = {k: c[k] for k in cls.__dataclass_fields__}
        d["regime_multiplier"] = {str(k): float(v) for k, v in c.regime_multiplier.items()}
        return cls(**{k: (v if k == "regime_multiplier" else float(v)) for k, v in d.items()})


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def lambda_cal(coverage_error: float, cfg: SizingConfig) -> float:
    """``clip(1 - max(0, -e) / tol, 0, 1)``, ``e = realized - nominal coverage``."""
    return _clip01(1.0 - max(0.0, -coverage_error) / cfg.calibration_tolerance)


def lambda_reg(regime: str, trans: bool, cfg: SizingConfig) -> float:
    """``m[regime] * (trans_multiplier if TRANS else 1)``."""
    if regime not in cfg.regime_multiplier:
        raise InvalidParameterError("regime", regime, f"one of {sorted(cfg.regime_multiplier)}")
    return cfg.regime_multiplier[regime] * (cfg.trans_multiplier if trans else 1.0)


def lambda_liq(spread_bps: float, cfg: SizingConfig) -> float:
    """``clip(1 - spread_bps / spread_max_bps, 0, 1)``."""
    return _clip01(1.0 - spread_bps / cfg.spread_max_bps)


def lambda_dd(drawdown: float, cfg: SizingConfig) -> float:
    """``clip(1 - dd / dd_max, 0, 1) ** power``."""
    return _clip01(1.0 - drawdown / cfg.drawdown_max) ** cfg.drawdown_power


def lambda_lat(latency_ms: float, cfg: SizingConfig) -> float:
    """1 up to ``latency_ok_ms``, then linear down to 0 at ``latency_max_ms``."""
    return _clip01(1.0 - (latency_ms - cfg.latency_ok_ms) / (cfg.latency_max_ms - cfg.latency_ok_ms))


def kelly_fraction(p_win: float, payoff: float) -> float:
    """Kelly ``f* = p - (1 - p) / b`` of a bet winning ``b`` per unit risked with probability ``p``."""
    return p_win - (1.0 - p_win) / payoff


def floor_lot(x: float, lot: float) -> float:
    """Largest multiple of ``lot`` not above ``x`` (``0`` for ``x <= 0``)."""
    if x <= 0 or not math.isfinite(x):
        return 0.0 if x <= 0 else x
    r = x / lot
    if not math.isfinite(r):      # x / lot overflows: x is beyond any limit it is compared with
        return x
    k = round(r)
    n = k if abs(r - k) <= _ULP_GUARD * max(1.0, abs(k)) else math.floor(r)
    return n * lot


@dataclass(frozen=True)
class SizingInputs:
    """Everything one sizing decision needs (prices in quote units, drawdown as a fraction)."""

    equity: float
    price: float
    stop_distance: float
    cost_per_unit: float
    p_win: float
    payoff: float
    cvar95_unit: float
    coverage_error: float
    regime: str
    trans: bool
    spread_bps: float
    drawdown: float
    latency_ms: float
    lot: float
    state_multiplier: float = 1.0  # acceptance FSM (PASS 1, DERISK < 1, BLOCK 0); breakers -> 0

    def validate(self) -> None:
        if not math.isfinite(self.cvar95_unit):
            raise InvalidParameterError("cvar95_unit", self.cvar95_unit, "finite (<= 0: the gate does not bind)")
        for name in ("equity", "price", "stop_distance", "payoff", "lot"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InvalidParameterError(name, v, "finite > 0")
        for name in ("cost_per_unit", "spread_bps", "drawdown", "latency_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise InvalidParameterError(name, v, "finite >= 0")
        if not 0 <= self.p_win <= 1:
            raise InvalidParameterError("p_win", self.p_win, "in [0, 1]")
        if not 0 <= self.state_multiplier <= 1:
            raise InvalidParameterError("state_multiplier", self.state_multiplier, "in [0, 1]")


@dataclass(frozen=True)
class SizingDecision:
    """The size ``qty = n_lots * lot`` and the terms that produced it."""

    qty: float
    n_lots: int
    binding: str
    r: float
    multiplier: float
    multipliers: dict[str, float]
    candidates: dict[str, float]


def size_position(x: SizingInputs, cfg: SizingConfig) -> SizingDecision:
    """The sizing rule of the module docstring (quantity >= 0; direction is decided elsewhere)."""
    x.validate()
    mult = {
        "cal": lambda_cal(x.coverage_error, cfg),
        "reg": lambda_reg(x.regime, x.trans, cfg),
        "liq": lambda_liq(x.spread_bps, cfg),
        "dd": lambda_dd(x.drawdown, cfg),
        "lat": lambda_lat(x.latency_ms, cfg),
        "state": x.state_multiplier,
    }
    M = math.prod(mult.values())
    r = min(max(cfg.kelly_fraction * kelly_fraction(x.p_win, x.payoff), 0.0), cfg.r_max)
    d = x.stop_distance + x.cost_per_unit
    tau = cfg.cvar_budget_frac * x.equity
    cand = {
        "kelly": floor_lot(r * x.equity * M / d, x.lot),
        "leverage": floor_lot(cfg.max_leverage * x.equity / x.price, x.lot),
        "exposure": floor_lot(cfg.max_exposure_frac * x.equity / x.price, x.lot),
        "cvar_gate": floor_lot(tau / x.cvar95_unit, x.lot) if x.cvar95_unit > 0 else math.inf,
    }
    binding = min(cand, key=cand.__getitem__)
    n_lots = round(cand[binding] / x.lot)
    return SizingDecision(n_lots * x.lot, n_lots, binding, r, M, mult, cand)
