"""The hand-off to the engine: fixed-shape :class:`ModelInputs` for one (asset, as-of).

Pipeline (stages 1, 2, 4, 5 of the forecast engine; every step past-only on the snapshot grid):

1. daily log-returns ``r`` of ``Snapshot.close()``; RevIN ``(loc, scale)`` over the trailing
   ``inputs.revin.window_days`` (:mod:`~aurora_jax.features.revin`); the last ``lookback_days``
   grid rows of ``(r - loc) / scale``, left-padded with 0 and masked;
2. regime descriptors (:mod:`~aurora_jax.features.descriptors`), the masked regime vector and
   the regime id (:mod:`~aurora_jax.features.regime_vector`);
4. the IV path (:mod:`aurora_jax.models.vol_path`): implied model when IV is observed (and not
   stale), else the realized-vol fallback;
5. the market-maker indices (:mod:`~aurora_jax.features.mm_indices`).

Groups the snapshot lacks, or reports stale, are masked in the regime vector, excluded from the
MM indices and listed in :class:`InputsInfo`; nothing in :class:`ModelInputs` is ever NaN.

Entry points::

    snap, hourly = snapshot_for_inputs(store, asset_id, as_of, cfg)      # cfg: root config
    inputs, info = build_inputs(snap, cfg, vol_params=None, hourly=hourly)
    hist = history(snap, cfg, hourly)                                    # every grid row at once
    batch = inputs_at(hist, rows, vol_params, cfg)                       # stacked ModelInputs

``cfg`` is the engine config (``model`` with ``model=engine``) or the root config holding it.
``vol_params=None`` fits the vol path on the snapshot's own (past) rows; the training pipeline
passes the params it fitted with :func:`aurora_jax.models.vol_path.fit_vol_path` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float, Int

from aurora_jax.data.schema import FEATURE_GROUPS
from aurora_jax.data.snapshot import Snapshot, snapshot, snapshot_from_config
from aurora_jax.data.store import MarketStore
from aurora_jax.errors import ConfigError, InvalidParameterError
from aurora_jax.features.descriptors import BLOCK_GROUP, BLOCKS, descriptors, log_returns
from aurora_jax.features.mm_indices import MM_NAMES, mm_indices, used_inputs
from aurora_jax.features.regime_vector import (
    RegimeLayout,
    regime_ids,
    regime_layout,
    regime_matrix,
    regime_score,
)
from aurora_jax.features.revin import rolling_revin

HOURLY_CLOSE_COLUMNS = ("close_1h", "mark_close_1h")


class ModelInputs(eqx.Module):
    """Fixed-shape arrays for one (asset, as_of); a pytree, so many as-of dates stack and vmap."""

    returns: Float[Array, " lookback"]  # past daily log-returns, RevIN-normalized, oldest first
    returns_mask: Float[Array, " lookback"]  # 1 where a real return exists (left-padded with 0s)
    revin_loc: Float[Array, ""]  # RevIN mean of raw daily log-returns
    revin_scale: Float[Array, ""]  # RevIN std of raw daily log-returns (> 0)
    # regime vector incl. its mask entries (regime_dim in 32..64)
    regime: Float[Array, " regime_dim"]
    regime_id: Int[Array, ""]  # discrete regime 0 calm / 1 normal / 2 volatile
    # forecast 30d IV (annualised, fraction) per step, max horizon 14
    iv_path: Float[Array, " horizon_max"]
    rv_level: Float[Array, ""]  # realized vol (annualised fraction), the fallback scale
    # Gamma_Squeeze, Inventory_Unwind, Basis_Pressure, each in [-3, 3]
    mm_indices: Float[Array, "3"]
    spot: Float[Array, ""]  # last close


@dataclass
class InputsInfo:
    """What went into one :class:`ModelInputs` (not traced)."""

    asset_id: str
    as_of: str
    groups_used: list[str]
    groups_missing: list[str]  # feature groups not requested, without data, or stale
    stale_groups: list[str]
    masked_blocks: list[str]  # regime blocks with mask 0 at the as-of
    mm_inputs: dict[str, list[str]]  # index name -> components it used
    iv_source: str  # "implied" | "realized_fallback"
    vol_params: str  # what fitted the vol path ("snapshot:<asset>" or the training set)
    skew_path: list[float] | None  # forecast skew level per step, when a skew column is observed
    regime_score: float | None
    hourly: bool  # intraday realized vol from hourly bars was used
    data_range: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def engine_config(cfg):
    """The engine section (with ``inputs``, ``regime``, ...) of ``cfg`` (engine or root config)."""
    if cfg is not None and "inputs" in cfg and "regime" in cfg:
        return cfg
    if cfg is not None and "model" in cfg and "inputs" in cfg.model:
        return cfg.model
    raise ConfigError(
        "the engine config (sections inputs/regime/vol_path/mm/jumps) is missing: "
        "load it with model=engine (configs/model/engine.yaml)"
    )


def _hourly_close(hourly) -> pd.Series | None:
    if hourly is None:
        return None
    if isinstance(hourly, pd.Series):
        return hourly.astype(float)
    frame = hourly.frame
    for c in HOURLY_CLOSE_COLUMNS:
        if c in frame and frame[c].notna().any():
            return frame[c].astype(float)
    return None


@dataclass
class History:
    """Every stage evaluated on every grid row of one snapshot (past-only per row)."""

    asset_id: str
    index: pd.DatetimeIndex
    close: np.ndarray  # [n]
    returns: np.ndarray  # [n]  raw log-returns (NaN where none)
    revin: pd.DataFrame  # loc, scale per row
    desc: pd.DataFrame  # descriptors
    regime: np.ndarray  # [n, dim]
    block_mask: np.ndarray  # [n, blocks]
    score: np.ndarray  # [n] regime score
    regime_id: np.ndarray  # [n]
    mm: np.ndarray  # [n, 3]
    mm_used: pd.DataFrame  # [n, components] bool
    has_iv: np.ndarray  # [n] bool: the implied vol path applies
    layout: RegimeLayout
    forced_missing: tuple[str, ...]
    hourly: bool

    def until(self, t: pd.Timestamp) -> History:
        """The rows with time ``<= t`` (every row is past-only, so this is the history as of ``t``)."""
        n = int(np.searchsorted(self.index, t, side="right"))
        return History(self.asset_id, self.index[:n], self.close[:n], self.returns[:n],
                       self.revin.iloc[:n], self.desc.iloc[:n], self.regime[:n], self.block_mask[:n],
                       self.score[:n], self.regime_id[:n], self.mm[:n], self.mm_used.iloc[:n],
                       self.has_iv[:n], self.layout, self.forced_missing, self.hourly)

    def valid_rows(self, min_returns: int) -> np.ndarray:
        """Rows with a RevIN estimate, a spot, a realized-vol level and >= ``min_returns`` returns."""
        count = np.cumsum(np.isfinite(self.returns))
        ok = (count >= min_returns) & np.isfinite(self.close) & (self.close > 0)
        ok &= self.revin["loc"].notna().to_numpy() & np.isfinite(
            self.desc["log_rv_long"].to_numpy()
        )
        return np.flatnonzero(ok)


def history(snap: Snapshot, cfg, hourly=None, extra_missing: Sequence[str] = ()) -> History:
    """All stages on every row of ``snap`` (``hourly``: an hourly Snapshot, Series or None).

    Groups in ``extra_missing`` (and the snapshot's missing/stale groups) are masked.
    """
    e = engine_config(cfg)
    lay = regime_layout(int(e.inputs.regime_dim))
    forced = tuple(sorted(set(snap.missing_groups) | set(snap.stale_groups) | set(extra_missing)))
    # price blocks mask themselves (NaN descriptors); a snapshot may list "price" as missing when
    # only resampled bars exist, so it is never forced
    forced_blocks = [b for b, g in BLOCK_GROUP.items() if g in forced and g != "price"]
    close = snap.close()
    hc = _hourly_close(hourly)
    iv_percent = bool(e.inputs.iv_percent)
    desc = descriptors(snap.frame, close, e.regime, iv_percent, hc)
    for b in forced_blocks:
        desc.loc[:, list(BLOCKS[b]) + (["skew_level"] if b == "skew" else [])] = np.nan
    reg, bmask = regime_matrix(desc, lay.dim, float(e.regime.clip), forced_blocks)
    score = regime_score(close, desc, e.regime).to_numpy(float)
    mm, used = mm_indices(
        snap.frame, close, desc, e.mm, e.regime, iv_percent, [g for g in forced if g != "price"]
    )
    r, _ = log_returns(close)
    rc = e.inputs.revin
    rev = rolling_revin(
        r, window_days=float(rc.window_days), min_count=int(rc.min_count), eps=float(rc.eps)
    )
    has_iv = np.isfinite(desc["log_iv"].to_numpy(float))
    return History(
        snap.asset_id,
        snap.frame.index,
        close.to_numpy(float),
        r.to_numpy(float),
        rev,
        desc,
        reg,
        bmask,
        score,
        regime_ids(score, e.regime),
        mm.to_numpy(float),
        used,
        has_iv,
        lay,
        forced,
        bool(hc is not None and np.isfinite(desc["log_rv_hourly_short"].to_numpy()).any()),
    )


def inputs_at(hist: History, rows: Sequence[int] | np.ndarray, vol_params, cfg) -> ModelInputs:
    """Stacked :class:`ModelInputs` (leading axis = ``rows``) from a :class:`History`."""
    from aurora_jax.models.vol_path import iv_path  # features -> models edge of the contract

    e = engine_config(cfg)
    L, H = int(e.inputs.lookback_days), int(e.inputs.horizon_max)
    if L < 1 or H < 1:
        raise InvalidParameterError("inputs.lookback_days", L, ">= 1 (and inputs.horizon_max >= 1)")
    rows = np.asarray(rows, dtype=int)
    loc = hist.revin["loc"].to_numpy(float)[rows]
    scale = hist.revin["scale"].to_numpy(float)[rows]
    if not (np.isfinite(loc).all() and np.isfinite(scale).all()):
        raise InvalidParameterError(
            "rows",
            "rows without a RevIN estimate",
            f">= inputs.revin.min_count={int(e.inputs.revin.min_count)} returns in the window",
        )
    padded = np.concatenate([np.full(L, np.nan), hist.returns])
    windows = np.lib.stride_tricks.sliding_window_view(padded, L)[rows + 1]  # rows t-L+1..t
    mask = np.isfinite(windows)
    z = np.where(mask, (np.where(mask, windows, 0.0) - loc[:, None]) / scale[:, None], 0.0)
    log_rv0 = hist.desc["log_rv_long"].to_numpy(float)[rows]
    log_iv0 = hist.desc["log_iv"].to_numpy(float)[rows]
    has_iv = hist.has_iv[rows]
    ivp = np.asarray(
        iv_path(vol_params, hist.regime[rows], np.nan_to_num(log_iv0), log_rv0, has_iv, H)
    )
    mm = np.clip(hist.mm[rows], -3.0, 3.0)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return ModelInputs(
        returns=f32(z),
        returns_mask=f32(mask),
        revin_loc=f32(loc),
        revin_scale=f32(scale),
        regime=f32(hist.regime[rows]),
        regime_id=jnp.asarray(hist.regime_id[rows], jnp.int32),
        iv_path=f32(ivp),
        rv_level=f32(np.exp(log_rv0)),
        mm_indices=f32(mm),
        spot=f32(hist.close[rows]),
    )


def fit_vol_params_on(hist: History, cfg):
    """Vol path params fitted on a history's own rows (past-only when ``hist`` is a snapshot's)."""
    from aurora_jax.models.vol_path import fit_vol_path, vol_path_data

    e = engine_config(cfg)
    params, _ = fit_vol_path(
        [vol_path_data(f"snapshot:{hist.asset_id}", hist.desc, hist.regime)],
        e.vol_path,
        hist.layout,
    )
    return params


def build_inputs(
    snap: Snapshot, cfg, vol_params=None, hourly=None
) -> tuple[ModelInputs, InputsInfo]:
    """:class:`ModelInputs` at the snapshot's last grid row, and what went into it."""
    e = engine_config(cfg)
    hist = history(snap, cfg, hourly)
    last = len(hist.index) - 1
    min_returns = int(e.inputs.min_returns)
    n_ret = int(np.isfinite(hist.returns).sum())
    if last < 0 or last not in set(hist.valid_rows(min_returns).tolist()):
        raise InvalidParameterError(
            "snapshot",
            f"{n_ret} daily returns up to {snap.as_of.isoformat()}",
            f">= inputs.min_returns={min_returns} returns and >= inputs.revin.min_count="
            f"{int(e.inputs.revin.min_count)} in the last {e.inputs.revin.window_days} days",
        )
    if vol_params is None:
        vol_params = fit_vol_params_on(hist, cfg)
    x = inputs_at(hist, [last], vol_params, cfg)
    x = type(x)(**{k: getattr(x, k)[0] for k in x.__dataclass_fields__})
    for k in x.__dataclass_fields__:
        if not bool(jnp.isfinite(getattr(x, k)).all()):
            raise AssertionError(
                f"ModelInputs.{k} is not finite at {snap.as_of}: a bug in build_inputs"
            )
    masked = [b for j, b in enumerate(BLOCKS) if hist.block_mask[last, j] == 0]
    skew0 = float(hist.desc["skew_level"].iloc[last])
    skew = None
    if np.isfinite(skew0):
        from aurora_jax.models.vol_path import skew_path

        skew = [
            float(v)
            for v in np.asarray(
                skew_path(vol_params, hist.regime[last], skew0, int(e.inputs.horizon_max))
            )
        ]
    score = hist.score[last]
    ok_close = np.isfinite(hist.close)
    used = {g for g in snap.used_groups if g not in hist.forced_missing} | {"price"}
    info = InputsInfo(
        asset_id=snap.asset_id,
        as_of=snap.as_of.isoformat(),
        groups_used=[g for g in FEATURE_GROUPS if g in used],
        groups_missing=[g for g in FEATURE_GROUPS if g not in used],
        stale_groups=list(snap.stale_groups),
        masked_blocks=masked,
        mm_inputs=used_inputs(hist.mm_used.iloc[last]),
        iv_source="implied" if hist.has_iv[last] else "realized_fallback",
        vol_params=getattr(vol_params, "fitted_on", "") or "given",
        skew_path=skew,
        regime_score=float(score) if np.isfinite(score) else None,
        hourly=hist.hourly,
        data_range={
            "first": hist.index[ok_close][0].isoformat(),
            "last": hist.index[last].isoformat(),
            "returns": n_ret,
            "rows": len(hist.index),
        },
    )
    return x, info


def snapshot_for_inputs(
    store: MarketStore, asset_id: str, as_of, cfg
) -> tuple[Snapshot, Snapshot | None]:
    """The daily snapshot (``inputs.snapshot_days``, with the reference asset's close for the
    cross-asset block: :mod:`aurora_jax.features.cross_asset`) and, when the asset has hourly bars and
    ``inputs.hourly_days > 0``, the hourly price snapshot for intraday realized vol.

    ``cfg`` is the root config (``cfg.data`` for groups/staleness, ``cfg.model`` the engine)."""
    from aurora_jax.features.cross_asset import with_reference_close

    e = engine_config(cfg)
    snap = snapshot_from_config(
        store, asset_id, as_of, cfg.data, lookback_days=int(e.inputs.snapshot_days)
    )
    snap = with_reference_close(store, snap, cfg)
    hourly = None
    days = int(e.inputs.hourly_days)
    if days > 0 and any(n in store.feature_names(asset_id) for n in HOURLY_CLOSE_COLUMNS):
        hourly = snapshot(
            store,
            asset_id,
            snap.as_of,
            lookback_days=days,
            groups=("price",),
            freq="1h",
            shared_assets=(),
        )
    return snap, hourly


__all__ = [
    "MM_NAMES",
    "History",
    "InputsInfo",
    "ModelInputs",
    "build_inputs",
    "engine_config",
    "fit_vol_params_on",
    "history",
    "inputs_at",
    "snapshot_for_inputs",
]
