"""``just forecast [experiment=...] [asset=...] [horizon=...] [as_of=...]``: print the cone,
write ``forecast.json``, ``forecast.csv`` and ``fan_chart.png`` into the run folder."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_json, atomic_write_text
from aurora_jax.forecast.api import forecast
from aurora_jax.forecast.fan_chart import plot_fan_chart


def run(cfg: DictConfig, targets: list[str], run_dir: Path):
    result = forecast(
        str(cfg.asset), int(cfg.horizon), cfg.as_of, quantiles=list(cfg.quantiles),
        thresholds=list(cfg.thresholds), num_paths=int(cfg.num_paths), cfg=cfg,
    )
    console = Console() if sys.stdout.isatty() else Console(width=140)  # logs and pipes get full rows
    table = Table(title=f"{result.asset_id} as of {result.as_of:%Y-%m-%d %H:%M} UTC — "
                        f"{result.model_version}, {result.paths.shape[0]:,} paths, spot {result.spot:,.2f}")
    qcols = [c for c in result.table.columns if c.startswith("q")]
    for col in ("step", "ds", *qcols):
        table.add_column(col, justify="right")
    for row in result.table.itertuples(index=False):
        r = row._asdict()
        table.add_row(str(r["step"]), f"{r['ds']:%Y-%m-%d}", *(f"{r[c]:,.2f}" for c in qcols))
    console.print(table)
    for t in result.thresholds:
        console.print(f"K={t['threshold']:,.2f}: P(below)={t['p_below']:.3f} P(above)={t['p_above']:.3f}"
                      f" P(touch)={t['p_touch']:.3f}")
    if result.feature_groups_missing:
        console.print(f"feature groups missing: {', '.join(result.feature_groups_missing)}")
    out = result.to_dict()
    atomic_write_text(run_dir / "forecast.csv", result.table.to_csv(index=False))
    plot_fan_chart(result.history, result.table, run_dir / "fan_chart.png",
                   f"{result.asset_id} {result.horizon}-day cone ({result.model_name})",
                   int(cfg.forecast.chart_history_days))
    path = atomic_write_json(run_dir / "forecast.json", out)
    print(path)
    return result
