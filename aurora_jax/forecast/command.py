"""``just forecast [experiment=...] [asset=...] [horizon=...] [as_of=...]``: print the cone,
write ``forecast.json``, ``forecast.csv`` and ``fan_chart.png`` into the run folder.

With the engine (``model=engine``) the forecast's drivers (top blocks behind upside risk,
downside risk and trend direction, from the surrogate of the engine version; fitted and saved
first when missing and ``model.explain.fit_on_demand``) are printed, stored in ``forecast.json``
and drawn in ``drivers.png``; a quantity whose surrogate fidelity is below
``model.explain.min_fidelity`` is shown as unreliable, without drivers."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_json, atomic_write_text
from aurora_jax.forecast.api import forecast
from aurora_jax.forecast.fan_chart import plot_fan_chart


def print_drivers(drivers: dict, console: Console) -> None:
    """One line per quantity: its top drivers with sign and size, or why there are none."""
    console.print(f"drivers (surrogate of {drivers['surrogate'].get('engine_version')}, horizon "
                  f"{drivers['horizon']}):")
    for role in ("upside", "downside", "trend"):
        r = drivers[role]
        if r["reliable"]:
            top = ", ".join(f"{x['label']} {x['sign']}{abs(x['effect_pct']):.1f}"
                            f"{'%' if r['units'] == 'log width' else ' pp'}" for x in r["drivers"])
            console.print(f"  {role:8s} R² {r['fidelity_r2']:.2f}: {top}")
        else:
            console.print(f"  {role:8s} unreliable: {r['reason']}")


def run(cfg: DictConfig, targets: list[str], run_dir: Path):
    engine = str(cfg.model.name) == "aurora"
    fit = bool(cfg.model.explain.fit_on_demand) if engine and "explain" in cfg.model else False
    result = forecast(
        str(cfg.asset), int(cfg.horizon), cfg.as_of, quantiles=list(cfg.quantiles),
        thresholds=list(cfg.thresholds), num_paths=int(cfg.num_paths), cfg=cfg, drivers=engine,
        fit_surrogate=fit,
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
    if result.drivers is not None:
        from aurora_jax.forecast.explain.charts import plot_drivers

        print_drivers(result.drivers, console)
        plot_drivers(result.drivers, run_dir / "drivers.png",
                     f"{result.asset_id} drivers of the {result.horizon}-day forecast as of {result.as_of:%Y-%m-%d} "
                     f"(surrogate horizon {result.drivers['horizon']})")
    elif engine:
        console.print("drivers: no surrogate for this engine version (model.explain.fit_on_demand=false)")
    out = result.to_dict()
    atomic_write_text(run_dir / "forecast.csv", result.table.to_csv(index=False))
    plot_fan_chart(result.history, result.table, run_dir / "fan_chart.png",
                   f"{result.asset_id} {result.horizon}-day cone ({result.model_name})",
                   int(cfg.forecast.chart_history_days))
    path = atomic_write_json(run_dir / "forecast.json", out)
    print(path)
    return result
