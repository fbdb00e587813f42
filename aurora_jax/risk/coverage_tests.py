"""VaR coverage backtests on a hit sequence ``I_t = 1{loss_t > VaR_t}`` with nominal rate ``p``.

* Kupiec (1995) proportion of failures, ``x`` hits in ``T``:
  ``LR_pof = -2 [ (T-x) log(1-p) + x log p - (T-x) log(1-x/T) - x log(x/T) ] ~ chi2(1)``.
* Christoffersen (1998) independence, from the first-order transition counts ``n_ij``
  (state i at t-1, j at t), ``pi_01 = n01/(n00+n01)``, ``pi_11 = n11/(n10+n11)``,
  ``pi = (n01+n11)/(T-1)``:
  ``LR_ind = -2 [ log L(pi) - log L(pi_01, pi_11) ] ~ chi2(1)``,
  ``log L(a, b) = n00 log(1-a) + n01 log a + n10 log(1-b) + n11 log b``.
* Conditional coverage: ``LR_cc = LR_pof + LR_ind ~ chi2(2)`` (LR_pof on the same T-1
  transitions, as in Christoffersen's decomposition).

``0 log 0 = 0`` throughout (``scipy.special.xlogy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy
from scipy.stats import chi2

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class HypothesisTestResult:
    """A test statistic, its p-value, and the decision at ``size``."""

    name: str
    statistic: float
    p_value: float
    size: float

    @property
    def reject(self) -> bool:
        return bool(self.p_value < self.size)


def _hits(hits: np.ndarray) -> np.ndarray:
    h = np.asarray(hits)
    if h.ndim != 1 or h.size < 2:
        raise InvalidParameterError("hits", h.shape, "1-D sequence of at least 2 booleans")
    if not np.all((h == 0) | (h == 1)):
        raise InvalidParameterError("hits", "non-binary values", "0/1 or booleans")
    return h.astype(np.int64)


def _check_size(size: float) -> None:
    if not 0 < size < 1:
        raise InvalidParameterError("size", size, "test size in (0, 1)")


def _check_p(p: float, size: float) -> None:
    if not 0 < p < 1:
        raise InvalidParameterError("p", p, "nominal exceedance rate in (0, 1)")
    _check_size(size)


def hit_sequence(losses: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``1{loss_t > VaR_t}`` (losses and VaR both positive for losses)."""
    losses, var = np.asarray(losses, float), np.asarray(var, float)
    if losses.shape != var.shape:
        raise InvalidParameterError("var", var.shape, f"same shape as losses {losses.shape}")
    return (losses > var).astype(np.int64)


def _lr_pof(x: int, T: int, p: float) -> float:
    phat = x / T
    ll0 = xlogy(T - x, 1 - p) + xlogy(x, p)
    ll1 = xlogy(T - x, 1 - phat) + xlogy(x, phat)
    return float(max(-2.0 * (ll0 - ll1), 0.0))


def kupiec_pof(hits: np.ndarray, p: float, size: float) -> HypothesisTestResult:
    """Kupiec's proportion-of-failures LR test of ``P(hit) = p``."""
    _check_p(p, size)
    h = _hits(hits)
    lr = _lr_pof(int(h.sum()), h.size, p)
    return HypothesisTestResult("kupiec_pof", lr, float(chi2.sf(lr, 1)), size)


def _transitions(h: np.ndarray) -> tuple[int, int, int, int]:
    prev, cur = h[:-1], h[1:]
    n00 = int(np.sum((prev == 0) & (cur == 0)))
    n01 = int(np.sum((prev == 0) & (cur == 1)))
    n10 = int(np.sum((prev == 1) & (cur == 0)))
    n11 = int(np.sum((prev == 1) & (cur == 1)))
    return n00, n01, n10, n11


def _lr_ind(h: np.ndarray) -> float:
    n00, n01, n10, n11 = _transitions(h)
    T1 = n00 + n01 + n10 + n11
    pi = (n01 + n11) / T1
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    ll0 = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    ll1 = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    return float(max(-2.0 * (ll0 - ll1), 0.0))


def christoffersen_independence(hits: np.ndarray, size: float) -> HypothesisTestResult:
    """Christoffersen's LR test that hits are serially independent (first-order Markov alternative)."""
    _check_size(size)
    h = _hits(hits)
    lr = _lr_ind(h)
    return HypothesisTestResult("christoffersen_ind", lr, float(chi2.sf(lr, 1)), size)


def christoffersen_cc(hits: np.ndarray, p: float, size: float) -> HypothesisTestResult:
    """Conditional coverage ``LR_pof + LR_ind ~ chi2(2)``: correct rate and independence."""
    _check_p(p, size)
    h = _hits(hits)
    lr = _lr_pof(int(h[1:].sum()), h.size - 1, p) + _lr_ind(h)
    return HypothesisTestResult("christoffersen_cc", lr, float(chi2.sf(lr, 2)), size)
