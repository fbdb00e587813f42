"""Fixtures of the risk tests: the group's default config (no Hydra composition needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def risk_cfg():
    return OmegaConf.load(REPO / "configs" / "risk" / "default.yaml")


@pytest.fixture(scope="session")
def exec_cfg():
    return OmegaConf.load(REPO / "configs" / "execution" / "default.yaml")
