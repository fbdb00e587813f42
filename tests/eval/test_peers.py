import numpy as np
import pandas as pd
import pytest
from arch import arch_model

from aurora_jax.errors import ModelUnavailableError
from aurora_jax.eval.data import SeriesCache
from aurora_jax.eval.forecaster import AsOfView, ForecastContext, Forecaster
from aurora_jax.eval.peers.bootstrap import BootstrapPeer
from aurora_jax.eval.peers.dvol import DvolPeer
from aurora_jax.eval.peers.ewma import EwmaPeer
from aurora_jax.eval.peers.garch import GarchPeer, GarchState, condition
from aurora_jax.models.garch import GarchSpec, fit_garch


def _ctx(cache, as_of, refit=True, prev=None, asset="BTC-USD"):
    return ForecastContext(pd.Timestamp(as_of, tz="UTC"), asset, AsOfView(cache, pd.Timestamp(as_of, tz="UTC")),
                           refit, prev)


@pytest.fixture(scope="module")
def cache(real_store):
    return SeriesCache(real_store)


def test_peers_follow_the_protocol():
    for p in (EwmaPeer(), BootstrapPeer(), DvolPeer(), GarchPeer("garch_t", GarchSpec())):
        assert isinstance(p, Forecaster)


def test_ewma_recursion_and_samples(btc, cache):
    r = btc.returns.loc[:"2021-03-01"]
    peer = EwmaPeer(lam=0.94, window_days=500, init_days=30)
    s2 = peer.fit(r, _ctx(cache, "2021-03-01"))
    x = r.to_numpy()[-500:]
    ref = np.mean(x[:30] ** 2)
    for v in x:
        ref = 0.94 * ref + 0.06 * v * v
    assert s2 == pytest.approx(ref)
    paths = peer.sample(s2, 14, 20000, np.random.default_rng(0))
    assert paths.shape == (20000, 14)
    assert np.std(paths.sum(1)) == pytest.approx(np.sqrt(14 * s2), rel=0.03)


def test_bootstrap_draws_from_the_trailing_year(btc, cache):
    r = btc.returns.loc[:"2020-06-01"]
    peer = BootstrapPeer(window_days=365)
    st = peer.fit(r, _ctx(cache, "2020-06-01"))
    paths = peer.sample(st, 5, 3000, np.random.default_rng(1))
    assert np.isin(paths, r.to_numpy()[-365:]).all()
    assert abs(paths.mean() - r.to_numpy()[-365:].mean()) < 0.002


def test_dvol_peer_only_where_iv_exists(btc, cache):
    peer = DvolPeer()
    with pytest.raises(ModelUnavailableError):
        peer.fit(btc.returns.loc[:"2021-01-01"], _ctx(cache, "2021-01-01"))
    s = peer.fit(btc.returns.loc[:"2023-05-01"], _ctx(cache, "2023-05-01"))
    iv = btc.iv[btc.iv.index <= pd.Timestamp("2023-05-01", tz="UTC")].iloc[-1]
    assert s == pytest.approx(iv / 100 / np.sqrt(365))
    assert 20 < iv < 150


def test_garch_conditioning_equals_arch_filter_with_fixed_params(btc, cache):
    r = btc.returns.loc["2019-01-01":"2021-01-01"].to_numpy()
    spec = GarchSpec(window_days=600, min_days=250)
    fit = fit_garch(r[:600], spec)
    cond = condition(fit, r[600:650])
    model = arch_model(100 * r[:650], mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    params = [fit.mu, fit.omega, fit.alpha[0], fit.beta[0], fit.nu]
    fixed = model.fix(params)
    np.testing.assert_allclose(cond.last_var[-1], fixed.conditional_volatility[-1] ** 2, rtol=1e-6)
    np.testing.assert_allclose(cond.last_resid[-1], fixed.resid[-1], rtol=1e-9)


def test_garch_peer_keeps_parameters_between_refits(btc, cache):
    peer = GarchPeer("garch_t", GarchSpec(window_days=500, min_days=250))
    r0 = btc.returns.loc[:"2020-01-01"]
    st0 = peer.fit(r0, _ctx(cache, "2020-01-01"))
    r1 = btc.returns.loc[:"2020-01-15"]
    st1 = peer.fit(r1, _ctx(cache, "2020-01-15", refit=False, prev=st0))
    assert isinstance(st1, GarchState) and not st1.refitted
    assert st1.fit.omega == st0.fit.omega and st1.fit.alpha[0] == st0.fit.alpha[0]
    assert st1.last_stamp == r1.index[-1]
    expected = condition(st0.fit, btc.returns.loc["2020-01-02":"2020-01-15"].to_numpy())
    np.testing.assert_allclose(st1.fit.last_var, expected.last_var)
    st2 = peer.fit(r1, _ctx(cache, "2020-01-15", refit=True, prev=st0))
    assert st2.refitted and st2.fit.omega != st0.fit.omega
