"""Explainability: a surrogate fitted on the engine's own forecasts and per-forecast drivers.

* :mod:`.blocks` -- feature-block aggregates of a forecast's conditioning set;
* :mod:`.surrogate` -- the additive ridge surrogate, its held-out fidelity and permutation importance;
* :mod:`.drivers` -- :func:`drivers_for`: top drivers of upside risk, downside risk and trend;
* :mod:`.fit` -- fitting on engine forecasts, one saved surrogate per engine version;
* :mod:`.charts` -- driver bar chart and the base-vs-scenario overlay PNG.
"""

from aurora_jax.forecast.explain.blocks import BLOCK_LABELS, BLOCKS, block_features, feature_spec
from aurora_jax.forecast.explain.drivers import Explainable, drivers_for, drivers_from_config
from aurora_jax.forecast.explain.surrogate import (
           Surrogate,
           SurrogateConfig,
           fit_surrogate,
           forecast_targets,
)

__all__ = ["BLOCKS", "BLOCK_LABELS", "Explainable", "Surrogate", "SurrogateConfig", "block_features",
           "drivers_for", "drivers_from_config", "feature_spec", "fit_surrogate", "forecast_targets"]
