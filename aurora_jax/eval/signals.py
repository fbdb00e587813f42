"""Per as-of calibration signals for the walk-forward harness, computed causally.

At each as-of date, from data stamped ``<= as_of`` only:

* regime (calm / normal / volatile), its score and the log-vol z-score
  (:class:`VolRegimeClassifier` on the truncated history);
* the ARMA Crossbar Index on the trailing window and the TRANS flag (hysteresis stepped once
  per as-of date, OR a change-point alarm younger than ``crossbar.cp_hold`` days);
* change points: Page–Hinkley on ``x_t = r_t^2 / s2_{t-1} - 1`` (``s2`` the EWMA variance up to
  the day before), streamed day by day; CUSUM on the reference forecaster's normalised 1-day
  errors as they mature (:meth:`SignalEngine.observe_error`);
* the router's probabilities and entropy for the trailing window; the router is refitted every
  ``router.refit_every_days`` on windows ending before the as-of date, and every routed window is
  also labelled by BIC so the out-of-sample ECE can be reported;
* the HMM comparison label (refitted every ``hmm.refit_every_days``, filtered to ``as_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from aurora_jax.calibrate.arma import MODELS, bic_label
from aurora_jax.calibrate.changepoint import Cusum, PageHinkley
from aurora_jax.calibrate.crossbar import TransFlag, crossbar_index
from aurora_jax.calibrate.hmm import filtered_probs, fit_hmm
from aurora_jax.calibrate.router import (
    Router,
    TeacherWindows,
    fit_router,
    label_windows,
    real_windows,
)
from aurora_jax.calibrate.vol_regime import REGIMES, VolRegimeClassifier


@dataclass(frozen=True)
class Signals:
    as_of: pd.Timestamp
    regime: str
    regime_score: float
    z: float
    aci: float
    trans: bool
    cp_returns: bool
    cp_errors: bool
    router_label: str
    router_probs: tuple[float, float, float]
    router_entropy: float
    window_label: str
    hmm_regime: str | None

    def as_row(self) -> dict:
        d = dict(self.__dict__)
        d["router_probs"] = list(self.router_probs)
        return d


@dataclass
class SignalEngine:
    cal: DictConfig
    seed: int = 0
    teacher: TeacherWindows | None = None
    ewma_lambda: float = 0.94
    classifier: VolRegimeClassifier = field(init=False)
    router: Router | None = field(default=None, init=False)
    router_fits: list[dict] = field(default_factory=list, init=False)
    _labels: dict = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.classifier = VolRegimeClassifier.from_config(self.cal.regime)
        self.trans_flag = TransFlag.from_config(self.cal.crossbar)
        self._trans_filter = self.trans_flag.filter()
        self._trans_state: int | None = None
        self._trans_dwell = 0
        ph = self.cal.changepoint.page_hinkley
        cu = self.cal.changepoint.cusum
        self.ph = PageHinkley(float(ph.delta), float(ph.threshold))
        self.cusum = Cusum(float(cu.k), float(cu.h), int(cu.burn_in))
        self._ph_state = self.ph.init()
        self._cu_state = self.cusum.init()
        self._ph_last: pd.Timestamp | None = None
        self._ewma_s2: float | None = None
        self._last_ph_alarm: pd.Timestamp | None = None
        self._last_cu_alarm: pd.Timestamp | None = None
        self._router_fit_at: pd.Timestamp | None = None
        self._hmm = None
        self._hmm_fit_at: pd.Timestamp | None = None
        self.ph_alarms: list[pd.Timestamp] = []
        self.cu_alarms: list[pd.Timestamp] = []

    # -- change points ------------------------------------------------------------------------
    def _stream_returns(self, returns: pd.Series) -> None:
        new = returns if self._ph_last is None else returns[returns.index > self._ph_last]
        for t, r in zip(new.index, new.to_numpy(dtype=float)):
            if self._ewma_s2 is None:
                self._ewma_s2 = r * r if r != 0 else 1e-6
                continue
            x = r * r / max(self._ewma_s2, 1e-12) - 1.0
            self._ph_state, alarm, _ = self.ph.update(self._ph_state, float(np.log1p(max(x, -0.999))))
            if alarm:
                self._last_ph_alarm = t
                self.ph_alarms.append(t)
            self._ewma_s2 = self.ewma_lambda * self._ewma_s2 + (1 - self.ewma_lambda) * r * r
        if len(new):
            self._ph_last = new.index[-1]

    def observe_error(self, when: pd.Timestamp, err: float) -> None:
        """Feed one matured normalised forecast error (reference method, 1 day ahead)."""
        if not np.isfinite(err):
            return
        self._cu_state, alarm, _ = self.cusum.update(self._cu_state, float(err))
        if alarm:
            self._last_cu_alarm = when
            self.cu_alarms.append(when)

    def _recent(self, last: pd.Timestamp | None, as_of: pd.Timestamp) -> bool:
        return last is not None and (as_of - last) < pd.Timedelta(days=int(self.cal.crossbar.cp_hold))

    # -- router -------------------------------------------------------------------------------
    def _labelled_windows(self, returns: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        rc = self.cal.router
        wins, ends = real_windows(returns, int(rc.window), int(rc.stride))
        cap = int(rc.max_train_windows)
        if cap > 0:
            wins, ends = wins[-cap:], ends[-cap:]
        todo = [i for i, e in enumerate(ends) if e not in self._labels]
        if todo:
            labs = label_windows(wins[todo], int(rc.p))
            for i, lab in zip(todo, labs):
                self._labels[ends[i]] = int(lab)
        return wins, np.asarray([self._labels[e] for e in ends])

    def _maybe_fit_router(self, as_of: pd.Timestamp, returns: pd.Series) -> None:
        rc = self.cal.router
        due = self._router_fit_at is None or (as_of - self._router_fit_at) >= pd.Timedelta(
            days=int(rc.refit_every_days))
        if not due:
            return
        wins, labs = self._labelled_windows(returns[returns.index < as_of])
        cap = int(rc.max_train_windows)
        if cap > 0:
            wins, labs = wins[-cap:], labs[-cap:]
        k = len(self.router_fits)
        router, rep = fit_router(wins, labs, rc, np.random.default_rng([self.seed, 101, k]),
                                 jax.random.key(self.seed * 1000 + k), teacher=self.teacher)
        self.router = router
        self._router_fit_at = as_of
        self.router_fits.append({"as_of": str(as_of), **rep.as_dict()})

    # -- hmm ----------------------------------------------------------------------------------
    def _hmm_label(self, as_of: pd.Timestamp, returns: pd.Series, rv: pd.Series) -> str | None:
        """Fit on the trailing ``hmm.window`` days (fixed shape: compiled once), filter the same
        window up to ``as_of``."""
        hc = self.cal.hmm
        if not bool(hc.enabled):
            return None
        feats = pd.concat([returns * 100.0, np.log(rv)], axis=1).dropna()
        w = int(hc.window)
        if len(feats) < w:
            return None
        x = jax.numpy.asarray(feats.to_numpy()[-w:])
        due = self._hmm_fit_at is None or (as_of - self._hmm_fit_at) >= pd.Timedelta(
            days=int(hc.refit_every_days))
        if due:
            self._hmm, _ = fit_hmm(np.asarray(x), jax.random.key(self.seed + 7), int(hc.num_states),
                                   int(hc.num_iters), float(hc.tol), order_by=1)
            self._hmm_fit_at = as_of
        probs = np.asarray(filtered_probs(self._hmm, x))
        state = int(np.argmax(probs[-1]))
        k = int(hc.num_states)
        return REGIMES[round(state * (len(REGIMES) - 1) / max(k - 1, 1))]

    # -- all signals at one as-of -------------------------------------------------------------
    def at(self, as_of: pd.Timestamp, returns: pd.Series, iv: pd.Series | None) -> Signals:
        returns = returns[returns.index <= as_of]
        iv = None if iv is None else iv[iv.index <= as_of]
        feats = self.classifier.classify(returns, iv)
        last = feats.iloc[-1]
        regime = str(last["label"])
        if regime == "unknown":
            regime = "normal"
        self._stream_returns(returns)
        cb = self.cal.crossbar
        aci = crossbar_index(returns.to_numpy()[-int(cb.window):], int(cb.p), float(cb.eps)).aci
        self._trans_state, self._trans_dwell = self._trans_filter.step(
            self._trans_state, self._trans_dwell, aci)
        cp_r = self._recent(self._last_ph_alarm, as_of)
        cp_e = self._recent(self._last_cu_alarm, as_of)
        trans = bool(self._trans_state == 1) or cp_r or cp_e
        self._maybe_fit_router(as_of, returns)
        window = returns.to_numpy()[-int(self.cal.router.window):]
        label, probs, ent = self.router.route(window)
        true_label = MODELS[bic_label(window, int(self.cal.router.p))]
        hmm = self._hmm_label(as_of, returns, feats["rv"])
        return Signals(as_of, regime, float(last["score"]), float(last["z"]), float(aci), trans,
                       cp_r, cp_e, label, tuple(float(p) for p in probs), float(ent), true_label, hmm)
