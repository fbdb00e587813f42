"""Command-line entry point: ``python -m aurora_jax.cli <command> [target] [key=value ...]``.

Each command is one function ``run(cfg, targets) -> object`` in the module named below; the
CLI only composes the Hydra config, creates the run folder, calls it and reports errors.
``key=value`` arguments are Hydra overrides; bare words are targets (``bench data``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from rich.console import Console

from aurora_jax.config import load_config, start_run
from aurora_jax.errors import AuroraError

COMMANDS: dict[str, str] = {
    "ingest": "aurora_jax.data.ingest:run",
    "forecast": "aurora_jax.forecast.command:run",
    "train": "aurora_jax.train.command:run",
    "models": "aurora_jax.train.registry:run_list",
    "eval": "aurora_jax.eval.command:run",
    "eval-sim": "aurora_jax.sim.report:run",
    "nightly": "serving.nightly:run",
    "serve": "serving.app:run",
    "backtest": "aurora_jax.risk.backtest_command:run",
    "scenario": "aurora_jax.forecast.scenario_command:run",
    "bench": "experiments.bench:run",
}


def _resolve(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


SCENARIO_KEYS = ("iv_30d_atm", "iv_skew", "corr_btc", "funding_rate", "gamma_squeeze_index",
                 "inventory_unwind_index")

def _alias(override: str) -> str:
    """``iv_30d_atm=90`` is short for ``scenario.iv_30d_atm=90`` (the what-if inputs)."""
    key = override.split("=", 1)[0]
    return f"scenario.{override}" if key in SCENARIO_KEYS else override


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True)
    if not argv or argv[0] in {"-h", "--help"}:
        console.print("usage: aurora <command> [target ...] [key=value ...]")
        console.print("commands: " + ", ".join(sorted(COMMANDS)))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        console.print(f"[red]unknown command {command!r}[/]; known: {', '.join(sorted(COMMANDS))}")
        return 2
    targets = [a for a in rest if "=" not in a]
    overrides = [_alias(a) for a in rest if "=" in a]
    try:
        cfg = load_config(overrides)
        func = _resolve(COMMANDS[command])
        run_dir = start_run(cfg, " ".join([command, *rest]))
        func(cfg, targets=targets, run_dir=run_dir)
    except AuroraError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
