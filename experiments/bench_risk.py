"""``just bench risk``: DRO-ES solve time, position-FSM event throughput, VaR/ES of paths.

Ours and a peer in the same run:
* DRO-ES 512 x 5 -- our compiled cvxpy problem (Clarabel) re-solved with fresh scenarios, in
  the configured transport norm and in l1 (an LP), next to scipy's HiGHS solving the same LP
  built from scratch each time; plus our cold (compile + solve) time. Target: < 50 ms median.
* Position FSM -- events/s applying a realistic stream (ACK, partial fills, cancels, stop
  amendments, ~10% duplicates) to :class:`PositionBook`. Target: >= 100k events/s.
* VaR/ES of 10,000 x 14 paths at two levels -- our jitted JAX function vs numpy sort/mean.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from scipy.optimize import linprog

from aurora_jax.execution.orders import EventKind, OrderEvent, OrderRequest
from aurora_jax.execution.position import PositionBook, Role
from aurora_jax.risk.dro_es import DROConfig, DROESProblem, solve_dro_es
from aurora_jax.risk.var_es import var_es_from_paths


def _scenarios(rng, N, n):
    vol = np.linspace(0.02, 0.06, n)
    corr = 0.4 * np.ones((n, n)) + 0.6 * np.eye(n)
    L = np.linalg.cholesky(corr * np.outer(vol, vol))
    return rng.standard_t(4, (N, n)) @ L.T * np.sqrt(0.5) + 0.0005


def _highs_lp(R, eps, c: DROConfig):
    N, n = R.shape
    a = c.alpha
    cost = np.r_[np.zeros(n), 1.0, np.full(N, 1 / ((1 - a) * N)), eps / (1 - a)]
    A = np.vstack([
        np.hstack([-R, -np.ones((N, 1)), -np.eye(N), np.zeros((N, 1))]),
        np.hstack([np.eye(n), np.zeros((n, 1 + N)), -np.ones((n, 1))]),
        np.hstack([-np.eye(n), np.zeros((n, 1 + N)), -np.ones((n, 1))]),
    ])
    Aeq = np.r_[np.ones(n), np.zeros(N + 2)][None]
    bounds = [(c.w_min, c.w_max)] * n + [(None, None)] + [(0, None)] * (N + 1)
    return linprog(cost, A_ub=A, b_ub=np.zeros(len(A)), A_eq=Aeq, b_eq=[c.budget], bounds=bounds, method="highs")


def _ms(ts):
    return float(np.median(ts) * 1e3), float(np.quantile(ts, 0.9) * 1e3)


def bench_dro(cfg: DictConfig, rng) -> dict:
    b = cfg.risk.bench
    N, n, reps = int(b.dro_scenarios), int(b.dro_assets), int(b.dro_repeats)
    dcfg = dataclasses.replace(DROConfig.from_cfg(cfg.risk.dro), short_limit=None)
    eps = dcfg.eps_base
    data = [_scenarios(rng, N, n) for _ in range(reps)]
    out = {}
    for norm in dict.fromkeys([dcfg.transport_norm, "l1"]):
        c = dataclasses.replace(dcfg, transport_norm=norm)
        prob = DROESProblem(N, n, c)
        prob.solve(data[0], eps)  # first solve compiles
        ts = []
        for R in data:
            t0 = time.perf_counter()
            prob.solve(R, eps)
            ts.append(time.perf_counter() - t0)
        out[f"ours_{norm}_warm_ms"] = _ms(ts)
    cold = []
    for R in data[: int(b.dro_cold_repeats)]:
        t0 = time.perf_counter()
        solve_dro_es(R, dcfg, "normal", False)
        cold.append(time.perf_counter() - t0)
    out["ours_cold_ms"] = _ms(cold)
    hi, agree = [], []
    l1 = DROESProblem(N, n, dataclasses.replace(dcfg, transport_norm="l1"))
    for R in data:
        t0 = time.perf_counter()
        res = _highs_lp(R, eps, dcfg)
        hi.append(time.perf_counter() - t0)
        agree.append(abs(res.fun - l1.solve(R, eps).worst_case_es) / abs(res.fun))
    out["scipy_highs_l1_ms"] = _ms(hi)
    out["max_rel_objective_gap_vs_highs"] = float(max(agree))
    return out


def _event_stream(n_orders: int, dup_frac: float, rng):
    orders, events = [], []
    k = 0
    for i in range(n_orders):
        side = "buy" if i % 2 == 0 else "sell"
        ex = "sell" if side == "buy" else "buy"
        q = float(rng.integers(1, 100)) * 0.001
        e = OrderRequest("X", side, "market", q, client_order_id=f"E{i}")
        s = OrderRequest("X", ex, "stop_market", q, stop_price=100.0, reduce_only=True, client_order_id=f"S{i}")
        t = OrderRequest("X", ex, "take_profit_limit", q, price=110.0, stop_price=110.0, reduce_only=True,
                         client_order_id=f"T{i}")
        orders += [(e, Role.ENTRY, None), (s, Role.STOP, e.client_order_id), (t, Role.TAKE_PROFIT, e.client_order_id)]

        def ev(kind, cid, **kw):
            nonlocal k
            k += 1
            return OrderEvent(kind, cid, f"x{k}", float(k), **kw)

        events += [ev(EventKind.ACK, e.client_order_id), ev(EventKind.FILL, e.client_order_id, qty=q / 2, price=105.0),
                   ev(EventKind.FILL, e.client_order_id, qty=q / 2, price=105.5), ev(EventKind.ACK, s.client_order_id),
                   ev(EventKind.ACK, t.client_order_id), ev(EventKind.STOP_AMEND, s.client_order_id, price=101.0),
                   ev(EventKind.FILL, t.client_order_id, qty=q, price=110.0), ev(EventKind.CANCEL, s.client_order_id)]
    dups = [events[j] for j in rng.integers(0, len(events), int(dup_frac * len(events)))]
    stream = events + dups
    perm = rng.permutation(len(stream))
    return orders, [stream[j] for j in perm]


def bench_fsm(cfg: DictConfig, rng) -> dict:
    b = cfg.risk.bench
    orders, stream = _event_stream(int(b.fsm_orders), float(b.fsm_duplicate_fraction), rng)
    rates = []
    for _ in range(int(b.fsm_repeats)):
        book = PositionBook()
        for o, role, parent in orders:
            book.register(o, role, parent)
        t0 = time.perf_counter()
        book.apply_many(stream)
        rates.append(len(stream) / (time.perf_counter() - t0))
    return {"events": len(stream), "ours_events_per_s_median": float(np.median(rates)),
            "ours_events_per_s_min": float(np.min(rates)), "final_net": book.net}


def bench_var(cfg: DictConfig, rng) -> dict:
    b = cfg.risk.bench
    levels = list(cfg.risk.var_es.levels)
    paths = 100 * np.exp(np.cumsum(0.02 * rng.standard_normal((int(b.var_paths), int(b.var_horizon))), axis=1))
    var_es_from_paths(paths, 100.0, levels, "log")[0].block_until_ready()  # compile
    ours, peer = [], []
    for _ in range(int(b.var_repeats)):
        t0 = time.perf_counter()
        _, e = var_es_from_paths(paths, 100.0, levels, "log")
        e.block_until_ready()
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss = np.sort(-np.log(paths / 100.0), axis=0)
        n = loss.shape[0]
        ref = [loss[n - round(n * (1 - a)):].mean(axis=0) for a in levels]
        peer.append(time.perf_counter() - t0)
    gap = float(np.max(np.abs(np.asarray(e) - np.stack(ref))))
    return {"ours_jax_ms": _ms(ours), "numpy_ms": _ms(peer), "max_abs_es_gap": gap}


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict:
    rng = np.random.default_rng(int(cfg.seed))
    dro, fsm, var = bench_dro(cfg, rng), bench_fsm(cfg, rng), bench_var(cfg, rng)
    b = cfg.risk.bench
    t = Table(title=f"bench risk  (DRO-ES {b.dro_scenarios}x{b.dro_assets}, FSM {fsm['events']:,} events)")
    for col in ("what", "ours", "peer", "target"):
        t.add_column(col, justify="right" if col != "what" else "left")
    norm = cfg.risk.dro.transport_norm
    med, p90 = dro[f"ours_{norm}_warm_ms"]
    t.add_row(f"DRO-ES warm, {norm} (median / p90 ms)", f"{med:.1f} / {p90:.1f}", "", "< 50 ms")
    (m1, q1), (mh, qh) = dro["ours_l1_warm_ms"], dro["scipy_highs_l1_ms"]
    t.add_row("DRO-ES warm, l1 LP (median / p90 ms)", f"{m1:.1f} / {q1:.1f}", f"scipy HiGHS {mh:.1f} / {qh:.1f}", "")
    t.add_row("DRO-ES cold: compile + solve (median ms)", f"{dro['ours_cold_ms'][0]:.1f}", "", "")
    t.add_row("DRO-ES objective gap vs HiGHS (max rel.)", f"{dro['max_rel_objective_gap_vs_highs']:.1e}", "", "")
    t.add_row("position FSM (events/s, median)", f"{fsm['ours_events_per_s_median']:,.0f}", "", ">= 100,000")
    t.add_row("VaR/ES 10k x 14 paths (median ms)", f"{var['ours_jax_ms'][0]:.2f}", f"numpy {var['numpy_ms'][0]:.2f}", "")
    Console().print(t)
    return {"dro_es": dro, "position_fsm": fsm, "var_es": var,
            "targets_met": {"dro_es_lt_50ms": dro[f"ours_{norm}_warm_ms"][0] < 50,
                            "fsm_ge_100k_events_per_s": fsm["ours_events_per_s_median"] >= 1e5}}
