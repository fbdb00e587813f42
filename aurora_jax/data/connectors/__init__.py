"""HTTP data connectors (Binance klines, mark-price klines, funding; Deribit DVOL).

Each connector returns a :class:`FetchResult` whose ``frame`` is in the store's long format
(``asset_id, timestamp, feature_group, feature_name, value, source``) and whose ``gaps`` list
the values that should exist but did not come back. Requests are rate limited, time out, and
are retried with jittered exponential backoff (:class:`HttpClient`); settings come from
``data.connectors`` (:class:`ConnectorSettings`).
"""

from aurora_jax.data.connectors.binance import (
    fetch_binance_funding,
    fetch_binance_klines,
    fetch_binance_mark_klines,
)
from aurora_jax.data.connectors.deribit import fetch_deribit_dvol
from aurora_jax.data.connectors.dispatch import SOURCES, fetch_to_frame
from aurora_jax.data.connectors.frames import LONG_FRAME_COLUMNS, FetchResult, Gap, find_gaps
from aurora_jax.data.connectors.http import (
    ClientStats,
    HttpClient,
    HttpResponse,
    Transport,
    TransportError,
    urllib_transport,
)
from aurora_jax.data.connectors.ratelimit import TokenBucket
from aurora_jax.data.connectors.retry import (
    backoff_bound,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
)
from aurora_jax.data.connectors.settings import ConnectorSettings

__all__ = [
    "LONG_FRAME_COLUMNS",
    "SOURCES",
    "ClientStats",
    "ConnectorSettings",
    "FetchResult",
    "Gap",
    "HttpClient",
    "HttpResponse",
    "TokenBucket",
    "Transport",
    "TransportError",
    "backoff_bound",
    "backoff_delay",
    "fetch_binance_funding",
    "fetch_binance_klines",
    "fetch_binance_mark_klines",
    "fetch_deribit_dvol",
    "fetch_to_frame",
    "find_gaps",
    "is_retryable_status",
    "parse_retry_after",
    "urllib_transport",
]
