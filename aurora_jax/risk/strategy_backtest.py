"""Forecast-driven strategy backtest through the paper broker (a pure library function).

Inputs: OHLCV bars (index = the time each bar's close became observable) and forecasts
:class:`ForecastPoint` keyed by decision time (a bar's close time): the spot, the quantiles
and simulated prices of the ``decision_step``-ahead price.

Timeline: at the close of decision bar ``i`` the policy sets a target position; orders are
sent after that close and work from bar ``i+1`` (market orders fill at its open, stops
trigger inside it), so nothing uses information after ``as_of``. Equity is marked at every
close; fees and slippage come from the paper broker.

**Forecast strategy** (:class:`ForecastPolicy`), at each decision:

* ``p_up = P(P_h > price)`` (fraction of paths; the quantile CDF without paths), ``P50``;
* long if ``p_up >= prob_threshold`` and ``P50 > price (1 + min_edge)``; short (if allowed)
  if ``p_up <= 1 - prob_threshold`` and ``P50 < price (1 - min_edge)``; else flat;
* stop distance ``d = max(price - q(stop_quantile), min_stop_frac price)`` (short:
  ``q(1 - stop_quantile) - price``), payoff ``b = (q(tp_quantile) - price) / d`` (mirrored;
  no trade if ``b <= 0``), ``p_win = p_up`` (short ``1 - p_up``);
* size by :func:`aurora_jax.risk.sizing.size_position` with round-trip costs
  ``price (2 taker_fee + 2 slippage)`` added to ``d`` and ``CVaR95(unit)`` the 95% ES of
  the per-unit loss over the paths; ``lambda_cal`` from the trailing coverage error of the
  outer band, the acceptance FSM multiplier (PASS/DERISK/BLOCK, fed when forecasts mature:
  band hit, surprisal ``-log phi(Phi^{-1}(PIT))`` of the realized price, latency, kappa+);
* a reduce-only stop-market order at ``price -/+ d`` protects the position;
* circuit breakers (vol spike, drawdown, flash move, leverage) are checked at every close;
  a trip flattens the position at the next open and blocks new risk during the cooldown.

**Baselines** through the same broker: buy-and-hold (all equity at the first decision) and
a vol target (weight ``min(L, target / sigma_ann)``, ``sigma`` an EWMA of daily log returns,
rebalanced at each decision).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from aurora_jax.errors import InvalidParameterError
from aurora_jax.execution.brackets import client_order_id
from aurora_jax.execution.filters import ExchangeFilters, quantize_order
from aurora_jax.execution.orders import EventKind, OrderRequest
from aurora_jax.execution.paper_broker import Bar, PaperBroker, PaperBrokerConfig
from aurora_jax.execution.position import PositionBook, Role
from aurora_jax.risk import acceptance as acc
from aurora_jax.risk import breakers as brk
from aurora_jax.risk.performance import per_period_sharpe, summarize
from aurora_jax.risk.sizing import SizingConfig, SizingInputs, floor_lot, size_position


@dataclass(frozen=True)
class ForecastPoint:
    """A forecast made at ``as_of`` for the price ``decision_step`` bars ahead."""

    as_of: pd.Timestamp
    price: float
    levels: tuple[float, ...]
    quantiles: np.ndarray            # price quantiles at ``levels``
    paths: np.ndarray | None = None  # simulated prices at the decision step
    regime: str = "normal"
    trans: bool = False
    kappa_plus: float | None = None
    latency_ms: float = 0.0                   # fed to the acceptance FSM and lambda_lat
    measured_latency_ms: float | None = None  # wall time of the forecast call (reported only)

    def quantile(self, level: float) -> float:
        if self.paths is not None:
            return float(np.quantile(self.paths, level))
        return float(np.interp(level, self.levels, self.quantiles))

    def p_above(self, x: float) -> float:
        if self.paths is not None:
            return float(np.mean(self.paths > x))
        return float(1.0 - np.interp(x, self.quantiles, self.levels, left=0.0, right=1.0))

    def pit(self, x: float) -> float:
        """Forecast CDF at ``x``, clipped away from 0 and 1 by half a path."""
        if self.paths is not None:
            n = self.paths.size
            return float(np.clip((np.sum(self.paths <= x) + 0.5) / (n + 1.0), 0.5 / n, 1 - 0.5 / n))
        lo, hi = self.levels[0], self.levels[-1]
        return float(np.interp(x, self.quantiles, self.levels, left=lo / 2, right=(1 + hi) / 2))

    def unit_cvar95(self, direction: int) -> float:
        """95% ES of the loss of one unit held in ``direction`` (price units)."""
        if self.paths is not None:
            loss = np.sort(direction * (self.price - self.paths))
            n = loss.size
            tail = n * 0.05
            m = int(np.floor(tail + 1e-9))
            var = loss[n - m - 1]
            return float((loss[n - m:].sum() + (tail - m) * var) / tail)
        # normal fit to the outer quantiles when no paths are given
        lo, hi = self.levels[0], self.levels[-1]
        q_lo, q_hi = self.quantile(lo), self.quantile(hi)
        sigma = (q_hi - q_lo) / (norm.ppf(hi) - norm.ppf(lo))
        mu = self.quantile(0.5)
        return float(direction * (self.price - mu) + sigma * norm.pdf(norm.ppf(0.95)) / 0.05)


@dataclass(frozen=True)
class StrategyConfig:
    """``cfg.risk.backtest`` (meaning in configs/risk/default.yaml)."""

    rebalance_every: int
    decision_step: int
    initial_equity: float
    lot: float
    tick: float
    allow_short: bool
    prob_threshold: float
    min_edge: float
    stop_quantile: float
    min_stop_frac: float
    take_profit_quantile: float
    spread_bps: float
    vol_window: int
    normal_vol_window: int
    vol_target: float
    vol_target_max_leverage: float
    vol_target_lambda: float
    periods_per_year: float
    coverage_window: int

    def __post_init__(self) -> None:
        if not 0.5 <= self.prob_threshold < 1:
            raise InvalidParameterError("backtest.prob_threshold", self.prob_threshold, "in [0.5, 1)")
        if not 0 < self.min_stop_frac < 1:
            raise InvalidParameterError("backtest.min_stop_frac", self.min_stop_frac, "in (0, 1)")
        if not 0 < self.stop_quantile < 0.5 < self.take_profit_quantile < 1:
            raise InvalidParameterError("backtest.stop_quantile", (self.stop_quantile, self.take_profit_quantile),
                                        "0 < stop_quantile < 0.5 < take_profit_quantile < 1")
        if self.rebalance_every < 1 or self.decision_step < 1:
            raise InvalidParameterError("backtest.rebalance_every", self.rebalance_every, ">= 1 (and decision_step >= 1)")
        if not (self.initial_equity > 0 and self.lot > 0 and self.tick > 0):
            raise InvalidParameterError("backtest.initial_equity", self.initial_equity, "> 0 (and lot, tick > 0)")
        if not 2 <= self.vol_window < self.normal_vol_window:
            raise InvalidParameterError("backtest.vol_window", self.vol_window, f"in [2, normal_vol_window = {self.normal_vol_window})")

    @classmethod
    def from_cfg(cls, c) -> StrategyConfig:
        ints = {"rebalance_every", "decision_step", "vol_window", "normal_vol_window", "coverage_window"}
        out = {}
        for k in cls.__dataclass_fields__:
            v = c[k]
            out[k] = bool(v) if k == "allow_short" else int(v) if k in ints else float(v)
        return cls(**out)


@dataclass(frozen=True)
class Context:
    """What a policy sees at a decision (close of bar ``i``)."""

    i: int
    ts: pd.Timestamp
    price: float
    equity: float
    position: float
    drawdown: float
    forecast: ForecastPoint | None


@dataclass(frozen=True)
class Target:
    qty: float                # signed target position (base units)
    stop: float | None = None
    info: Mapping[str, object] = field(default_factory=dict)


class Policy:
    """Maps a decision context to a target position; ``on_bar`` sees every close."""

    name = "policy"

    def on_bar(self, i: int, bar: Bar) -> None:
        pass

    def decide(self, ctx: Context) -> Target:
        raise NotImplementedError


class BuyAndHold(Policy):
    """All equity long at the first decision, never rebalanced."""

    name = "buy_and_hold"

    def __init__(self, lot: float, cost_bps: float):
        self.lot, self.cost_bps, self.qty = lot, cost_bps, None

    def decide(self, ctx: Context) -> Target:
        if self.qty is None:
            self.qty = floor_lot(ctx.equity / (ctx.price * (1 + self.cost_bps / 1e4)), self.lot)
        return Target(self.qty)


class VolTarget(Policy):
    """Long ``min(L, target / sigma_ann) * equity / price``; EWMA variance of log returns."""

    name = "vol_target"

    def __init__(self, target: float, max_leverage: float, lam: float, periods_per_year: float, lot: float):
        self.target, self.L, self.lam, self.ppy, self.lot = target, max_leverage, lam, periods_per_year, lot
        self.var: float | None = None
        self.prev: float | None = None
        self.n = 0

    def on_bar(self, i: int, bar: Bar) -> None:
        if self.prev is not None:
            r2 = math.log(bar.close / self.prev) ** 2
            self.var = r2 if self.var is None else self.lam * self.var + (1 - self.lam) * r2
            self.n += 1
        self.prev = bar.close

    def decide(self, ctx: Context) -> Target:
        if self.var is None or self.var <= 0 or self.n < 20:
            return Target(0.0, info={"weight": 0.0})
        w = min(self.L, self.target / math.sqrt(self.var * self.ppy))
        return Target(floor_lot(w * ctx.equity / ctx.price, self.lot), info={"weight": w})


class ForecastPolicy(Policy):
    """The forecast-driven strategy of the module docstring."""

    name = "forecast"

    def __init__(self, cfg: StrategyConfig, sizing: SizingConfig, acceptance_cfg: acc.AcceptanceConfig,
                 broker_cfg: PaperBrokerConfig):
        self.cfg, self.sizing, self.acc_cfg, self.broker_cfg = cfg, sizing, acceptance_cfg, broker_cfg
        self.state = acc.AcceptanceState()
        self.pending: list[tuple[int, ForecastPoint]] = []
        self.hits: list[bool] = []
        self.closes: list[float] = []

    def on_bar(self, i: int, bar: Bar) -> None:
        self.closes.append(bar.close)
        keep = []
        for due, f in self.pending:
            if due != i:
                keep.append((due, f))
                continue
            lo, hi = f.quantile(f.levels[0]), f.quantile(f.levels[-1])
            covered = lo <= bar.close <= hi
            self.hits.append(covered)
            z = norm.ppf(f.pit(bar.close))
            surprisal = float(0.5 * z * z + 0.5 * math.log(2 * math.pi))
            obs = acc.Observation(f.kappa_plus, covered, f.latency_ms, surprisal)
            self.state = acc.step(self.state, obs, self.acc_cfg)
        self.pending = keep

    def coverage_error(self, f: ForecastPoint) -> float:
        recent = self.hits[-self.cfg.coverage_window:]
        if not recent:
            return 0.0
        return float(np.mean(recent)) - (f.levels[-1] - f.levels[0])

    def decide(self, ctx: Context) -> Target:
        f = ctx.forecast
        if f is None:
            return Target(ctx.position, info={"reason": "no forecast"})
        c = self.cfg
        self.pending.append((ctx.i + c.decision_step, f))
        price = ctx.price
        p_up = f.p_above(price)
        p50 = f.quantile(0.5)
        info: dict[str, object] = {"p_up": p_up, "p50": p50, "level": self.state.level.name}
        if p_up >= c.prob_threshold and p50 > price * (1 + c.min_edge):
            direction = 1
        elif c.allow_short and p_up <= 1 - c.prob_threshold and p50 < price * (1 - c.min_edge):
            direction = -1
        else:
            return Target(0.0, info=info | {"reason": "no edge"})
        if direction > 0:
            d = price - f.quantile(c.stop_quantile)
            reward = f.quantile(c.take_profit_quantile) - price
            p_win = p_up
        else:
            d = f.quantile(1 - c.stop_quantile) - price
            reward = price - f.quantile(1 - c.take_profit_quantile)
            p_win = 1 - p_up
        d = max(d, c.min_stop_frac * price)
        if reward <= 0:
            return Target(0.0, info=info | {"reason": "no upside in the cone"})
        b = self.broker_cfg
        x = SizingInputs(
            equity=ctx.equity, price=price, stop_distance=d,
            cost_per_unit=price * 2 * (b.taker_fee_bps + b.slippage_bps) / 1e4,
            p_win=p_win, payoff=reward / d, cvar95_unit=f.unit_cvar95(direction),
            coverage_error=self.coverage_error(f), regime=f.regime, trans=f.trans,
            spread_bps=c.spread_bps, drawdown=ctx.drawdown, latency_ms=f.latency_ms, lot=c.lot,
            state_multiplier=acc.size_multiplier(self.state.level, self.acc_cfg),
        )
        dec = size_position(x, self.sizing)
        info |= {"binding": dec.binding, "multiplier": dec.multiplier, "r": dec.r,
                 **{f"lambda_{k}": v for k, v in dec.multipliers.items()}}
        return Target(direction * dec.qty, stop=price - direction * d, info=info)


@dataclass
class SimResult:
    name: str
    equity: pd.Series
    position: pd.Series
    traded_notional: float
    fees: float
    n_fills: int
    decisions: pd.DataFrame
    breaker_trips: list[tuple[pd.Timestamp, str]]
    ruined: bool

    @property
    def returns(self) -> pd.Series:
        return self.equity.pct_change().dropna()


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """``open, high, low, close[, volume]`` rows -> :class:`Bar` (ts = index in seconds)."""
    need = {"open", "high", "low", "close"}
    if not need <= set(frame.columns):
        raise InvalidParameterError("bars", sorted(frame.columns), f"columns {sorted(need)} (+ volume)")
    vol = frame["volume"].to_numpy(float) if "volume" in frame else np.full(len(frame), np.nan)
    ts = frame.index.asi8 / 1e9 if isinstance(frame.index, pd.DatetimeIndex) else np.arange(len(frame), dtype=float)
    o, h, lo, c = (frame[k].to_numpy(float) for k in ("open", "high", "low", "close"))
    return [Bar(float(ts[k]), o[k], max(h[k], o[k], c[k]), min(lo[k], o[k], c[k]), c[k],
                None if not np.isfinite(vol[k]) else float(vol[k])) for k in range(len(frame))]


def simulate(
    frame: pd.DataFrame,
    decision_times: Sequence[pd.Timestamp],
    policy: Policy,
    forecasts: Mapping[pd.Timestamp, ForecastPoint] | None,
    cfg: StrategyConfig,
    broker_cfg: PaperBrokerConfig,
    breaker_cfg: brk.BreakerConfig | None,
) -> SimResult:
    """Run ``policy`` over the bars from the first decision to the last bar."""
    if len(decision_times) == 0:
        raise InvalidParameterError("decision_times", 0, "at least one decision inside the bars")
    bars = bars_from_frame(frame)
    idx = frame.index
    pos_of = {t: k for k, t in enumerate(idx)}
    missing = [t for t in decision_times if t not in pos_of]
    if missing:
        raise InvalidParameterError("decision_times", str(missing[0]), "timestamps of bars in the frame")
    decide_at = {pos_of[t] for t in decision_times}
    start = min(decide_at)
    filters = ExchangeFilters("PAPER", cfg.tick, cfg.lot, None, None, None, None, None, None, None)
    broker = PaperBroker(broker_cfg, filters)
    book = PositionBook()
    cash = cfg.initial_equity
    traded = fees = 0.0
    n_fills = 0
    peak = cfg.initial_equity
    bstate = brk.BreakerState()
    log_r = np.diff(np.log(frame["close"].to_numpy(float)), prepend=np.nan)
    eq_out, pos_out, rows, trips = [], [], [], []
    stop_cid: str | None = None
    last_entry: str | None = None
    seq = 0
    ruined = False

    def send(order: OrderRequest, role: Role, parent: str | None, ts: float, ref: float) -> None:
        nonlocal seq
        order = quantize_order(order, filters, ref, bump_to_min_notional=False).order
        if order.amount <= 0:
            return
        book.register(order, role, parent)
        book.apply_many(broker.submit(order, ts, ref))

    def cid(leg: str, ts: pd.Timestamp, payload: str) -> str:
        nonlocal seq
        seq += 1
        return client_order_id(f"{policy.name}-{ts.value}", leg, seq, payload, 0, "bt")

    for i in range(start):  # warm-up: policies see the history before the first decision
        policy.on_bar(i, bars[i])
    for i in range(start, len(bars)):
        bar = bars[i]
        for ev in broker.on_bar(bar):
            if not book.apply(ev):
                continue
            if ev.kind == EventKind.FILL:
                sign = book.orders[ev.client_order_id].sign
                cash -= sign * ev.qty * ev.price + ev.fee
                traded += ev.qty * ev.price
                fees += ev.fee
                n_fills += 1
        policy.on_bar(i, bar)
        pos = book.net if abs(book.net) >= cfg.lot * 1e-6 else 0.0  # float residue of fill sums
        equity = cash + pos * bar.close
        if equity <= 0:
            ruined = True
            eq_out.append(max(equity, 1e-9))
            pos_out.append(pos)
            break
        peak = max(peak, equity)
        dd = 1.0 - equity / peak
        eq_out.append(equity)
        pos_out.append(pos)
        ts = idx[i]
        flatten = False
        if breaker_cfg is not None and i > start:
            lo = max(1, i - cfg.vol_window + 1)
            lo_n = max(1, i - cfg.normal_vol_window + 1)
            rv = float(np.std(log_r[lo:i + 1], ddof=1)) if i + 1 - lo >= 2 else None
            nv = float(np.std(log_r[lo_n:i + 1], ddof=1)) if i + 1 - lo_n >= cfg.vol_window else None
            obs = brk.BreakerObservation(i, rv, nv, dd, bar.close / bars[i - 1].close - 1.0,
                                         abs(pos) * bar.close / equity)
            bstate, new = brk.step(bstate, obs, breaker_cfg)
            trips += [(ts, n) for n in new]
            flatten = not brk.allows_trading(bstate, i + 1) and pos != 0 and bool(new)
        if i not in decide_at and not flatten:
            continue
        f = forecasts.get(ts) if forecasts is not None else None
        blocked = breaker_cfg is not None and not brk.allows_trading(bstate, i + 1)
        tgt = policy.decide(Context(i, ts, bar.close, equity, pos, dd, f))  # the policy sees every forecast
        if blocked:
            why = "kill switch: " + bstate.kill_reason if bstate.kill else "breaker " + ",".join(brk.active(bstate, i + 1))
            tgt = Target(0.0, info={**dict(tgt.info), "reason": why, "policy_target": tgt.qty})
        if i in decide_at or blocked:
            rows.append({"ts": ts, "price": bar.close, "equity": equity, "position": pos,
                         "target": tgt.qty, "stop": tgt.stop, **dict(tgt.info)})
        target = floor_lot(abs(tgt.qty), cfg.lot) * (1 if tgt.qty >= 0 else -1)
        if stop_cid is not None:
            book.apply_many(broker.cancel(stop_cid, bar.ts))
            stop_cid = None
        diff = target - pos
        if abs(diff) >= cfg.lot * 0.5:
            c = cid("entry", ts, f"{target:.10g}")
            send(OrderRequest("PAPER", "buy" if diff > 0 else "sell", "market", floor_lot(abs(diff) + cfg.lot * 1e-6, cfg.lot),
                              client_order_id=c), Role.ENTRY, None, bar.ts, bar.close)
            last_entry = c
        if target != 0 and tgt.stop is not None and last_entry is not None:
            valid = tgt.stop < bar.close if target > 0 else tgt.stop > bar.close
            if valid:
                c = cid("stop", ts, f"{target:.10g}|{tgt.stop:.10g}")
                send(OrderRequest("PAPER", "sell" if target > 0 else "buy", "stop_market", abs(target),
                                  stop_price=tgt.stop, reduce_only=True, client_order_id=c),
                     Role.STOP, last_entry, bar.ts, bar.close)
                stop_cid = c if c in broker.working else None
    n = len(eq_out)
    return SimResult(
        policy.name,
        pd.Series(eq_out, index=idx[start:start + n], name="equity"),
        pd.Series(pos_out, index=idx[start:start + n], name="position"),
        traded, fees, n_fills, pd.DataFrame(rows), trips, ruined,
    )


@dataclass
class BacktestReport:
    strategy: SimResult
    baselines: dict[str, SimResult]
    trials: dict[float, SimResult]
    stats: pd.DataFrame  # one row per strategy / baseline


def run_backtest(
    frame: pd.DataFrame,
    forecasts: Mapping[pd.Timestamp, ForecastPoint],
    cfg: StrategyConfig,
    sizing: SizingConfig,
    acceptance_cfg: acc.AcceptanceConfig,
    breaker_cfg: brk.BreakerConfig,
    broker_cfg: PaperBrokerConfig,
    trial_thresholds: Sequence[float],
) -> BacktestReport:
    """The strategy, its threshold trials (for the deflated Sharpe), and both baselines."""
    times = sorted(forecasts)
    if not times:
        raise InvalidParameterError("forecasts", 0, "at least one forecast")

    def forecast_run(thr: float) -> SimResult:
        pol = ForecastPolicy(replace(cfg, prob_threshold=thr), sizing, acceptance_cfg, broker_cfg)
        return simulate(frame, times, pol, forecasts, replace(cfg, prob_threshold=thr), broker_cfg, breaker_cfg)

    main = forecast_run(cfg.prob_threshold)
    trials = {float(t): (main if float(t) == cfg.prob_threshold else forecast_run(float(t))) for t in trial_thresholds}
    cost = broker_cfg.taker_fee_bps + broker_cfg.slippage_bps
    base = {
        "buy_and_hold": simulate(frame, times[:1], BuyAndHold(cfg.lot, 2 * cost), None, cfg, broker_cfg, None),
        "vol_target": simulate(frame, times, VolTarget(cfg.vol_target, cfg.vol_target_max_leverage, cfg.vol_target_lambda,
                                                         cfg.periods_per_year, cfg.lot), None, cfg, broker_cfg, None),
    }
    trial_sr = [per_period_sharpe(r.returns) for r in trials.values()] if len(trials) >= 2 else None
    rows = []
    for name, res in [("strategy", main), *base.items()]:
        st = summarize(res.returns.to_numpy(), res.equity.to_numpy(), res.traded_notional, cfg.periods_per_year,
                       trial_sr if name == "strategy" else None)
        rows.append({"name": name, **st, "fees": res.fees, "fills": res.n_fills, "ruined": res.ruined})
    return BacktestReport(main, base, trials, pd.DataFrame(rows).set_index("name"))


ForecastFn = Callable[[pd.Timestamp], ForecastPoint]
