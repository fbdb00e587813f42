"""The real datasets bundled with ``arch``: S&P 500 and NASDAQ daily OHLCV (1999-2018) as assets
``SPX`` and ``NDX``, and the VIX close as SPX's ``iv_30d_atm`` (annualised %)."""

from __future__ import annotations

import pandas as pd

from aurora_jax.data.table import RawTable


def _frame(df: pd.DataFrame, date_only_lag: pd.Timedelta) -> pd.DataFrame:
    out = pd.DataFrame({"timestamp": pd.to_datetime(df.index).tz_localize("UTC") + date_only_lag})
    for col in df.columns:
        out[col] = df[col].to_numpy(dtype="float64")
    out["line"] = range(2, len(out) + 2)
    return out.reset_index(drop=True)


def read_arch_datasets(date_only_lag: pd.Timedelta) -> list[RawTable]:
    from arch.data import nasdaq, sp500, vix

    tables = []
    for asset, module in (("SPX", sp500), ("NDX", nasdaq)):
        raw = module.load()
        df = raw.rename(columns=str.lower)[["open", "high", "low", "close", "volume"]]
        tables.append(
            RawTable(
                path=f"arch.data.{module.__name__.rsplit('.', 1)[-1]}", asset_id=asset,
                source=f"arch:{module.__name__}", frame=_frame(df, date_only_lag),
                price_columns=("open", "high", "low", "close"), nonnegative_columns=("volume",),
                bar_columns={k: k for k in ("open", "high", "low", "close")},
            )
        )
    v = vix.load().rename(columns={"vix": "iv_30d_atm"})[["iv_30d_atm"]]
    tables.append(
        RawTable(path="arch.data.vix", asset_id="SPX", source="arch:arch.data.vix",
                 frame=_frame(v, date_only_lag), price_columns=("iv_30d_atm",))
    )
    return tables
