import jax
import numpy as np

from aurora_jax.calibrate.hmm import GaussianHMM, filtered_probs, fit_hmm, total_log_likelihood


def _simulate(rng, n=1500):
    trans = np.array([[0.97, 0.02, 0.01], [0.02, 0.96, 0.02], [0.01, 0.04, 0.95]])
    means = np.array([[0.0, -1.0], [0.0, 0.0], [0.0, 1.2]])
    sds = np.array([[0.5, 0.2], [1.0, 0.2], [2.0, 0.25]])
    s = np.empty(n, dtype=int)
    s[0] = 1
    for t in range(1, n):
        s[t] = rng.choice(3, p=trans[s[t - 1]])
    x = means[s] + sds[s] * rng.standard_normal((n, 2))
    return x, s, trans, means


def test_em_recovers_states_and_parameters():
    x, s, trans, means = _simulate(np.random.default_rng(1))
    hmm, ll = fit_hmm(x, jax.random.key(0), num_states=3, num_iters=200, tol=1e-7, order_by=1)
    np.testing.assert_allclose(np.asarray(hmm.means), means, atol=0.15)
    np.testing.assert_allclose(np.diag(np.asarray(hmm.trans)), np.diag(trans), atol=0.04)
    probs = np.asarray(filtered_probs(hmm, jax.numpy.asarray(x)))
    assert np.mean(probs.argmax(1) == s) > 0.9
    # log-likelihood beats a single Gaussian (K=1 limit)
    one = GaussianHMM(pi=jax.numpy.ones(1), trans=jax.numpy.ones((1, 1)),
                      means=jax.numpy.asarray(x.mean(0))[None], sds=jax.numpy.asarray(x.std(0))[None])
    assert ll > float(total_log_likelihood(one, jax.numpy.asarray(x))) + 100


def test_filter_is_causal():
    x, *_ = _simulate(np.random.default_rng(2), 1500)
    hmm, _ = fit_hmm(x, jax.random.key(1), num_iters=30)
    p_full = np.asarray(filtered_probs(hmm, jax.numpy.asarray(x)))
    x_alt = x.copy()
    x_alt[250:] = x_alt[250:] * 3 + 5  # a different future
    p_part = np.asarray(filtered_probs(hmm, jax.numpy.asarray(x_alt)))[:250]
    np.testing.assert_allclose(p_full[:250], p_part, atol=1e-6)
    np.testing.assert_allclose(p_full.sum(1), 1.0, atol=1e-6)
