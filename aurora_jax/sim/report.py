"""``eval-sim``: stylized facts of the teacher, real BTC vs simulated, as markdown + PNGs.

``run(cfg, targets, run_dir)``: loads BTC from the store (``cfg.data.root``), loads the saved
teacher (``sim.teacher.version``, default the latest; the target ``fit`` refits and saves a new
version first, and a missing teacher is fitted automatically), simulates ``sim.report.n_paths``
closed-loop histories as long as the real daily sample (hourly sub-steps; the regime is
recomputed from each path's own history every ``sim.report.regime_every_days`` days, see
:func:`simulate_histories`) and compares:

tail index (Hill on |r|), excess kurtosis, mean ACF of r and of |r| over lags 1..50, Hurst
exponent of the return path and of the daily log realised variance (variogram), BNS jump-day
frequency (hourly), leverage (mean corr(r_t, r_{t+k}^2), k = 1..10), 5% / 95% quantiles of
7-day returns, p-variation slope (p = 2, hourly log price), extremal index of daily losses.

Tolerance per fact: ``|sim - real| <= z_tol * sqrt(se_real^2 + se_sim^2) + floor`` where
``se_real`` is the stationary block-bootstrap standard error of the real statistic (mean block
``block_days``), ``se_sim`` the Monte-Carlo error across simulated histories and ``floor`` a
small absolute floor per fact (``sim.report.floors``). The markdown states each tolerance and
whether the fact is inside.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from aurora_jax.atomic import atomic_write_json, atomic_write_text
from aurora_jax.errors import ModelUnavailableError
from aurora_jax.sim.estimators.bns import bns_test
from aurora_jax.sim.estimators.hurst import ESTIMATORS, hurst_variogram
from aurora_jax.sim.estimators.pvariation import pvariation_slope
from aurora_jax.sim.estimators.tails import extremal_index, hill_tail_index
from aurora_jax.sim.fgn import sample_fgn
from aurora_jax.sim.teacher import (
    load_teacher,
    load_teacher_data,
    run_fit,
    teacher_dir,
    teacher_meta,
)

FACTS = (
    "tail_index",
    "excess_kurtosis",
    "acf_returns_mean",
    "acf_abs_mean",
    "hurst_returns",
    "hurst_logvol",
    "bns_jump_frequency",
    "leverage",
    "q05_7d",
    "q95_7d",
    "pvariation_slope",
    "extremal_index",
)


def acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = x.size
    f = np.fft.rfft(x, 2 * n)
    c = np.fft.irfft(f * np.conj(f))[: max_lag + 1]
    return c[1:] / c[0]


def daily_facts(r: np.ndarray, cfg) -> dict[str, float]:
    """Facts computed from a daily log-return series."""
    rc = cfg.sim.report
    tc = cfg.sim.estimators.tails
    xi, _ = hill_tail_index(
        np.abs(r), threshold_rule=tc.threshold_rule, fraction=tc.fraction, k_min=tc.k_min
    )
    lags = int(rc.acf_lags)
    r2 = r**2
    lev = [np.corrcoef(r[:-k], r2[k:])[0, 1] for k in range(1, 11)]
    h = int(rc.horizon_days)
    rh = np.convolve(r, np.ones(h), mode="valid")
    loss = -r
    return {
        "tail_index": 1.0 / xi,
        "excess_kurtosis": float(stats.kurtosis(r)),
        "acf_returns_mean": float(np.mean(acf(r, lags))),
        "acf_abs_mean": float(np.mean(acf(np.abs(r), lags))),
        "hurst_returns": hurst_variogram(np.cumsum(r), max_lag=cfg.sim.estimators.hurst.max_lag),
        "leverage": float(np.mean(lev)),
        "q05_7d": float(np.quantile(rh, 0.05)),
        "q95_7d": float(np.quantile(rh, 0.95)),
        "extremal_index": extremal_index(loss, float(np.quantile(loss, 0.95))),
    }


def hourly_facts(hr: np.ndarray, cfg) -> dict[str, float]:
    """Facts computed from a (days, 24) matrix of hourly log-returns."""
    ec = cfg.sim.estimators
    rv = np.sum(hr**2, axis=1)
    res = bns_test(hr, alpha=float(ec.bns.alpha))
    path = np.cumsum(hr.reshape(-1))
    return {
        "hurst_logvol": hurst_variogram(np.log(np.maximum(rv, 1e-12)), max_lag=ec.hurst.max_lag),
        "bns_jump_frequency": res.jump_frequency,
        "pvariation_slope": pvariation_slope(
            path, float(ec.pvariation.p), tuple(ec.pvariation.lags)
        ),
    }


def stationary_bootstrap_index(rng: np.random.Generator, n: int, mean_block: float) -> np.ndarray:
    """Politis–Romano stationary bootstrap indices (geometric blocks, wrap-around)."""
    idx = np.empty(n, dtype=int)
    p = 1.0 / mean_block
    i = rng.integers(n)
    for t in range(n):
        idx[t] = i
        i = rng.integers(n) if rng.random() < p else (i + 1) % n
    return idx


def bootstrap_se(fn, x: np.ndarray, rng, n_boot: int, block: float) -> dict[str, float]:
    """Standard error of each statistic in ``fn(x)`` under the stationary block bootstrap.

    A resample on which an estimator is undefined (e.g. too few exceedances) is dropped;
    ``InvalidParameterError`` is the only error an estimator raises for such input.
    """
    from aurora_jax.errors import InvalidParameterError

    vals = []
    for _ in range(n_boot):
        idx = stationary_bootstrap_index(rng, len(x), block)
        try:
            vals.append(fn(x[idx]))
        except InvalidParameterError:
            pass
    keys = vals[0].keys()
    return {k: float(np.nanstd([v[k] for v in vals], ddof=1)) for k in keys}


def simulate_histories(teacher, data, cfg) -> tuple[np.ndarray, np.ndarray]:
    """``n_paths`` closed-loop histories as long as the real sample, and their hourly returns.

    The regime is updated every ``sim.report.regime_every_days`` days from each path's own
    simulated history (log mean realised variance and trend t-statistic over the regime
    windows, standardised like the fit), so vol regimes persist as they do in the data; the
    latent state carries over between blocks. The first regime and state come from the
    real sample's first days.
    """
    rc = cfg.sim.report
    reg = cfg.sim.teacher.regime
    n_days = len(data.returns)
    sub, n_paths, block = int(rc.substeps), int(rc.n_paths), int(rc.regime_every_days)
    per_hour = sub // 24
    warm = max(int(reg.vol_window), int(reg.trend_window))
    x0 = np.asarray(teacher.state_from_history(data.pk_var[:warm]))
    z0 = np.asarray(
        teacher.regime_from_history(
            data.returns[:warm], data.pk_var[:warm], int(reg.vol_window), int(reg.trend_window)
        )
    )
    xs = np.broadcast_to(x0, (n_paths, x0.size)).copy()
    zs = np.broadcast_to(z0, (n_paths, z0.size)).copy()
    zm, zsd = np.asarray(teacher.z_mean), np.asarray(teacher.z_std)
    key = jax.random.key(int(rc.seed))
    hourly_blocks = []
    done = 0
    while done < n_days:
        key, sk = jax.random.split(key)
        intr, last = teacher.simulate_batch(sk, xs, zs, block, 1.0, sub)
        hourly_blocks.append(
            np.asarray(intr, np.float64).reshape(n_paths, block, 24, per_hour).sum(-1)
        )
        xs = np.asarray(last)
        done += block
        hist = np.concatenate(hourly_blocks, axis=1)[:, -warm:]  # (paths, <=warm, 24)
        if hist.shape[1] >= warm:
            rv = np.sum(hist**2, axis=2)
            rd = hist.sum(axis=2)
            raw = np.column_stack(
                [
                    np.log(rv[:, -int(reg.vol_window) :].mean(axis=1)),
                    rd[:, -int(reg.trend_window) :].sum(axis=1)
                    / (
                        rd[:, -int(reg.trend_window) :].std(axis=1, ddof=1)
                        * np.sqrt(int(reg.trend_window))
                    ),
                ]
            )
            zs = np.clip((raw - zm) / zsd, -float(rc.z_clip), float(rc.z_clip))
    hourly = np.concatenate(hourly_blocks, axis=1)[:, :n_days]
    return hourly.sum(-1), hourly


def hurst_estimator_table(n_paths: int, n: int, seed: int) -> list[dict]:
    """Bias and RMSE of each Hurst estimator on exact synthetic fBM (Davies–Harte)."""
    rows = []
    for i, h in enumerate((0.1, 0.3, 0.5, 0.7)):
        paths = np.cumsum(np.asarray(sample_fgn(jax.random.key(seed + i), h, n, n_paths)), axis=1)
        for name, fn in ESTIMATORS.items():
            est = np.array([fn(p) for p in paths])
            rows.append(
                {
                    "H": h,
                    "estimator": name,
                    "mean": float(est.mean()),
                    "bias": float(est.mean() - h),
                    "rmse": float(np.sqrt(np.mean((est - h) ** 2))),
                }
            )
    return rows


def _plots(run_dir: Path, data, daily, hourly, cfg) -> list[str]:
    rc = cfg.sim.report
    lags = int(rc.acf_lags)
    files = []
    # ACF of r and |r|
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for j, (name, f) in enumerate((("returns", lambda x: x), ("|returns|", np.abs))):
        sim = np.array([acf(f(p), lags) for p in daily])
        ax[j].plot(range(1, lags + 1), acf(f(data.returns), lags), "k.-", label="real BTC")
        ax[j].plot(range(1, lags + 1), sim.mean(0), "C1-", label="teacher (mean)")
        ax[j].fill_between(
            range(1, lags + 1),
            np.quantile(sim, 0.05, 0),
            np.quantile(sim, 0.95, 0),
            color="C1",
            alpha=0.25,
            label="teacher 5-95%",
        )
        ax[j].axhline(0, color="grey", lw=0.5)
        ax[j].set_title(f"ACF of daily {name}")
        ax[j].set_xlabel("lag (days)")
        ax[j].legend()
    fig.tight_layout()
    fig.savefig(run_dir / "acf.png", dpi=110)
    plt.close(fig)
    files.append("acf.png")
    # QQ of h-day returns
    h = int(rc.horizon_days)
    real_h = np.convolve(data.returns, np.ones(h), mode="valid")
    sim_h = np.concatenate([np.convolve(p, np.ones(h), mode="valid") for p in daily])
    qs = np.linspace(0.005, 0.995, 199)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    a, b = np.quantile(real_h, qs), np.quantile(sim_h, qs)
    ax.plot(a, b, "C0.")
    lim = [min(a.min(), b.min()), max(a.max(), b.max())]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set_xlabel(f"real {h}-day log-return quantile")
    ax.set_ylabel(f"simulated {h}-day log-return quantile")
    ax.set_title(f"QQ plot, {h}-day returns")
    fig.tight_layout()
    fig.savefig(run_dir / "qq_7d.png", dpi=110)
    plt.close(fig)
    files.append("qq_7d.png")
    # tails: CCDF of |r|
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for x, lab, sty in (
        (np.abs(data.returns), "real BTC", "k-"),
        (np.abs(daily).ravel(), "teacher", "C1-"),
    ):
        xs = np.sort(x)[::-1]
        ax.loglog(xs, np.arange(1, xs.size + 1) / xs.size, sty, label=lab)
    ax.set_xlabel("|daily log-return|")
    ax.set_ylabel("P(|r| > x)")
    ax.set_title("Tail of daily returns")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "tails.png", dpi=110)
    plt.close(fig)
    files.append("tails.png")
    # sample paths: cumulative log-price over the first year, real vs simulated
    fig, ax = plt.subplots(figsize=(9, 4))
    n = min(365, len(data.returns))
    for p in daily[:8]:
        ax.plot(np.cumsum(p[:n]), color="C1", alpha=0.5, lw=0.8)
    ax.plot(np.cumsum(data.returns[:n]), "k", lw=1.5, label="real BTC (first year)")
    ax.set_xlabel("day")
    ax.set_ylabel("cumulative log-return")
    ax.set_title("Real path vs 8 simulated histories")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "paths.png", dpi=110)
    plt.close(fig)
    files.append("paths.png")
    return files


def compare(real: dict, se_real: dict, sims: list[dict], cfg) -> list[dict]:
    rc = cfg.sim.report
    rows = []
    for k in FACTS:
        vals = np.array([s[k] for s in sims], dtype=np.float64)
        sim = float(np.nanmean(vals))
        se_sim = float(np.nanstd(vals, ddof=1) / math.sqrt(np.sum(np.isfinite(vals))))
        tol = float(rc.z_tol) * math.sqrt(se_real[k] ** 2 + se_sim**2) + float(rc.floors[k])
        rows.append(
            {
                "fact": k,
                "real": real[k],
                "simulated": sim,
                "se_real": se_real[k],
                "se_sim": se_sim,
                "tolerance": tol,
                "inside": bool(abs(sim - real[k]) <= tol),
            }
        )
    return rows


def run(cfg, targets=(), run_dir: Path | None = None) -> dict:
    """Stylized-facts report of the teacher (module docstring)."""
    run_dir = Path(run_dir if run_dir is not None else ".")
    console = Console()
    data = load_teacher_data(cfg)
    version = cfg.sim.teacher.version
    root = teacher_dir(cfg)
    if "fit" in (targets or ()):
        teacher, version, _ = run_fit(cfg, run_dir)
    else:
        try:
            teacher = load_teacher(version or "latest", root=root)
            version = teacher_meta(version or "latest", root=root)["version"]
        except ModelUnavailableError:
            if version:
                raise
            console.print("[yellow]no saved teacher: fitting one first[/]")
            teacher, version, _ = run_fit(cfg, run_dir)
    rc = cfg.sim.report
    daily, hourly = simulate_histories(teacher, data, cfg)
    n_h = data.hourly.shape[0]
    real = {**daily_facts(data.returns, cfg), **hourly_facts(data.hourly, cfg)}
    rng = np.random.default_rng(int(rc.seed))
    se = {
        **bootstrap_se(
            lambda x: daily_facts(x, cfg), data.returns, rng, int(rc.n_boot), float(rc.block_days)
        ),
        **bootstrap_se(
            lambda x: hourly_facts(x, cfg), data.hourly, rng, int(rc.n_boot), float(rc.block_days)
        ),
    }
    sims = [{**daily_facts(d, cfg), **hourly_facts(h[-n_h:], cfg)} for d, h in zip(daily, hourly)]
    rows = compare(real, se, sims, cfg)
    hurst_rows = hurst_estimator_table(
        int(rc.hurst_table_paths), int(rc.hurst_table_steps), int(rc.seed)
    )
    files = _plots(run_dir, data, daily, hourly, cfg)

    table = Table(title=f"teacher {version}: stylized facts, real BTC vs simulated")
    for c in ("fact", "real", "simulated", "tolerance", "inside?"):
        table.add_column(c)
    for r in rows:
        table.add_row(
            r["fact"],
            f"{r['real']:.4f}",
            f"{r['simulated']:.4f}",
            f"±{r['tolerance']:.4f}",
            "yes" if r["inside"] else "NO",
        )
    console.print(table)

    n_in = sum(r["inside"] for r in rows)
    lines = [
        f"# Teacher stylized facts — {version}",
        "",
        (
            f"Real: BTC-USD daily log-returns {data.days[0].date()}..{data.days[-1].date()} "
            f"({len(data.returns)} days); hourly mark price {data.hourly_days[0].date()}.."
            f"{data.hourly_days[-1].date()} ({n_h} complete days)."
        ),
        (
            f"Simulated: {daily.shape[0]} closed-loop histories of {daily.shape[1]} days, "
            f"{int(rc.substeps)} sub-steps/day, regime recomputed from each simulated history every "
            f"{int(rc.regime_every_days)} days; hourly facts use the last {n_h} days of each."
        ),
        "",
        (
            "Tolerance: |sim − real| ≤ "
            f"{float(rc.z_tol)}·sqrt(se_real² + se_sim²) + floor, se_real from a stationary block "
            f"bootstrap ({int(rc.n_boot)} resamples, mean block {float(rc.block_days)} days), se_sim "
            "across simulated histories."
        ),
        "",
        f"**{n_in} of {len(rows)} facts inside.**",
        "",
        "| fact | real | simulated | tolerance | inside? |",
        "| --- | ---: | ---: | ---: | :---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['fact']} | {r['real']:.4f} | {r['simulated']:.4f} | ±{r['tolerance']:.4f} "
            f"| {'yes' if r['inside'] else 'NO'} |"
        )
    lines += [
        "",
        "## Teacher parameters (mean regime)",
        "",
        "| parameter | value |",
        "| --- | --- |",
    ]
    for k, v in teacher.summary().items():
        lines.append(f"| {k} | {v if isinstance(v, list) else f'{v:.5g}'} |")
    lines += [
        "",
        (
            f"## Hurst estimators on synthetic fBM ({int(rc.hurst_table_paths)} paths × "
            f"{int(rc.hurst_table_steps)} steps per H, Davies–Harte)"
        ),
        "",
        "| H | estimator | mean | bias | RMSE |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for r in hurst_rows:
        lines.append(
            f"| {r['H']} | {r['estimator']} | {r['mean']:.4f} | {r['bias']:+.4f} | {r['rmse']:.4f} |"
        )
    lines += [""] + [f"![{f}]({f})" for f in files] + [""]
    atomic_write_text(run_dir / "stylized_facts.md", "\n".join(lines))
    out = {
        "version": version,
        "facts": rows,
        "hurst_estimators": hurst_rows,
        "files": files,
        "inside": n_in,
        "total": len(rows),
    }
    atomic_write_json(run_dir / "stylized_facts.json", out)
    console.print(f"report: {run_dir / 'stylized_facts.md'}")
    return out
