"""Promises the project makes: README's two commands, CI running README's test command, configs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from aurora_jax.config import load_config
from aurora_jax.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_quick_start_is_exactly_two_commands():
    cmds = _quick_start_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert cmds[0].startswith("python3.11 -m venv .venv") and cmds[0].endswith("just forecast")
    assert cmds[1].startswith("python3.11 -m venv .venv") and cmds[1].endswith("just test")


def test_ci_runs_readme_test_command_verbatim():
    out = subprocess.run(
        ["awk", "/<!-- test-command -->/{found=1; next} found && /^```bash/{grab=1; next} grab && /^```/{exit} grab{print}",
         "README.md"], cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert out == _quick_start_commands()[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "shared/data" in ci and '"$rc" -eq 5' in ci


@pytest.mark.parametrize("name", ["spx_daily", "btc_daily", "eth_daily", "smoke"])
def test_experiments_compose(name):
    cfg = load_config([f"experiment={name}"])
    assert cfg.experiment_name == name and 1 <= cfg.horizon <= cfg.forecast.max_horizon


def test_experiment_values_win_over_root_defaults():
    assert load_config(["experiment=smoke"]).num_paths == 1000


def test_unknown_experiment_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such"):
        load_config(["experiment=no_such"])
