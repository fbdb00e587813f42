"""The Router: which of AR / ARMA / GARCH best explains a trailing window of returns.

Targets are BIC labels (:func:`aurora_jax.calibrate.arma.bic_label`). A small MLP on window
statistics (scaled autocorrelations of ``r``, ``r^2`` and ``|r|``, Ljung–Box statistics,
kurtosis, skewness, a variance ratio, the lag-2 partial autocorrelation) is trained with
optax (AdamW, cross-entropy) on real windows plus windows simulated from AR / ARMA / GARCH
processes fitted to real windows (labelled by BIC too). Its logits are divided by a
temperature ``T`` fitted on a later, held-out part of the history, so that the expected
calibration error is small on data it has not seen.

Teacher windows (the simulation core's teacher, when it exists) plug in through
``teacher`` in :func:`fit_router`: any ``(rng, num_windows, length) -> (num_windows, length)``
callable of daily log-returns; they are labelled by BIC like every other window.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from jaxtyping import Float, Int, PRNGKeyArray
from omegaconf import DictConfig
from scipy.special import softmax

from aurora_jax.calibrate.arma import MODELS, bic_table, fit_ar, fit_arma, fit_garch
from aurora_jax.calibrate.ece import expected_calibration_error, fit_temperature
from aurora_jax.errors import InvalidParameterError

TeacherWindows = Callable[[np.random.Generator, int, int], np.ndarray]
NUM_ACF = 5


def _acf(z: np.ndarray, lags: int) -> np.ndarray:
    """Autocorrelations 1..lags of each row of ``z`` (rows centred and scaled)."""
    z = z - z.mean(axis=1, keepdims=True)
    den = np.sum(z * z, axis=1) + 1e-12
    return np.stack([np.sum(z[:, k:] * z[:, :-k], axis=1) / den for k in range(1, lags + 1)], 1)


GARCH_GRID: tuple[tuple[float, float], ...] = (
    (0.03, 0.95), (0.05, 0.93), (0.05, 0.90), (0.10, 0.85), (0.10, 0.80),
    (0.15, 0.80), (0.20, 0.70), (0.25, 0.60), (0.10, 0.60), (0.30, 0.40),
)


def _lik_proxies(w: np.ndarray) -> np.ndarray:
    """Cheap log-likelihood gains per window over an iid Gaussian: AR(1) (OLS), the best of a
    grid of variance-targeting GARCH(1,1) filters ``h_t = (1-a-b) s^2 + a e_{t-1}^2 + b h_{t-1}``
    (a profile-likelihood proxy for the fitted GARCH), their difference, and Engle's ARCH-LM
    statistic with 5 lags (``n R^2``)."""
    n = w.shape[1]
    z = w - w.mean(axis=1, keepdims=True)
    var = np.mean(z**2, axis=1) + 1e-30
    phi = np.sum(z[:, 1:] * z[:, :-1], axis=1) / (np.sum(z[:, :-1] ** 2, axis=1) + 1e-30)
    res = z[:, 1:] - phi[:, None] * z[:, :-1]
    ar_gain = 0.5 * (n - 1) * np.log(var / (np.mean(res**2, axis=1) + 1e-30))
    a = np.asarray([g[0] for g in GARCH_GRID])[None, :]
    b = np.asarray([g[1] for g in GARCH_GRID])[None, :]
    z2 = (z**2)[:, :, None]
    h = np.broadcast_to(var[:, None], (w.shape[0], a.shape[1])).copy()
    ll_g = -0.5 * (np.log(h) + z2[:, 0] / h)
    for t in range(1, n):
        h = (1 - a - b) * var[:, None] + a * z2[:, t - 1] + b * h
        ll_g = ll_g - 0.5 * (np.log(h) + z2[:, t] / h)
    ll_c = -0.5 * n * (np.log(var) + 1.0)
    g_gain = np.max(ll_g, axis=1) - ll_c
    e2 = z**2 - np.mean(z**2, axis=1, keepdims=True)
    lags = 5
    lm = np.empty(w.shape[0])
    for i in range(w.shape[0]):
        Y = e2[i, lags:]
        X = np.column_stack([np.ones(n - lags)] + [e2[i, lags - k : n - k] for k in range(1, lags + 1)])
        beta, *_ = np.linalg.lstsq(X, Y, rcond=None)
        r2 = 1.0 - np.sum((Y - X @ beta) ** 2) / (np.sum((Y - Y.mean()) ** 2) + 1e-30)
        lm[i] = (n - lags) * r2
    return np.column_stack([ar_gain, g_gain, g_gain - ar_gain, np.log1p(lm)])


FEATURE_GROUPS: tuple[str, ...] = ("acf", "shape", "likelihood")


def window_features(
    windows: Float[np.ndarray, "n length"], groups: tuple[str, ...] = FEATURE_GROUPS
) -> Float[np.ndarray, "n f"]:
    """Router features of each window (scale-free), by group:

    * ``acf``: sqrt(n)-scaled autocorrelations 1..5 of ``r``, ``r^2``, ``|r|`` and the log
      Ljung–Box statistics of ``r`` and ``r^2``;
    * ``shape``: log kurtosis, skewness, half-sample log variance ratio, scaled lag-2 partial
      autocorrelation, 5-day variance ratio;
    * ``likelihood``: the log-likelihood-gain proxies of :func:`_lik_proxies`.
    """
    unknown = set(groups) - set(FEATURE_GROUPS)
    if unknown or not groups:
        raise InvalidParameterError("router.feature_groups", list(groups), f"a non-empty subset of {FEATURE_GROUPS}")
    w = np.atleast_2d(np.asarray(windows, dtype=float))
    n = w.shape[1]
    sizes = {"acf": 3 * NUM_ACF + 2, "shape": 5, "likelihood": 4}
    if w.shape[0] == 0:
        return np.zeros((0, sum(sizes[g] for g in groups)))
    z = (w - w.mean(axis=1, keepdims=True)) / (w.std(axis=1, keepdims=True) + 1e-12)
    out = []
    a_r = _acf(z, NUM_ACF)
    if "acf" in groups:
        rt = np.sqrt(n)
        a_r2 = _acf(z**2, NUM_ACF)
        a_abs = _acf(np.abs(z), NUM_ACF)

        def lb(a: np.ndarray) -> np.ndarray:
            return np.log1p(n * (n + 2) * np.sum(a**2 / (n - np.arange(1, a.shape[1] + 1)), 1))

        out.append(np.column_stack([a_r * rt, a_r2 * rt, a_abs * rt, lb(a_r), lb(a_r2)]))
    if "shape" in groups:
        kurt = np.log(np.mean(z**4, axis=1))
        skew = np.mean(z**3, axis=1)
        half = n // 2
        vr = np.log(np.var(w[:, half:], axis=1) + 1e-30) - np.log(np.var(w[:, :half], axis=1) + 1e-30)
        r1, r2 = a_r[:, 0], a_r[:, 1]
        pacf2 = (r2 - r1**2) / (1 - r1**2 + 1e-12) * np.sqrt(n)
        m5 = (n // 5) * 5
        five = w[:, :m5].reshape(w.shape[0], -1, 5).sum(axis=2)
        vr5 = np.log(np.var(five, axis=1) / (5 * np.var(w, axis=1) + 1e-30) + 1e-12)
        out.append(np.column_stack([kurt, skew, vr, pacf2, vr5]))
    if "likelihood" in groups:
        out.append(_lik_proxies(w))
    return np.concatenate(out, axis=1)


def real_windows(
    returns: pd.Series, length: int, stride: int, start=None, end=None
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Trailing windows of ``length`` returns ending every ``stride`` observations, with the
    window's last timestamp in ``[start, end]``; returns ``(windows, end stamps)``."""
    x = returns.to_numpy(dtype=float)
    idx = returns.index
    ends = np.arange(length - 1, x.shape[0], stride)

    def stamp(v) -> pd.Timestamp:
        t = pd.Timestamp(v)
        return t.tz_localize(idx.tz) if t.tzinfo is None and idx.tz is not None else t

    if start is not None:
        ends = ends[idx[ends] >= stamp(start)]
    if end is not None:
        ends = ends[idx[ends] <= stamp(end)]
    if ends.size == 0:
        return np.zeros((0, length)), idx[:0]
    wins = np.stack([x[e - length + 1 : e + 1] for e in ends])
    return wins, idx[ends]


def label_windows(windows: Float[np.ndarray, "n length"], p: int = 1) -> Int[np.ndarray, " n"]:
    """BIC label (index into ``MODELS``) of each window."""
    out = np.empty(windows.shape[0], dtype=int)
    for i, w in enumerate(windows):
        t = bic_table(w, p)
        out[i] = int(np.argmin([t[m] for m in MODELS]))
    return out


def simulate_fitted_windows(
    source: Float[np.ndarray, "m length"],
    num_windows: int,
    length: int,
    rng: np.random.Generator,
    p: int = 1,
) -> np.ndarray:
    """Windows simulated from AR(p), ARMA(p,1) and GARCH(1,1) processes (cycling through the
    three) fitted to randomly drawn source windows; Gaussian innovations, 100-step burn-in."""
    if source.shape[0] == 0:
        raise InvalidParameterError("source", source.shape, "at least one source window")
    burn = 100
    out = np.empty((num_windows, length))
    for i in range(num_windows):
        x = source[rng.integers(source.shape[0])]
        kind = MODELS[i % 3]
        e = rng.standard_normal(length + burn)
        y = np.zeros(length + burn)
        if kind == "GARCH":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = fit_garch(x, p)
            a, b = g.alpha, g.beta
            if a + b >= 0.999:
                b = 0.999 - a
            h = g.omega / max(1 - a - b, 1e-3)
            for t in range(length + burn):
                eps = np.sqrt(h) * e[t]
                y[t] = g.mu + eps
                h = g.omega + a * eps**2 + b * h
        else:
            ar = fit_ar(x, p)
            if kind == "AR":
                phi, theta, c, s2 = ar.phi, 0.0, ar.const, ar.sigma2
            else:
                fit = fit_arma(x, p)
                phi, theta, c, s2 = fit.phi, fit.theta, fit.const, fit.sigma2
            eps = np.sqrt(s2) * e
            for t in range(length + burn):
                lagged = sum(phi[j] * y[t - 1 - j] for j in range(p) if t - 1 - j >= 0)
                y[t] = c + lagged + eps[t] + (theta * eps[t - 1] if t >= 1 else 0.0)
        out[i] = y[burn:]
    return out


@dataclass(frozen=True)
class Router:
    """Trained router: ``probs = softmax(mlp((features - mean) / sd) / temperature)``."""

    mlp: eqx.nn.MLP
    feat_mean: np.ndarray
    feat_sd: np.ndarray
    temperature: float
    window: int
    p: int = 1
    groups: tuple[str, ...] = FEATURE_GROUPS

    def logits(self, windows: Float[np.ndarray, "n length"]) -> np.ndarray:
        f = (window_features(windows, self.groups) - self.feat_mean) / self.feat_sd
        return np.asarray(jax.vmap(self.mlp)(jnp.asarray(f)))

    def predict_proba(self, windows: Float[np.ndarray, "n length"]) -> Float[np.ndarray, "n 3"]:
        return softmax(self.logits(windows) / self.temperature, axis=1)

    def route(self, window: Float[np.ndarray, " length"]) -> tuple[str, np.ndarray, float]:
        """``(label, probs, normalised entropy in [0, 1])`` for one trailing window."""
        pr = self.predict_proba(np.asarray(window)[None, -self.window :])[0]
        ent = float(-np.sum(pr * np.log(pr + 1e-12)) / np.log(len(MODELS)))
        return MODELS[int(np.argmax(pr))], pr, ent


def train_mlp(
    feats: Float[np.ndarray, "n f"],
    labels: Int[np.ndarray, " n"],
    key: PRNGKeyArray,
    hidden: int = 32,
    steps: int = 1500,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-3,
) -> eqx.nn.MLP:
    """Full-batch AdamW on the cross-entropy of standardised features."""
    mlp = eqx.nn.MLP(feats.shape[1], len(MODELS), hidden, depth=1, activation=jnp.tanh, key=key)
    x = jnp.asarray(feats)
    y = jnp.asarray(labels)
    opt = optax.adamw(learning_rate, weight_decay=weight_decay)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    state = opt.init(params)

    def loss_fn(prm):
        lp = jax.nn.log_softmax(jax.vmap(eqx.combine(prm, static))(x), axis=1)
        return -jnp.mean(jnp.take_along_axis(lp, y[:, None], axis=1))

    @jax.jit
    def run(prm, st):
        def body(carry, _):
            prm, st = carry
            loss, g = jax.value_and_grad(loss_fn)(prm)
            upd, st = opt.update(g, st, prm)
            return (optax.apply_updates(prm, upd), st), loss

        (prm, st), losses = jax.lax.scan(body, (prm, st), None, length=steps)
        return prm, losses

    params, _ = run(params, state)
    return eqx.combine(params, static)


@dataclass(frozen=True)
class RouterFitReport:
    """What one router was trained on."""

    n_train_real: int
    n_train_sim: int
    n_train_teacher: int
    n_calib: int
    class_counts_train: dict[str, int]
    temperature: float
    ece_calib_raw: float
    ece_calib: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def fit_router(
    windows: Float[np.ndarray, "n length"],
    labels: Int[np.ndarray, " n"],
    cfg: DictConfig,
    rng: np.random.Generator,
    key: PRNGKeyArray,
    teacher: TeacherWindows | None = None,
) -> tuple[Router, RouterFitReport]:
    """Train on time-ordered real ``windows`` with their BIC ``labels`` plus simulated (and
    teacher) windows; the last ``calib_fraction`` of the real windows — after a gap of one
    window length, and with a matching share of the simulated ones — is held out to fit the
    temperature.

    ``cfg``: ``window, stride, p, feature_groups, hidden, steps, learning_rate, weight_decay,
    sim_windows, teacher_windows, calib_fraction, ece_bins``.
    """
    L, p = int(cfg.window), int(cfg.p)
    windows = np.asarray(windows, dtype=float)
    if windows.ndim != 2 or windows.shape[1] != L or windows.shape[0] < 40:
        raise InvalidParameterError(
            "router windows", windows.shape, f"(n >= 40, {L}): more history before the router fit"
        )
    n = windows.shape[0]
    frac = float(cfg.calib_fraction)
    n_cal = max(round(frac * n), 10)
    gap = max(L // int(cfg.stride), 1)
    tr_idx = np.arange(0, max(n - n_cal - gap, 10))
    cal_idx = np.arange(n - n_cal, n)
    sim = simulate_fitted_windows(windows[tr_idx], int(cfg.sim_windows), L, rng, p)
    sim_labels = label_windows(sim, p)
    n_sim_cal = round(frac * sim.shape[0])
    parts_x = [windows[tr_idx], sim[n_sim_cal:]]
    parts_y = [labels[tr_idx], sim_labels[n_sim_cal:]]
    cal_x = [windows[cal_idx], sim[:n_sim_cal]]
    cal_y = [labels[cal_idx], sim_labels[:n_sim_cal]]
    n_teacher = 0
    if teacher is not None and int(cfg.teacher_windows) > 0:
        tw = np.asarray(teacher(rng, int(cfg.teacher_windows), L), dtype=float)
        tl = label_windows(tw, p)
        k = round(frac * tw.shape[0])
        parts_x.append(tw[k:])
        parts_y.append(tl[k:])
        cal_x.append(tw[:k])
        cal_y.append(tl[:k])
        n_teacher = tw.shape[0]
    x_tr, y_tr = np.concatenate(parts_x), np.concatenate(parts_y)
    x_cal, y_cal = np.concatenate(cal_x), np.concatenate(cal_y)
    groups = tuple(str(g) for g in cfg.feature_groups)
    f_tr = window_features(x_tr, groups)
    mean, sd = f_tr.mean(axis=0), f_tr.std(axis=0) + 1e-6
    mlp = train_mlp((f_tr - mean) / sd, y_tr, key, int(cfg.hidden), int(cfg.steps),
                    float(cfg.learning_rate), float(cfg.weight_decay))
    raw = Router(mlp, mean, sd, 1.0, L, p, groups)
    cal_logits = raw.logits(x_cal)
    temp = fit_temperature(cal_logits, y_cal)
    bins = int(cfg.ece_bins)
    rep = RouterFitReport(
        n_train_real=tr_idx.size,
        n_train_sim=sim.shape[0] - n_sim_cal,
        n_train_teacher=n_teacher,
        n_calib=y_cal.size,
        class_counts_train={m: int(np.sum(y_tr == i)) for i, m in enumerate(MODELS)},
        temperature=temp,
        ece_calib_raw=expected_calibration_error(softmax(cal_logits, axis=1), y_cal, bins),
        ece_calib=expected_calibration_error(softmax(cal_logits / temp, axis=1), y_cal, bins),
    )
    return Router(mlp, mean, sd, temp, L, p, groups), rep


def evaluate_router(
    probs: Float[np.ndarray, "n 3"], labels: Int[np.ndarray, " n"], num_bins: int = 10
) -> dict[str, float]:
    """ECE, accuracy and NLL of routed probabilities against BIC labels."""
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels, dtype=int)
    return {
        "n": int(labels.size),
        "ece": expected_calibration_error(probs, labels, num_bins),
        "accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
        "nll": float(-np.mean(np.log(probs[np.arange(labels.size), labels] + 1e-12))),
        "class_counts": {m: int(np.sum(labels == i)) for i, m in enumerate(MODELS)},
    }
