"""``just backtest experiment=btc_daily``: walk-forward forecasts -> strategy -> paper broker.

At every decision time (a daily close between ``risk.backtest.start`` and ``end``, every
``rebalance_every`` bars) the forecaster is called *as of* that close -- by default
:func:`aurora_jax.forecast.api.forecast`, which refits a baseline (``model=garch``) on data up to
``as_of`` only; with the trained engine (``model=engine``) each decision uses the newest registered
engine whose training history ends by ``as_of`` (never one that saw the future: none is a
:class:`~aurora_jax.errors.ModelUnavailableError` naming the date to train to) -- and the engine of :mod:`aurora_jax.risk.strategy_backtest` trades on it,
next to buy-and-hold and a vol-target baseline. Writes ``stats.json``, ``report.md``,
``equity.png`` (equity curves and drawdowns), ``decisions.csv`` and ``forecasts.csv`` into
the run folder and prints the statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aurora_jax.atomic import atomic_write, atomic_write_json, atomic_write_text
from aurora_jax.errors import DataRangeError, InvalidParameterError, ModelUnavailableError
from aurora_jax.execution.paper_broker import PaperBrokerConfig
from aurora_jax.risk.acceptance import AcceptanceConfig
from aurora_jax.risk.breakers import BreakerConfig
from aurora_jax.risk.sizing import SizingConfig
from aurora_jax.risk.strategy_backtest import (
    BacktestReport,
    ForecastPoint,
    StrategyConfig,
    run_backtest,
)

Forecaster = Callable[[pd.Timestamp], ForecastPoint]
STAT_COLUMNS = ["total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "cvar95",
                "turnover", "psr", "dsr", "fees", "fills"]


def load_bars(store, asset_id: str, volume_units: str) -> pd.DataFrame:
    """Daily OHLCV of ``asset_id`` from the store on the close-time index; volume in base
    units (quote volume is divided by the close) or absent."""
    if volume_units not in ("quote", "base"):
        raise InvalidParameterError("risk.backtest.volume_units", volume_units, "quote or base")
    cols = {}
    for k in ("open", "high", "low", "close"):
        cols[k] = store.series(asset_id, k)
    try:
        cols["volume"] = store.series(asset_id, "volume")
    except InvalidParameterError:
        pass
    frame = pd.DataFrame(cols).dropna(subset=["open", "high", "low", "close"]).sort_index()
    if "volume" in frame and volume_units == "quote":
        frame["volume"] = frame["volume"] / frame["close"]
    if len(frame) < 100:
        raise InvalidParameterError("asset", asset_id, "an asset with >= 100 daily OHLC bars in the store")
    return frame


def decision_times(frame: pd.DataFrame, start, end, every: int, step: int) -> list[pd.Timestamp]:
    """Bar close times in ``[start, end]`` every ``every`` bars, leaving ``step`` bars to trade."""
    idx = frame.index
    last_ok = idx[max(len(idx) - 1 - step, 0)]
    lo = pd.Timestamp(start, tz="UTC") if start is not None else idx[0]
    hi = min(pd.Timestamp(end, tz="UTC"), last_ok) if end is not None else last_ok
    sel = idx[(idx >= lo) & (idx <= hi)]
    if len(sel) == 0:
        raise DataRangeError("risk.backtest.start", start, idx[0], last_ok)
    return list(sel[::every])


def api_forecaster(cfg: DictConfig, store, asset_id: str, step: int, num_paths: int,
                   assumed_latency_ms: float | None = None) -> Forecaster:
    """Wrap :func:`aurora_jax.forecast.api.forecast` as ``as_of -> ForecastPoint``.

    ``latency_ms`` of each point is ``assumed_latency_ms`` when given (reproducible
    backtests), else the measured wall time of the call; the measured time is always kept
    in ``measured_latency_ms`` of the forecasts table."""
    from aurora_jax.forecast import api

    levels = tuple(float(q) for q in cfg.quantiles)
    engines: dict[str, api.EngineModel] = {}
    selector = None
    if str(cfg.model.name) == "aurora":
        from aurora_jax.forecast.eval_adapter import AuroraForecaster

        api.validate_request(step, num_paths, levels, (), cfg.forecast)
        selector = AuroraForecaster(cfg, store=store)     # its registry selection, point in time

    def point_in_time(as_of: pd.Timestamp) -> api.ForecastResult:
        """The engine forecast with the newest engine trained on data up to ``as_of`` only."""
        from aurora_jax.train.registry import load_params

        picks = selector.candidates(asset_id, pd.Timestamp(as_of))
        if not picks:
            raise ModelUnavailableError(
                f"no engine for {asset_id} trained on data ending by {pd.Timestamp(as_of).date()} (within "
                f"eval.engine.max_age_days): train one with `just train experiment=<name> "
                f"model.train.end={pd.Timestamp(as_of).date()}`, or backtest the baseline with model=garch")
        entry = picks[0]
        if entry.version not in engines:
            engines[entry.version] = api.EngineModel(load_params(entry), entry, asset_id)
        prep = api.prepare(asset_id, as_of, store=store, cfg=cfg, engine=engines[entry.version])
        sim = api.simulate(prep, step, num_paths, cfg)
        return api.result_of(prep, sim, step, levels, ())

    def fn(as_of: pd.Timestamp) -> ForecastPoint:
        t0 = time.perf_counter()
        if selector is not None:
            res = point_in_time(as_of)
        else:
            res = api.forecast(asset_id, step, as_of=as_of, quantiles=levels, num_paths=num_paths, store=store,
                               cfg=cfg)
        latency = (time.perf_counter() - t0) * 1e3
        row = res.table[res.table["step"] == step].iloc[0]
        qcols = [c for c in res.table.columns if c.startswith("q")]
        return ForecastPoint(
            as_of=as_of, price=float(res.spot), levels=levels,
            quantiles=np.asarray([row[c] for c in qcols], float),
            paths=np.asarray(res.paths[:, step - 1], float),
            regime=str(getattr(res, "regime", "normal") or "normal"),
            trans=bool(getattr(res, "trans", False)),
            kappa_plus=getattr(res, "kappa_plus", None),
            latency_ms=latency if assumed_latency_ms is None else float(assumed_latency_ms),
            measured_latency_ms=latency,
        )

    return fn


def collect_forecasts(times: Sequence[pd.Timestamp], forecaster: Forecaster, progress: bool) -> dict:
    out = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("walk-forward forecasts", total=len(times))
        for t in times:
            out[t] = forecaster(t)
            bar.advance(task)
    return out


def plot_report(report: BacktestReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    runs = {"strategy": report.strategy, **report.baselines}
    for name, res in runs.items():
        e = res.equity
        ax1.plot(e.index, e / e.iloc[0], label=name, lw=1.2)
        ax2.plot(e.index, -(1 - e / e.cummax()), label=name, lw=1.0)
    ax1.set_yscale("log")
    ax1.set_ylabel("equity (start = 1, log)")
    ax1.legend(loc="upper left")
    ax1.set_title(title)
    ax2.set_ylabel("drawdown")
    ax2.grid(alpha=0.3)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def report_markdown(report: BacktestReport, cfg: DictConfig, n_decisions: int, span: tuple) -> str:
    st = report.stats.reindex(columns=[c for c in STAT_COLUMNS if c in report.stats.columns])
    lines = [
        f"# Backtest {cfg.get('experiment_name')} ({cfg.asset})", "",
        (f"Decisions: {n_decisions} from {span[0]} to {span[1]}, every {cfg.risk.backtest.rebalance_every} bar(s), "
         f"decision step {cfg.risk.backtest.decision_step} day(s); forecaster model `{cfg.model.name}`; "
         f"fees {cfg.execution.paper_broker.taker_fee_bps} bps taker / {cfg.execution.paper_broker.maker_fee_bps} bps "
         f"maker, slippage {cfg.execution.paper_broker.slippage_bps} bps."), "",
        "| run | " + " | ".join(st.columns) + " |",
        "|---|" + "---|" * len(st.columns),
    ]
    for name, row in st.iterrows():
        lines.append(f"| {name} | " + " | ".join("" if pd.isna(v) else f"{v:.4g}" for v in row) + " |")
    trips = report.strategy.breaker_trips
    lines += ["", f"Breaker trips (strategy): {len(trips)}"
              + (f" -- {pd.Series([n for _, n in trips]).value_counts().to_dict()}" if trips else ""),
              f"Deflated Sharpe uses {len(report.trials)} trials (prob thresholds {sorted(report.trials)}).",
              "", "![equity](equity.png)", ""]
    return "\n".join(lines)


def run(cfg: DictConfig, targets: Sequence[str] = (), run_dir: Path | None = None,
        forecaster: Forecaster | None = None) -> BacktestReport:
    """The ``backtest`` command (module docstring). ``forecaster`` replaces the API (tests)."""
    from aurora_jax.forecast.api import open_store

    bt = cfg.risk.backtest
    scfg = StrategyConfig.from_cfg(bt)
    store = open_store(cfg)
    frame = load_bars(store, cfg.asset, str(bt.volume_units))
    times = decision_times(frame, bt.start, bt.end, scfg.rebalance_every, scfg.decision_step)
    assumed = bt.get("assumed_latency_ms")
    fc = forecaster or api_forecaster(cfg, store, cfg.asset, scfg.decision_step, int(bt.num_paths),
                                      None if assumed is None else float(assumed))
    forecasts = collect_forecasts(times, fc, bool(cfg.get("progress", True)))
    report = run_backtest(
        frame, forecasts, scfg, SizingConfig.from_cfg(cfg.risk.sizing),
        AcceptanceConfig.from_cfg(cfg.risk.acceptance), BreakerConfig.from_cfg(cfg.risk.breakers),
        PaperBrokerConfig.from_cfg(cfg.execution.paper_broker), [float(t) for t in bt.trial_prob_thresholds],
    )
    console = Console()
    table = Table(title=f"backtest {cfg.asset}: {len(times)} decisions {times[0].date()} .. {times[-1].date()}")
    cols = [c for c in STAT_COLUMNS if c in report.stats.columns]
    table.add_column("statistic")
    for name in report.stats.index:
        table.add_column(str(name), justify="right")
    for c in cols:
        table.add_row(c, *("" if pd.isna(v) else f"{v:.4g}" for v in report.stats[c]))
    console.print(table)
    if run_dir is not None:
        run_dir = Path(run_dir)
        stats = {k: {c: (None if pd.isna(v) else float(v)) for c, v in row.items()}
                 for k, row in report.stats.iterrows()}
        atomic_write_json(run_dir / "stats.json", {
            "asset": cfg.asset, "decisions": len(times), "start": str(times[0]), "end": str(times[-1]),
            "stats": stats, "breaker_trips": [(str(t), n) for t, n in report.strategy.breaker_trips],
        })
        plot_report(report, run_dir / "equity.png", f"{cfg.asset}: strategy vs baselines")
        atomic_write_text(run_dir / "report.md", report_markdown(report, cfg, len(times), (times[0], times[-1])))
        atomic_write_text(run_dir / "decisions.csv", report.strategy.decisions.to_csv(index=False))
        fc_rows = [{"as_of": t, "price": f.price, "latency_ms": f.latency_ms,
                    "measured_latency_ms": f.measured_latency_ms,
                    **{f"q{round(lv * 100):02d}": q for lv, q in zip(f.levels, f.quantiles)}}
                   for t, f in forecasts.items()]
        atomic_write_text(run_dir / "forecasts.csv", pd.DataFrame(fc_rows).to_csv(index=False))
        console.print(f"wrote {run_dir}/report.md, equity.png, stats.json")
    return report
