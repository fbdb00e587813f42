"""``just bench sim``: fGn throughput (ours vs the ``fbm`` package) and teacher path throughput.

1. fGn increments per second for ``sim.bench.fgn_paths`` x ``sim.bench.fgn_steps``: ours
   (:func:`aurora_jax.sim.fgn.sample_fgn`, jitted, batched Davies–Harte) vs ``fbm.FBM(...).fgn()``
   (Davies–Harte, one path per call, eigenvalues cached in the object), timed alternately
   (see :func:`bench_fgn`). The package's cost is a Python loop linear in the number of paths,
   so its rate, measured on batches of ``sim.bench.fbm_batch`` paths, does not depend on the count.
2. Teacher: ``teacher_paths`` x ``teacher_days`` days x ``teacher_substeps`` sub-steps; paths/s
   and the share of the time spent in RNG (all random draws of one simulation: fGn white noise,
   Hawkes and mark uniforms, Brownian increments), FFT (Davies–Harte transform) and network
   evaluation (the drift MLP over every path and sub-step), each timed alone with the same
   shapes; the rest is the solver (diffrax Euler loop, Hawkes recursion, bookkeeping).

Medians over ``sim.bench.fgn_repeats`` (fGn) / ``sim.bench.repeats`` (teacher) runs after one
warm-up (compile) call.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.table import Table

from aurora_jax.sim.fgn import embedding_size, sample_fgn
from aurora_jax.sim.jumps import max_rate_for_cap


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench_fgn(bcfg, chunk: int) -> list[dict]:
    """Ours and the package timed alternately (one call of ours, then one batch of
    ``fbm_batch`` package paths, ``fgn_repeats`` times) so both see the same machine load;
    medians of each."""
    from fbm import FBM

    steps, h = int(bcfg.fgn_steps), float(bcfg.hurst)
    reps, batch = int(bcfg.fgn_repeats), int(bcfg.fbm_batch)
    rows = []
    key = jax.random.key(0)
    for n_paths in bcfg.fgn_paths:
        n_paths = int(n_paths)
        gen = FBM(n=steps, hurst=h, length=1, method="daviesharte")
        gen.fgn()  # eigenvalues computed once, as our compile is excluded
        jax.block_until_ready(sample_fgn(key, h, steps, n_paths, 1.0, chunk=chunk))
        ours, pkg = [], []
        for _ in range(reps):
            t = time.perf_counter()
            jax.block_until_ready(sample_fgn(key, h, steps, n_paths, 1.0, chunk=chunk))
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in range(batch):
                gen.fgn()
            pkg.append(time.perf_counter() - t)
        our_rate = n_paths * steps / float(np.median(ours))
        pkg_rate = batch * steps / float(np.median(pkg))
        rows.append(
            {
                "paths": n_paths,
                "steps": steps,
                "ours_s": float(np.median(ours)),
                "ours_inc_per_s": our_rate,
                "fbm_paths_timed": batch * reps,
                "fbm_inc_per_s": pkg_rate,
                "ratio": our_rate / pkg_rate,
            }
        )
    return rows


def _bench_teacher_model(cfg):
    """The latest saved teacher if there is one, else an unfitted one (speed is the same)."""
    from aurora_jax.errors import ModelUnavailableError
    from aurora_jax.sim.teacher import TeacherSpec, _skeleton, load_teacher, teacher_dir

    try:
        return load_teacher("latest", root=teacher_dir(cfg)), "latest saved"
    except ModelUnavailableError:
        spec = TeacherSpec.from_cfg(
            cfg.sim.teacher.model,
            cfg.sim.fgn.chunk,
            cfg.sim.jumps.max_per_step,
            cfg.sim.jumps.tail_tol,
        )
        return _skeleton(spec), "unfitted (no saved teacher)"


def bench_teacher(cfg) -> dict:
    bcfg = cfg.sim.bench
    teacher, which = _bench_teacher_model(cfg)
    spec = teacher.spec
    p, days, sub, reps = (
        int(bcfg.teacher_paths),
        int(bcfg.teacher_days),
        int(bcfg.teacher_substeps),
        int(bcfg.repeats),
    )
    n_sub = days * sub
    d = spec.latent_dim
    x0 = jnp.zeros((d,))
    z = jnp.zeros((spec.zdim,))
    key = jax.random.key(1)
    total = _median_time(lambda: teacher.simulate(key, x0, z, p, days, 1.0, sub), reps)

    m = 2 * embedding_size(n_sub)
    pairs = (p * d + 1) // 2
    cap = spec.cap

    @jax.jit
    def rng_only(k):
        k1, k2, k3, k4 = jax.random.split(k, 4)
        white = jax.random.normal(k1, (2, pairs, m))
        hk = jax.random.uniform(k2, (n_sub, p))
        mk = jax.random.uniform(k3, (cap, p, n_sub))
        bm = jax.random.normal(k4, (p, n_sub))
        return white.sum() + hk.sum() + mk.sum() + bm.sum()

    t_rng = _median_time(lambda: rng_only(key), reps)

    @jax.jit
    def fft_only(v):
        return jnp.fft.fft(v, axis=-1).real.sum()

    v = jax.lax.complex(jnp.ones((pairs, m)), jnp.ones((pairs, m)))
    t_fft = _median_time(lambda: fft_only(v), reps)

    states = jnp.zeros((n_sub, p, d))
    ts = jnp.linspace(0.0, float(days), n_sub)

    @jax.jit
    def net_only(states, ts):
        def one_step(x, t):
            return jax.vmap(lambda xi: teacher.sde.drift.neural(t, xi, z))(x).sum()

        return jax.lax.map(lambda a: one_step(*a), (states, ts)).sum()

    t_net = _median_time(lambda: net_only(states, ts), reps)
    rest = max(total - t_rng - t_fft - t_net, 0.0)
    return {
        "teacher": which,
        "paths": p,
        "days": days,
        "substeps": sub,
        "seconds": total,
        "paths_per_s": p / total,
        "share_rng": t_rng / total,
        "share_fft": t_fft / total,
        "share_network": t_net / total,
        "share_solver_rest": rest / total,
        "rate_cap_per_day": max_rate_for_cap(spec.cap, 1.0 / sub, spec.tail_tol),
    }


def run(cfg, run_dir: Path | None = None) -> dict:
    console = Console()
    fgn_rows = bench_fgn(cfg.sim.bench, int(cfg.sim.fgn.chunk))
    t = Table(
        title=f"fGn increments/s (Davies–Harte, H={cfg.sim.bench.hurst}), median of {cfg.sim.bench.fgn_repeats} alternating runs"
    )
    for c in ("paths x steps", "ours inc/s", "fbm pkg inc/s", "ratio ours/fbm", "ours time"):
        t.add_column(c)
    for r in fgn_rows:
        t.add_row(
            f"{r['paths']} x {r['steps']}",
            f"{r['ours_inc_per_s']:.3e}",
            f"{r['fbm_inc_per_s']:.3e}",
            f"{r['ratio']:.0f}x",
            f"{r['ours_s'] * 1e3:.1f} ms",
        )
    console.print(t)
    tr = bench_teacher(cfg)
    t2 = Table(
        title=f"teacher simulate ({tr['teacher']}): {tr['paths']} paths x {tr['days']} days x {tr['substeps']} sub-steps"
    )
    for c in ("seconds", "paths/s", "RNG", "FFT", "network", "solver+rest"):
        t2.add_column(c)
    t2.add_row(
        f"{tr['seconds']:.3f}",
        f"{tr['paths_per_s']:.0f}",
        f"{tr['share_rng']:.1%}",
        f"{tr['share_fft']:.1%}",
        f"{tr['share_network']:.1%}",
        f"{tr['share_solver_rest']:.1%}",
    )
    console.print(t2)
    return {"fgn": fgn_rows, "teacher": tr, "devices": [str(d) for d in jax.devices()]}
