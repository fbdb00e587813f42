"""The engine function (steps 3-9) on freshly initialised parameters and synthetic inputs:
reconstruction identity, zero-mean residuals, numpy-exact quantiles without crossing, threshold
probabilities, determinism, and vmap over assets. (Trained-model checks: tests/train.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aurora_jax.config import load_config
from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.inputs import ModelInputs
from aurora_jax.forecast.api import threshold_probabilities
from aurora_jax.forecast.engine import (
    EngineParams,
    engine_forecast,
    flow_condition,
    forecast_batch,
    quantiles_no_crossing,
    simulate_paths,
    sort_paths,
)
from aurora_jax.models.jump_model import JumpParams, max_rate, sample_jumps
from aurora_jax.models.trend_ensemble import COMPONENTS, TrendEnsemble
from aurora_jax.models.vol_scale import DAYS_PER_YEAR, VolScale
from aurora_jax.train import stages
from aurora_jax.train.pipeline import engine_config

H = 14


@pytest.fixture(scope="module")
def cfg():
    return engine_config(load_config(["experiment=smoke"]))


@pytest.fixture(scope="module")
def params(cfg):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    trend = TrendEnsemble(stages.init_student(cfg, k[0]), stages.init_ar(cfg), stages.init_tcn(cfg, k[1]),
                          jnp.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.2]]), eta=0.5)
    f0 = jnp.zeros(())
    jumps = JumpParams(
        intensity_bias=jnp.asarray(np.log(0.05), jnp.float32), intensity_w=jnp.zeros(1), intensity_iv=f0,
        intensity_mm=jnp.zeros(3), direction_bias=f0, direction_w=jnp.zeros(1), direction_mm=jnp.zeros(3),
        tail_raw=f0, branching_raw=f0, decay_raw=f0, kind="poisson", intensity_features=(0,),
        direction_features=(0,), threshold=4.0, bars_per_year=365.25, cap=3, rate_max=max_rate(3),
        branching_max=0.9, tail_min=2.2, compensate=True)
    # the vol path is used by build_inputs, not inside the engine function (iv_path is an input)
    return EngineParams(trend=trend, jumps=jumps, flow=stages.init_flow(cfg, k[2]), vol_path=None,
                        flow_steps=3, horizon_max=H)


def make_inputs(seed: int, dim: int = 50, lookback: int = 128) -> ModelInputs:
    rng = np.random.default_rng(seed)
    f = lambda a: jnp.asarray(a, jnp.float32)
    mask = np.ones(lookback)
    mask[:10] = 0.0
    return ModelInputs(
        returns=f(rng.standard_normal(lookback) * mask), returns_mask=f(mask),
        revin_loc=f(0.001 * rng.standard_normal()), revin_scale=f(0.02 + 0.01 * rng.random()),
        regime=f(rng.standard_normal(dim) * 0.5), regime_id=jnp.asarray(seed % 3, jnp.int32),
        iv_path=f(np.linspace(0.5, 0.6, H)), rv_level=f(0.45), mm_indices=f(rng.uniform(-3, 3, 3)),
        spot=f(30_000.0 + 1000 * seed))


LEVELS = jnp.asarray([0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95])
N = 1000   # paths everywhere (one compiled shape)


def test_reconstruction_is_trend_plus_jump_plus_residual(params):
    x = make_inputs(1)
    key = jax.random.PRNGKey(7)
    out = engine_forecast(params, x, key, LEVELS, jnp.zeros((0,)), H, N)
    k_jump, k_flow = jax.random.split(key)

    @jax.jit
    def pieces(params, x):
        trend = params.trend(x)
        return trend.mean, params.flow.sample(flow_condition(x, trend), k_flow, N, params.flow_steps)

    trend_mean, resid = pieces(params, x)
    jumps = sample_jumps(params.jumps, x, k_jump, H, N)
    r = x.revin_loc + x.revin_scale * (trend_mean + resid) + jumps
    np.testing.assert_allclose(np.asarray(out.log_paths), np.cumsum(np.asarray(r), axis=1), rtol=1e-5, atol=1e-6)
    # the residual part has zero mean at every step (centred across paths)
    np.testing.assert_allclose(np.asarray(resid).mean(0), 0.0, atol=1e-5)
    # trend weights: softmax of the regime's meta-logits (no EWAF losses)
    np.testing.assert_allclose(np.asarray(out.trend_weights),
                               np.asarray(jax.nn.softmax(params.trend.meta_logits[1])), rtol=1e-6)
    assert out.components.shape == (len(COMPONENTS), H)


def with_vol_scale(params, beta: float, center: float) -> EngineParams:
    return EngineParams(trend=params.trend, jumps=params.jumps, flow=params.flow, vol_path=None,
                        flow_steps=params.flow_steps, horizon_max=H,
                        vol_scale=VolScale(jnp.asarray(beta, jnp.float32), jnp.asarray(center, jnp.float32)))


def test_residual_width_follows_the_vol_path(params):
    x = make_inputs(8)
    key = jax.random.PRNGKey(11)
    center = float(np.log(0.55 / np.sqrt(DAYS_PER_YEAR)) - np.log(float(x.revin_scale)))
    vp = with_vol_scale(params, 0.8, center)
    # beta = 0 is the engine without a vol scale, bit for bit
    a = engine_forecast(params, x, key, LEVELS, jnp.zeros((0,)), H, N)
    b = engine_forecast(with_vol_scale(params, 0.0, center), x, key, LEVELS, jnp.zeros((0,)), H, N)
    np.testing.assert_array_equal(np.asarray(a.log_paths), np.asarray(b.log_paths))
    # the residual is g_k times the flow's draw (reconstruction identity with g)
    out = engine_forecast(vp, x, key, LEVELS, jnp.zeros((0,)), H, N)
    k_jump, k_flow = jax.random.split(key)
    trend = params.trend(x)
    resid = params.flow.sample(flow_condition(x, trend), k_flow, N, params.flow_steps)
    g = np.exp(0.8 * np.clip(np.log(np.asarray(x.iv_path) / np.sqrt(DAYS_PER_YEAR) / float(x.revin_scale)) - center,
                             -1.5, 1.5))
    r = x.revin_loc + x.revin_scale * (trend.mean + np.asarray(resid) * g) + sample_jumps(params.jumps, x, k_jump, H, N)
    np.testing.assert_allclose(np.asarray(out.log_paths), np.cumsum(np.asarray(r), axis=1), rtol=1e-4, atol=1e-5)
    # a higher vol path (what a what-if IV does) widens the cone at every step, same key
    widths = []
    for m in (0.7, 1.0, 1.5, 2.0):
        xm = x.__class__(**{**{f: getattr(x, f) for f in x.__dataclass_fields__}, "iv_path": x.iv_path * m})
        q = np.asarray(engine_forecast(vp, xm, key, LEVELS, jnp.zeros((0,)), H, N).quantiles)
        widths.append(q[:, -1] - q[:, 0])
    assert np.all(np.diff(np.asarray(widths), axis=0) > 0)


def test_quantiles_match_numpy_and_never_cross(params):
    x = make_inputs(2)
    out = engine_forecast(params, x, jax.random.PRNGKey(3), LEVELS, jnp.zeros((0,)), H, N)
    lp = np.asarray(out.log_paths)
    ref = float(x.spot) * np.exp(np.quantile(lp, np.asarray(LEVELS), axis=0).T)
    np.testing.assert_allclose(np.asarray(out.quantiles), ref, rtol=2e-5)
    assert np.all(np.diff(np.asarray(out.quantiles), axis=1) >= 0)
    # the cone widens with the horizon
    q = np.asarray(out.quantiles)
    assert q[-1, -1] - q[-1, 0] > q[0, -1] - q[0, 0]


def test_int_key_sort_is_an_exact_float_sort():
    x = jnp.asarray(np.array([[3.5, -0.0, -2.25, 0.0, 1e-30, -1e-30, -7.0, 2.0]], np.float32).T)
    np.testing.assert_array_equal(np.asarray(sort_paths(x))[0], np.sort(np.asarray(x)[:, 0]))
    big = jax.random.normal(jax.random.PRNGKey(0), (1001, 3))
    np.testing.assert_array_equal(np.asarray(sort_paths(big)), np.sort(np.asarray(big).T, axis=1))
    # crossing-free even for unsorted requested levels' neighbours
    q = quantiles_no_crossing(big, jnp.asarray([0.2, 0.2000001, 0.9]))
    assert np.all(np.diff(np.asarray(q), axis=1) >= 0)


def test_threshold_probabilities_match_the_api_convention(params):
    x = make_inputs(3)
    spot = float(x.spot)
    ks = np.array([0.9, 0.97, 1.02, 1.1]) * spot
    out = engine_forecast(params, x, jax.random.PRNGKey(4), LEVELS, jnp.log(jnp.asarray(ks / spot, jnp.float32)),
                          H, N)
    prices = spot * np.exp(np.asarray(out.log_paths, dtype=np.float64))
    ref = threshold_probabilities(prices, spot, ks)
    for j, r in enumerate(ref):
        assert abs(float(out.p_below[j]) - r["p_below"]) < 3e-3
        assert abs(float(out.p_above[j]) - r["p_above"]) < 3e-3
        assert abs(float(out.p_touch[j]) - r["p_touch"]) < 3e-3
        assert float(out.p_touch[j]) >= (float(out.p_below[j]) if ks[j] < spot else float(out.p_above[j]))


def test_deterministic_and_vmappable(params):
    xs = [make_inputs(s) for s in (4, 5, 6)]
    keys = jax.random.split(jax.random.PRNGKey(9), 3)
    a = engine_forecast(params, xs[0], keys[0], LEVELS, jnp.zeros((0,)), H, N)
    b = engine_forecast(params, xs[0], keys[0], LEVELS, jnp.zeros((0,)), H, N)
    c = engine_forecast(params, xs[0], keys[1], LEVELS, jnp.zeros((0,)), H, N)
    np.testing.assert_array_equal(np.asarray(a.log_paths), np.asarray(b.log_paths))
    assert not np.array_equal(np.asarray(a.log_paths), np.asarray(c.log_paths))
    stacked = jax.tree_util.tree_map(lambda *v: jnp.stack(v), *xs)
    batch = forecast_batch(params, stacked, keys, LEVELS, jnp.zeros((0,)), H, N)
    for i, x in enumerate(xs):
        one = engine_forecast(params, x, keys[i], LEVELS, jnp.zeros((0,)), H, N)
        np.testing.assert_allclose(np.asarray(batch.quantiles[i]), np.asarray(one.quantiles), rtol=1e-5)
    # EWAF losses re-weight the trend inside the same compiled function
    w = engine_forecast(params, xs[0], keys[0], LEVELS, jnp.zeros((0,)), H, N,
                        jnp.asarray([4.0, 0.0, 0.0])).trend_weights
    assert float(w[0]) < float(a.trend_weights[0])


def test_paths_and_bad_static_arguments(params):
    x = make_inputs(7)
    lp = simulate_paths(params, x, jax.random.PRNGKey(0), 5, 1000)
    assert lp.shape == (1000, 5) and bool(jnp.isfinite(lp).all())
    with pytest.raises(InvalidParameterError, match="horizon"):
        simulate_paths(params, x, jax.random.PRNGKey(0), 15, 1000)
    with pytest.raises(InvalidParameterError, match="num_paths"):
        simulate_paths(params, x, jax.random.PRNGKey(0), 5, 1)
