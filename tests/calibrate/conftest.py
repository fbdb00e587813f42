"""Fixtures for the calibration tests: real BTC daily returns from the shared data."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def btc(real_store):
    from aurora_jax.eval.data import load_asset

    return load_asset(real_store, "BTC-USD")


@pytest.fixture(scope="session")
def cal_cfg():
    from aurora_jax.config import load_config

    return load_config(["experiment=btc_daily"]).calibration
