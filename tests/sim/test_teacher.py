"""The teacher on real BTC: a small fit, save/load by version, simulate, compile-once, report."""

from __future__ import annotations

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aurora_jax.config import load_config
from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.sim.teacher import (
    TeacherSpec,
    fit_teacher,
    init_teacher,
    list_versions,
    load_teacher,
    load_teacher_data,
    save_teacher,
)

SMALL = [
    "experiment=teacher_btc",
    "progress=false",
    "sim.teacher.daily_start=2020-06-01",
    "sim.teacher.hourly_start=2021-01-01",
    "sim.teacher.fit.batch_paths=6",
    "sim.teacher.fit.segment_days=2",
    "sim.teacher.fit.hourly_segment_hours=24",
    "sim.teacher.fit.sig_depth=2",
    "sim.report.n_paths=2",
    "sim.report.n_boot=8",
    "sim.report.hurst_table_paths=3",
    "sim.report.hurst_table_steps=512",
]


# one simulate shape for every test below (each new shape costs a compile)
P, D, SUB = 64, 3, 24


@pytest.fixture(scope="module")
def cfg(real_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    return load_config(
        SMALL
        + [
            f"data.root={real_store.root}",
            f"sim.teacher.dir={out / 'models'}",
            f"outputs_dir={out / 'outputs'}",
        ]
    )


@pytest.fixture(scope="module")
def data(cfg):
    return load_teacher_data(cfg)


@pytest.fixture(scope="module")
def fitted(cfg, data):
    return fit_teacher(cfg, data, steps=2, progress=False)


def test_data_window_and_alignment(data):
    assert str(data.days[0].date()) >= "2020-06-01" and str(data.days[-1].date()) == "2023-12-31"
    assert data.hourly.shape[1] == 24 and len(data.hourly_days) == data.hourly.shape[0]
    assert np.all(np.isfinite(data.returns)) and np.all(data.pk_var > 0)
    # daily close-to-close return = sum of that day's hourly mark-price returns (same UTC day),
    # up to the spot-vs-mark basis: strongly correlated
    pos = {d: i for i, d in enumerate(data.days)}
    idx = [(pos[d], j) for j, d in enumerate(data.hourly_days) if d in pos]
    daily = np.array([data.returns[i] for i, _ in idx])
    hsum = np.array([data.hourly[j].sum() for _, j in idx])
    assert np.corrcoef(daily, hsum)[0, 1] > 0.95


def test_small_fit_moves_parameters_and_stays_valid(cfg, data, fitted):
    h = fitted.history
    assert len(h) == 2 and all(np.isfinite(r["loss"]) for r in h)
    for k in (
        "ql_returns",
        "ql_level",
        "ql_whittle",
        "mom_var",
        "mmd_daily",
        "mmd_hourly",
        "l1_jump",
        "smooth",
    ):
        assert np.isfinite(h[-1][k])
    init = init_teacher(fitted.teacher.spec, data, jax.random.split(jax.random.key(0))[0])
    moved = jax.tree_util.tree_map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))),
        eqx.filter(fitted.teacher, eqx.is_inexact_array),
        eqx.filter(init, eqx.is_inexact_array),
    )
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4
    s = fitted.teacher.summary()
    assert 0 < s["jump_branching"] < fitted.teacher.spec.branching_max
    assert max(s["A_eigenvalues_real"]) < 0
    assert 0 < s["hurst"] < 1
    # the stationary point of the latent drift is a zero of the time-averaged drift
    t = fitted.teacher
    z = jnp.asarray([0.5, -0.3])
    xs = t.stationary_latent(z)
    ts = jnp.asarray([0.0, 0.25, 0.5, 0.75])
    f = (
        t.sde.drift.a(z) @ xs
        + t.sde.drift.mean_reversion(z)
        + jnp.mean(jax.vmap(lambda s_: t.sde.drift.neural(s_, xs, z))(ts), axis=0)
    )
    assert float(jnp.max(jnp.abs(f))) < 1e-4


def test_simulated_returns_have_the_data_scale(fitted, data):
    t = fitted.teacher
    x0 = t.state_from_history(data.pk_var[-5:])
    z = t.regime_from_history(data.returns, data.pk_var)
    r = np.asarray(t.simulate(jax.random.key(3), x0, z, P, D, 1.0, SUB))
    assert r.shape == (P, D) and np.all(np.isfinite(r))
    real_sd = np.std(data.returns)
    assert 0.4 * real_sd < r.std() < 2.5 * real_sd


def test_save_load_roundtrip_and_atomicity(cfg, fitted):
    root = cfg.sim.teacher.dir
    path = save_teacher(fitted.teacher, root, "btc-test-1", {"note": "test"})
    assert (path / "teacher.json").exists() and (path / "state").is_dir()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(InvalidParameterError, match="version"):
        save_teacher(fitted.teacher, root, "btc-test-1")
    assert "btc-test-1" in list_versions(root)
    for ref in ("btc-test-1", "latest", str(path)):
        t = load_teacher(ref, root=root)
        assert t.spec == fitted.teacher.spec
        a = t.simulate(jax.random.key(1), jnp.zeros(2), jnp.zeros(2), P, D, 1.0, SUB)
        b = fitted.teacher.simulate(jax.random.key(1), jnp.zeros(2), jnp.zeros(2), P, D, 1.0, SUB)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    with pytest.raises(ModelUnavailableError, match="not found"):
        load_teacher("btc-nope", root=root)


def test_simulate_compiles_once_per_shape(fitted, caplog):
    t = fitted.teacher
    t.simulate(jax.random.key(0), jnp.zeros(2), jnp.zeros(2), P, D, 1.0, SUB)
    other = jax.tree_util.tree_map(lambda x: x * 1.01 if eqx.is_inexact_array(x) else x, t)
    caplog.set_level(logging.WARNING)
    with jax.log_compiles(True):
        other.simulate(
            jax.random.key(5), jnp.full((2,), 0.3), jnp.asarray([1.0, -0.5]), P, D, 0.5, SUB
        )
        t.simulate(jax.random.key(6), jnp.full((2,), -0.3), jnp.asarray([0.2, 0.5]), P, D, 2.0, SUB)
    compiles = [
        r.message
        for r in caplog.records
        if "Compiling" in r.message and "_simulate_core" in r.message
    ]
    assert compiles == []


def test_simulate_bad_input_typed_errors(fitted):
    t = fitted.teacher
    key, x0, z = jax.random.key(0), jnp.zeros(2), jnp.zeros(2)
    with pytest.raises(InvalidParameterError, match="n_paths"):
        t.simulate(key, x0, z, 0, 2)
    with pytest.raises(InvalidParameterError, match="dt"):
        t.simulate(key, x0, z, 4, 2, dt=0.0)
    with pytest.raises(InvalidParameterError, match="dt"):
        t.simulate(key, x0, z, 4, 2, dt=-1.0)
    with pytest.raises(InvalidParameterError, match="z"):
        t.simulate(key, x0, jnp.asarray([np.nan, 0.0]), 4, 2)
    with pytest.raises(InvalidParameterError, match="x0"):
        t.simulate(key, jnp.zeros(3), z, 4, 2)
    with pytest.raises(InvalidParameterError, match="marks"):
        TeacherSpec(marks="gaussian")
    with pytest.raises(InvalidParameterError, match="branching_max"):
        TeacherSpec(branching_max=1.0)


def test_missing_btc_says_how_to_ingest(tmp_path):
    cfg = load_config(SMALL + [f"data.root={tmp_path}"])
    with pytest.raises(ModelUnavailableError, match=r"just ingest data.source_dir=../shared/data"):
        load_teacher_data(cfg)


def test_report_writes_table_and_charts(cfg, fitted, tmp_path):
    from aurora_jax.sim import report

    save_teacher(fitted.teacher, cfg.sim.teacher.dir, "btc-test-report")
    out = report.run(cfg, targets=[], run_dir=tmp_path)
    assert out["version"] == "btc-test-report"
    md = (tmp_path / "stylized_facts.md").read_text()
    for fact in report.FACTS:
        assert f"| {fact} |" in md
    assert "| fact | real | simulated | tolerance | inside? |" in md
    for f in out["files"]:
        assert (tmp_path / f).stat().st_size > 5000
    rows = {r["fact"]: r for r in out["facts"]}
    # the real BTC facts themselves: heavy tails, volatility clustering, Brownian-like returns
    assert rows["excess_kurtosis"]["real"] > 3
    assert rows["acf_abs_mean"]["real"] > 0.03
    assert abs(rows["hurst_returns"]["real"] - 0.5) < 0.1
    assert 0 < rows["bns_jump_frequency"]["real"] < 0.5
