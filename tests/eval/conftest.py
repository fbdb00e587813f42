"""Fixtures for the evaluation tests: the real store and small, fast configurations."""

from __future__ import annotations

import pytest

# small settings: few paths, few windows, short HMM window; every key is a real config key
FAST = [
    "eval.num_paths=200",
    "eval.warmup_days=28",
    "eval.lookback_days=400",
    "eval.horizon=14",
    "eval.peers.garch.window_days=400",
    "calibration.router.stride=25",
    "calibration.router.sim_windows=24",
    "calibration.router.steps=150",
    "calibration.router.refit_every_days=3650",
    "calibration.router.max_train_windows=80",
    "calibration.hmm.enabled=false",
    "calibration.hmm.window=300",
    "calibration.hmm.num_iters=20",
    "calibration.regime.lookback_days=365",
    "calibration.conformal.min_bucket=10",
    "calibration.conformal.min_pooled=10",
]


@pytest.fixture(scope="session")
def btc(real_store):
    from aurora_jax.eval.data import load_asset

    return load_asset(real_store, "BTC-USD")


@pytest.fixture
def make_cfg(real_store, tmp_path):
    """Compose the btc_daily experiment on the real store with fast settings plus overrides."""
    from aurora_jax.config import load_config

    def make(*overrides: str):
        return load_config(["experiment=btc_daily", f"data.root={real_store.root}",
                            f"outputs_dir={tmp_path / 'outputs'}", "progress=false", *FAST,
                            *overrides])

    return make
