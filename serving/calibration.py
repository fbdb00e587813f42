"""Conformal calibration of served forecasts (aurora_jax.calibrate.conformal), one calibrator per
asset, persisted as ``<calibration_dir>/<asset>.json`` by the nightly job.

Step ``k`` of a forecast is a ``k``-day-ahead forecast, so each step is calibrated with
``horizon = k`` in the buffer of the forecast's regime. Requested levels the calibrator keeps no
scores for are returned raw and listed in ``uncalibrated_levels``. The service reloads a file when
it changes; ``calibration_version`` is the first 12 hex digits of its sha256 (``empty`` while
there is no file).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from aurora_jax.calibrate.conformal import ConformalCalibrator, ConformalConfig
from serving.schemas import CalibrationBody

_TOL = 1e-9


@dataclass
class _Loaded:
    calibrator: ConformalCalibrator
    version: str
    stamp: tuple[int, int] | None


def _contains(levels: Sequence[float], x: float) -> bool:
    return any(abs(x - v) < _TOL for v in levels)


class CalibrationService:
    def __init__(self, cal_cfg: DictConfig, directory: str | Path):
        self.cal_cfg = cal_cfg
        self.config = ConformalConfig.from_config(cal_cfg)
        self.directory = Path(directory)
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    @property
    def levels(self) -> tuple[float, ...]:
        return self.config.levels

    @property
    def scale_levels(self) -> tuple[float, ...]:
        return tuple(self.config.scale_levels) if self.config.score == "normalized" else ()

    def path(self, asset_id: str) -> Path:
        return self.directory / f"{asset_id}.json"

    def get(self, asset_id: str) -> tuple[ConformalCalibrator, str]:
        """The asset's calibrator (re-read when its file changed) and its version."""
        p = self.path(asset_id)
        try:
            st = p.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            cur = self._loaded.get(asset_id)
            if cur is not None and cur.stamp == stamp:
                return cur.calibrator, cur.version
            if stamp is None:
                cur = _Loaded(ConformalCalibrator(self.config), "empty", None)
            else:
                raw = p.read_bytes()
                cal = ConformalCalibrator.load(p)
                cur = _Loaded(cal, hashlib.sha256(raw).hexdigest()[:12], stamp)
            self._loaded[asset_id] = cur
            return cur.calibrator, cur.version

    def needed_levels(self, requested: Sequence[float]) -> tuple[float, ...]:
        """Levels to simulate: the requested ones plus the calibrator's scale levels."""
        return tuple(sorted({*map(float, requested), *self.scale_levels}))

    def apply(
        self, asset_id: str, regime: str, vol_z: float | None, levels: Sequence[float],
        raw: np.ndarray, requested: Sequence[float], conditional: bool, key: str,
    ) -> tuple[np.ndarray, CalibrationBody, str]:
        """Calibrated quantiles ``(steps, len(requested))`` from ``raw`` ``(steps, len(levels))``."""
        cal, version = self.get(asset_id)
        levels = [float(x) for x in levels]
        col = {lv: j for j, lv in enumerate(levels)}
        req = [float(x) for x in requested]
        usable = [lv for lv in levels if _contains(self.config.levels, lv)]
        has_scale = all(_contains(usable, s) for s in self.scale_levels)
        out = raw[:, [col[lv] for lv in req]].copy()
        uncal = [lv for lv in req if not _contains(self.config.levels, lv)]
        cal_regime = regime if regime in self.config.regimes else "normal"
        note = "" if regime == cal_regime else f"regime {regime}: calibrated with the {cal_regime} buffer"
        if not usable or not has_scale:
            body = CalibrationBody(status="uncalibrated", regime=regime, alpha={}, kappa=None, kappa_plus=None,
                                   buffer="none", buffer_size=0, uncalibrated_levels=req,
                                   note="no requested level is kept by the calibrator")
            return out, body, version
        info = None
        for k in range(raw.shape[0]):
            step = cal.calibrate({lv: float(raw[k, col[lv]]) for lv in usable}, cal_regime, k + 1,
                                 conditional=conditional, key=f"{key}|{k + 1}", z=vol_z)
            info = step.info
            for j, lv in enumerate(req):
                if _contains(usable, lv):
                    out[k, j] = step.quantiles[lv]
        out = np.maximum.accumulate(out, axis=1)
        assert info is not None
        status = "calibrated" if info.bucket != "none" else "uncalibrated"
        if status == "uncalibrated":
            note = (note + "; " if note else "") + f"calibration buffers hold fewer than {self.config.min_pooled} outcomes"
        body = CalibrationBody(
            status=status, regime=regime, alpha={str(k): float(v) for k, v in info.alpha.items()},
            kappa=float(info.kappa), kappa_plus=float(info.kappa_plus), buffer=info.bucket, buffer_size=int(info.n),
            uncalibrated_levels=uncal, note=note,
        )
        return out, body, version
