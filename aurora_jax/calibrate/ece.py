"""Expected calibration error and temperature scaling for class probabilities.

ECE with ``B`` equal-width confidence bins over ``conf_i = max_k p_ik``:

    ECE = sum_b (n_b / N) * | acc_b - conf_b |,

``acc_b`` the fraction of correct argmax predictions in bin ``b`` and ``conf_b`` the mean
confidence there (bins are ``(b/B, (b+1)/B]``, the first one also holds 0).
Temperature scaling picks ``T`` minimising the negative log-likelihood of
``softmax(logits / T)`` on a held-out set (Guo et al. 2017).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from aurora_jax.errors import InvalidParameterError


def expected_calibration_error(
    probs: Float[np.ndarray, "n k"], labels: Int[np.ndarray, " n"], num_bins: int = 10
) -> float:
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or probs.shape[0] == 0:
        raise InvalidParameterError("probs", probs.shape, "(n, k) with labels of shape (n,), n > 0")
    if num_bins < 1:
        raise InvalidParameterError("num_bins", num_bins, "an integer >= 1")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(conf * num_bins).astype(int) - 1, 0, num_bins - 1)
    ece = 0.0
    for b in range(num_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def nll(logits: Float[np.ndarray, "n k"], labels: Int[np.ndarray, " n"], temperature: float) -> float:
    lp = log_softmax(np.asarray(logits) / temperature, axis=1)
    return float(-np.mean(lp[np.arange(lp.shape[0]), labels]))


def fit_temperature(
    logits: Float[np.ndarray, "n k"],
    labels: Int[np.ndarray, " n"],
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """``argmin_T NLL(softmax(logits / T))`` over ``T`` in ``bounds`` (searched in log T)."""
    lo, hi = bounds
    if not 0 < lo < hi:
        raise InvalidParameterError("bounds", bounds, "0 < lo < hi")
    res = minimize_scalar(
        lambda lt: nll(logits, labels, float(np.exp(lt))),
        bounds=(np.log(lo), np.log(hi)),
        method="bounded",
    )
    return float(np.exp(res.x))
