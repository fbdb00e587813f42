"""Hill tail index and extremal index against exact sampling distributions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim.estimators.tails import choose_k, extremal_index, hill_curve, hill_tail_index


def test_hill_exact_pareto_gamma_distribution():
    # For an exact Pareto(xi) sample, k * xi_hat / xi ~ Gamma(k, 1) (Renyi representation).
    xi, k, n, reps = 0.5, 50, 1000, 300
    rng = np.random.default_rng(1)
    stat = np.empty(reps)
    for r in range(reps):
        x = rng.uniform(size=n) ** (-xi)
        est, k_used = hill_tail_index(x, k=k)
        assert k_used == k
        stat[r] = k * est / xi
    # KS test of the whole sampling distribution at the 0.1% level
    assert stats.kstest(stat, stats.gamma(a=k).cdf).pvalue > 1e-3
    # an off-by-one in the order statistic would shift the mean by ~ xi: z-test on the mean
    z = (stat.mean() - k) / (np.sqrt(k) / np.sqrt(reps))
    assert abs(z) < 3.29


def test_hill_student_t_tail_sqrt_rule():
    # |t_4| has xi = 1/4; sqrt rule: k = floor(sqrt(n)); tolerance 4 standard errors xi/sqrt(k)
    rng = np.random.default_rng(2)
    n = 20_000
    x = np.abs(rng.standard_t(4, size=n))
    xi, k = hill_tail_index(x, threshold_rule="sqrt")
    assert k == int(np.sqrt(n))
    assert abs(xi - 0.25) < 4 * 0.25 / np.sqrt(k)
    # a much lighter tail (Gaussian, xi = 0) gives a clearly smaller estimate
    xi_gauss, _ = hill_tail_index(np.abs(rng.standard_normal(n)), threshold_rule="sqrt")
    assert xi_gauss < xi - 4 * 0.25 / np.sqrt(k)


def test_hill_fraction_rule_and_curve_consistency():
    rng = np.random.default_rng(3)
    x = rng.standard_t(3, size=4000)
    xi, k = hill_tail_index(x, threshold_rule="fraction", fraction=0.05)
    assert k == 200
    curve = hill_curve(x, 300)
    assert curve[k - 1] == pytest.approx(xi, rel=1e-12)
    # brute-force reference for one k
    top = np.sort(x[x > 0])[::-1]
    ref = np.mean(np.log(top[:k])) - np.log(top[k])
    assert xi == pytest.approx(ref, rel=1e-12)
    # only the positive (right) tail enters: negating the data changes the estimate
    assert choose_k(x, "sqrt") == int(np.sqrt(4000))


def _armax(a: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Max-autoregressive process with unit-Frechet innovations; extremal index 1 - a."""
    z = 1.0 / -np.log(rng.uniform(size=n))
    x = np.empty(n)
    x[0] = z[0]
    for i in range(1, n):
        x[i] = max(a * x[i - 1], (1 - a) * z[i])
    return x


@pytest.mark.parametrize("a", [0.5, 0.8])
def test_extremal_index_armax(a):
    # theta = 1 - a. Over 60 replicates, the per-replicate sd is ~0.06, so the mean has
    # SE ~0.008; we allow 0.05 for the finite-threshold bias of the intervals estimator.
    rng = np.random.default_rng(4)
    th = []
    for _ in range(60):
        x = _armax(a, 4000, rng)
        th.append(extremal_index(x, np.quantile(x, 0.98)))
    assert abs(np.mean(th) - (1 - a)) < 0.05


def test_extremal_index_iid_is_one():
    rng = np.random.default_rng(5)
    th = [extremal_index(x, np.quantile(x, 0.98)) for x in rng.standard_normal((60, 4000))]
    assert np.mean(th) > 0.93
    assert max(th) <= 1.0


def test_bad_input_typed_errors():
    with pytest.raises(InvalidParameterError, match="x"):
        hill_tail_index(np.array([1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(InvalidParameterError, match="k"):
        hill_tail_index(np.arange(1.0, 10.0), k=9)
    with pytest.raises(InvalidParameterError, match="threshold_rule"):
        hill_tail_index(np.arange(1.0, 100.0), threshold_rule="magic")
    with pytest.raises(InvalidParameterError, match="threshold"):
        extremal_index(np.arange(10.0), threshold=100.0)
    with pytest.raises(InvalidParameterError, match="x"):
        hill_tail_index(-np.arange(1.0, 10.0))
