"""Fan chart PNG: recent history and the forecast cone (nested quantile bands and the median)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from aurora_jax.atomic import atomic_write  # noqa: E402


def plot_fan_chart(
    history: pd.Series, table: pd.DataFrame, path: str | Path, title: str, history_days: int = 120
) -> Path:
    qcols = [c for c in table.columns if c.startswith("q")]
    levels = [float(c[1:]) for c in qcols]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    hist = history[history.index > history.index[-1] - pd.Timedelta(days=history_days)]
    ax.plot(hist.index, hist.to_numpy(), color="black", lw=1.2, label="history")
    ds = pd.DatetimeIndex([hist.index[-1], *table["ds"]])
    n = len(qcols)
    for i in range(n // 2):
        lo, hi = qcols[i], qcols[n - 1 - i]
        lo_v = [hist.iloc[-1], *table[lo]]
        hi_v = [hist.iloc[-1], *table[hi]]
        ax.fill_between(ds, lo_v, hi_v, color="tab:blue", alpha=0.15 + 0.15 * i,
                        label=f"P{levels[i]:g}–P{levels[n - 1 - i]:g}", lw=0)
    mid = min(range(n), key=lambda i: abs(levels[i] - 50))
    ax.plot(ds, [hist.iloc[-1], *table[qcols[mid]]], color="tab:blue", lw=1.5, label=f"P{levels[mid]:g}")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
