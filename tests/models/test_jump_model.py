"""Jump model: count moments vs closed forms (Poisson, Hawkes), branching < 1, Pareto tails,
direction, compensation, one compile per shape, and a fit on real BTC returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from aurora_jax.data.snapshot import snapshot_from_config
from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.inputs import ModelInputs, fit_vol_params_on, history, inputs_at
from aurora_jax.features.regime_vector import regime_layout
from aurora_jax.models.jump_model import (
    JumpParams,
    _moments,
    count_moments,
    expected_jump_sum,
    fit_jump_model,
    jump_data,
    max_rate,
    poisson_capped,
    sample_jump_events,
    sample_jumps,
)

DIM, H, PATHS = 48, 14, 10000  # one shape for the sampling tests: few compiles


def _params(
    kind="poisson",
    rate=0.3,
    branching_raw=0.0,
    decay_raw=0.0,
    alpha_raw=0.5,
    p_up_logit=0.0,
    cap=8,
    compensate=False,
    w_iv=0.0,
    w_mm=(0.0, 0.0, 0.0),
) -> JumpParams:
    return JumpParams(
        intensity_bias=jnp.asarray(np.log(rate), jnp.float32),
        intensity_w=jnp.zeros(2),
        intensity_iv=jnp.asarray(w_iv),
        intensity_mm=jnp.asarray(w_mm, jnp.float32),
        direction_bias=jnp.asarray(p_up_logit, jnp.float32),
        direction_w=jnp.zeros(1),
        direction_mm=jnp.zeros(3),
        tail_raw=jnp.asarray(alpha_raw, jnp.float32),
        branching_raw=jnp.asarray(branching_raw, jnp.float32),
        decay_raw=jnp.asarray(decay_raw, jnp.float32),
        kind=kind,
        intensity_features=(0, 1),
        direction_features=(2,),
        threshold=3.0,
        bars_per_year=365.25,
        cap=cap,
        rate_max=max_rate(cap, 1e-4),
        branching_max=0.9,
        tail_min=2.2,
        compensate=compensate,
    )


def _inputs(iv=0.5, mm=(0.0, 0.0, 0.0)) -> ModelInputs:
    f = lambda a: jnp.asarray(a, jnp.float32)
    return ModelInputs(
        returns=f(np.zeros(16)),
        returns_mask=f(np.ones(16)),
        revin_loc=f(0.0),
        revin_scale=f(0.02),
        regime=f(np.zeros(DIM)),
        regime_id=jnp.asarray(1, jnp.int32),
        iv_path=f(np.broadcast_to(iv, (H,))),
        rv_level=f(0.4),
        mm_indices=f(mm),
        spot=f(100.0),
    )


def _check_moments(counts: np.ndarray, mean: float, var: float):
    n = len(counts)
    assert abs(counts.mean() - mean) < 4.5 * np.sqrt(var / n)
    # sampling sd of a variance estimate ~ sqrt((m4 - var^2) / n)
    m4 = np.mean((counts - counts.mean()) ** 4)
    assert abs(counts.var() - var) < 4.5 * np.sqrt((m4 - counts.var() ** 2) / n)


def test_poisson_counts_match_closed_form():
    p, x = _params("poisson", rate=0.3), _inputs()
    ev = sample_jump_events(p, x, jax.random.PRNGKey(0), H, PATHS)
    tot = np.asarray(ev.counts.sum(1))
    mean, var = (float(v) for v in count_moments(p, x, H))
    assert mean == pytest.approx(0.3 * H, rel=1e-5) and var == pytest.approx(0.3 * H, rel=1e-4)
    _check_moments(tot, mean, var)
    # per step Poisson(0.3): P(N = 0) = exp(-0.3)
    assert np.mean(np.asarray(ev.counts) == 0) == pytest.approx(np.exp(-0.3), abs=0.005)


def test_hawkes_counts_match_the_exact_recursion():
    p, x = _params("hawkes", rate=0.2, branching_raw=1.0, decay_raw=-0.5), _inputs()
    n_br = float(p.branching)
    assert 0 < n_br < 0.9
    ev = sample_jump_events(p, x, jax.random.PRNGKey(1), H, PATHS)
    tot = np.asarray(ev.counts.sum(1))
    mean, var = (float(v) for v in count_moments(p, x, H))
    assert var > 1.2 * mean  # self-excitation: over-dispersed counts
    _check_moments(tot, mean, var)
    # clustering: counts in consecutive steps are positively correlated
    c = np.asarray(ev.counts, float)
    assert np.corrcoef(c[:, 3], c[:, 4])[0, 1] > 0.02


def test_recursion_agrees_with_stationary_closed_forms():
    """Long-run mean lambda0 / (1 - n) and long-run variance of the count sum
    lambda0 / (1 - n)^3 (the INGARCH(1,1) = discrete Hawkes spectral density at 0)."""
    p = _params("hawkes", rate=0.2, branching_raw=0.5, decay_raw=0.3)
    n_br = float(p.branching)
    T = 4000
    mean_n, var_T = _moments(p, jnp.full(T, 0.2, jnp.float32))
    mbar = 0.2 / (1 - n_br)
    assert float(mean_n[-1]) == pytest.approx(mbar, rel=1e-4)
    _, var_2T = _moments(p, jnp.full(2 * T, 0.2, jnp.float32))
    assert float(var_2T - var_T) / T == pytest.approx(mbar / (1 - n_br) ** 2, rel=2e-3)
    # Poisson: variance = mean exactly
    q = _params("poisson", rate=0.2)
    m, v = _moments(q, jnp.full(50, 0.2, jnp.float32))
    assert float(v) == pytest.approx(float(m.sum()), rel=1e-5)


def test_branching_below_one_by_construction():
    for raw in (-50.0, 0.0, 50.0):
        n = float(_params("hawkes", branching_raw=raw).branching)
        assert 0.0 <= n <= 0.9  # = branching_max < 1
    assert float(_params("poisson", branching_raw=50.0).branching) == 0.0
    with pytest.raises(InvalidParameterError, match="jumps.branching_max"):
        JumpParams(**{**_params("hawkes").__dict__, "branching_max": 1.0})
    with pytest.raises(InvalidParameterError, match="jumps.kind"):
        JumpParams(**{**_params().__dict__, "kind": "levy"})


def test_capped_poisson_sampler_is_exact_below_the_cap():
    lam = jnp.full((200000,), 1.7)
    n = np.asarray(poisson_capped(jax.random.PRNGKey(2), lam, 4))
    freq = np.bincount(n, minlength=5) / len(n)
    want = stats.poisson.pmf(np.arange(4), 1.7)
    np.testing.assert_allclose(freq[:4], want, atol=0.004)
    assert freq[4] == pytest.approx(stats.poisson.sf(3, 1.7), abs=0.004)
    assert stats.poisson.sf(6, max_rate(6)) <= 1e-6 < stats.poisson.sf(6, 1.01 * max_rate(6))


def test_sizes_are_pareto_heavy_tailed():
    p = _params("poisson", rate=0.6, alpha_raw=0.3, p_up_logit=0.8)
    x = _inputs(iv=0.6)
    ev = sample_jump_events(p, x, jax.random.PRNGKey(3), H, PATHS)
    m = np.asarray(ev.mask) > 0
    s = np.asarray(ev.sizes)[m]
    floor = 3.0 * 0.6 / np.sqrt(365.25)
    y = np.abs(s) / floor
    alpha = float(p.alpha)
    assert y.min() >= 1.0 - 1e-5
    assert stats.kstest(y, stats.pareto(alpha).cdf).pvalue > 1e-3
    assert len(y) / np.log(y).sum() == pytest.approx(alpha, rel=0.03)  # Pareto MLE
    assert stats.kurtosis(np.asarray(ev.sizes.sum(-1)).ravel()) > 3.0  # heavy-tailed increments
    assert np.mean(s > 0) == pytest.approx(
        1 / (1 + np.exp(-0.8)), abs=0.01
    )  # direction probability
    # times lie inside their step, sorted, and only valid slots carry sizes
    t = np.asarray(ev.times)
    k = np.arange(H)[None, :, None]
    assert ((t >= k) & (t < k + 1)).all() and (np.diff(t, axis=-1) >= 0).all()
    assert (np.asarray(ev.sizes)[~m] == 0).all()


def test_compensation_and_conditioning():
    x = _inputs(iv=0.8)
    raw = _params("hawkes", rate=0.5, branching_raw=0.5, p_up_logit=-1.0)
    comp = _params("hawkes", rate=0.5, branching_raw=0.5, p_up_logit=-1.0, compensate=True)
    ev = sample_jump_events(raw, x, jax.random.PRNGKey(4), H, PATHS)
    a = np.asarray(ev.sizes.sum(-1))
    b = np.asarray(sample_jumps(comp, x, jax.random.PRNGKey(4), H, PATHS))  # same key: same events
    expect = np.asarray(expected_jump_sum(raw, x, H))
    assert (expect < 0).all()  # down-biased jumps
    se = a.std(0) / np.sqrt(len(a))
    assert (np.abs(a.mean(0) - expect) < 4.5 * se).all()
    assert (np.abs(b.mean(0)) < 4.5 * se).all()
    np.testing.assert_allclose(a - b, np.broadcast_to(expect, a.shape), rtol=1e-4, atol=1e-6)
    # intensity rises with the IV path (w_iv > 0) and with the MM indices
    p = _params("poisson", rate=0.1, w_iv=1.0, w_mm=(0.5, 0.0, 0.0))
    lo, _ = count_moments(p, _inputs(iv=0.4), H)
    hi, _ = count_moments(p, _inputs(iv=0.8), H)
    hi_mm, _ = count_moments(p, _inputs(iv=0.4, mm=(2.0, 0.0, 0.0)), H)
    assert float(hi) == pytest.approx(2.0 * float(lo), rel=1e-4)
    assert float(hi_mm) == pytest.approx(np.e * float(lo), rel=1e-4)


def test_sample_jumps_compiles_once_per_shape():
    x = _inputs()
    cache = sample_jumps._cached._cache_size
    n0 = cache()
    sample_jumps(_params("hawkes", rate=0.3), x, jax.random.PRNGKey(0), 5, 64).block_until_ready()
    n1 = cache()
    assert n1 == n0 + 1
    for i in range(3):  # new keys, new parameter values, new inputs: same shapes -> no recompile
        sample_jumps(
            _params("hawkes", rate=0.1 + 0.1 * i, branching_raw=i),
            _inputs(iv=0.3 + 0.1 * i),
            jax.random.PRNGKey(i + 1),
            5,
            64,
        ).block_until_ready()
    assert cache() == n1
    sample_jumps(_params("hawkes"), x, jax.random.PRNGKey(0), 5, 128)
    assert cache() == n1 + 1
    with pytest.raises(InvalidParameterError, match="horizon"):
        sample_jumps(_params(), x, jax.random.PRNGKey(0), H + 1, 8)


@pytest.fixture(scope="module")
def btc_jump_data(real_store):
    from aurora_jax.config import load_config

    cfg = load_config(["model=engine"])
    snap = snapshot_from_config(real_store, "BTC-USD", "2024-06-30", cfg.data, lookback_days=2400)
    h = history(snap, cfg)
    vp = fit_vol_params_on(h, cfg)
    return cfg, h, vp, jump_data("BTC-USD", h, vp)


@pytest.mark.parametrize("kind", ["poisson", "hawkes"])
def test_fit_on_real_btc(btc_jump_data, kind):
    cfg, h, vp, data = btc_jump_data
    jc = OmegaConf.merge(cfg.model.jumps, {"kind": kind})
    params, rep = fit_jump_model([data], jc, regime_layout(int(cfg.model.inputs.regime_dim)))
    assert rep["rows"] > 2000 and 20 < rep["jumps"] < 0.1 * rep["rows"]
    assert 2.2 < rep["alpha"] < 8.0  # finite variance, fat tail
    assert rep["loss"] < rep["loss_at_start"]
    assert 0.0 <= rep["branching"] < 0.9
    assert rep["bars_per_year"] == pytest.approx(365.25, rel=0.01)
    # calibration: the model's mean P(jump) over the history matches the detected frequency
    rows = h.valid_rows(30)
    x = inputs_at(h, rows[-300:], vp, cfg)
    lam0 = jax.vmap(lambda m: params.base_intensity(m.regime, m.iv_path[:1], m.mm_indices)[0])(x)
    if kind == "poisson":
        p_model = float(jnp.mean(1 - jnp.exp(-lam0)))
        assert 0.2 * rep["jump_rate"] < p_model < 5 * rep["jump_rate"]
    assert np.isfinite(np.asarray(lam0)).all() and (np.asarray(lam0) <= params.rate_max).all()


def test_path_budget_drops_jumps_only_with_the_tail_tolerance():
    """Size uniforms are drawn per path (used in time order) for at most ``path_budget`` jumps:
    the budget bounds Poisson(horizon * rate_max), which dominates the clipped count process."""
    from aurora_jax.models.jump_model import path_budget

    p = _params("poisson", rate=50.0, cap=4)                  # every step at rate_max: the worst case
    b = path_budget(H, 4, p.rate_max, p.tail_tol)
    lam = H * p.rate_max
    assert stats.poisson.sf(b, lam) <= 1e-4 < stats.poisson.sf(b - 1, lam) and b < H * 4
    ev = sample_jump_events(p, _inputs(), jax.random.PRNGKey(11), H, PATHS)
    kept, total = np.asarray(ev.mask).sum((1, 2)), np.asarray(ev.counts).sum(1)
    assert total.mean() == pytest.approx(lam, rel=0.03)
    assert (kept <= total).all() and (kept < total).sum() <= 5       # E = PATHS * 1e-4 = 1 path
    # the kept slots are the path's first jumps in time: no slot after a dropped one is kept
    m = np.asarray(ev.mask).reshape(PATHS, -1)
    order = np.asarray(ev.counts)[..., None] > np.arange(4)       # slots that hold a jump, time order
    flat = order.reshape(PATHS, -1)
    assert all((m[i][flat[i]] == np.sort(m[i][flat[i]])[::-1]).all() for i in np.flatnonzero(kept < total))
