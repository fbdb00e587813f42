"""A parsed source file before validation: a wide table plus where each row came from.

Readers produce a :class:`RawTable`; :func:`aurora_jax.data.validate.validate` turns it into
long rows and rejections. Keeping the source line lets every rejection and error name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class RawTable:
    """``frame`` has a tz-aware UTC ``timestamp`` column, one column per feature and ``line``
    (1-based line or array element in ``path``). ``price_columns`` must be > 0 and
    ``bar_columns`` maps open/high/low/close roles to column names for the OHLC checks."""

    path: str
    asset_id: str
    source: str
    frame: pd.DataFrame
    price_columns: tuple[str, ...] = ()
    nonnegative_columns: tuple[str, ...] = ()
    bar_columns: dict[str, str] = field(default_factory=dict)

    @property
    def value_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c not in ("timestamp", "line")]
