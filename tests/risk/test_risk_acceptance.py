"""Acceptance FSM (hysteresis, dwell, immediate worsening), circuit breakers (thresholds,
cooldowns, kill switch) and atomic snapshots restored on restart."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk import acceptance as acc
from aurora_jax.risk import breakers as brk
from aurora_jax.risk.snapshot import RiskState, SnapshotError, load_snapshot, save_snapshot


@pytest.fixture(scope="module")
def acfg(risk_cfg):
    return acc.AcceptanceConfig.from_cfg(risk_cfg.acceptance)


@pytest.fixture(scope="module")
def bcfg(risk_cfg):
    return brk.BreakerConfig.from_cfg(risk_cfg.breakers)


def run(obs, cfg, state=None):
    state = state or acc.AcceptanceState()
    levels = []
    for o in obs:
        state = acc.step(state, o, cfg)
        levels.append(state.level)
    return state, levels


def test_worsening_is_immediate_and_improving_needs_dwell(acfg):
    good = acc.Observation(kappa_plus=0.9, covered=True, latency_ms=10, surprisal=1.0)
    s, lv = run([good, acc.Observation(kappa_plus=acfg.kappa_block - 0.01)], acfg)
    assert lv == [acc.Level.PASS, acc.Level.BLOCK]
    s, lv = run([good] * (2 * acfg.min_dwell + 3), acfg, s)
    # BLOCK holds for min_dwell steps, then one level per step after another dwell
    k = acfg.min_dwell
    assert lv[:k] == [acc.Level.BLOCK] * k
    assert lv[k] == acc.Level.DERISK and lv[k + 1:2 * k + 1] == [acc.Level.DERISK] * k
    assert lv[2 * k + 1] == acc.Level.PASS


def test_hysteresis_prevents_flapping(acfg):
    """kappa+ oscillating just around the DERISK threshold: entered once, never left."""
    hover = [acc.Observation(kappa_plus=acfg.kappa_derisk + (0.01 if i % 2 else -0.01)) for i in range(40)]
    _, lv = run(hover, acfg)
    changes = sum(a != b for a, b in itertools.pairwise(lv))
    assert lv[0] == acc.Level.DERISK and changes == 0
    # clearing the threshold by more than the margin lets it recover (after the dwell)
    clear = [acc.Observation(kappa_plus=acfg.kappa_derisk + acfg.kappa_hysteresis + 0.01)] * (acfg.min_dwell + 1)
    _, lv2 = run(hover + clear, acfg)
    assert lv2[-1] == acc.Level.PASS


def test_signals_and_streaks(acfg):
    misses = [acc.Observation(covered=False)] * acfg.miss_streak_block
    _, lv = run(misses, acfg)
    assert lv[acfg.miss_streak_derisk - 2] == acc.Level.PASS
    assert lv[acfg.miss_streak_derisk - 1] == acc.Level.DERISK
    assert lv[-1] == acc.Level.BLOCK
    # a hit resets the streak
    s, _ = run([acc.Observation(covered=False)] * (acfg.miss_streak_derisk - 1) + [acc.Observation(covered=True)], acfg)
    assert s.miss_streak == 0 and s.level == acc.Level.PASS
    _, lv = run([acc.Observation(latency_ms=acfg.latency_block_ms + 1)], acfg)
    assert lv == [acc.Level.BLOCK]
    _, lv = run([acc.Observation(surprisal=acfg.surprisal_derisk + 0.1)], acfg)
    assert lv == [acc.Level.DERISK]
    assert acc.size_multiplier(acc.Level.DERISK, acfg) == acfg.derisk_multiplier
    assert acc.size_multiplier(acc.Level.BLOCK, acfg) == 0.0


def test_breaker_thresholds(bcfg):
    s = brk.BreakerState()
    edge = {
        "vol_spike": dict(realized_vol=bcfg.vol_spike_ratio * 0.02, normal_vol=0.02),
        "drawdown": dict(drawdown=bcfg.drawdown_max),
        "flash": dict(bar_return=-bcfg.flash_move),
        "leverage": dict(leverage=bcfg.leverage_max),
    }
    for name, kw in edge.items():
        # exactly at the threshold: not tripped; just beyond: tripped
        _, new = brk.step(s, brk.BreakerObservation(t=0, **kw), bcfg)
        assert new == []
        beyond = {k: (v * 1.01 if k != "normal_vol" else v) for k, v in kw.items()}
        _, new = brk.step(s, brk.BreakerObservation(t=0, **beyond), bcfg)
        assert new == [name]
    # 2x normal vol, 20% drawdown, 5% bar, 2x leverage are the configured limits
    assert (bcfg.vol_spike_ratio, bcfg.drawdown_max, bcfg.flash_move, bcfg.leverage_max) == (2.0, 0.2, 0.05, 2.0)


def test_cooldown_and_kill_switch(bcfg):
    s, new = brk.step(brk.BreakerState(), brk.BreakerObservation(t=10, bar_return=0.08), bcfg)
    assert new == ["flash"] and not brk.allows_trading(s, 10 + bcfg.cooldown_flash)
    assert brk.allows_trading(s, 11 + bcfg.cooldown_flash)
    # a persisting condition extends the cooldown but is not a new trip
    s2, new2 = brk.step(s, brk.BreakerObservation(t=11, bar_return=0.09), bcfg)
    assert new2 == [] and s2.cooling_until["flash"] == 11 + bcfg.cooldown_flash
    # by default repeated flash trips do not kill (daily crypto bars move 5% often) ...
    assert bcfg.kill_after_trips is None
    s = brk.BreakerState()
    for k in range(10):
        s, _ = brk.step(s, brk.BreakerObservation(t=k * (bcfg.cooldown_flash + 1), bar_return=0.06), bcfg)
    assert not s.kill
    # ... a hard drawdown does, and the switch stays latched until an operator releases it
    s, _ = brk.step(s, brk.BreakerObservation(t=100, drawdown=bcfg.kill_drawdown + 0.01), bcfg)
    assert s.kill and "kill_drawdown" in s.kill_reason
    later = 100 + bcfg.cooldown_drawdown + 100
    s, _ = brk.step(s, brk.BreakerObservation(t=later, drawdown=0.0, bar_return=0.0), bcfg)
    assert s.kill and not brk.allows_trading(s, later)
    s = brk.release_kill(s)
    assert brk.allows_trading(s, later + 1)
    assert not brk.allows_trading(brk.engage_kill(s, "operator"), later + 1)
    # opt-in (intraday bars): kill_after_trips trips within kill_window engage it
    strict = dataclasses.replace(bcfg, kill_after_trips=3, kill_window=30)
    s = brk.BreakerState()
    for k in range(3):
        assert not s.kill
        s, _ = brk.step(s, brk.BreakerObservation(t=k * (bcfg.cooldown_flash + 1), bar_return=0.06), strict)
    assert s.kill and "trips" in s.kill_reason
    # trips spread wider than the window never add up
    s = brk.BreakerState()
    for k in range(6):
        s, _ = brk.step(s, brk.BreakerObservation(t=k * 31, bar_return=0.06), strict)
    assert not s.kill


def test_snapshot_roundtrip_and_restart(tmp_path, acfg, bcfg):
    path = tmp_path / "risk" / "state.json"
    assert load_snapshot(path) == RiskState()  # fresh start
    obs = [acc.Observation(kappa_plus=0.9, covered=bool(i % 3)) for i in range(5)] + [acc.Observation(kappa_plus=0.1)]
    a, _ = run(obs, acfg)
    b, _ = brk.step(brk.BreakerState(), brk.BreakerObservation(t=3, drawdown=0.3), bcfg)
    save_snapshot(path, RiskState(a, b, {"equity_peak": 123.0}))
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left behind
    restored = load_snapshot(path)
    assert restored == RiskState(a, b, {"equity_peak": 123.0})
    # a restarted process continues exactly like the uninterrupted one
    more = [acc.Observation(kappa_plus=0.95, covered=True)] * 8
    uninterrupted, _ = run(more, acfg, a)
    resumed, _ = run(more, acfg, restored.acceptance)
    assert uninterrupted == resumed


def test_corrupt_snapshots_are_typed_errors(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(SnapshotError, match="unreadable"):
        load_snapshot(p)
    p.write_text(json.dumps({"version": 99}))
    with pytest.raises(SnapshotError, match="version"):
        load_snapshot(p)
    p.write_text(json.dumps({"version": 1, "acceptance": {"level": "MAYBE"}, "breakers": {}}))
    with pytest.raises(SnapshotError, match="malformed"):
        load_snapshot(p)


def test_bad_config(risk_cfg):
    c = dict(risk_cfg.acceptance)
    c["kappa_block"] = 0.9
    with pytest.raises(InvalidParameterError, match="kappa_block"):
        acc.AcceptanceConfig(**c)
    b = dict(risk_cfg.breakers)
    b["cooldown_flash"] = -1
    with pytest.raises(InvalidParameterError, match="cooldown_flash"):
        brk.BreakerConfig(**b)
