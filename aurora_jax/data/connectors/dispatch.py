"""``fetch_to_frame``: one entry point that picks the connector by source name.

Sources: ``binance_klines`` (spot klines; ``interval`` kw, default ``1d``),
``binance_mark_klines`` (USDT-M mark-price klines; ``interval``, default ``1h``),
``binance_funding`` (USDT-M funding history) and ``deribit_dvol`` (DVOL; ``resolution``,
default ``1D``). Keyword arguments (``aliases``, ``asset_id``, ``client``, ``now``,
``interval``/``resolution``) go to the connector unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aurora_jax.data.connectors.binance import (
    fetch_binance_funding,
    fetch_binance_klines,
    fetch_binance_mark_klines,
)
from aurora_jax.data.connectors.deribit import fetch_deribit_dvol
from aurora_jax.data.connectors.frames import FetchResult
from aurora_jax.data.connectors.settings import ConnectorSettings
from aurora_jax.errors import InvalidParameterError

SOURCES: dict[str, Callable[..., FetchResult]] = {
    "binance_klines": fetch_binance_klines,
    "binance_mark_klines": fetch_binance_mark_klines,
    "binance_funding": fetch_binance_funding,
    "deribit_dvol": fetch_deribit_dvol,
}


def fetch_to_frame(
    source: str, symbol_or_currency: str, start: object, end: object,
    settings: ConnectorSettings, **kw: Any,
) -> FetchResult:
    """Fetch ``[start, end]`` from ``source`` (a key of :data:`SOURCES`). The long frame is
    ``result.frame`` (ready for ``MarketStore.ingest_frame(result.frame, source=result.source)``);
    ``result.gaps`` lists missing values."""
    try:
        fetch = SOURCES[source]
    except (KeyError, TypeError):
        raise InvalidParameterError("source", source, f"one of {sorted(SOURCES)}") from None
    return fetch(symbol_or_currency, start, end, settings, **kw)
