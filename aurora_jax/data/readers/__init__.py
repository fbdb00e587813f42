"""Readers: each parses one source format into a :class:`~aurora_jax.data.table.RawTable`."""

from aurora_jax.data.readers.arch_datasets import read_arch_datasets
from aurora_jax.data.readers.binance_klines import read_binance_klines
from aurora_jax.data.readers.feature_csv import read_feature_csv
from aurora_jax.data.readers.ohlcv_csv import read_ohlcv_csv

__all__ = ["read_arch_datasets", "read_binance_klines", "read_feature_csv", "read_ohlcv_csv"]
