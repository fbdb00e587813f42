"""Trend ensemble: per-regime meta-weights recover the informative component, EWAF moves weight
away from a component with recent errors, and its persisted state round-trips atomically."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.ar_local import ARLocal
from aurora_jax.models.ssm_student import SSMStudent
from aurora_jax.models.tcn_lite import TCNLite
from aurora_jax.models.trend_ensemble import (
    COMPONENTS,
    EwafState,
    EwafTracker,
    TrendEnsemble,
    ewaf_errors,
    ewaf_update,
    fit_meta_logits,
    realized_returns_since,
    replay_ewaf,
)


def test_meta_weights_pick_the_informative_component_per_regime():
    """Regime 0: component 1 is the target; regime 1: component 2 is; regime 2 is never seen and
    stays at equal weights (ridge toward uniform)."""
    rng = np.random.default_rng(0)
    n, h = 600, 4
    comps = rng.standard_normal((n, 3, h))
    regime = rng.integers(0, 2, n)
    y = np.where(regime[:, None] == 0, comps[:, 1], comps[:, 2]) + 0.1 * rng.standard_normal((n, h))
    theta = np.asarray(fit_meta_logits(comps, y, np.ones_like(y), regime, 3, l2=1e-3, steps=500,
                                       learning_rate=0.1))
    w = np.asarray(jax.nn.softmax(jnp.asarray(theta), axis=-1))
    assert w[0, 1] > 0.9 and w[1, 2] > 0.9
    np.testing.assert_allclose(w[2], 1 / 3, atol=1e-3)


def test_ewaf_update_and_weights_follow_recent_errors():
    losses = np.zeros(3)
    for _ in range(50):  # component 0 keeps erring
        losses = ewaf_update(losses, np.array([2.0, 0.5, 0.5]), 0.9)
    # the discounted sum converges to err / (1 - discount)
    np.testing.assert_allclose(losses, np.array([2.0, 0.5, 0.5]) / 0.1 * (1 - 0.9**50), rtol=1e-9)
    st = SSMStudent(58, 4, d_model=4, state_dim=2, n_blocks=1, latent_dim=2, hidden=4, nu_min=2.5,
                    key=jax.random.PRNGKey(0))
    tcn = TCNLite(58, 4, channels=2, kernel=2, dilations=[1], hidden=4, key=jax.random.PRNGKey(1))
    ens = TrendEnsemble(st, ARLocal(1, 8, 1.0, 1.0), tcn, jnp.zeros((3, 3)), eta=0.5)
    w0 = np.asarray(ens.weights(jnp.asarray(1), jnp.zeros(3)))
    w = np.asarray(ens.weights(jnp.asarray(1), jnp.asarray(losses, jnp.float32)))
    np.testing.assert_allclose(w0, 1 / 3, atol=1e-6)
    ratio = np.exp(-0.5 * (losses[0] - losses[1]))
    np.testing.assert_allclose(w[0] / w[1], ratio, rtol=1e-4)
    assert abs(w.sum() - 1) < 1e-6


def test_replay_scores_first_steps():
    comps = np.zeros((5, 3, 2))
    comps[:, 1, 0] = 1.0
    y = np.ones((5, 2))
    path = replay_ewaf(comps, y, np.ones_like(y), 1.0)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[-1], [5.0, 0.0, 5.0])
    np.testing.assert_allclose(path[1], [2.0, 0.0, 2.0])


def test_tracker_persists_and_scores_realized_closes(tmp_path):
    idx = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")
    close = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0, 104.0], index=idx)
    tracker = EwafTracker(tmp_path / "ewaf" / "BTC-USD.json", discount=0.5)
    pending = np.zeros((3, 4))
    pending[0] = 1.0  # component 0 predicts +1 normalized per step
    s1 = tracker.observe(idx[2], close, pending, loc=0.0, scale=0.01)
    assert s1.n_updates == 0 and s1.last_as_of == idx[2].isoformat()
    s2 = tracker.observe(idx[4], close, pending, loc=0.0, scale=0.01)
    realized = np.diff(np.log([99.0, 102.0, 103.0]))
    np.testing.assert_allclose(realized_returns_since(close[close.index <= idx[4]], idx[2]), realized)
    expected = ewaf_errors(pending, 0.0, 0.01, realized)
    np.testing.assert_allclose(s2.losses, expected, rtol=1e-9)
    assert s2.n_updates == 1
    # point in time: the losses are known from idx[4] on; before that, pure meta-weights
    assert s2.history == [[idx[4].isoformat(), s2.losses]]
    np.testing.assert_allclose(s2.losses_at(idx[3]), 0.0)
    np.testing.assert_allclose(s2.losses_at(idx[5]), expected, rtol=1e-6)
    # persisted, and a historical as-of does not rewrite it
    on_disk = json.loads((tmp_path / "ewaf" / "BTC-USD.json").read_text())
    assert on_disk["n_updates"] == 1 and on_disk["last_as_of"] == idx[4].isoformat()
    s3 = tracker.observe(idx[1], close, pending, loc=0.0, scale=0.01)
    assert s3 == tracker.load() and s3.last_as_of == idx[4].isoformat()
    assert not list((tmp_path / "ewaf").glob(".*.tmp"))
    assert tracker.load().components == COMPONENTS


def test_bad_input_names_the_field(tmp_path):
    with pytest.raises(InvalidParameterError, match="discount"):
        EwafTracker(tmp_path / "x.json", discount=1.5)
    tr = EwafTracker(tmp_path / "x.json", discount=0.9)
    with pytest.raises(InvalidParameterError, match="component_means"):
        tr.step(EwafState(), pd.Timestamp("2024-01-01", tz="UTC"), pd.Series(dtype=float), np.zeros((2, 4)), 0.0, 1.0)
