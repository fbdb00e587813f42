"""Markdown report and PNG charts of a walk-forward evaluation (matplotlib, Agg backend).

Charts: fan charts at sample as-of dates (raw and calibrated cones with the realised path),
PIT histograms at the headline horizons, coverage by regime and horizon, and rolling coverage.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from aurora_jax.atomic import atomic_write, atomic_write_text
from aurora_jax.eval.metrics import rolling_coverage
from aurora_jax.eval.walkforward import CAL_SUFFIX, WalkForwardResult


def _save(fig, path: Path) -> str:
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path.name


def fan_charts(result: WalkForwardResult, close: pd.Series, out: Path, n_dates: int) -> list[str]:
    files = []
    levels = np.asarray(result.settings.levels)
    idx = {v: int(np.argmin(np.abs(levels - v))) for v in (0.05, 0.10, 0.25, 0.5, 0.75, 0.90, 0.95)}
    for name, fans in result.fans.items():
        if name.endswith(CAL_SUFFIX) or not fans:
            continue
        dates = sorted(d for d in fans if d >= result.settings.start)
        pick = [dates[int(i)] for i in np.linspace(0, len(dates) - 1, n_dates)] if len(dates) >= n_dates else dates
        fig, axes = plt.subplots(1, len(pick), figsize=(4.2 * len(pick), 3.6), squeeze=False)
        for ax, d in zip(axes[0], pick):
            base_t = close.index[close.index <= d][-1]
            base = float(close[base_t])
            hist = close[(close.index > base_t - pd.Timedelta(days=45)) & (close.index <= base_t)]
            fut = close[(close.index > base_t) & (close.index <= base_t + pd.Timedelta(days=result.settings.horizon))]
            ax.plot(hist.index, hist.to_numpy(), color="black", lw=1)
            ax.plot(fut.index, fut.to_numpy(), color="black", lw=1, ls="--", label="realised")
            H = result.settings.horizon
            t = [base_t + pd.Timedelta(days=h) for h in range(1, H + 1)]
            for key, color in ((name, "tab:blue"), (name + CAL_SUFFIX, "tab:orange")):
                q = result.fans.get(key, {}).get(d)
                if q is None:
                    continue
                px = base * np.exp(q / 100.0)
                ax.fill_between(t, px[:, idx[0.05]], px[:, idx[0.95]], color=color, alpha=0.18)
                ax.fill_between(t, px[:, idx[0.10]], px[:, idx[0.90]], color=color, alpha=0.25)
                ax.plot(t, px[:, idx[0.5]], color=color, lw=1, label=key)
            ax.set_title(str(pd.Timestamp(d).date()), fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{result.settings.asset}: {name} cones (P5-P95, P10-P90)")
        files.append(_save(fig, out / f"fan_{name}.png"))
    return files


def pit_chart(scores: pd.DataFrame, methods: list[str], horizons: list[int], bins: int, out: Path) -> str:
    fig, axes = plt.subplots(len(horizons), len(methods), figsize=(2.6 * len(methods), 2.2 * len(horizons)),
                             squeeze=False)
    for i, h in enumerate(horizons):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            v = scores[(scores["method"] == m) & (scores["h"] == h)]["pit"].to_numpy()
            if v.size:
                ax.hist(v, bins=bins, range=(0, 1), density=True, color="tab:blue", alpha=0.7)
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set_ylim(0, 3)
            ax.set_title(f"{m} h={h}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(fig, out / "pit.png")


def coverage_chart(per_h: dict, per_reg: dict, methods: list[str], out: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for m in methods:
        hs = sorted(int(h) for h in per_h[m] if h != "all")
        axes[0].plot(hs, [per_h[m][str(h)]["cov80"] for h in hs], marker="o", ms=3, label=m)
    axes[0].axhline(0.8, color="black", lw=0.8)
    axes[0].axhspan(0.77, 0.83, color="grey", alpha=0.2)
    axes[0].set_xlabel("horizon (days)")
    axes[0].set_ylabel("P10-P90 coverage")
    axes[0].legend(fontsize=6)
    regimes = ["calm", "normal", "volatile"]
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        vals = [per_reg[m].get(r, {}).get("all", {}).get("cov80", np.nan) for r in regimes]
        axes[1].bar(np.arange(3) + j * width, vals, width, label=m)
    axes[1].axhline(0.8, color="black", lw=0.8)
    axes[1].axhspan(0.75, 0.85, color="grey", alpha=0.2)
    axes[1].set_xticks(np.arange(3) + 0.4 - width / 2, regimes)
    axes[1].set_ylim(0.4, 1.0)
    axes[1].set_ylabel("P10-P90 coverage")
    fig.tight_layout()
    return _save(fig, out / "coverage_by_regime_horizon.png")


def rolling_chart(scores: pd.DataFrame, methods: list[str], days: int, out: Path) -> str:
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for band, ax, nom in (("cov80", axes[0], 0.8), ("cov90", axes[1], 0.9)):
        for m in methods:
            rc = rolling_coverage(scores, m, days, band)
            if len(rc):
                ax.plot(rc.index, rc.to_numpy(), lw=1, label=m)
        ax.axhline(nom, color="black", lw=0.8)
        ax.set_ylabel(f"rolling {days}d {band}")
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, out / "rolling_coverage.png")


def _fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _rel(improvement: float) -> str:
    return f"{abs(improvement):.1%} {'below' if improvement >= 0 else 'above'}"


def markdown(metrics: dict, charts: list[str]) -> str:
    L = []
    L.append(f"# Walk-forward evaluation — {metrics['asset']}\n")
    p = metrics["period"]
    L.append(f"As-of dates {p['start']} .. {p['end']} every {p['step_days']} days "
             f"({metrics['n_asof']} scored dates, {p['warmup_days']} warm-up days), horizons 1..{p['horizon']}, "
             f"{p['num_paths']} paths, refit every {p['refit_every_days']} days. "
             f"CRPS of the h-day log-return in %.\n")
    if metrics["unavailable"]:
        L.append("Unavailable methods: " + ", ".join(f"`{k}` ({v})" for k, v in metrics["unavailable"].items()) + "\n")
    hs = [str(h) for h in metrics["headline_horizons"]]
    L.append("## Headline table\n")
    head = "| method | " + " | ".join(f"CRPS h={h} | cov80 h={h} | cov90 h={h}" for h in hs) + " | cov80 all | cov90 all | width90 all |"
    L.append(head)
    L.append("|" + "---|" * (1 + 3 * len(hs) + 3))
    for m, d in metrics["metrics"].items():
        cells = []
        for h in hs:
            c = d.get(h, {})
            cells += [_fmt(c.get("crps")), _fmt(c.get("cov80")), _fmt(c.get("cov90"))]
        a = d["all"]
        L.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(a['cov80'])} | {_fmt(a['cov90'])} | {_fmt(a['width'], 2)} |")
    L.append("\n## Best peer and Diebold–Mariano (CRPS, vs best raw peer)\n")
    L.append("| h | best raw peer | CRPS | best peer incl. conformal | CRPS |")
    L.append("|---|---|---|---|---|")
    for h, b in metrics["best_peer"].items():
        r, a = b.get("raw", {}), b.get("any", {})
        L.append(f"| {h} | {r.get('method', '—')} | {_fmt(r.get('crps'))} | {a.get('method', '—')} | {_fmt(a.get('crps'))} |")
    L.append("")
    L.append("| method | " + " | ".join(f"h={h}: rel. CRPS, DM, p" for h in hs) + " |")
    L.append("|---|" + "---|" * len(hs))
    for m, d in metrics["dm"].items():
        cells = []
        for h in hs:
            x = d.get(h)
            cells.append("—" if x is None else f"{x['rel_diff']:+.1%}, {x['stat']:.2f}, {x['p_value']:.3f}")
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    L.append("\n## Coverage per regime (all horizons) and per regime x horizon bucket\n")
    L.append("| method | regime | n | cov80 | cov90 | short cov80/90 | mid cov80/90 | long cov80/90 | CRPS |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for m, regs in metrics["per_regime"].items():
        for r, cell in regs.items():
            a = cell["all"]
            bk = [f"{_fmt(cell[b]['cov80'])}/{_fmt(cell[b]['cov90'])} (n={cell[b]['n']})" if b in cell else "—"
                  for b in ("short", "mid", "long")]
            L.append(f"| {m} | {r} | {a['n']} | {_fmt(a['cov80'])} | {_fmt(a['cov90'])} | " + " | ".join(bk) + f" | {_fmt(a['crps'])} |")
    L.append("\n## Targets\n")
    for t in metrics["targets"]["candidates"]:
        if not t.get("available"):
            L.append(f"- `{t['method']}`: not available in this run.")
            continue
        need = metrics["targets"].get("crps_improvement")
        crps = ", ".join(f"h={h}: {_rel(v['improvement'])} "
                         f"{v['best_peer']}" + (f" (target: {need:.0%} below; " if need is not None else " (")
                         + f"{'pass' if v['pass'] else 'FAIL'})" for h, v in t["crps_vs_best_peer"].items())
        co = t["coverage_overall"]
        L.append(f"- `{t['method']}`: CRPS {crps}; coverage overall cov80={co['cov80']:.3f}, cov90={co['cov90']:.3f} "
                 f"({'pass' if t['coverage_pass'] else 'FAIL'}); per regime x bucket "
                 f"({'pass' if t['coverage_regime_bucket_pass'] else 'FAIL'}); per regime ({'pass' if t['coverage_regime_pass'] else 'FAIL'}).")
    g = metrics["targets"].get("garch_conformal_nominal")
    if g:
        L.append(f"- GARCH-t raw cov80={_fmt(g['raw_cov80'])}, cov90={_fmt(g['raw_cov90'])} -> with our conformal layer "
                 f"cov80={_fmt(g['cal_cov80'])}, cov90={_fmt(g['cal_cov90'])}: {'pass' if g['pass'] else 'FAIL'} (nominal ± {g['tolerance']}).")
    rc = metrics.get("recalibration")
    if rc:
        L.append("\n## What calibration could still gain (hindsight PIT recalibration, in-sample)\n")
        L.append("CRPS as scored, after recalibrating each method's PITs with hindsight per horizon, and per "
                 "horizon x regime: an estimate of the part of the score that calibration could remove on this "
                 "period, knowing its outcomes. The rest of a gap is sharpness.\n")
        L.append("| method | " + " | ".join(f"h={h}: CRPS / recal / recal by regime" for h in hs) + " |")
        L.append("|---|" + "---|" * len(hs))
        for m, d in rc.items():
            L.append(f"| {m} | " + " | ".join(
                f"{_fmt(d[h]['crps'])} / {_fmt(d[h]['crps_recal'])} / {_fmt(d[h]['crps_recal_regime'])}"
                if h in d else "—" for h in hs) + " |")
        for c, rows in metrics["targets"].get("recalibration_reach", {}).items():
            parts = [f"h={h}: {_fmt(v['crps_recal_regime'])}, {_rel(v['improvement_vs_peer'])} {v['best_peer']} as scored, "
                     f"{_rel(v['improvement_vs_peer_recal'])} it recalibrated alike "
                     f"({'target reachable' if v['reachable'] else 'target out of reach'})" for h, v in rows.items()]
            if parts:
                L.append(f"- `{c}` recalibrated by regime: " + "; ".join(parts) + ".")
    r = metrics.get("router")
    if r:
        L.append("\n## Router (AR / ARMA / GARCH by BIC)\n")
        L.append(f"Out-of-sample over the as-of dates: ECE={_fmt(r['oos']['ece'])} (target ≤ {r['ece_target']}), "
                 f"accuracy={_fmt(r['oos']['accuracy'])}, n={r['oos']['n']}, label counts {r['oos']['class_counts']}; "
                 f"{len(r['fits'])} fits (temperatures {[round(f['temperature'], 2) for f in r['fits']]}).")
    rg = metrics.get("regimes")
    if rg:
        L.append("\n## Regimes\n")
        L.append(f"Label shares at scored as-of dates: {rg['shares']}; label changes per year (as-of resolution): "
                 f"classifier {_fmt(rg['flips_per_year'], 1)}, HMM {_fmt(rg.get('hmm_flips_per_year'), 1)}; "
                 f"agreement with the HMM: {_fmt(rg.get('hmm_agreement'))}. TRANS on at {_fmt(rg['trans_share'])} of dates; "
                 f"change-point alarms: {rg['alarms']}.")
    tv = metrics.get("transfer")
    if tv and "status" in tv:
        L.append("\n## TVF transfer check\n")
        L.append(f"`{tv['method']}` frozen at {tv['frozen_at']} on {tv['source']}, run on {tv['target']} "
                 f"{tv['period'][0][:10]}..{tv['period'][1][:10]}: calibrated cov80 {tv['source']}={_fmt(tv['coverage_source']['cal80'])}, "
                 f"{tv['target']}={_fmt(tv['coverage_target']['cal80'])} -> CTR={_fmt(tv['ctr'])} (≥ {tv['thresholds']['ctr_min']}); "
                 f"Δξ={_fmt(tv['delta_xi'])} (|·| < {tv['thresholds']['dxi_max']}); ΔH={_fmt(tv['delta_hurst'])} "
                 f"(|·| < {tv['thresholds']['dh_max']}, {tv['domain_source']['hurst_series']}). **{tv['status']}**")
    elif tv:
        L.append(f"\n## TVF transfer check\n\n{tv}")
    L.append("\n## Charts\n")
    for c in charts:
        L.append(f"![{c}]({c})")
    return "\n".join(L) + "\n"


def write_report(result: WalkForwardResult, metrics: dict, close: pd.Series, out: Path,
                 n_fan: int, rolling_days: int, pit_bins: int) -> Path:
    scores = result.scores
    methods = sorted(scores["method"].unique()) if len(scores) else []
    charts = []
    charts += fan_charts(result, close, out, n_fan)
    if methods:
        charts.append(pit_chart(scores, methods, list(metrics["headline_horizons"]), pit_bins, out))
        charts.append(coverage_chart(metrics["metrics"], metrics["per_regime"], methods, out))
        charts.append(rolling_chart(scores, methods, rolling_days, out))
    path = out / "report.md"
    atomic_write_text(path, markdown(metrics, charts))
    return path
