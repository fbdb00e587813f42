"""``just bench serve``: HTTP latency and throughput of ``POST /forecast``, and arch in the same run.

The service (``serving.app.create_app`` with the trained engine, ``model=engine``, unless
``serving.bench.engine=false`` keeps the configured model; serving only ``serving.bench.asset``)
runs in a child process on 127.0.0.1 and is timed only once ``/ready`` (every shape compiled,
the driver surrogate loaded); a load generator (httpx, asyncio) sends a 14-day, 10,000-path BTC-USD
forecast at each concurrency in ``serving.bench.concurrency``, bounded by
``requests_per_level`` and ``max_seconds_per_level``, and reports p50/p95/p99 latency, throughput
the mean batch size the server formed (from its ``/metrics``), and the CPU time the server process
and the load generator spent per request (from /proc and ``time.process_time``: unlike wall-clock
figures, these do not depend on what else runs on the machine).

Two workloads:

* ``same``: every request is the same (latest as-of) — what a dashboard sees; concurrent equal
  requests share one simulation inside a batch;
* ``distinct``: each request has its own as-of among 32 prepared dates, so every request in a
  batch is simulated separately (batching without any sharing).

Peer in the same run: ``arch`` fitting a GARCH(1,1)-t on the same 1,000 daily BTC returns and
simulating 10,000 paths x 14 days (median of ``arch_repeats``).

Drivers (engine): every response carries them; their cost is measured in-process on the same
forecast (median of ``drivers_repeats``): ``cold`` = block features + surrogate contributions +
top-3 per quantity (:func:`aurora_jax.forecast.explain.drivers_from_config`, what the first request
of an (asset, as-of, horizon) pays), ``served`` = what every later request pays (memoised drivers
turned into the response body). The server's compiled-shape count (``aurora_compiled_shapes``)
is read before and after the load: it must not grow (no request compiles).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import re
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from aurora_jax.data.store import MarketStore
from aurora_jax.errors import ConfigError


def _serve(cfg_container: dict, port: int) -> None:  # child process
    import uvicorn

    from serving.app import create_app

    cfg = OmegaConf.create(cfg_container)
    app = create_app(cfg)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), contention-independent."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gauge(text: str, name: str) -> float | None:
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def _batch_stats(text: str) -> tuple[float, float]:
    s = re.search(r"^aurora_batch_size_sum ([0-9.e+]+)$", text, re.MULTILINE)
    c = re.search(r"^aurora_batch_size_count ([0-9.e+]+)$", text, re.MULTILINE)
    return (float(s.group(1)) if s else 0.0, float(c.group(1)) if c else 0.0)


async def _level(client, url: str, bodies: list[dict], concurrency: int, max_requests: int, max_s: float,
                 server_pid: int) -> dict:
    lat: list[float] = []
    errors = 0
    sent = 0
    t_end = time.perf_counter() + max_s

    async def worker() -> None:
        nonlocal sent, errors
        while sent < max_requests and time.perf_counter() < t_end:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            r = await client.post(url + "/forecast", json=body)
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                lat.append(dt)
            else:
                errors += 1

    m0 = _batch_stats((await client.get(url + "/metrics")).text)
    cpu0, own0 = _proc_cpu_s(server_pid), time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu1, own1 = _proc_cpu_s(server_pid), time.process_time()
    m1 = _batch_stats((await client.get(url + "/metrics")).text)
    a = np.asarray(lat) * 1e3
    calls = m1[1] - m0[1]
    return {"concurrency": concurrency, "n": len(lat), "errors": errors,
            "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "throughput_rps": len(lat) / wall,
            "mean_batch_size": (m1[0] - m0[0]) / calls if calls else 0.0,
            "server_cpu_ms_per_req": 1e3 * (cpu1 - cpu0) / max(len(lat), 1),
            "client_cpu_ms_per_req": 1e3 * (own1 - own0) / max(len(lat), 1),
            "server_cpu_share": (cpu1 - cpu0) / wall}


async def _load(url: str, cfg: DictConfig, same: dict, distinct: list[dict], server_pid: int) -> dict:
    import httpx

    b = cfg.serving.bench
    limits = httpx.Limits(max_connections=max(b.concurrency) + 4, max_keepalive_connections=max(b.concurrency) + 4)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        t_ready = time.perf_counter()
        why = "no answer"
        while time.perf_counter() - t_ready < float(b.ready_timeout_s):
            try:
                r = await client.get(url + "/ready")
                if r.status_code == 200:
                    break
                why = "; ".join(r.json().get("reasons", [])) or why
                if r.json().get("warmed_up") or "warm-up failed" in why:
                    raise ConfigError(f"the service at {url} is not ready: {why}")
            except httpx.TransportError:
                pass
            await asyncio.sleep(1.0)
        else:
            raise ConfigError(f"the service at {url} did not become ready in {b.ready_timeout_s} s: {why}")
        startup_s = time.perf_counter() - t_ready
        # prepare the distinct as-of dates (fits / engine inputs) before timing anything
        for d in distinct:
            r = await client.post(url + "/forecast", json=dict(d, num_paths=1000), timeout=600.0)
            if r.status_code != 200:
                raise ConfigError(f"preparing {d['as_of']} failed: {r.status_code} {r.text[:300]}")
        for body in (same, *distinct[:4]):
            for _ in range(int(b.warmup_requests)):
                await client.post(url + "/forecast", json=body)
        sample = (await client.post(url + "/forecast", json=same)).json()
        compiled0 = _gauge((await client.get(url + "/metrics")).text, "aurora_compiled_shapes")
        out: dict = {"same": [], "distinct": []}
        for c in b.concurrency:
            out["same"].append(await _level(client, url, [same], int(c), int(b.requests_per_level),
                                             float(b.max_seconds_per_level), server_pid))
            out["distinct"].append(await _level(client, url, distinct, int(c), int(b.requests_per_level),
                                                float(b.max_seconds_per_level), server_pid))
        compiled1 = _gauge((await client.get(url + "/metrics")).text, "aurora_compiled_shapes")
    out["startup_s"] = startup_s
    out["compiled_shapes"] = [compiled0, compiled1]
    out["sample_drivers"] = sample.get("drivers")
    out["sample_version"] = sample.get("model_version")
    return out


def arch_fit_simulate(store: MarketStore, asset: str, horizon: int, num_paths: int, repeats: int) -> dict:
    from arch import arch_model

    close = store.series(asset, "close").dropna()
    r = 100.0 * np.diff(np.log(close.to_numpy()))[-1000:]
    times, cpu = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
        res.forecast(horizon=horizon, method="simulation", simulations=num_paths, reindex=False,
                     random_state=np.random.RandomState(i))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)),
            "cpu_ms": 1e3 * float(np.median(cpu)), "n": repeats}


def drivers_cost(cfg: DictConfig, store: MarketStore, asset: str, horizon: int, num_paths: int,
                 repeats: int) -> dict:
    """In-process cost of the drivers of one engine forecast (module docstring), in ms."""
    from aurora_jax.forecast import api
    from aurora_jax.forecast.explain.drivers import Explainable, drivers_from_config
    from serving.service import ForecastService

    prep = api.prepare(asset, None, store=store, cfg=cfg)
    sur = api.load_surrogate(cfg, prep.engine, store, fit_missing=False)
    if sur is None:
        return {"available": False}
    sim = api.simulate(prep, horizon, num_paths, cfg)
    trend = sim.trend_paths[:, :horizon]
    ex = cfg.model.explain
    cold, served = [], []
    for _ in range(int(repeats)):
        t0 = time.perf_counter()
        d = drivers_from_config(Explainable(prep.inputs, trend), sur, ex, horizon)
        cold.append(time.perf_counter() - t0)
        prep.memo.clear()
        api.drivers_of(prep, sim, horizon, sur, ex)
        t0 = time.perf_counter()
        d = api.drivers_of(prep, sim, horizon, sur, ex)
        ForecastService._drivers_body({"drivers": d, "min_fidelity": float(ex.min_fidelity)})
        served.append(time.perf_counter() - t0)
    return {"available": True, "cold_ms": 1e3 * float(np.median(cold)), "served_ms": 1e3 * float(np.median(served)),
            "n": int(repeats), "reliable": bool(d["reliable"])}


def run(cfg: DictConfig, run_dir: Path) -> dict:
    b = cfg.serving.bench
    store = MarketStore(cfg.data.root)
    if b.asset not in store.assets():
        raise ConfigError(f"{b.asset} is not in the store at {store.root}: run "
                          "`just ingest data.source_dir=../shared/data data.root=...` first")
    if bool(b.engine) and str(cfg.model.name) != "aurora":
        from aurora_jax.train.pipeline import engine_config

        cfg = engine_config(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    container["serving"]["log"]["path"] = str(Path(run_dir) / "requests.jsonl")
    container["serving"]["refresh_s"] = 0
    container["serving"]["assets"] = [str(b.asset)]
    port = int(b.port)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_serve, args=(container, port), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    from aurora_jax.data.snapshot import price_range

    last = price_range(store, b.asset)[1]
    same = {"asset_id": b.asset, "horizon": int(b.horizon), "num_paths": int(b.num_paths)}
    distinct = [dict(same, as_of=(last - np.timedelta64(i, "D")).isoformat()) for i in range(32)]
    try:
        load = asyncio.run(_load(url, cfg, same, distinct, proc.pid))
    finally:
        proc.terminate()
        proc.join(10)
    peer = arch_fit_simulate(store, b.asset, int(b.horizon), int(b.num_paths), int(b.arch_repeats))
    drivers = (drivers_cost(cfg, store, str(b.asset), int(b.horizon), int(b.num_paths), int(b.drivers_repeats))
               if str(cfg.model.name) == "aurora" else {"available": False})

    console = Console()
    table = Table(title=f"bench serve: POST /forecast, {b.asset}, {b.horizon} days, {b.num_paths:,} paths "
                        f"({cfg.model.name} {load.get('sample_version')}), server and load generator on this machine")
    for col in ("workload", "conc.", "n", "p50 ms", "p95 ms", "p99 ms", "req/s", "mean batch",
                "server CPU ms/req", "client CPU ms/req", "server CPU share"):
        table.add_column(col, justify="right")
    for kind in ("same", "distinct"):
        for r in load[kind]:
            table.add_row(kind, str(r["concurrency"]), str(r["n"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                          f"{r['p99_ms']:.1f}", f"{r['throughput_rps']:.1f}", f"{r['mean_batch_size']:.1f}",
                          f"{r['server_cpu_ms_per_req']:.1f}", f"{r['client_cpu_ms_per_req']:.1f}",
                          f"{r['server_cpu_share']:.2f}")
    table.add_row("arch fit+simulate", "—", str(peer["n"]), f"{peer['median_ms']:.1f}", "", "", "", "",
                  f"{peer['cpu_ms']:.1f}", "", "")
    console.print(table)
    console.print(f"load average during the run: {Path('/proc/loadavg').read_text().split()[:3]} on "
                  f"{__import__('os').cpu_count()} cores (other jobs share this machine)")
    console.print(f"start-up until /ready: {load['startup_s']:.1f} s; compiled shapes before / after the load: "
                  f"{load['compiled_shapes']}")
    if drivers.get("available"):
        console.print(f"drivers per forecast: cold {drivers['cold_ms']:.3f} ms (first request of an as-of and "
                      f"horizon), served {drivers['served_ms']:.3f} ms (every later one); median of {drivers['n']}; "
                      f"surrogate reliable: {drivers['reliable']}")
    else:
        console.print("drivers: no surrogate for this engine version (not measured)")
    kinds = ("same", "distinct")
    c1 = {k: next(r for r in load[k] if r["concurrency"] == min(b.concurrency)) for k in kinds}
    cmax = {k: next(r for r in load[k] if r["concurrency"] == max(b.concurrency)) for k in kinds}
    checks = {
        "p50_c1_le_50ms": c1["same"]["p50_ms"] <= 50.0,
        "p99_c1_le_100ms": c1["same"]["p99_ms"] <= 100.0,
        "p50_c1_below_arch": c1["same"]["p50_ms"] < peer["median_ms"],
        "throughput_cmax_ge_4x_c1_same": cmax["same"]["throughput_rps"] >= 4 * c1["same"]["throughput_rps"],
        "throughput_cmax_ge_4x_c1_distinct": cmax["distinct"]["throughput_rps"] >= 4 * c1["distinct"]["throughput_rps"],
        "no_request_compiled": load["compiled_shapes"][0] == load["compiled_shapes"][1],
    }
    if drivers.get("available"):
        checks["drivers_cold_le_5ms"] = drivers["cold_ms"] <= 5.0
    ratios = {
        "arch_over_our_p50_c1": peer["median_ms"] / c1["same"]["p50_ms"],
        "server_cpu_per_req_c1_over_cmax_same": c1["same"]["server_cpu_ms_per_req"] / max(
            cmax["same"]["server_cpu_ms_per_req"], 1e-9),
        "server_cpu_per_req_c1_over_cmax_distinct": c1["distinct"]["server_cpu_ms_per_req"] / max(
            cmax["distinct"]["server_cpu_ms_per_req"], 1e-9),
        "throughput_ratio_same": cmax["same"]["throughput_rps"] / c1["same"]["throughput_rps"],
        "throughput_ratio_distinct": cmax["distinct"]["throughput_rps"] / c1["distinct"]["throughput_rps"],
    }
    for k, v in ratios.items():
        console.print(f"{k}: {v:.2f}")
    for k, v in checks.items():
        console.print(f"{k}: {'[green]met[/]' if v else '[red]not met[/]'}")
    return {"model": str(cfg.model.name), "load": load, "arch": peer, "drivers": drivers, "ratios": ratios,
            "targets_met": checks}
