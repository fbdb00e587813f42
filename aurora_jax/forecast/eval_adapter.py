"""The trained JAX engine as a walk-forward forecaster (``eval.methods: [aurora, ...]``).

``make_forecaster(cfg)`` returns :class:`AuroraForecaster`, which follows the protocol of
:mod:`aurora_jax.eval.forecaster`:

* ``fit(returns, context)``: at the as-of date ``t = context.as_of`` the engine inputs are
  ``snapshot_for_inputs(store, asset, t, cfg)`` + ``build_inputs`` with the model's own vol path
  (only data stamped ``<= t``; the harness's ``returns`` are not used beyond a consistency check).
  Which engine: at a *refit* (the first call, and afterwards when the harness asks for a refit and
  the engine in use was selected ``>= eval.engine.refit_days`` ago) the newest registered engine of
  the experiment whose training history ends ``h_end <= t`` and ``h_end >= t - max_age_days`` is
  used; when none exists it is trained (``train_experiment`` with ``model.train.end = t``,
  registered, so a rerun reuses it) if ``eval.engine.train_missing``, else
  :class:`~aurora_jax.errors.ModelUnavailableError` is raised. An engine whose history ends after
  ``t`` is never used, and one whose input shapes (``model.inputs``) differ from the configured
  ones is skipped. Between refits the parameters are kept and only the inputs are rebuilt.
* ``sample(state, horizon, num_paths, rng)``: per-step daily log-returns
  ``r_{i,k} = loc + scale (m_k + e_{i,k}) + J_{i,k}`` (:func:`aurora_jax.forecast.engine.
  simulate_log_returns`, the increments of ``simulate_paths``) for ``k = 1..horizon``. One
  ``eqx.filter_jit`` function always simulates ``horizon_max`` steps with the requested
  ``num_paths`` and the slice is returned, so nothing recompiles from one as-of date (or one
  engine version: same pytree structure) to the next. The key is ``PRNGKey(rng.integers(2**31))``.

EWAF (``eval.engine.ewaf``): ``frozen`` (default) uses the point-in-time EWAF state stored with
the engine version, ``EwafState.losses_at(t)`` -- the losses replayed over the engine's validation
split, i.e. what ``forecast_from_snapshot(..., update_ewaf=False)`` uses; it is never updated
during the evaluation (no write to the registry) and contains no error realized after ``t``.
``off`` uses the pure per-regime meta-weights (zero losses).
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jaxtyping import Array, Float, PRNGKeyArray
from omegaconf import DictConfig, OmegaConf

from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.eval.forecaster import ForecastContext
from aurora_jax.features.inputs import ModelInputs, build_inputs, snapshot_for_inputs
from aurora_jax.forecast.engine import EngineParams, simulate_log_returns
from aurora_jax.models.trend_ensemble import COMPONENTS, EwafTracker
from aurora_jax.train.registry import RegistryEntry, compatible_entries, load_params, registry_dir

EWAF_MODES = ("frozen", "off")


def _ts(x) -> pd.Timestamp:
    t = pd.Timestamp(x)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@eqx.filter_jit
def engine_returns(params: EngineParams, inputs: ModelInputs, key: PRNGKeyArray, num_paths: int,
                   ewaf_losses: Float[Array, " 3"]) -> Float[Array, "paths horizon_max"]:
    """Per-step log-returns of ``num_paths`` engine paths over ``params.horizon_max`` steps
    (compiled once per ``num_paths`` and parameter structure)."""
    r, _ = simulate_log_returns(params, inputs, key, params.horizon_max, num_paths, ewaf_losses)
    return r


@dataclass(frozen=True)
class EngineSettings:
    """``eval.engine``: which engine the adapter uses at each as-of date."""

    refit_days: int
    max_age_days: int
    train_missing: bool
    experiment: str | None
    ewaf: str
    progress: bool

    @classmethod
    def from_config(cls, cfg: DictConfig) -> EngineSettings:
        e = cfg.eval.get("engine")
        if e is None:
            raise InvalidParameterError("eval.engine", None, "the engine adapter section (configs/eval/default.yaml)")
        refit = int(e.refit_days)
        age = refit if e.get("max_age_days") is None else int(e.max_age_days)
        exp = e.get("experiment") or cfg.get("experiment_name")
        s = cls(refit_days=refit, max_age_days=age, train_missing=bool(e.train_missing),
                experiment=None if exp is None else str(exp), ewaf=str(e.ewaf),
                progress=bool(cfg.get("progress", True)) and bool(e.get("progress", True)))
        if not 1 <= s.refit_days <= 100_000:
            raise InvalidParameterError("eval.engine.refit_days", s.refit_days, "1 .. 100000")
        if not 0 <= s.max_age_days <= 100_000:
            raise InvalidParameterError("eval.engine.max_age_days", s.max_age_days, "0 .. 100000 (or null)")
        if s.ewaf not in EWAF_MODES:
            raise InvalidParameterError("eval.engine.ewaf", s.ewaf, f"one of {list(EWAF_MODES)}")
        return s


@dataclass(frozen=True)
class AuroraState:
    """What ``fit`` hands to ``sample``: the engine in use and the inputs at the as-of date."""

    version: str
    params: EngineParams
    entry: RegistryEntry
    history_end: pd.Timestamp          # last stamp of the engine's training history (<= as_of)
    selected_at: pd.Timestamp          # as-of date at which this engine was chosen
    as_of: pd.Timestamp
    asset: str
    inputs: ModelInputs
    ewaf_losses: np.ndarray            # (3,) EWAF losses known at as_of (zeros: pure meta-weights)
    info: dict                         # InputsInfo of the inputs (groups used/missing, iv source)
    trained: bool = False              # this engine was trained by the adapter


def history_end(entry: RegistryEntry) -> pd.Timestamp | None:
    rng = (entry.data_ranges or {}).get("history")
    return _ts(rng[1]) if rng else None


class AuroraForecaster:
    """The registered JAX engine behind the walk-forward protocol (module docstring)."""

    def __init__(self, cfg: DictConfig, name: str = "aurora", store=None):
        from aurora_jax.train.pipeline import engine_config

        self.name = name
        self.cfg = engine_config(cfg)
        self.settings = EngineSettings.from_config(self.cfg)
        inputs = self.cfg.model.inputs
        self.inputs_cfg = OmegaConf.to_container(inputs, resolve=True)
        self.horizon_max = int(inputs.horizon_max)
        self.discount = float(self.cfg.model.trend.ewaf.discount)
        self._store = store
        self.trained: list[str] = []          # versions trained by this adapter (for the report)
        self.used: dict[str, int] = {}        # version -> as-of dates forecast with it

    @property
    def store(self):
        if self._store is None:
            from aurora_jax.forecast.api import open_store

            self._store = open_store(self.cfg)
        return self._store

    # ---- which engine ------------------------------------------------------------------
    def compatible(self, entry: RegistryEntry) -> bool:
        """Trained with the configured ``model.inputs`` section (window lengths, RevIN, snapshot
        and hourly days), on top of the registry's inputs signature (regime layout, shapes)."""
        return (entry.hyperparameters or {}).get("inputs") == self.inputs_cfg

    def candidates(self, asset: str, as_of: pd.Timestamp) -> list[RegistryEntry]:
        """Registered, compatible engines of ``asset`` whose history ends in
        ``[as_of - max_age_days, as_of]``, newest history first."""
        lo = as_of - pd.Timedelta(days=self.settings.max_age_days)
        out = []
        for e in compatible_entries(self.cfg, asset, self.settings.experiment):
            end = history_end(e)
            if end is not None and lo <= end <= as_of and self.compatible(e):
                out.append((end, e.created_at, e))
        return [e for _, _, e in sorted(out, key=lambda x: (x[0], x[1]), reverse=True)]

    def train(self, asset: str, as_of: pd.Timestamp) -> RegistryEntry:
        """Train and register an engine on data up to ``as_of`` (``model.train.end = as_of``)."""
        from aurora_jax.train.pipeline import train_experiment

        cfg = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        if str(cfg.asset) != asset:
            raise ModelUnavailableError(
                f"no engine for {asset} at {as_of.date()}: the experiment trains {cfg.asset}")
        cfg.model.train.end = as_of.isoformat()
        entry = train_experiment(cfg, progress=self.settings.progress)
        end = history_end(entry)
        if end is None or end > as_of:
            raise AssertionError(f"engine {entry.version} trained to {as_of} has history ending {end}")
        self.trained.append(entry.version)
        return entry

    def select(self, asset: str, as_of: pd.Timestamp) -> tuple[EngineParams, RegistryEntry, bool]:
        """``(params, entry, trained)`` of the engine to use from ``as_of`` on."""
        refused = []
        for entry in self.candidates(asset, as_of):
            try:
                return load_params(entry), entry, False
            except ModelUnavailableError as exc:   # e.g. registered before an input-layout change
                refused.append(f"{entry.version}: {exc}")
        if not self.settings.train_missing:
            raise ModelUnavailableError(
                f"no registered engine for {asset} (experiment {self.settings.experiment}) with training history "
                f"ending in [{(as_of - pd.Timedelta(days=self.settings.max_age_days)).date()}, {as_of.date()}] "
                f"under {registry_dir(self.cfg)} (eval.engine.train_missing=false)"
                + (f"; refused: {refused}" if refused else ""))
        entry = self.train(asset, as_of)
        return load_params(entry), entry, True

    def ewaf_losses(self, entry: RegistryEntry, asset: str, as_of: pd.Timestamp) -> np.ndarray:
        if self.settings.ewaf == "off":
            return np.zeros(len(COMPONENTS), np.float32)
        state = EwafTracker(entry.ewaf_path(asset), self.discount).load()
        return np.asarray(state.losses_at(as_of), np.float32)

    def describe(self) -> dict:
        """What the evaluation used (written to metrics.json under ``forecasters``)."""
        versions = {}
        for e in compatible_entries(self.cfg, str(self.cfg.asset), self.settings.experiment):
            if e.version in self.used:
                versions[e.version] = {"history": (e.data_ranges or {}).get("history"),
                                       "val": (e.data_ranges or {}).get("val"), "teacher": e.teacher,
                                       "as_of_dates": self.used[e.version], "trained_here": e.version in self.trained}
        return {"engine": {"refit_days": self.settings.refit_days, "max_age_days": self.settings.max_age_days,
                           "ewaf": self.settings.ewaf, "experiment": self.settings.experiment},
                "versions": versions, "trained": list(self.trained)}

    # ---- protocol ----------------------------------------------------------------------
    def fit(self, returns: pd.Series, context: ForecastContext) -> AuroraState:
        as_of = _ts(context.as_of)
        asset = str(context.asset)
        prev = context.previous_state
        keep = (isinstance(prev, AuroraState) and prev.history_end <= as_of
                and (not context.refit or as_of - prev.selected_at < pd.Timedelta(days=self.settings.refit_days)))
        if keep:
            params, entry, selected_at, trained = prev.params, prev.entry, prev.selected_at, prev.trained
        else:
            params, entry, trained = self.select(asset, as_of)
            selected_at = as_of
        end = history_end(entry)
        if end is None or end > as_of:      # the point-in-time guarantee, whatever the path above
            raise ModelUnavailableError(f"engine {entry.version} (history to {end}) cannot forecast from {as_of}")
        snap, hourly = snapshot_for_inputs(self.store, asset, as_of, self.cfg)
        try:
            inputs, info = build_inputs(snap, self.cfg, vol_params=params.vol_path, hourly=hourly)
        except InvalidParameterError as exc:    # too little history at this date
            raise ModelUnavailableError(f"engine inputs at {as_of}: {exc}") from exc
        if len(returns) and snap.as_of < returns.index[-1]:
            raise AssertionError(f"snapshot at {snap.as_of} is older than the last return {returns.index[-1]}")
        self.used[entry.version] = self.used.get(entry.version, 0) + 1
        return AuroraState(version=entry.version, params=params, entry=entry, history_end=end,
                           selected_at=selected_at, as_of=as_of, asset=asset, inputs=inputs,
                           ewaf_losses=self.ewaf_losses(entry, asset, as_of), info=info.as_dict(),
                           trained=trained)

    def sample(self, state: AuroraState, horizon: int, num_paths: int,
               rng: np.random.Generator) -> Float[np.ndarray, "paths horizon"]:
        if not isinstance(horizon, int | np.integer) or not 1 <= int(horizon) <= state.params.horizon_max:
            raise InvalidParameterError("horizon", horizon, f"an integer in [1, {state.params.horizon_max}]")
        if not isinstance(num_paths, int | np.integer) or int(num_paths) < 2:
            raise InvalidParameterError("num_paths", num_paths, "an integer >= 2")
        key = jax.random.PRNGKey(int(rng.integers(2**31)))
        r = engine_returns(state.params, state.inputs, key, int(num_paths), jnp.asarray(state.ewaf_losses))
        return np.asarray(r, dtype=np.float64)[:, : int(horizon)]


def make_forecaster(cfg: DictConfig) -> AuroraForecaster:
    """``eval.forecasters.aurora``: the factory the walk-forward harness calls."""
    return AuroraForecaster(cfg)
