"""``just scenario asset=BTC-USD +scenario.iv_30d_atm=90``: a what-if with the trained engine.

Overrides come from ``model.scenario.overrides.<name>=v``, a root ``scenario.<name>=v`` block
(``+scenario.<name>=v`` without one), or bare targets ``<name>:<v>``
(:func:`aurora_jax.forecast.scenario.overrides_from_config`). Prints base, scenario and difference
per step, writes ``scenario.json``, ``scenario.csv``, ``scenario.png`` (both cones overlaid) and
``drivers_base.png`` / ``drivers_scenario.png`` into the run folder. A missing driver surrogate
for the engine version is fitted and saved first when ``model.explain.fit_on_demand``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from aurora_jax.atomic import atomic_write_json, atomic_write_text
from aurora_jax.forecast.quantiles import quantile_column
from aurora_jax.forecast.scenario import (
    ScenarioResult,
    load_engine,
    overrides_from_config,
    prepare_base,
    run_scenario,
)


def print_result(res: ScenarioResult, console: Console) -> None:
    over = ", ".join(f"{k}={v:g}" for k, v in res.overrides.items())
    table = Table(title=f"{res.asset_id} as of {res.as_of:%Y-%m-%d %H:%M} UTC — scenario {over} "
                        f"(conditional), {res.model_version}, {res.num_paths:,} paths, spot {res.spot:,.2f}")
    show = [j for j, lv in enumerate(res.levels) if min(abs(lv - x) for x in (0.05, 0.5, 0.95)) < 1e-9] or \
        list(range(len(res.levels)))
    table.add_column("step", justify="right")
    table.add_column("ds")
    for name in ("base", "scenario", "Δ"):
        for j in show:
            table.add_column(f"{name} {quantile_column(res.levels[j])}", justify="right")
    for k in range(res.horizon):
        cells = [f"{res.base.quantiles[k, j]:,.2f}" for j in show]
        cells += [f"{res.scenario.quantiles[k, j]:,.2f}" for j in show]
        cells += [f"{res.difference[k, j]:+,.2f}" for j in show]
        table.add_row(str(k + 1), f"{res.dates[k]:%Y-%m-%d}", *cells)
    console.print(table)
    console.print(f"regime: base {res.base.regime}, scenario {res.scenario.regime}; "
                  f"{len(res.changes)} conditioning entries changed")
    for c in res.changes:
        if isinstance(c["base"], list):
            console.print(f"  {c['input']}: step 1 {c['base'][0]:.4g} -> {c['scenario'][0]:.4g}, "
                          f"step {len(c['base'])} {c['base'][-1]:.4g} -> {c['scenario'][-1]:.4g}")
        else:
            console.print(f"  {c['input']}: {c['base']:.4g} -> {c['scenario']:.4g}")
    for name, cone in (("base", res.base), ("scenario", res.scenario)):
        d = cone.drivers
        if d is None:
            continue
        for role in ("upside", "downside", "trend"):
            r = d[role]
            if r["reliable"]:
                top = ", ".join(f"{x['label']} {x['sign']}{abs(x['effect_pct']):.1f}%" for x in r["drivers"])
                console.print(f"  drivers ({name}, {role}, R² {r['fidelity_r2']:.2f}): {top}")
            else:
                console.print(f"  drivers ({name}, {role}): [yellow]unreliable[/] — {r['reason']}")


def run(cfg: DictConfig, targets: list[str], run_dir: Path) -> ScenarioResult:
    from aurora_jax.forecast.api import open_store
    from aurora_jax.forecast.explain.charts import plot_drivers, plot_scenario
    from aurora_jax.forecast.explain.fit import load_or_fit_surrogate
    from aurora_jax.train.pipeline import engine_config

    cfg = engine_config(cfg)
    overrides = overrides_from_config(cfg, targets)
    asset = str(cfg.asset)
    store = open_store(cfg)
    store.require_asset(asset)
    engine = load_engine(cfg, asset)
    progress = bool(cfg.get("progress", True))
    surrogate = load_or_fit_surrogate(cfg, engine.params, engine.entry, store,
                                      fit_missing=bool(cfg.model.explain.fit_on_demand),
                                      ewaf_losses=engine.ewaf_losses, progress=progress)
    base = prepare_base(store, asset, cfg.as_of, cfg, engine.params.vol_path)
    res = run_scenario(engine, base, overrides, cfg, horizon=int(cfg.horizon), num_paths=int(cfg.num_paths),
                       levels=list(cfg.quantiles), thresholds=list(cfg.thresholds), surrogate=surrogate)
    print_result(res, Console(width=max(Console().width, 150)))
    run_dir = Path(run_dir)
    out = res.to_dict()
    if surrogate is not None:
        out["surrogate"] = surrogate.report()
    atomic_write_text(run_dir / "scenario.csv", res.table().to_csv(index=False))
    history = base.snap.close()
    plot_scenario(res, history, run_dir / "scenario.png", f"{asset} {res.horizon}-day cone: base vs scenario",
                  int(cfg.model.scenario.chart_history_days))
    for name, cone in (("base", res.base), ("scenario", res.scenario)):
        if cone.drivers is not None:
            plot_drivers(cone.drivers, run_dir / f"drivers_{name}.png",
                         f"{asset} drivers of the {name} cone (h={cone.drivers['horizon']})")
    path = atomic_write_json(run_dir / "scenario.json", out)
    print(path)
    return res
