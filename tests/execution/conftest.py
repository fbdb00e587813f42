"""Fixtures of the execution tests: the group config and a ccxt market in Binance USD-M format."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from aurora_jax.execution.filters import ExchangeFilters

REPO = Path(__file__).resolve().parents[2]

# ccxt's unified market structure for Binance USD-M BTC/USDT perpetual (precisionMode TICK_SIZE),
# with the raw exchangeInfo filters under ``info`` as ccxt keeps them.
BTC_PERP_MARKET = {
    "id": "BTCUSDT",
    "symbol": "BTC/USDT:USDT",
    "base": "BTC", "quote": "USDT", "settle": "USDT",
    "type": "swap", "linear": True, "contract": True, "contractSize": 1.0,
    "precision": {"amount": 0.001, "price": 0.1},
    "limits": {
        "leverage": {"min": None, "max": None},
        "amount": {"min": 0.001, "max": 1000.0},
        "price": {"min": 556.8, "max": 4529764.0},
        "cost": {"min": 100.0, "max": None},
        "market": {"min": 0.001, "max": 120.0},
    },
    "info": {
        "symbol": "BTCUSDT",
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
    },
}


@pytest.fixture(scope="session")
def exec_cfg():
    return OmegaConf.load(REPO / "configs" / "execution" / "default.yaml")


@pytest.fixture(scope="session")
def btc_market() -> dict:
    return BTC_PERP_MARKET


@pytest.fixture(scope="session")
def btc_filters(btc_market, exec_cfg) -> ExchangeFilters:
    return ExchangeFilters.from_ccxt_market(btc_market, exec_cfg.filters.precision_mode)
