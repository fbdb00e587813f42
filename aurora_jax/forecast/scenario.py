"""What-if scenarios: override whitelisted conditioning inputs, rerun the engine with the same key.

Whitelist (:data:`OVERRIDES`) and what each override acts on, for one (asset, as-of ``t``):

* ``iv_30d_atm`` -- the 30-day ATM implied vol observed at ``t`` (the store's unit: % when
  ``model.inputs.iv_percent``);
* ``iv_skew`` -- the option skew level observed at ``t`` (the asset's ``skew_*`` column);
* ``funding_rate`` -- the perpetual funding print at ``t`` (the store's unit, per funding period);
* ``gamma_squeeze_index`` / ``inventory_unwind_index`` -- the market-maker indices (in
  ``[-mm.bound, mm.bound]``) fed to the engine, set directly;
* ``corr_btc`` -- the regime vector's ``corr_btc`` entry (rolling correlation of the asset's daily
  log-returns with the reference asset's, ``regime.cross.reference`` = BTC-USD,
  :mod:`aurora_jax.features.cross_asset`), set directly; for BTC itself only the no-op 1 is
  accepted (the entry is masked there: BTC's correlation with BTC carries no information).

Conditioning: the column overrides replace the value of row ``t`` in a *copy* of the as-of
snapshot (earlier rows, the store and the base snapshot are untouched), and every stage is rerun
on that copy (:func:`aurora_jax.features.inputs.build_inputs`: descriptors, regime vector and
regime id, MM indices, the IV path of the engine's own vol-path model); the index overrides then
replace ``mm_indices``. So an IV of 90 moves ``log_iv``, its changes and z-score, IV over realized
vol, the Gamma_Squeeze components, the regime score and the IV path exactly as an observed IV of
90 at ``t`` would.

Both cones come from the same engine call with the same ``jax.random`` key
(:func:`scenario_key`: ``sha256(seed | asset | as_of)``), so ``scenario - base`` is the effect of
the override alone: with no effective change the two cones are identical. Results are labelled
``conditional = True``; :func:`calibrate_scenario` calibrates them with ``conditional=True`` (the
conformal layer remembers their keys and refuses any update with them) and nothing here ever
calls ``update``: scenario outputs never enter calibration buffers.

Sanity checks (each a 422 :class:`~aurora_jax.errors.InvalidParameterError` naming the override):
bounds from ``model.scenario``; IV below realized vol by more than ``iv_below_rv_factor`` (or above
it by more than ``iv_above_rv_factor``); funding / skew / correlation beyond the asset's historical
extremes widened by ``history_margin`` times their range (the correlation also within [-1, 1]); a
column the asset does not have (or that is stale at ``t``); inconsistent combinations (``combo``): a high Gamma_Squeeze with IV rich to
realized vol (dealers long gamma) or a low one with IV cheap, a high Inventory_Unwind (crowded
longs) with deeply negative funding or a low one with extreme positive funding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from aurora_jax.data.snapshot import Snapshot
from aurora_jax.errors import InvalidParameterError
from aurora_jax.features.cross_asset import reference_asset
from aurora_jax.features.inputs import InputsInfo, ModelInputs, build_inputs, history, snapshot_for_inputs
from aurora_jax.features.mm_indices import MM_NAMES
from aurora_jax.features.regime_vector import regime_layout
from aurora_jax.forecast.api import step_dates
from aurora_jax.forecast.engine import EngineOutput, EngineParams, engine_forecast
from aurora_jax.forecast.quantiles import check_quantile_levels, check_thresholds, quantile_column

REGIME_NAMES: tuple[str, ...] = ("calm", "normal", "volatile")


@dataclass(frozen=True)
class OverrideSpec:
    kind: str                      # "column" | "mm" | "cross_asset"
    description: str
    column: str | None = None      # exact column, or a prefix ending in "_" (first column with data)
    block: str | None = None       # regime block that must be unmasked after the override
    mm_index: int | None = None


OVERRIDES: dict[str, OverrideSpec] = {
    "iv_30d_atm": OverrideSpec("column", "30-day ATM implied vol at the as-of (store unit, % for DVOL / VIX)",
                               column="iv_30d_atm", block="iv"),
    "iv_skew": OverrideSpec("column", "option skew level at the as-of (the asset's skew_* column unit)",
                            column="skew_", block="skew"),
    "corr_btc": OverrideSpec("cross_asset", "correlation of the asset's daily returns with BTC's"),
    "funding_rate": OverrideSpec("column", "perpetual funding rate print at the as-of (store unit, per period)",
                                 column="funding_rate", block="funding"),
    "gamma_squeeze_index": OverrideSpec("mm", "Gamma_Squeeze_Index fed to the engine", mm_index=0),
    "inventory_unwind_index": OverrideSpec("mm", "Inventory_Unwind_Index fed to the engine", mm_index=1),
}
"""The only inputs a scenario may override."""


# ---------------------------------------------------------------------------------------------
# engine and base conditioning set
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineHandle:
    """A trained engine version: params, registry entry, EWAF losses for the asset (or None)."""

    params: EngineParams
    version: str
    asset_id: str
    ewaf_losses: np.ndarray | None = None
    entry: object | None = None


def load_engine(cfg, asset_id: str) -> EngineHandle:
    """The newest registered engine for ``asset_id`` (503 ModelUnavailableError when none)."""
    from aurora_jax.models.trend_ensemble import EwafTracker
    from aurora_jax.train.registry import load_latest

    params, entry = load_latest(cfg, asset_id)
    losses = None
    path = entry.ewaf_path(asset_id)
    if path.exists():
        losses = EwafTracker(path, float(cfg.model.trend.ewaf.discount)).load().losses_array()
    return EngineHandle(params, entry.version, asset_id, losses, entry)


@dataclass(frozen=True)
class ColumnHistory:
    """Range of one raw column over the asset's history up to the as-of."""

    column: str
    lo: float
    hi: float
    mean: float
    sd: float
    n: int


@dataclass
class ScenarioBase:
    """Everything request-independent about one (asset, as-of): the snapshot it was built from,
    the base ModelInputs and the history the sanity checks compare against."""

    asset_id: str
    as_of: pd.Timestamp
    snap: Snapshot
    hourly: Snapshot | None
    inputs: ModelInputs
    info: InputsInfo
    vol_params: object
    columns: dict[str, str]                      # override name -> frame column (when the asset has it)
    histories: dict[str, ColumnHistory]          # override name -> its column's history
    rv_long: float                               # realized vol (annualised) over the long window
    rv_short: float                              # ... over the short window
    dates: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([]))


def _column_for(frame: pd.DataFrame, spec: OverrideSpec) -> str | None:
    if spec.column is None:
        return None
    if not spec.column.endswith("_"):
        return spec.column if spec.column in frame and frame[spec.column].notna().any() else None
    cols = sorted(c for c in frame.columns if c.startswith(spec.column) and frame[c].notna().any())
    return cols[0] if cols else None


def _history(store, asset_id: str, column: str, as_of: pd.Timestamp, frame: pd.DataFrame) -> ColumnHistory | None:
    values = None
    if store is not None and column in store.feature_names(asset_id):
        values = store.series(asset_id, column, end=as_of).to_numpy(float)
    if values is None or not len(values):
        values = frame[column].to_numpy(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return ColumnHistory(column, float(values.min()), float(values.max()), float(values.mean()),
                         float(values.std()), len(values))


def base_from_snapshot(snap: Snapshot, hourly, cfg, vol_params, store=None, max_horizon: int = 14) -> ScenarioBase:
    """The base conditioning set of a snapshot (``cfg``: root config with the engine in ``model``)."""
    inputs, info = build_inputs(snap, cfg, vol_params=vol_params, hourly=hourly)
    lay = regime_layout(int(inputs.regime.shape[0]))
    reg = np.asarray(inputs.regime, np.float64)
    columns, hists = {}, {}
    for name, spec in OVERRIDES.items():
        col = _column_for(snap.frame, spec)
        if col is not None:
            columns[name] = col
            h = _history(store, snap.asset_id, col, snap.as_of, snap.frame)
            if h is not None:
                hists[name] = h
    if reg[lay.index("mask:cross")] > 0:      # the correlation's own history over the snapshot window
        corr = history(snap, cfg, hourly).desc["corr_btc"].to_numpy(float)
        corr = corr[np.isfinite(corr)]
        hists["corr_btc"] = ColumnHistory("corr_btc", float(corr.min()), float(corr.max()), float(corr.mean()),
                                          float(corr.std()), len(corr))
    return ScenarioBase(
        asset_id=snap.asset_id, as_of=snap.as_of, snap=snap, hourly=hourly, inputs=inputs, info=info,
        vol_params=vol_params, columns=columns, histories=hists, rv_long=float(inputs.rv_level),
        rv_short=float(np.exp(reg[lay.index("log_rv_short")])), dates=step_dates(snap, int(max_horizon)),
    )


def prepare_base(store, asset_id: str, as_of, cfg, vol_params) -> ScenarioBase:
    """:func:`base_from_snapshot` of the engine snapshot of ``asset_id`` at ``as_of`` (None = latest)."""
    store.require_asset(asset_id)
    snap, hourly = snapshot_for_inputs(store, asset_id, as_of, cfg)
    return base_from_snapshot(snap, hourly, cfg, vol_params, store, int(cfg.model.inputs.horizon_max))


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _bad(name: str, value, allowed: str, reason: str | None = None) -> InvalidParameterError:
    return InvalidParameterError(f"scenario_overrides.{name}", value, allowed, reason)


def _iv_unit(cfg) -> float:
    return 100.0 if bool(cfg.model.inputs.iv_percent) else 1.0


def _history_check(name: str, v: float, hist: ColumnHistory | None, margin: float, what: str) -> None:
    if hist is None:
        raise _bad(name, v, f"an asset with a {what} history", "no observation up to the as-of")
    span = max(hist.hi - hist.lo, 1e-12)
    lo, hi = hist.lo - margin * span, hist.hi + margin * span
    if not lo <= v <= hi:
        raise _bad(name, v, f"[{lo:.6g}, {hi:.6g}] (historical extremes [{hist.lo:.6g}, {hist.hi:.6g}] widened by "
                            f"model.scenario.history_margin={margin:g} x range)",
                   f"{what} beyond its historical extremes over {hist.n} observations")


def validate_overrides(overrides: Mapping[str, float], base: ScenarioBase, cfg) -> dict[str, float]:
    """The overrides as floats, or a 422 naming the first bad one (module docstring)."""
    s = cfg.model.scenario
    if not overrides:
        raise InvalidParameterError("scenario_overrides", {}, f"at least one of {list(OVERRIDES)}")
    if len(overrides) > int(s.max_overrides):
        raise InvalidParameterError("scenario_overrides", sorted(overrides),
                                    f"at most model.scenario.max_overrides={int(s.max_overrides)} overrides")
    unknown = sorted(k for k in overrides if k not in OVERRIDES)
    if unknown:
        raise InvalidParameterError("scenario_overrides", unknown, f"only the whitelisted inputs {list(OVERRIDES)}")
    out: dict[str, float] = {}
    for k, v in overrides.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise _bad(k, v, "a finite number") from None
        if isinstance(v, bool) or not math.isfinite(x):
            raise _bad(k, v, "a finite number")
        out[k] = x
    stale = set(base.snap.stale_groups) | set(base.snap.missing_groups)
    for name, v in out.items():
        spec = OVERRIDES[name]
        if spec.kind == "column" and name not in base.columns:
            raise _bad(name, v, f"an asset with a {spec.column}{'*' if spec.column.endswith('_') else ''} column",
                       f"{base.asset_id} has no such series in its snapshot up to {base.as_of.isoformat()}")
        if spec.kind == "column" and base.snap.column_groups.get(base.columns[name]) in stale:
            raise _bad(name, v, "a series that is fresh at the as-of",
                       f"the {base.snap.column_groups[base.columns[name]]} group is stale or missing at "
                       f"{base.as_of.isoformat()}: its block is masked, an override would not reach the engine")
    unit = _iv_unit(cfg)
    if "iv_30d_atm" in out:
        v = out["iv_30d_atm"]
        lo, hi = (float(b) for b in s.iv_bounds)
        iv = v / unit
        if not lo <= iv <= hi:
            raise _bad("iv_30d_atm", v, f"[{lo * unit:g}, {hi * unit:g}] (model.scenario.iv_bounds)")
        below, above = float(s.iv_below_rv_factor), float(s.iv_above_rv_factor)
        if iv < base.rv_long / below:
            raise _bad("iv_30d_atm", v, f">= {base.rv_long / below * unit:.4g} (realized vol / "
                                        f"model.scenario.iv_below_rv_factor={below:g})",
                       f"IV {iv:.1%} is below the realized vol {base.rv_long:.1%} by more than the factor {below:g}")
        if iv > base.rv_long * above:
            raise _bad("iv_30d_atm", v, f"<= {base.rv_long * above * unit:.4g} (realized vol x "
                                        f"model.scenario.iv_above_rv_factor={above:g})",
                       f"IV {iv:.1%} is above the realized vol {base.rv_long:.1%} by more than the factor {above:g}")
    margin = float(s.history_margin)
    if "iv_skew" in out:
        v = out["iv_skew"]
        lo, hi = (float(b) for b in s.skew_bounds)
        if not lo <= v <= hi:
            raise _bad("iv_skew", v, f"[{lo:g}, {hi:g}] (model.scenario.skew_bounds)")
        _history_check("iv_skew", v, base.histories.get("iv_skew"), margin, "skew")
    if "funding_rate" in out:
        v = out["funding_rate"]
        lo, hi = (float(b) for b in s.funding_bounds)
        if not lo <= v <= hi:
            raise _bad("funding_rate", v, f"[{lo:g}, {hi:g}] (model.scenario.funding_bounds, per funding period)")
        _history_check("funding_rate", v, base.histories.get("funding_rate"), margin, "funding rate")
    bound = float(cfg.model.mm.bound)
    for name in ("gamma_squeeze_index", "inventory_unwind_index"):
        if name in out and not -bound <= out[name] <= bound:
            raise _bad(name, out[name], f"[{-bound:g}, {bound:g}] (model.mm.bound)")
    if "corr_btc" in out:
        v = out["corr_btc"]
        if not -1.0 <= v <= 1.0:
            raise _bad("corr_btc", v, "[-1, 1]")
        ref = reference_asset(cfg)
        if base.asset_id == ref:
            if abs(v - 1.0) > 1e-9:
                raise _bad("corr_btc", v, f"1 for {base.asset_id} itself", f"the correlation of {ref} with itself is 1")
        elif "corr_btc" not in base.histories:
            raise _bad("corr_btc", v, f"an as-of with {ref} closes over the last {cfg.model.regime.long_days} days",
                       f"the cross-asset block is masked for {base.asset_id} at {base.as_of.isoformat()}: an "
                       "override would not reach the engine")
        else:
            _history_check("corr_btc", v, base.histories["corr_btc"], margin, f"correlation with {ref}")
    _check_combinations(out, base, cfg)
    return out


def _check_combinations(out: Mapping[str, float], base: ScenarioBase, cfg) -> None:
    c = cfg.model.scenario.combo
    hi_idx, rich, fz = float(c.index_high), float(c.gamma_iv_rich), float(c.funding_z)
    g, inv = out.get("gamma_squeeze_index"), out.get("inventory_unwind_index")
    if g is not None and "iv_30d_atm" in out:
        ratio = out["iv_30d_atm"] / _iv_unit(cfg) / base.rv_short
        if (g >= hi_idx and ratio > rich) or (g <= -hi_idx and ratio < 1.0 / rich):
            raise InvalidParameterError(
                "scenario_overrides", {"gamma_squeeze_index": g, "iv_30d_atm": out["iv_30d_atm"]},
                f"a Gamma_Squeeze_Index >= {hi_idx:g} with IV / short realized vol <= {rich:g} (and <= -{hi_idx:g} "
                f"with IV / realized >= {1 / rich:.3g}) (model.scenario.combo)",
                f"inconsistent combination: Gamma_Squeeze {g:+.2f} with IV at {ratio:.2f}x the short realized vol "
                f"{base.rv_short:.1%} (dealer short-gamma stress means realized vol above implied)")
    if inv is not None and "funding_rate" in out:
        h = base.histories.get("funding_rate")
        z = (out["funding_rate"] - h.mean) / h.sd if h is not None and h.sd > 0 else 0.0
        if (inv >= hi_idx and z <= -fz) or (inv <= -hi_idx and z >= fz):
            raise InvalidParameterError(
                "scenario_overrides", {"inventory_unwind_index": inv, "funding_rate": out["funding_rate"]},
                f"an Inventory_Unwind_Index >= {hi_idx:g} with funding z > -{fz:g} (and <= -{hi_idx:g} with "
                f"funding z < {fz:g}) (model.scenario.combo)",
                f"inconsistent combination: Inventory_Unwind {inv:+.2f} (crowded {'longs' if inv > 0 else 'shorts'}) "
                f"with funding {z:+.1f} sd from its historical mean")


# ---------------------------------------------------------------------------------------------
# the modified conditioning set
# ---------------------------------------------------------------------------------------------
def input_changes(base: ModelInputs, scen: ModelInputs, tol: float = 1e-7) -> list[dict]:
    """Named entries of ModelInputs that differ (regime entries by their layout names)."""
    lay = regime_layout(int(base.regime.shape[0]))
    out = []
    rb, rs = np.asarray(base.regime, np.float64), np.asarray(scen.regime, np.float64)
    for i in np.flatnonzero(np.abs(rb - rs) > tol):
        out.append({"input": f"regime.{lay.names[i]}", "base": float(rb[i]), "scenario": float(rs[i])})
    mb, ms = np.asarray(base.mm_indices, np.float64), np.asarray(scen.mm_indices, np.float64)
    for i in np.flatnonzero(np.abs(mb - ms) > tol):
        out.append({"input": f"mm_indices.{MM_NAMES[i]}", "base": float(mb[i]), "scenario": float(ms[i])})
    ib, is_ = np.asarray(base.iv_path, np.float64), np.asarray(scen.iv_path, np.float64)
    if np.max(np.abs(ib - is_)) > tol:
        out.append({"input": "iv_path", "base": ib.tolist(), "scenario": is_.tolist()})
    for k in ("regime_id", "rv_level", "revin_loc", "revin_scale", "spot"):
        b, v = float(getattr(base, k)), float(getattr(scen, k))
        if abs(b - v) > tol * max(1.0, abs(b)):
            out.append({"input": k, "base": b, "scenario": v})
    return out


def scenario_inputs(base: ScenarioBase, overrides: Mapping[str, float], cfg) -> tuple[ModelInputs, InputsInfo]:
    """The conditioning set with ``overrides`` (already validated) for the same as-of."""
    frame = base.snap.frame
    t = frame.index[-1]
    column_overrides = {base.columns[k]: v for k, v in overrides.items() if OVERRIDES[k].kind == "column"}
    if column_overrides:
        frame = frame.copy()
        for col, v in column_overrides.items():
            frame.loc[t, col] = float(v)
        snap = dataclasses.replace(base.snap, frame=frame)
        x, info = build_inputs(snap, cfg, vol_params=base.vol_params, hourly=base.hourly)
        masked = set(info.masked_blocks)
        for k in overrides:
            blk = OVERRIDES[k].block
            if blk is not None and blk in masked:
                raise _bad(k, overrides[k], f"an asset whose {blk} block has enough history at the as-of",
                           f"the {blk} block is still masked after the override (too little {blk} history in the "
                           f"window), so it would not reach the engine")
    else:
        x, info = base.inputs, base.info
    if "corr_btc" in overrides and base.asset_id != reference_asset(cfg):
        i = regime_layout(int(x.regime.shape[0])).index("corr_btc")
        x = eqx.tree_at(lambda m: m.regime, x, x.regime.at[i].set(float(overrides["corr_btc"])))
    mm = np.asarray(x.mm_indices, np.float32).copy()
    touched = False
    for k, v in overrides.items():
        if OVERRIDES[k].kind == "mm":
            mm[OVERRIDES[k].mm_index] = v
            touched = True
    if touched:
        x = eqx.tree_at(lambda m: m.mm_indices, x, jnp.asarray(mm, jnp.float32))
    chex.assert_trees_all_equal_shapes_and_dtypes(x, base.inputs)      # same compiled engine call
    return x, info


# ---------------------------------------------------------------------------------------------
# running both cones
# ---------------------------------------------------------------------------------------------
def scenario_key(seed: int, asset_id: str, as_of: pd.Timestamp) -> jax.Array:
    """``PRNGKey`` from ``sha256(seed | asset | as_of)``: the key both cones use."""
    digest = hashlib.sha256(f"{int(seed)}|{asset_id}|{pd.Timestamp(as_of).value}".encode()).digest()
    return jax.random.PRNGKey(int.from_bytes(digest[:4], "little"))


def key_hex(key) -> str:
    """Hex of a PRNG key's raw data (typed or legacy uint32 keys)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tobytes().hex()


@dataclass
class Cone:
    quantiles: np.ndarray                 # (horizon, levels) prices
    thresholds: list[dict[str, float]]
    regime_id: int
    drivers: dict | None = None

    @property
    def regime(self) -> str:
        return REGIME_NAMES[int(np.clip(self.regime_id, 0, 2))]


def _cone(out: EngineOutput, ks: Sequence[float], regime_id: int) -> Cone:
    q = np.asarray(out.quantiles, np.float64)
    th = [{"threshold": float(k), "p_below": float(b), "p_above": float(a), "p_touch": float(t)}
          for k, b, a, t in zip(ks, np.asarray(out.p_below), np.asarray(out.p_above), np.asarray(out.p_touch))]
    return Cone(q, th, int(regime_id))


@dataclass
class ScenarioResult:
    """Base and scenario cones of one what-if (both from the same key); ``conditional`` is always
    True: a scenario is a forecast under hypothetical inputs, never a forecast of record."""

    asset_id: str
    as_of: pd.Timestamp
    horizon: int
    num_paths: int
    spot: float
    model_version: str
    levels: tuple[float, ...]
    dates: pd.DatetimeIndex
    overrides: dict[str, float]
    base: Cone
    scenario: Cone
    changes: list[dict]
    key: str                              # hex of the PRNG key (provenance)
    conditional: bool = True

    @property
    def difference(self) -> np.ndarray:
        """``scenario - base`` price quantiles ``(horizon, levels)``."""
        return self.scenario.quantiles - self.base.quantiles

    def calibration_key(self, cone: str, step: int) -> str:
        """Key under which a cone's step is calibrated (remembered as a scenario key)."""
        over = ",".join(f"{k}={v:g}" for k, v in sorted(self.overrides.items()))
        return f"scenario|{self.asset_id}|{self.as_of.isoformat()}|{over}|{cone}|{step}"

    def table(self) -> pd.DataFrame:
        """Tidy rows ``asset_id, as_of, ds, step, cone (base|scenario|difference), q..``."""
        frames = []
        cols = [quantile_column(lv) for lv in self.levels]
        for name, q in (("base", self.base.quantiles), ("scenario", self.scenario.quantiles),
                        ("difference", self.difference)):
            df = pd.DataFrame(q, columns=cols)
            df.insert(0, "cone", name)
            df.insert(0, "step", np.arange(1, self.horizon + 1))
            df.insert(0, "ds", self.dates[: self.horizon])
            df.insert(0, "as_of", self.as_of)
            df.insert(0, "asset_id", self.asset_id)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict:
        cols = [quantile_column(lv) for lv in self.levels]

        def rows(q):
            return [{"step": k + 1, "ds": self.dates[k].isoformat(), **{c: float(q[k, j]) for j, c in enumerate(cols)}}
                    for k in range(self.horizon)]

        def cone(c: Cone):
            return {"quantiles": rows(c.quantiles), "thresholds": c.thresholds, "regime": c.regime,
                    "drivers": c.drivers}

        return {"asset_id": self.asset_id, "as_of": self.as_of.isoformat(), "horizon": self.horizon,
                "num_paths": self.num_paths, "spot": self.spot, "model_version": self.model_version,
                "conditional": self.conditional, "overrides": self.overrides, "key": self.key,
                "base": cone(self.base), "scenario": cone(self.scenario), "difference": rows(self.difference),
                "inputs_changed": self.changes}


def run_scenario(engine: EngineHandle, base: ScenarioBase, overrides: Mapping[str, float], cfg, *, horizon: int,
                 num_paths: int, levels: Sequence[float], thresholds: Sequence[float] = (), key=None,
                 surrogate=None) -> ScenarioResult:
    """Validate, build the scenario conditioning set, run both cones with the same key
    (module docstring). ``surrogate``: attach drivers of both cones when given."""
    from aurora_jax.forecast.api import validate_request

    horizon, num_paths, lv, ks = validate_request(horizon, num_paths, check_quantile_levels(levels),
                                                  check_thresholds(thresholds), cfg.forecast)
    if horizon > engine.params.horizon_max:
        raise InvalidParameterError("horizon", horizon, f"an integer in [1, {engine.params.horizon_max}]")
    checked = validate_overrides(overrides, base, cfg)
    x_s, _ = scenario_inputs(base, checked, cfg)
    key = scenario_key(int(cfg.seed), base.asset_id, base.as_of) if key is None else key
    lvj = jnp.asarray(lv, jnp.float32)
    spot = float(base.inputs.spot)
    log_k = jnp.asarray(np.log(np.asarray(ks, np.float64) / spot), jnp.float32)
    losses = None if engine.ewaf_losses is None else jnp.asarray(engine.ewaf_losses, jnp.float32)
    out_b = engine_forecast(engine.params, base.inputs, key, lvj, log_k, horizon, num_paths, losses)
    out_s = engine_forecast(engine.params, x_s, key, lvj, log_k, horizon, num_paths, losses)
    cone_b, cone_s = _cone(out_b, ks, int(base.inputs.regime_id)), _cone(out_s, ks, int(x_s.regime_id))
    if surrogate is not None:
        from aurora_jax.forecast.explain.drivers import drivers_from_config

        cone_b.drivers = drivers_from_config((base.inputs, out_b), surrogate, cfg.model.explain, horizon)
        cone_s.drivers = drivers_from_config((x_s, out_s), surrogate, cfg.model.explain, horizon)
    return ScenarioResult(
        asset_id=base.asset_id, as_of=base.as_of, horizon=horizon, num_paths=num_paths, spot=spot,
        model_version=engine.version, levels=tuple(lv), dates=base.dates, overrides=checked, base=cone_b,
        scenario=cone_s, changes=input_changes(base.inputs, x_s), key=key_hex(key),
    )


def calibrate_scenario(result: ScenarioResult, calibrator) -> dict[str, np.ndarray]:
    """Both cones through a :class:`~aurora_jax.calibrate.conformal.ConformalCalibrator` with
    ``conditional=True`` (keys remembered as scenario keys). Levels the calibrator does not keep
    stay raw. Never calls ``update``."""
    cal_levels = calibrator.config.levels
    use = [j for j, lv in enumerate(result.levels) if any(abs(lv - c) < 1e-9 for c in cal_levels)]
    scale = calibrator.config.scale_levels if calibrator.config.score == "normalized" else ()
    have_scale = all(any(abs(s - result.levels[j]) < 1e-9 for j in use) for s in scale)
    out = {}
    for name, cone in (("base", result.base), ("scenario", result.scenario)):
        q = cone.quantiles.copy()
        if use and have_scale:
            regime = cone.regime if cone.regime in calibrator.config.regimes else "normal"
            for k in range(result.horizon):
                cal = calibrator.calibrate({result.levels[j]: float(q[k, j]) for j in use}, regime, k + 1,
                                           conditional=True, key=result.calibration_key(name, k + 1))
                for j in use:
                    q[k, j] = cal.quantiles[result.levels[j]]
            q = np.maximum.accumulate(q, axis=1)
        out[name] = q
    return out


def overrides_from_config(cfg, targets: Sequence[str] = ()) -> dict[str, object]:
    """Overrides named on the command line: ``model.scenario.overrides.<name>=v`` (engine.yaml),
    a root ``scenario.<name>=v`` (or ``scenario.overrides.<name>=v``) block -- ``+scenario.iv_30d_atm=90``
    works without one -- or bare targets ``<name>:<v>``. Null entries are ignored; later sources win."""
    out: dict[str, object] = {}

    def take(m) -> None:
        if m is None:
            return
        for k, v in m.items():
            if v is None:
                continue
            if k == "overrides" and hasattr(v, "items"):
                take(v)
                continue
            if k not in OVERRIDES:
                raise InvalidParameterError("scenario_overrides", str(k), f"only the whitelisted inputs {list(OVERRIDES)}")
            out[str(k)] = v

    model_s = cfg.model.get("scenario") if "model" in cfg else None
    take(model_s.get("overrides") if model_s is not None else None)
    take(cfg.get("scenario"))
    for t in targets:
        if ":" not in t:
            raise InvalidParameterError("targets", t, "overrides as <name>:<value>, e.g. iv_30d_atm:90")
        k, v = t.split(":", 1)
        take({k: v})
    return out
