"""Fixed-length regime vector with block masks, and the discrete regime id.

Layout (``dim`` from ``model.inputs.regime_dim``, 32..64): the descriptors of
:data:`aurora_jax.features.descriptors.BLOCKS` in order, then one mask entry per block, then
zeros up to ``dim``::

    v = [ m_b * clip(d_b, -c, c) for each block b ] ++ [ m_b for each block b ] ++ [0] * pad

where ``m_b = 1`` iff every descriptor of block ``b`` is finite (and the block is not forced
missing, e.g. a stale snapshot group), else ``0``. A missing group is therefore masked, not
zero-filled: its values are 0 *and* its mask entry says they carry no information.

Regime id (0 calm / 1 normal / 2 volatile) from the score ``s = log(sigma_now / sigma_ref)``:
``sigma_ref`` = realized vol over ``ref_days`` (at least the long window's rows), ``sigma_now`` =
realized vol over ``id_window_days``; with IV present, ``log sigma_now`` is the mean of that and
``log iv - vrp`` where ``vrp`` = trailing (slow window) mean of ``log iv - log rv_long`` (implied
vol expressed in realized units). ``s < calm_below`` -> 0, ``s > volatile_above`` -> 2, else 1;
no score (too little data) -> 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.descriptors import (
    BLOCKS,
    _density,
    _min_rows,
    _roll,
    log_returns,
    realized_vol,
)

REGIME_DIM_RANGE = (32, 64)


@dataclass(frozen=True)
class RegimeLayout:
    """Where each descriptor and block mask sits in the regime vector."""

    dim: int
    names: tuple[str, ...]  # every entry's name ("mask:<block>", "pad:<i>" too)
    blocks: dict[str, tuple[int, ...]]  # block -> value positions
    mask_index: dict[str, int]  # block -> its mask position

    def index(self, name: str) -> int:
        return self.names.index(name)


def regime_layout(dim: int) -> RegimeLayout:
    """The layout for ``dim`` entries; raises when ``dim`` is outside 32..64 or too small."""
    lo, hi = REGIME_DIM_RANGE
    n_val = sum(len(v) for v in BLOCKS.values())
    need = n_val + len(BLOCKS)
    if not isinstance(dim, (int, np.integer)) or not (max(lo, need) <= dim <= hi):
        raise InvalidParameterError(
            "inputs.regime_dim", dim, f"an integer in {max(lo, need)}..{hi}"
        )
    names: list[str] = []
    blocks: dict[str, tuple[int, ...]] = {}
    for b, ds in BLOCKS.items():
        blocks[b] = tuple(range(len(names), len(names) + len(ds)))
        names.extend(ds)
    mask_index = {}
    for b in BLOCKS:
        mask_index[b] = len(names)
        names.append(f"mask:{b}")
    names.extend(f"pad:{i}" for i in range(dim - len(names)))
    return RegimeLayout(int(dim), tuple(names), blocks, mask_index)


def regime_matrix(
    desc: pd.DataFrame, dim: int, clip: float, missing_blocks: Iterable[str] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors [rows, dim], block_mask [rows, blocks])`` from a descriptor frame.

    ``missing_blocks`` are masked on every row regardless of their values.
    """
    if not clip > 0:
        raise InvalidParameterError("regime.clip", clip, "> 0")
    lay = regime_layout(dim)
    forced = set(missing_blocks)
    unknown = forced - set(BLOCKS)
    if unknown:
        raise InvalidParameterError(
            "missing_blocks", sorted(unknown), f"a subset of {list(BLOCKS)}"
        )
    n = len(desc)
    out = np.zeros((n, dim), np.float64)
    bmask = np.zeros((n, len(BLOCKS)), np.float64)
    for j, (b, ds) in enumerate(BLOCKS.items()):
        vals = desc[list(ds)].to_numpy(dtype=float)
        ok = np.isfinite(vals).all(axis=1) & (b not in forced)
        out[:, list(lay.blocks[b])] = np.where(
            ok[:, None], np.clip(np.nan_to_num(vals), -clip, clip), 0.0
        )
        out[:, lay.mask_index[b]] = ok
        bmask[:, j] = ok
    return out, bmask


def regime_score(close: pd.Series, desc: pd.DataFrame, regime_cfg) -> pd.Series:
    """The regime score ``s`` (module docstring) on the grid; NaN where it cannot be computed."""
    cfg = regime_cfg
    dens = _density(close.index, cfg)
    mf = float(cfg.min_fraction)
    r, dt = log_returns(close)
    now = np.log(
        realized_vol(
            r, dt, float(cfg.id_window_days), _min_rows(float(cfg.id_window_days), dens, mf)
        )
    )
    ref = np.log(
        realized_vol(r, dt, float(cfg.ref_days), _min_rows(float(cfg.long_days), dens, mf))
    )
    liv = desc["log_iv"]
    gap = liv - desc["log_rv_long"]
    vrp = _roll(gap, float(cfg.slow_days), _min_rows(float(cfg.long_days), dens, mf)).mean()
    iv_now = liv - vrp
    now = now.where(iv_now.isna(), 0.5 * (now + iv_now))
    return (now - ref).replace([np.inf, -np.inf], np.nan)


def regime_ids(score: pd.Series | np.ndarray, regime_cfg) -> np.ndarray:
    """0 calm / 1 normal / 2 volatile from the score (NaN -> 1)."""
    lo, hi = float(regime_cfg.calm_below), float(regime_cfg.volatile_above)
    if not lo < hi:
        raise InvalidParameterError("regime.calm_below", lo, f"< regime.volatile_above = {hi}")
    s = np.asarray(score, dtype=float)
    out = np.ones(s.shape, np.int32)
    out[np.isfinite(s) & (s < lo)] = 0
    out[np.isfinite(s) & (s > hi)] = 2
    return out
