"""Expanding-window walk-forward evaluation.

As-of dates run every ``step_days`` from ``start`` to ``end`` (scored), preceded by
``warmup_days`` of unscored dates that only fill the conformal buffers. At each as-of date:

1. forecasts issued earlier whose outcome is now observable (target close stamp ``<= as_of``)
   are scored and their errors enter the method's conformal buffers (in target-time order);
2. the calibration signals are computed from data ``<= as_of``
   (:class:`aurora_jax.eval.signals.SignalEngine`);
3. every method fits (refit every ``refit_every_days``, else conditions on the new returns) on
   the returns ``<= as_of`` and samples ``num_paths`` paths ``horizon`` days ahead; cumulative
   h-day log-returns (in %) give the raw quantiles at ``calibration.levels``, which the method's
   :class:`ConformalCalibrator` turns into calibrated quantiles (``<method>+conformal``).

Scores (per method, as-of date and horizon) are computed when the outcome is known: sample
CRPS of the h-day log-return in % (calibrated: the samples pushed through the raw -> calibrated
quantile map), PIT, pinball per level, P5-P95 / P10-P90 coverage and width, tail misses.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from aurora_jax.calibrate.conformal import ConformalCalibrator
from aurora_jax.errors import DataRangeError, InvalidParameterError, ModelUnavailableError
from aurora_jax.eval.data import AssetSeries, SeriesCache
from aurora_jax.eval.forecaster import AsOfView, ForecastContext, Forecaster, check_paths
from aurora_jax.eval.recalibration import grid_levels
from aurora_jax.eval.scoring import band_stats, crps_sample, pinball, pit, quantile_map_samples
from aurora_jax.eval.signals import SignalEngine

CAL_SUFFIX = "+conformal"


def _ts(x) -> pd.Timestamp:
    t = pd.Timestamp(x)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@dataclass(frozen=True)
class WalkForwardSettings:
    asset: str
    start: pd.Timestamp
    end: pd.Timestamp
    step_days: int
    warmup_days: int
    lookback_days: int
    min_asof_dates: int
    horizon: int
    num_paths: int
    refit_every_days: int
    calibrated: bool
    seed: int
    levels: tuple[float, ...]
    fan_methods: tuple[str, ...] = ()
    recal_grid: int = 0          # quantile-grid size kept per scored forecast (0: none kept)
    recal_min_n: int = 30        # smallest group the hindsight recalibration refits

    @classmethod
    def from_config(cls, cfg: DictConfig) -> WalkForwardSettings:
        ev = cfg.eval
        try:
            start, end = _ts(ev.start), _ts(ev.end)
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError("eval.start/eval.end", (ev.start, ev.end), "ISO dates") from exc
        s = cls(
            asset=str(cfg.asset), start=start, end=end, step_days=int(ev.step_days),
            warmup_days=int(ev.warmup_days), lookback_days=int(ev.lookback_days),
            min_asof_dates=int(ev.min_asof_dates), horizon=int(ev.horizon),
            num_paths=int(ev.num_paths), refit_every_days=int(ev.refit_every_days),
            calibrated=bool(ev.calibrated), seed=int(cfg.seed),
            levels=tuple(float(x) for x in cfg.calibration.levels),
            fan_methods=tuple(str(m) for m in ev.report.fan_methods),
            recal_grid=int(ev.recalibration.grid), recal_min_n=int(ev.recalibration.min_n),
        )
        checks = [
            ("eval.step_days", s.step_days, 1, 366), ("eval.horizon", s.horizon, 1, 14),
            ("eval.num_paths", s.num_paths, 100, 1_000_000), ("eval.warmup_days", s.warmup_days, 0, 10_000),
            ("eval.refit_every_days", s.refit_every_days, 1, 10_000),
            ("eval.lookback_days", s.lookback_days, 30, 100_000),
            ("eval.recalibration.grid", s.recal_grid, 0, 1000),
            ("eval.recalibration.min_n", s.recal_min_n, 2, 1_000_000),
        ]
        for name, v, lo, hi in checks:
            if not lo <= v <= hi:
                raise InvalidParameterError(name, v, f"{lo} .. {hi}")
        if s.recal_grid:
            grid_levels(s.recal_grid)  # refuses a one-level grid, naming eval.recalibration.grid
        if end <= start:
            raise InvalidParameterError("eval.end", str(end.date()), f"after eval.start={start.date()}")
        for lv in (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95):
            if not any(abs(lv - x) < 1e-9 for x in s.levels):
                raise InvalidParameterError("calibration.levels", list(s.levels), f"must include {lv}")
        return s

    def schedule(self) -> tuple[pd.DatetimeIndex, int]:
        """All as-of dates (warm-up first) and the number of warm-up dates."""
        scored = pd.date_range(self.start, self.end, freq=f"{self.step_days}D")
        n_warm = math.ceil(self.warmup_days / self.step_days)
        warm = pd.DatetimeIndex([self.start - pd.Timedelta(days=self.step_days * k)
                                 for k in range(n_warm, 0, -1)])
        return warm.append(scored), n_warm

    def validate(self, series: AssetSeries) -> None:
        """The bad-input checks, before any computation."""
        dates, n_warm = self.schedule()
        n_scored = len(dates) - n_warm
        if n_scored < self.min_asof_dates:
            raise InvalidParameterError(
                "eval.start/eval.end/eval.step_days",
                f"{self.start.date()}..{self.end.date()} every {self.step_days}d = {n_scored} as-of dates",
                f">= {self.min_asof_dates} as-of dates (eval.min_asof_dates)",
            )
        first_needed = dates[0] - pd.Timedelta(days=self.lookback_days)
        if first_needed < series.first:
            earliest = series.first + pd.Timedelta(days=self.lookback_days + self.warmup_days)
            raise DataRangeError(
                "eval.start", f"{self.start.date()} (needs {self.lookback_days} days of lookback "
                f"+ {self.warmup_days} warm-up days before it, from {first_needed.date()})",
                earliest.date(), series.last.date(),
            )
        if self.end > series.last:
            raise DataRangeError("eval.end", self.end.date(), series.first.date(), series.last.date())


@dataclass
class _Pending:
    method: str
    as_of: pd.Timestamp
    base_time: pd.Timestamp
    base_close: float
    regime: str
    paths: np.ndarray            # (num_paths, H) cumulative log-returns in %
    raw_q: np.ndarray            # (H, L)
    cal_q: np.ndarray | None     # (H, L)
    infos: list[dict] | None
    done: set = field(default_factory=set)


@dataclass
class WalkForwardResult:
    settings: WalkForwardSettings
    scores: pd.DataFrame
    signals: pd.DataFrame
    fans: dict[str, dict[pd.Timestamp, np.ndarray]]
    unavailable: dict[str, str]
    skipped: dict[str, int]
    unscored: dict[str, int]
    router_fits: list[dict]
    calibrators: dict[str, ConformalCalibrator]
    snapshot: dict[str, tuple[object, dict]]
    seconds: dict[str, float]
    change_points: dict[str, list[str]]
    grids: np.ndarray | None = None  # (rows of scores, recal_grid): each scored forecast's quantiles


def method_rng(seed: int, method: str, k: int) -> np.random.Generator:
    """Independent, reproducible stream per (method, as-of index), whatever else runs."""
    return np.random.default_rng([seed, zlib.crc32(method.encode()), k])


def score_row(samples: np.ndarray, q: np.ndarray, levels: np.ndarray, y: float) -> dict:
    i05, i10, i90, i95 = (int(np.argmin(np.abs(levels - v))) for v in (0.05, 0.10, 0.90, 0.95))
    c90, w90, tail = band_stats(q[i05], q[i95], y)
    c80, w80, _ = band_stats(q[i10], q[i90], y)
    row = {"crps": crps_sample(samples, y), "pit": pit(samples, y), "cov90": c90, "cov80": c80,
           "width90": w90, "width80": w80, "tail_miss": tail}
    pb = pinball(q, levels, y)
    for lv, v in zip(levels, pb):
        row[f"pin_{lv:g}"] = float(v)
    return row


class WalkForward:
    def __init__(self, cfg: DictConfig, cache: SeriesCache, forecasters: list[Forecaster],
                 unavailable: dict[str, str] | None = None, snapshot_at: pd.Timestamp | None = None,
                 teacher=None):
        self.cfg = cfg
        self.s = WalkForwardSettings.from_config(cfg)
        self.cache = cache
        self.forecasters = forecasters
        self.unavailable = dict(unavailable or {})
        self.snapshot_at = snapshot_at
        self.teacher = teacher

    def run(self) -> WalkForwardResult:
        s = self.s
        series = self.cache.asset(s.asset)
        s.validate(series)
        dates, n_warm = s.schedule()
        levels = np.asarray(s.levels)
        H = s.horizon
        close = series.close
        close_lookup = dict(zip(close.index, close.to_numpy(dtype=float)))
        returns_all = series.returns
        engine = SignalEngine(self.cfg.calibration, seed=s.seed, teacher=self.teacher)
        calibrators = {f.name: ConformalCalibrator.from_config(self.cfg.calibration)
                       for f in self.forecasters}
        states: dict[str, object] = {}
        fit_at: dict[str, pd.Timestamp] = {}
        pending: list[_Pending] = []
        rows: list[dict] = []
        grids: list[np.ndarray] = []  # parallel to rows when s.recal_grid
        taus = grid_levels(s.recal_grid) if s.recal_grid else None
        sig_rows: list[dict] = []
        fans: dict[str, dict[pd.Timestamp, np.ndarray]] = {}
        skipped = {f.name: 0 for f in self.forecasters}
        unscored = {f.name: 0 for f in self.forecasters}
        seconds = {f.name: 0.0 for f in self.forecasters}
        seconds["signals"] = 0.0
        snapshot: dict[str, tuple[object, dict]] = {}
        ref_method = self.forecasters[0].name if self.forecasters else None
        i50 = int(np.argmin(np.abs(levels - 0.5)))
        i25 = int(np.argmin(np.abs(levels - 0.25)))
        i75 = int(np.argmin(np.abs(levels - 0.75)))
        first_scored = dates[n_warm]

        def mature(pending: list[_Pending], now: pd.Timestamp, trans: bool) -> list[_Pending]:
            """Score and feed back every pending forecast whose outcome is observable at ``now``."""
            due = []
            for p in pending:
                for h in range(1, H + 1):
                    tgt = p.base_time + pd.Timedelta(days=h)
                    if h not in p.done and tgt <= now:
                        due.append((tgt, h, p))
            due.sort(key=lambda x: (x[0], x[1], x[2].method))
            for tgt, h, p in due:
                p.done.add(h)
                y_close = close_lookup.get(tgt)
                if y_close is None:
                    unscored[p.method] += 1
                    continue
                y = 100.0 * (math.log(y_close) - math.log(p.base_close))
                cal = calibrators[p.method]
                raw = dict(zip(s.levels, p.raw_q[h - 1]))
                issued = dict(zip(s.levels, p.cal_q[h - 1])) if p.cal_q is not None else None
                cal.update(raw, y, p.regime, h, key=f"{s.asset}|{p.method}|{p.as_of.isoformat()}|{h}",
                           calibrated_quantiles=issued, trans=trans)
                if p.method == ref_method and h == 1:
                    scale = max(p.raw_q[0, i75] - p.raw_q[0, i25], 1e-9)
                    engine.observe_error(now, (y - p.raw_q[0, i50]) / scale)
                if p.as_of < first_scored:
                    continue
                base = {"as_of": p.as_of, "h": h, "regime": p.regime, "y": y,
                        "bucket": cal.config.bucket_of(h)}
                samp = p.paths[:, h - 1].astype(float)
                rows.append({"method": p.method, **base, **score_row(samp, p.raw_q[h - 1], levels, y)})
                if taus is not None:
                    grids.append(np.quantile(samp, taus).astype(np.float32))
                if p.cal_q is not None:
                    mapped = quantile_map_samples(samp, p.raw_q[h - 1], p.cal_q[h - 1])
                    info = p.infos[h - 1]
                    rows.append({"method": p.method + CAL_SUFFIX, **base,
                                 **score_row(mapped, p.cal_q[h - 1], levels, y), **info})
                    if taus is not None:
                        grids.append(np.quantile(mapped, taus).astype(np.float32))
            return [p for p in pending if len(p.done) < H]

        progress = Progress(TextColumn("[bold]eval[/] {task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                            TimeRemainingColumn(), disable=not bool(self.cfg.get("progress", True)))
        with progress:
            task = progress.add_task(f"{s.asset} as-of dates", total=len(dates))
            for k, as_of in enumerate(dates):
                t0 = time.perf_counter()
                sig = engine.at(as_of, returns_all, series.iv)
                seconds["signals"] += time.perf_counter() - t0
                # 1) outcomes now observable, in target-time order
                pending = mature(pending, as_of, sig.trans)

                # 2) forecasts at this as-of date
                returns = returns_all[returns_all.index <= as_of]
                view = AsOfView(self.cache, as_of)
                base_time = close.index[close.index <= as_of][-1]
                base_close = close_lookup[base_time]
                issued_now: list[tuple[str, np.ndarray, np.ndarray]] = []
                for f in self.forecasters:
                    t1 = time.perf_counter()
                    refit = f.name not in fit_at or (as_of - fit_at[f.name]) >= pd.Timedelta(
                        days=s.refit_every_days)
                    ctx = ForecastContext(as_of, s.asset, view, refit, states.get(f.name))
                    try:
                        state = f.fit(returns, ctx)
                        paths = check_paths(f.sample(state, H, s.num_paths, method_rng(s.seed, f.name, k)),
                                            s.num_paths, H, f.name)
                    except ModelUnavailableError:
                        skipped[f.name] += 1
                        seconds[f.name] += time.perf_counter() - t1
                        continue
                    states[f.name] = state
                    if refit:
                        fit_at[f.name] = as_of
                    cum = 100.0 * np.cumsum(paths, axis=1)
                    raw_q = np.quantile(cum, levels, axis=0).T  # (H, L)
                    issued_now.append((f.name, cum, raw_q))
                    seconds[f.name] += time.perf_counter() - t1
                vols = [np.std(c[:, 0]) for _, c, _ in issued_now]
                spread = float(np.std(vols) / np.mean(vols)) if len(vols) > 1 and np.mean(vols) > 0 else None
                for name, cum, raw_q in issued_now:
                    cal_q, infos = None, None
                    if s.calibrated:
                        cal_q = np.empty_like(raw_q)
                        infos = []
                        for h in range(1, H + 1):
                            cf = calibrators[name].calibrate(
                                dict(zip(s.levels, raw_q[h - 1])), sig.regime, h,
                                z=sig.z, aci=sig.aci, router_entropy=sig.router_entropy,
                                state_spread=spread)
                            cal_q[h - 1] = cf.values()
                            inf = cf.info
                            infos.append({"kappa": inf.kappa, "kappa_plus": inf.kappa_plus,
                                          "calib_bucket": inf.bucket, "calib_n": inf.n,
                                          "alpha95": inf.alpha[0.95], "alpha05": inf.alpha[0.05]})
                    pending.append(_Pending(name, as_of, base_time, base_close, sig.regime,
                                            cum.astype(np.float32), raw_q, cal_q, infos))
                    if name in s.fan_methods or not s.fan_methods:
                        fans.setdefault(name, {})[as_of] = raw_q
                        if cal_q is not None:
                            fans.setdefault(name + CAL_SUFFIX, {})[as_of] = cal_q
                if self.snapshot_at is not None and not snapshot and as_of >= self.snapshot_at:
                    snapshot = {n: (states.get(n), calibrators[n].to_dict()) for n in calibrators}
                    snapshot["__as_of__"] = (as_of, {})
                row = sig.as_row()
                row["warmup"] = bool(k < n_warm)
                row["state_spread"] = spread
                sig_rows.append(row)
                progress.advance(task)
        # outcomes that became known after the last as-of date (up to the end of the data)
        pending = mature(pending, close.index[-1], False)
        for p in pending:
            unscored[p.method] += H - len(p.done)
        scores = pd.DataFrame(rows)
        signals = pd.DataFrame(sig_rows).set_index("as_of")
        return WalkForwardResult(
            settings=s, scores=scores, signals=signals, fans=fans, unavailable=self.unavailable,
            skipped=skipped, unscored=unscored, router_fits=engine.router_fits,
            calibrators=calibrators, snapshot=snapshot, seconds=seconds,
            change_points={"page_hinkley_returns": [str(t) for t in engine.ph_alarms],
                           "cusum_errors": [str(t) for t in engine.cu_alarms]},
            grids=np.stack(grids) if grids else None,
        )
