import numpy as np
import pytest
from arch import arch_model
from statsmodels.tsa.arima.model import ARIMA

from aurora_jax.calibrate.arma import MODELS, bic_label, bic_table, fit_ar, fit_arma, fit_garch
from aurora_jax.errors import InvalidParameterError


def _arma(rng, n, phi, theta, c=0.0, sd=1.0):
    e = rng.normal(0, sd, n + 200)
    x = np.zeros(n + 200)
    for t in range(1, n + 200):
        x[t] = c + phi * x[t - 1] + e[t] + theta * e[t - 1]
    return x[200:]


def _garch(rng, n, omega=0.05, a=0.15, b=0.8):
    h = omega / (1 - a - b)
    out = np.empty(n)
    for t in range(n):
        out[t] = np.sqrt(h) * rng.standard_normal()
        h = omega + a * out[t] ** 2 + b * h
    return out


def test_ar_matches_ols_reference():
    rng = np.random.default_rng(0)
    x = _arma(rng, 600, 0.4, 0.0, c=0.2)
    fit = fit_ar(x, 2)
    X = np.column_stack([np.ones(598), x[1:-1], x[:-2]])
    beta, *_ = np.linalg.lstsq(X, x[2:], rcond=None)
    np.testing.assert_allclose(np.r_[fit.const, fit.phi], beta, rtol=1e-10)
    assert fit.phi_se.shape == (2,) and (fit.phi_se > 0).all()
    assert abs(fit.phi_se[0] - np.sqrt((1 - 0.4**2) / 598)) < 0.01


def test_arma_css_close_to_exact_mle():
    rng = np.random.default_rng(1)
    x = _arma(rng, 800, 0.6, -0.3)
    fit = fit_arma(x, 1)
    ref = ARIMA(x, order=(1, 0, 1)).fit()
    assert abs(fit.phi[0] - ref.params[1]) < 0.03
    assert abs(fit.theta - ref.params[2]) < 0.03
    assert abs(fit.phi[0] - 0.6) < 0.08 and abs(fit.theta + 0.3) < 0.08
    # CSS log-likelihood is close to the exact one for a long sample
    assert abs(fit.loglik - ref.llf) < 5


def test_scale_invariance_of_bic_differences():
    rng = np.random.default_rng(2)
    x = _garch(rng, 300)
    a = bic_table(x)
    b = bic_table(x * 0.01)
    for m in ("ARMA", "GARCH"):
        assert abs((a[m] - a["AR"]) - (b[m] - b["AR"])) < 0.05


def test_garch_fit_matches_arch_loglik():
    rng = np.random.default_rng(3)
    x = _garch(rng, 400)
    g = fit_garch(x, 1)
    ref = arch_model(x[1:], mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False).fit(disp="off")
    assert abs(g.loglik - ref.loglikelihood) < 0.5
    assert abs(g.alpha + g.beta - (ref.params["alpha[1]"] + ref.params["beta[1]"])) < 0.05


def test_bic_labels_known_processes():
    rng = np.random.default_rng(4)
    assert MODELS[bic_label(_garch(rng, 500, a=0.2, b=0.75))] == "GARCH"
    assert MODELS[bic_label(_arma(rng, 500, 0.5, 0.0))] == "AR"
    assert MODELS[bic_label(_arma(rng, 500, 0.8, -0.6))] == "ARMA"


def test_bad_window():
    with pytest.raises(InvalidParameterError, match="window"):
        fit_ar(np.ones(10))
    with pytest.raises(InvalidParameterError, match="window"):
        fit_arma(np.r_[np.zeros(100), np.nan])
