"""Request and response bodies (msgspec structs); the OpenAPI schema at ``/schema`` is generated
from these types.

Static bounds live in the types (``horizon`` 1..14, at most 99 quantile levels, ...). Bounds that
come from the configuration (the ``num_paths`` cap, the known assets, the data range) are checked
in the handler and answered with the same error body (:class:`ErrorBody`), so every 4xx names the
field and what is allowed.
"""

from typing import Annotated, Any

import msgspec

MAX_HORIZON = 14          # the model's largest horizon (days); configs/config.yaml forecast.max_horizon
MAX_LEVELS = 99           # quantile levels per request
MAX_THRESHOLDS = 64       # threshold prices per request
MAX_OVERRIDES = 32        # scenario overrides per request

AssetId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="e.g. BTC-USD")]
Horizon = Annotated[int, msgspec.Meta(ge=1, le=MAX_HORIZON, description="days ahead")]
Level = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
Price = Annotated[float, msgspec.Meta(gt=0.0)]
AsOf = Annotated[str, msgspec.Meta(
    min_length=1, max_length=40,
    description="ISO-8601 timestamp, UTC (a naive time is read as UTC); null = the latest data",
    examples=["2024-06-30T00:00:00Z"],
)]
NumPaths = Annotated[int, msgspec.Meta(ge=1, description="Monte-Carlo paths; capped by serving.max_paths")]


class ForecastRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    asset_id: AssetId
    horizon: Horizon = MAX_HORIZON
    as_of: AsOf | None = None
    quantiles: Annotated[list[Level], msgspec.Meta(
        min_length=1, max_length=MAX_LEVELS,
        description="levels strictly between 0 and 1, strictly increasing; null = configs/config.yaml quantiles",
    )] | None = None
    thresholds: Annotated[list[Price], msgspec.Meta(
        max_length=MAX_THRESHOLDS, description="positive, strictly increasing price levels K")] | None = None
    num_paths: NumPaths | None = None
    scenario_overrides: Annotated[dict[str, float], msgspec.Meta(max_length=MAX_OVERRIDES)] | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    items: Annotated[list[ForecastRequest], msgspec.Meta(min_length=1, max_length=1024)]


class BatchBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /forecast/batch``: items are validated one by one, so a bad item fails only itself."""

    items: Annotated[list[Any], msgspec.Meta(
        min_length=1, max_length=1024, description="ForecastRequest objects (see ForecastRequest)")]


class QuantileRow(msgspec.Struct, kw_only=True):
    step: int                         # days ahead
    ds: str                           # when that step's close becomes observable (UTC)
    quantiles: dict[str, float]       # "q05" -> price (calibrated where the calibrator has the level)
    raw: dict[str, float]             # "q05" -> price straight from the simulated paths


class ThresholdProbability(msgspec.Struct, kw_only=True):
    threshold: float
    p_below: float                    # P(price at the last step < K)
    p_above: float                    # P(price at the last step > K)
    p_touch: float                    # P(some step reaches K)


class CalibrationBody(msgspec.Struct, kw_only=True):
    status: str                       # calibrated | uncalibrated (reason in ``note``)
    regime: str                       # calm | normal | volatile | unknown
    alpha: dict[str, float]           # effective one-sided miss rate per level, last step
    kappa: float | None
    kappa_plus: float | None
    buffer: str                       # regime/bucket, pooled/bucket, pooled/all or none
    buffer_size: int
    uncalibrated_levels: list[float]  # requested levels the calibrator keeps no scores for
    note: str = ""


class Driver(msgspec.Struct, kw_only=True):
    block: str                        # trend | vol | market_maker | funding_basis | onchain | macro
    label: str
    sign: str                         # "+" raises the quantity, "-" lowers it
    effect: float                     # block contribution in the quantity's units (log width or log-return)
    effect_pct: float                 # % change of the width, or percentage points of price for the drift


class DriverTarget(msgspec.Struct, kw_only=True):
    quantity: str                     # what is explained, e.g. "P95 - P50 of the log-return (upper width)"
    reliable: bool                    # surrogate fidelity >= explain.min_fidelity on held-out forecasts
    fidelity_r2: float | None         # held-out R^2 of the surrogate for this quantity
    units: str
    predicted: float
    baseline: float
    drivers: list[Driver]             # top explain.top_k blocks by |effect|; empty when unreliable
    reason: str | None = None         # why no drivers are given


class DriversBody(msgspec.Struct, kw_only=True):
    """Top drivers of upside risk, downside risk and trend direction of an engine forecast, from
    a surrogate fitted on the engine's own forecasts (aurora_jax.forecast.explain)."""

    status: str                       # ok | unreliable (some quantity below the fidelity) | unavailable
    reliable: bool
    horizon: int | None = None        # the surrogate horizon used (nearest fitted >= the request's)
    upside: DriverTarget | None = None
    downside: DriverTarget | None = None
    trend: DriverTarget | None = None
    min_fidelity: float | None = None
    surrogate_engine_version: str | None = None
    note: str = ""


class ForecastResponse(msgspec.Struct, kw_only=True):
    request_id: str
    asset_id: str
    as_of: str
    horizon: int
    num_paths: int
    spot: float
    conditional: bool                 # true for scenario (what-if) forecasts
    scenario_overrides: dict[str, float]
    quantiles: list[QuantileRow]
    thresholds: list[ThresholdProbability]
    calibration: CalibrationBody
    feature_groups_used: list[str]
    feature_groups_missing: list[str]
    stale_groups: list[str]
    model_name: str
    model_version: str
    calibration_version: str
    input_hash: str
    latency_ms: float
    drivers: DriversBody | None = None   # engine forecasts (model.name aurora); null for the baselines


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    status_code: int
    error: str                        # invalid_parameter | unknown_asset | data_range | ...
    detail: str
    field: str | None = None
    allowed: str | None = None
    known: list[str] | None = None
    last_available: str | None = None
    request_id: str | None = None


class BatchItemResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    ok: bool
    status_code: int
    result: ForecastResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(msgspec.Struct, kw_only=True):
    request_id: str
    succeeded: int
    failed: int
    items: list[BatchItemResult]
    latency_ms: float


class Health(msgspec.Struct, kw_only=True):
    status: str


class Readiness(msgspec.Struct, kw_only=True):
    ready: bool
    model_loaded: bool
    warmed_up: bool
    data_fresh: bool
    reasons: list[str]
    model_name: str
    model_version: str | None
    assets: dict[str, dict[str, object]]


class ModelEntry(msgspec.Struct, kw_only=True):
    version: str
    name: str
    active: bool
    source: str                       # fitted (baseline fits per asset and as-of) | registry
    detail: dict[str, object] = {}


class ModelsBody(msgspec.Struct, kw_only=True):
    active: str | None
    model_name: str
    models: list[ModelEntry]
