"""The serving batch function gives the library's numbers: same fit, same paths, same quantiles as
``aurora_jax.forecast.api.forecast``; shared simulations per batch change nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aurora_jax.errors import DataRangeError, InvalidParameterError, UnknownAssetError
from aurora_jax.forecast.api import forecast
from serving.app import build_forecaster
from serving.forecaster import ForecastJob
from serving.summaries import sorted_quantiles

LEVELS = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


@pytest.mark.parametrize("model", ["garch_t", "bootstrap"])
def test_batch_function_equals_library_forecast(spx_store, make_cfg, model):
    cfg = make_cfg(f"model.name={model}")
    f = build_forecaster(cfg, spx_store)
    as_of = f.resolve_as_of("SPX", "2015-06-01")
    prep = f.prepare("SPX", as_of)
    jobs = [ForecastJob(prep, 5, 2000, LEVELS, (2000.0, 2150.0), int(cfg.seed)),
            ForecastJob(prep, 5, 2000, (0.5,), (), int(cfg.seed)),           # same paths, other summary
            ForecastJob(prep, 3, 1000, LEVELS, (), int(cfg.seed))]
    out = f.simulate(jobs)
    ref = forecast("SPX", 5, "2015-06-01", quantiles=LEVELS, thresholds=[2000, 2150], num_paths=2000,
                   store=spx_store, cfg=cfg)
    qcols = [c for c in ref.table.columns if c.startswith("q")]
    np.testing.assert_array_equal(out[0].quantiles, ref.table[qcols].to_numpy())
    assert out[0].thresholds == ref.thresholds
    assert prep.model_version == ref.model_version and prep.spot == ref.spot and prep.as_of == ref.as_of
    assert list(prep.dates[:5]) == list(ref.table["ds"])
    assert prep.feature_groups_missing == ref.feature_groups_missing
    np.testing.assert_array_equal(out[1].quantiles[:, 0], ref.table["q50"].to_numpy())
    ref3 = forecast("SPX", 3, "2015-06-01", quantiles=LEVELS, num_paths=1000, store=spx_store, cfg=cfg)
    np.testing.assert_array_equal(out[2].quantiles, ref3.table[qcols].to_numpy())


def test_prepared_models_are_cached_and_errors_are_typed(spx_store, make_cfg):
    cfg = make_cfg()
    f = build_forecaster(cfg, spx_store)
    as_of = f.resolve_as_of("SPX", None)
    assert as_of == spx_store.series("SPX", "close").index[-1]
    a = f.prepare("SPX", as_of)
    assert f.prepare("SPX", as_of) is a and f.cached("SPX", as_of) is a
    assert a.regime in ("calm", "normal", "volatile", "unknown") and len(a.input_hash) == 16
    with pytest.raises(UnknownAssetError) as e:
        f.resolve_as_of("NDX", None)                    # in the store, but not served (serving.assets)
    assert e.value.known == ["SPX"]
    with pytest.raises(DataRangeError, match="last available timestamp 2019-01-01"):
        f.resolve_as_of("SPX", "2019-06-01")
    with pytest.raises(InvalidParameterError) as e:
        f.resolve_as_of("SPX", "yesterday-ish")
    assert e.value.field == "as_of"
    early = f.resolve_as_of("SPX", "1999-03-01")
    with pytest.raises(InvalidParameterError) as e:     # too little history to fit: named as as_of
        f.prepare("SPX", early)
    assert e.value.field == "as_of" and "history" in e.value.allowed


def test_failure_in_one_simulation_stays_with_its_jobs(spx_store, make_cfg):
    import dataclasses

    cfg = make_cfg()
    f = build_forecaster(cfg, spx_store)
    good = f.prepare("SPX", f.resolve_as_of("SPX", "2016-01-04"))
    broken = dataclasses.replace(good, forecast=dataclasses.replace(
        good.forecast, sampler=lambda h, n, rng: np.full((n, h), np.nan), model_version="broken"))
    out = f.simulate([ForecastJob(good, 2, 1000, LEVELS, (), 0), ForecastJob(broken, 2, 1000, LEVELS, (), 0),
                      ForecastJob(good, 2, 1000, (0.5,), (), 0)])
    assert not isinstance(out[0], BaseException) and not isinstance(out[2], BaseException)
    assert isinstance(out[1], Exception) and "non-finite" in str(out[1])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 300)),
              elements=st.floats(-1e6, 1e6, allow_nan=False)),
       st.lists(st.floats(1e-4, 1 - 1e-4), min_size=1, max_size=9, unique=True))
def test_sorted_quantiles_equal_numpy_bit_for_bit(x, levels):
    levels = sorted(levels)
    ours = sorted_quantiles(np.sort(x, axis=1), levels)
    ref = np.maximum.accumulate(np.quantile(x, levels, axis=1).T, axis=1)
    np.testing.assert_array_equal(ours, ref)
    assert pd.DataFrame(ours).apply(lambda r: r.is_monotonic_increasing, axis=1).all()
