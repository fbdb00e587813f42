"""Hurst exponent estimators (numpy), all taking a *path* ``X`` (an fBM-like level process;
pass ``cumsum(returns)`` for returns, the log realized variance itself for volatility).

- **Variogram** (Gatheral, Jaisson & Rosenbaum 2018): ``m_q(l) = mean |X_{t+l} - X_t|^q``
  scales like ``l^{qH}``; ``H`` is the OLS slope of ``log m_q`` on ``log l`` divided by ``q``.
- **DFA** (Peng et al. 1994): cut the centred path into windows of size ``s``, remove a
  least-squares polynomial of degree ``order`` in each, ``F(s)`` = RMS residual; for fBM
  ``F(s) ~ s^H``; ``H`` is the slope of ``log F`` on ``log s``.
- **Wavelet** (Abry & Veitch 1998, Haar): orthonormal Haar detail coefficients ``d_{j,k}`` of
  the sampled path at octave ``j`` have ``E d_{j,k}^2 ~ 2^{j(2H+1)}`` asymptotically. At small
  octaves the sampled path deviates from that power law (biasing the plain log-log slope down
  for rough paths), so we fit the *exact* octave variances of sampled fBM,
  ``v_j(H) = 2^{-j} sum_{|u|<s} (s - |u|) gamma_s(u)``, ``s = 2^{j-1}``,
  ``gamma_s(u) = (|u+s|^{2H} - 2|u|^{2H} + |u-s|^{2H})/2``, by least squares on
  ``log2 mean d_j^2 = log2 C + log2 v_j(H)`` (``C`` profiled out, ``H`` by grid + golden
  section). ``exact=False`` gives the plain slope estimate ``(slope - 1)/2``.

All three regress over scales given by the caller or the defaults in
``configs/sim/default.yaml`` (``estimators.hurst``).
"""

from __future__ import annotations

import numpy as np

from aurora_jax.errors import InvalidParameterError


def _path(x, min_len: int = 32) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size < min_len:
        raise InvalidParameterError("path", f"length {arr.size}", f"at least {min_len} points")
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError("path", "non-finite values", "finite floats")
    return arr


def _slope(logx: np.ndarray, logy: np.ndarray) -> float:
    return float(np.polyfit(logx, logy, 1)[0])


def hurst_variogram(path, max_lag: int = 20, q: float = 2.0) -> float:
    """``H`` from the ``q``-th moment variogram over lags ``1..max_lag``."""
    x = _path(path)
    max_lag = min(int(max_lag), x.size // 4)
    lags = np.arange(1, max_lag + 1)
    m = np.array([np.mean(np.abs(x[lag:] - x[:-lag]) ** q) for lag in lags])
    return _slope(np.log(lags), np.log(m)) / q


def hurst_dfa(path, min_scale: int = 8, n_scales: int = 12, order: int = 1) -> float:
    """DFA-``order`` estimate of ``H`` over log-spaced window sizes ``min_scale .. n/8``."""
    x = _path(path, min_len=8 * min_scale)
    prof = x - x.mean()
    n = prof.size
    scales = np.unique(np.floor(np.geomspace(min_scale, n // 8, n_scales)).astype(int))
    fs = []
    for s in scales:
        k = n // s
        seg = prof[: k * s].reshape(k, s)
        t = np.arange(s, dtype=np.float64)
        vander = np.vander(t, order + 1)
        coef, *_ = np.linalg.lstsq(vander, seg.T, rcond=None)
        resid = seg.T - vander @ coef
        fs.append(np.sqrt(np.mean(resid**2)))
    return _slope(np.log(scales), np.log(np.asarray(fs)))


def _haar_octave_variance(hurst, level: int) -> np.ndarray:
    """Exact ``v_j(H)`` (module docstring), vectorised over ``hurst``."""
    h2 = 2.0 * np.atleast_1d(np.asarray(hurst, dtype=np.float64))[:, None]
    s = 2 ** (level - 1)
    u = np.arange(-(s - 1), s, dtype=np.float64)[None, :]
    gam = 0.5 * (np.abs(u + s) ** h2 - 2.0 * np.abs(u) ** h2 + np.abs(u - s) ** h2)
    return np.sum((s - np.abs(u)) * gam, axis=1) / 2.0**level


def _fit_exact(levels: np.ndarray, logvar: np.ndarray) -> float:
    def loss(hs) -> np.ndarray:
        model = np.log2(np.stack([_haar_octave_variance(hs, int(j)) for j in levels], axis=1))
        resid = logvar[None, :] - model
        return np.sum((resid - resid.mean(axis=1, keepdims=True)) ** 2, axis=1)

    grid = np.linspace(0.01, 0.99, 99)
    i = int(np.argmin(loss(grid)))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(25):
        c, d = b - g * (b - a), a + g * (b - a)
        lc, ld = loss(np.array([c, d]))
        if lc < ld:
            b = d
        else:
            a = c
    return float((a + b) / 2.0)


def hurst_wavelet(path, min_level: int = 1, min_coeffs: int = 8, exact: bool = True) -> float:
    """Haar-wavelet estimate of ``H`` over octaves ``min_level ..`` (>= ``min_coeffs`` details)."""
    a = _path(path)
    levels, logvar = [], []
    j = 0
    while a.size >= 2 * min_coeffs:
        j += 1
        a = a[: 2 * (a.size // 2)]
        d = (a[0::2] - a[1::2]) / np.sqrt(2.0)
        a = (a[0::2] + a[1::2]) / np.sqrt(2.0)
        if j >= min_level:
            levels.append(j)
            logvar.append(np.log2(np.mean(d**2)))
    if len(levels) < 2:
        raise InvalidParameterError("path", f"length {np.size(path)}", "long enough for 2 octaves")
    lv, lg = np.asarray(levels, float), np.asarray(logvar)
    if exact:
        return _fit_exact(lv, lg)
    return (_slope(lv, lg) - 1.0) / 2.0


ESTIMATORS = {"variogram": hurst_variogram, "dfa": hurst_dfa, "wavelet": hurst_wavelet}


def estimate_hurst(path, method: str = "variogram", **kwargs) -> float:
    if method not in ESTIMATORS:
        raise InvalidParameterError("method", method, f"one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[method](path, **kwargs)
