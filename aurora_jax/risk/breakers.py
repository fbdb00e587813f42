"""Circuit breakers with cooldowns, and a latched kill switch.

At each bar ``t`` the observation trips

* ``vol_spike``  if realized vol > ``vol_spike_ratio`` x normal vol,
* ``drawdown``   if the equity drawdown > ``drawdown_max``,
* ``flash``      if ``|bar return| > flash_move``,
* ``leverage``   if gross exposure / equity > ``leverage_max``.

A tripped breaker blocks new risk until ``t + cooldown_<name>`` (a condition that persists
extends the cooldown; only the first bar of an episode counts as a *trip*).

The kill switch engages by hand (:func:`engage_kill`), when the drawdown exceeds
``kill_drawdown``, or -- if ``kill_after_trips`` is set -- when that many trips fall within
the last ``kill_window`` bars (meant for intraday bars; on daily crypto bars a 5% move is
common and repeated flash trips are not an emergency). It is latched: only
:func:`release_kill` (an operator action) clears it.
Trading is allowed iff the kill switch is off and no breaker is cooling down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from aurora_jax.errors import InvalidParameterError

BREAKERS = ("vol_spike", "drawdown", "flash", "leverage")


@dataclass(frozen=True)
class BreakerConfig:
    """``cfg.risk.breakers``."""

    vol_spike_ratio: float
    drawdown_max: float
    flash_move: float
    leverage_max: float
    cooldown_vol: int
    cooldown_drawdown: int
    cooldown_flash: int
    cooldown_leverage: int
    kill_after_trips: int | None
    kill_window: int
    kill_drawdown: float | None

    def __post_init__(self) -> None:
        for k in ("vol_spike_ratio", "drawdown_max", "flash_move", "leverage_max"):
            if not getattr(self, k) > 0:
                raise InvalidParameterError(f"breakers.{k}", getattr(self, k), "> 0")
        for k in ("cooldown_vol", "cooldown_drawdown", "cooldown_flash", "cooldown_leverage"):
            if getattr(self, k) < 0:
                raise InvalidParameterError(f"breakers.{k}", getattr(self, k), ">= 0 bars")
        if (self.kill_after_trips is not None and self.kill_after_trips < 1) or self.kill_window < 1:
            raise InvalidParameterError("breakers.kill_after_trips", self.kill_after_trips, ">= 1 or null (and kill_window >= 1)")
        if self.kill_drawdown is not None and not self.drawdown_max < self.kill_drawdown < 1:
            raise InvalidParameterError("breakers.kill_drawdown", self.kill_drawdown, f"in (drawdown_max = {self.drawdown_max}, 1) or null")

    @classmethod
    def from_cfg(cls, c) -> BreakerConfig:
        floats = {"vol_spike_ratio", "drawdown_max", "flash_move", "leverage_max", "kill_drawdown"}
        nullable = {"kill_after_trips", "kill_drawdown"}
        return cls(**{k: (None if k in nullable and c[k] is None else float(c[k]) if k in floats else int(c[k]))
                      for k in cls.__dataclass_fields__})

    def cooldown(self, name: str) -> int:
        return {"vol_spike": self.cooldown_vol, "drawdown": self.cooldown_drawdown,
                "flash": self.cooldown_flash, "leverage": self.cooldown_leverage}[name]


@dataclass(frozen=True)
class BreakerObservation:
    """Market/account state at bar ``t`` (``None`` = not available, that breaker is skipped)."""

    t: int
    realized_vol: float | None = None
    normal_vol: float | None = None
    drawdown: float | None = None
    bar_return: float | None = None
    leverage: float | None = None


@dataclass(frozen=True)
class BreakerState:
    cooling_until: dict[str, int] = field(default_factory=dict)
    trip_times: tuple[int, ...] = ()
    kill: bool = False
    kill_reason: str = ""

    def to_dict(self) -> dict:
        return {"cooling_until": dict(self.cooling_until), "trip_times": list(self.trip_times),
                "kill": self.kill, "kill_reason": self.kill_reason}

    @classmethod
    def from_dict(cls, d: dict) -> BreakerState:
        unknown = set(d.get("cooling_until", {})) - set(BREAKERS)
        if unknown:
            raise InvalidParameterError("breakers.cooling_until", sorted(unknown), f"keys in {BREAKERS}")
        return cls({k: int(v) for k, v in d["cooling_until"].items()},
                   tuple(int(t) for t in d["trip_times"]), bool(d["kill"]), str(d["kill_reason"]))


def conditions(obs: BreakerObservation, cfg: BreakerConfig) -> list[str]:
    """Names of the breakers whose condition holds at this observation."""
    out = []
    if (obs.realized_vol is not None and obs.normal_vol is not None and obs.normal_vol > 0
            and obs.realized_vol > cfg.vol_spike_ratio * obs.normal_vol):
        out.append("vol_spike")
    if obs.drawdown is not None and obs.drawdown > cfg.drawdown_max:
        out.append("drawdown")
    if obs.bar_return is not None and abs(obs.bar_return) > cfg.flash_move:
        out.append("flash")
    if obs.leverage is not None and obs.leverage > cfg.leverage_max:
        out.append("leverage")
    return out


def step(state: BreakerState, obs: BreakerObservation, cfg: BreakerConfig) -> tuple[BreakerState, list[str]]:
    """Apply one observation; returns the new state and the breakers newly tripped at ``t``."""
    cooling = dict(state.cooling_until)
    new_trips = []
    for name in conditions(obs, cfg):
        if cooling.get(name, -1) < obs.t:  # not already cooling: a new episode
            new_trips.append(name)
        cooling[name] = max(cooling.get(name, -1), obs.t + cfg.cooldown(name))
    trips = tuple(t for t in state.trip_times if t > obs.t - cfg.kill_window) + (obs.t,) * len(new_trips)
    kill, reason = state.kill, state.kill_reason
    if not kill and cfg.kill_drawdown is not None and obs.drawdown is not None and obs.drawdown > cfg.kill_drawdown:
        kill, reason = True, f"drawdown {obs.drawdown:.1%} > kill_drawdown {cfg.kill_drawdown:.0%} (t={obs.t})"
    if not kill and cfg.kill_after_trips is not None and len(trips) >= cfg.kill_after_trips:
        kill, reason = True, f"{len(trips)} breaker trips within {cfg.kill_window} bars (t={obs.t})"
    return BreakerState(cooling, trips, kill, reason), new_trips


def allows_trading(state: BreakerState, t: int) -> bool:
    """No kill switch and no breaker cooling down at ``t``."""
    return not state.kill and all(until < t for until in state.cooling_until.values())


def active(state: BreakerState, t: int) -> list[str]:
    """Breakers still cooling down at ``t``."""
    return sorted(k for k, until in state.cooling_until.items() if until >= t)


def engage_kill(state: BreakerState, reason: str) -> BreakerState:
    """Manual kill switch (latched)."""
    return replace(state, kill=True, kill_reason=reason)


def release_kill(state: BreakerState) -> BreakerState:
    """Operator release of the kill switch (cooldowns and trip history are kept)."""
    return replace(state, kill=False, kill_reason="")
