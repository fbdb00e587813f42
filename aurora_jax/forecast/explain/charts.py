"""PNG charts for reports: driver bars per quantity, and base vs scenario cones overlaid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aurora_jax.atomic import atomic_write

_ROLES = (("upside", "upside risk (P95 - P50)"), ("downside", "downside risk (P50 - P5)"),
          ("trend", "trend direction (P50)"))


def plot_drivers(drivers: dict, path: str | Path, title: str) -> Path:
    """Three horizontal bar panels (one per quantity): each driver's effect (``effect_pct``:
    % change of the width, or percentage points of price for the drift), or the reason why
    none is given."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=110)
    for ax, (role, label) in zip(axes, _ROLES):
        d = drivers[role]
        ax.set_title(label, fontsize=9)
        if not d["reliable"]:
            fid = d["fidelity_r2"]
            ax.text(0.5, 0.5, f"unreliable surrogate\n(R² {'n/a' if fid is None else f'{fid:.2f}'})",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9, color="tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        rows = d["drivers"][::-1]
        vals = [r["effect_pct"] for r in rows]
        ax.barh([r["label"] for r in rows], vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
        ax.axvline(0.0, color="black", lw=0.8)
        unit = "% of width" if role != "trend" and d["units"] == "log width" else "pp of price"
        ax.set_xlabel(f"effect ({unit}); R² {d['fidelity_r2']:.2f}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out


def _col(levels, x) -> int:
    return int(np.argmin(np.abs(np.asarray(levels) - x)))


def plot_scenario(result, history: pd.Series, path: str | Path, title: str, history_days: int = 60) -> Path:
    """Recent closes, the base cone (blue bands: outermost levels and P25-P75, median) and the
    scenario cone overlaid as orange lines (outermost levels dashed, P25 / P75 dotted, median)."""
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    h = history.dropna()
    h = h[h.index > h.index[-1] - pd.Timedelta(days=int(history_days))]
    ax.plot(h.index, h.to_numpy(), color="black", lw=1.2, label="history")
    ds = pd.DatetimeIndex([result.as_of, *result.dates[: result.horizon]])
    lv = result.levels
    lo, hi, mid = _col(lv, min(lv)), _col(lv, max(lv)), _col(lv, 0.5)
    inner = (_col(lv, 0.25), _col(lv, 0.75)) if len(lv) >= 5 else None
    s0 = result.spot
    path_of = lambda q, j: [s0, *q[:, j]]
    b, sc = result.base.quantiles, result.scenario.quantiles
    ax.fill_between(ds, path_of(b, lo), path_of(b, hi), color="tab:blue", alpha=0.18, lw=0,
                    label=f"base P{100 * lv[lo]:g}–P{100 * lv[hi]:g}")
    if inner is not None:
        ax.fill_between(ds, path_of(b, inner[0]), path_of(b, inner[1]), color="tab:blue", alpha=0.3, lw=0,
                        label="base P25–P75")
    ax.plot(ds, path_of(b, mid), color="tab:blue", lw=1.6, label=f"base P{100 * lv[mid]:g}")
    for j, ls, lab in ((lo, "--", f"scenario P{100 * lv[lo]:g} / P{100 * lv[hi]:g}"), (hi, "--", None)):
        ax.plot(ds, path_of(sc, j), color="tab:orange", lw=1.4, ls=ls, label=lab)
    if inner is not None:
        ax.plot(ds, path_of(sc, inner[0]), color="tab:orange", lw=1.2, ls=":", label="scenario P25 / P75")
        ax.plot(ds, path_of(sc, inner[1]), color="tab:orange", lw=1.2, ls=":")
    ax.plot(ds, path_of(sc, mid), color="tab:orange", lw=1.8, label=f"scenario P{100 * lv[mid]:g}")
    over = ", ".join(f"{k}={v:g}" for k, v in result.overrides.items())
    ax.set_title(f"{title}\nscenario (conditional): {over}", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
