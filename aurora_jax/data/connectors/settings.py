"""Settings of the HTTP connectors: endpoints, timeouts, retry policy, rate limit, page size.

The defaults are the values of ``data.connectors`` in ``configs/data/default.yaml``; every
connector takes a :class:`ConnectorSettings` argument, built from that node with
:meth:`ConnectorSettings.from_config`. Each field's ``metadata["help"]`` says what it means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aurora_jax.errors import ConfigError, InvalidParameterError

JITTER_MODES: tuple[str, ...] = ("full", "none")
VOLUME_KINDS: tuple[str, ...] = ("quote", "base")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ConnectorSettings:
    """How the connectors talk to Binance and Deribit (see each field's ``help``).

    Retry delay before retry ``k = 0, 1, ...`` (full jitter, Brooker 2015):
    ``d_k ~ Uniform(0, min(backoff_cap_s, backoff_base_s * 2**k))``; a ``Retry-After`` header
    replaces ``d_k`` by the server's value. The token bucket admits at most
    ``rate_limit_burst + rate_limit_per_s * T`` requests in any window of length ``T``.
    """

    binance_spot_url: str = _f(
        "https://api.binance.com", "Binance spot REST base URL (serves /api/v3/klines)")
    binance_futures_url: str = _f(
        "https://fapi.binance.com",
        "Binance USDT-M futures REST base URL (/fapi/v1/fundingRate, /fapi/v1/markPriceKlines)")
    deribit_url: str = _f(
        "https://www.deribit.com",
        "Deribit REST base URL (/api/v2/public/get_volatility_index_data)")
    timeout_s: float = _f(
        10.0, "per-request deadline in seconds (connect + every read + the whole body)")
    max_retries: int = _f(
        5, "retries after the first attempt of one request (429, 418, 5xx, timeouts, "
           "connection errors, truncated/invalid JSON); other 4xx are never retried")
    backoff_base_s: float = _f(0.5, "backoff bound of the first retry, seconds")
    backoff_cap_s: float = _f(30.0, "largest backoff bound, seconds")
    jitter: str = _f(
        "full", "'full': delay ~ Uniform(0, bound); 'none': delay = bound (deterministic)")
    max_retry_after_s: float = _f(
        120.0, "a Retry-After longer than this (e.g. a 418 IP ban) fails at once instead of "
               "sleeping")
    rate_limit_per_s: float = _f(
        5.0, "token-bucket refill rate: sustained requests per second per client "
             "(Binance allows 6000 weight/min; Deribit ~20 req/s for public calls)")
    rate_limit_burst: int = _f(5, "token-bucket capacity: requests allowed back to back")
    page_limit: int = _f(
        1000, "rows per page requested from Binance (limit parameter, 1..1000)")
    funding_interval_hours: float = _f(
        8.0, "expected spacing of funding events, for gap detection (BTCUSDT: 8 h)")
    funding_time_tolerance_ms: int = _f(
        60_000, "a fundingTime this close to the 8-hour grid counts as on the grid")
    klines_volume: str = _f(
        "quote", "which kline volume becomes feature 'volume': 'quote' (USD(T), like the "
                 "store's BTC-USD volume_usd) or 'base' (coins)")
    user_agent: str = _f("aurora_jax-connectors/0.1", "User-Agent header of every request")

    def __post_init__(self) -> None:
        for name in ("binance_spot_url", "binance_futures_url", "deribit_url"):
            url = getattr(self, name)
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InvalidParameterError(name, url, "an http:// or https:// base URL")
        _positive("timeout_s", self.timeout_s)
        _positive("backoff_base_s", self.backoff_base_s)
        if not (isinstance(self.backoff_cap_s, int | float) and
                self.backoff_cap_s >= self.backoff_base_s and math.isfinite(self.backoff_cap_s)):
            raise InvalidParameterError(
                "backoff_cap_s", self.backoff_cap_s, f"a finite number >= backoff_base_s "
                                                     f"({self.backoff_base_s})")
        _integer_at_least("max_retries", self.max_retries, 0)
        if self.jitter not in JITTER_MODES:
            raise InvalidParameterError("jitter", self.jitter, f"one of {list(JITTER_MODES)}")
        if not (isinstance(self.max_retry_after_s, int | float) and self.max_retry_after_s >= 0):
            raise InvalidParameterError("max_retry_after_s", self.max_retry_after_s, ">= 0")
        _positive("rate_limit_per_s", self.rate_limit_per_s)
        _integer_at_least("rate_limit_burst", self.rate_limit_burst, 1)
        _integer_at_least("page_limit", self.page_limit, 1)
        if self.page_limit > 1000:
            raise InvalidParameterError("page_limit", self.page_limit, "1..1000 (Binance limit)")
        _positive("funding_interval_hours", self.funding_interval_hours)
        _integer_at_least("funding_time_tolerance_ms", self.funding_time_tolerance_ms, 0)
        if self.klines_volume not in VOLUME_KINDS:
            raise InvalidParameterError(
                "klines_volume", self.klines_volume, f"one of {list(VOLUME_KINDS)}")

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> ConnectorSettings:
        """Build from the ``data.connectors`` config node (a DictConfig or a plain mapping);
        missing keys keep their defaults, unknown keys raise :class:`ConfigError`."""
        if node is None:
            return cls()
        if hasattr(node, "_metadata"):  # an omegaconf DictConfig
            from omegaconf import OmegaConf

            node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
        if not isinstance(node, Mapping):
            raise ConfigError(f"data.connectors must be a mapping, got {type(node).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown} in data.connectors; allowed keys are {sorted(known)}")
        return cls(**dict(node))

    def describe(self) -> dict[str, str]:
        """Field name -> its help text (what each setting means)."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(self)}


def _positive(name: str, value: object) -> None:
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise InvalidParameterError(name, value, "a finite number > 0")


def _integer_at_least(name: str, value: object, low: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise InvalidParameterError(name, value, f"an integer >= {low}")
