"""DRO-ES: against an independent LP (scipy/HiGHS) and a brute-force grid; the worst case is
attained by an explicit distribution in the ball; constraints, errors and solver fallback."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from aurora_jax.errors import InvalidParameterError
from aurora_jax.risk.dro_es import (
    DROConfig,
    DROESProblem,
    DROInfeasibleError,
    DROSolverError,
    DROUnboundedError,
    dro_epsilon,
    dual_norm,
    empirical_es,
    solve_dro_es,
    worst_case_es,
)


@pytest.fixture
def dcfg(risk_cfg) -> DROConfig:
    return DROConfig.from_cfg(risk_cfg.dro)


def scenarios(n_s, n_a, seed):
    rng = np.random.default_rng(seed)
    vol = np.linspace(0.01, 0.04, n_a)
    corr = 0.3 * np.ones((n_a, n_a)) + 0.7 * np.eye(n_a)
    L = np.linalg.cholesky(corr * np.outer(vol, vol))
    return rng.standard_t(4, (n_s, n_a)) @ L.T * np.sqrt(0.5) + 0.0005


def lp_reference(R, eps, alpha, w_min, w_max, budget):
    """l1 transport cost -> linf dual norm: an LP in (w, t, z, v), solved by HiGHS."""
    N, n = R.shape
    c = np.r_[np.zeros(n), 1.0, np.full(N, 1 / ((1 - alpha) * N)), eps / (1 - alpha)]
    # -R w - t - z <= 0 ;  w - v <= 0 ; -w - v <= 0
    A1 = np.hstack([-R, -np.ones((N, 1)), -np.eye(N), np.zeros((N, 1))])
    A2 = np.hstack([np.eye(n), np.zeros((n, 1 + N)), -np.ones((n, 1))])
    A3 = np.hstack([-np.eye(n), np.zeros((n, 1 + N)), -np.ones((n, 1))])
    A_ub = np.vstack([A1, A2, A3])
    A_eq = np.r_[np.ones(n), np.zeros(1 + N + 1)][None]
    bounds = [(w_min, w_max)] * n + [(None, None)] + [(0, None)] * N + [(0, None)]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(A_ub)), A_eq=A_eq, b_eq=[budget], bounds=bounds, method="highs")
    assert res.status == 0
    return res.x[:n], res.fun


@pytest.mark.parametrize("eps", [0.0, 0.002, 0.01])
def test_matches_independent_lp(dcfg, eps):
    cfg = dataclasses.replace(dcfg, transport_norm="l1", short_limit=None)
    R = scenarios(200, 4, 0)
    res = DROESProblem(200, 4, cfg).solve(R, eps)
    w_ref, obj_ref = lp_reference(R, eps, cfg.alpha, cfg.w_min, cfg.w_max, cfg.budget)
    assert res.worst_case_es == pytest.approx(obj_ref, rel=1e-5, abs=1e-8)
    # the reported objective is the closed form at the returned weights
    assert res.worst_case_es == pytest.approx(worst_case_es(res.weights, R, eps, cfg.alpha, "l1"), rel=1e-5)
    assert worst_case_es(w_ref, R, eps, cfg.alpha, "l1") == pytest.approx(obj_ref, rel=1e-6)


def test_matches_brute_force_grid_l2(dcfg):
    cfg = dataclasses.replace(dcfg, transport_norm="l2", w_min=0.0, w_max=1.0, short_limit=None)
    R = scenarios(100, 2, 1)
    for eps in (0.0, 0.003):
        res = DROESProblem(100, 2, cfg).solve(R, eps)
        grid = np.linspace(0, 1, 4001)
        vals = [worst_case_es(np.array([g, 1 - g]), R, eps, cfg.alpha, "l2") for g in grid]
        assert res.worst_case_es == pytest.approx(min(vals), abs=2e-6)
        assert res.weights[0] == pytest.approx(grid[int(np.argmin(vals))], abs=0.01)


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_worst_case_is_attained_inside_the_ball(dcfg, norm):
    """Moving each of the N(1-alpha) tail scenarios by eps/(1-alpha) along the worst direction
    costs exactly eps of W1 transport and raises the empirical ES to the DRO value."""
    cfg = dataclasses.replace(dcfg, transport_norm=norm)
    N, n, eps = 200, 3, 0.004
    R = scenarios(N, n, 2)
    res = DROESProblem(N, n, cfg).solve(R, eps)
    w = res.weights
    losses = -R @ w
    tail = np.argsort(losses)[-int(N * (1 - cfg.alpha)):]
    # direction u with ||u|| = 1 and -w.u = ||w||_*
    if norm == "l2":
        u = -w / np.linalg.norm(w)
    elif norm == "l1":  # dual linf: put the whole unit on the largest |w_i|
        k = np.argmax(np.abs(w))
        u = np.zeros(n)
        u[k] = -np.sign(w[k])
    else:  # linf transport, dual l1: u = -sign(w)
        u = -np.sign(w)
    d = eps / (1 - cfg.alpha)
    moved = R.copy()
    moved[tail] += d * u
    cost = np.mean(np.linalg.norm(moved - R, ord={"l1": 1, "l2": 2, "linf": np.inf}[norm], axis=1))
    assert cost == pytest.approx(eps, rel=1e-9)
    assert empirical_es(w, moved, cfg.alpha) == pytest.approx(res.worst_case_es, rel=1e-5)


def test_radius_trades_tail_fit_for_diversification(dcfg):
    R = scenarios(512, 5, 3)
    prob = DROESProblem(512, 5, dcfg)
    out = [prob.solve(R, e) for e in (0.0, 0.002, 0.01, 0.05)]
    wc = [o.worst_case_es for o in out]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(wc))           # larger ball, larger worst case
    dn = [dual_norm(o.weights, dcfg.transport_norm) for o in out]
    assert dn[-1] < dn[0]                                             # and a smaller ||w||_*
    assert out[0].empirical_es <= out[-1].empirical_es + 1e-9         # at some cost in-sample
    assert out[0].worst_case_es == pytest.approx(out[0].empirical_es, rel=1e-5)  # eps = 0: plain ES


def test_constraints_hold(dcfg):
    cfg = dataclasses.replace(dcfg, w_min=-0.2, w_max=0.5, short_limit=0.3, turnover_max=0.4)
    R = scenarios(300, 5, 4)
    w_prev = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    res = DROESProblem(300, 5, cfg).solve(R, 0.002, w_prev)
    w = res.weights
    tol = 1e-6
    assert abs(w.sum() - cfg.budget) < tol
    assert w.min() >= cfg.w_min - tol and w.max() <= cfg.w_max + tol
    assert np.maximum(-w, 0).sum() <= cfg.short_limit + tol
    assert np.abs(w - w_prev).sum() <= cfg.turnover_max + tol
    with pytest.raises(InvalidParameterError, match="w_prev"):
        DROESProblem(300, 5, cfg).solve(R, 0.002)


def test_infeasible_and_unbounded_are_clear_errors(dcfg):
    R = scenarios(100, 3, 5)
    with pytest.raises(DROInfeasibleError, match="budget"):
        DROESProblem(100, 3, dataclasses.replace(dcfg, w_max=0.2))  # 3 * 0.2 < 1
    cfg = dataclasses.replace(dcfg, turnover_max=0.05, w_min=0.0)
    with pytest.raises(DROInfeasibleError, match="feasible without: \\['turnover'"):
        # from w_prev summing to 0.5 no portfolio summing to 1 is within 0.05 turnover
        DROESProblem(100, 3, cfg).solve(R, 0.001, np.array([0.5, 0.0, 0.0]))
    # an arbitrage: asset 0 beats asset 1 in every scenario; no box, no short limit, eps = 0
    arb = R.copy()
    arb[:, 0] = arb[:, 1] + 0.01
    free = dataclasses.replace(dcfg, w_min=None, w_max=None, short_limit=None)
    with pytest.raises(DROUnboundedError):
        DROESProblem(100, 3, free).solve(arb, 0.0)
    # the Wasserstein penalty alone bounds it once eps * ||w||_* outweighs the arbitrage
    DROESProblem(100, 3, free).solve(arb, 0.05)


def test_solver_failure_falls_back(dcfg, recwarn):
    R = scenarios(200, 4, 6)
    ref = DROESProblem(200, 4, dcfg).solve(R, 0.002)
    crippled = dataclasses.replace(dcfg, solver_opts={"CLARABEL": {"max_iter": 1}, "SCS": dict(dcfg.solver_opts["SCS"])})
    res = DROESProblem(200, 4, crippled).solve(R, 0.002)
    assert res.solver == "SCS" and res.attempts[0][0] == "CLARABEL" and res.attempts[0][1] != "optimal"
    assert res.worst_case_es == pytest.approx(ref.worst_case_es, rel=1e-3)
    both = dataclasses.replace(dcfg, solver_opts={"CLARABEL": {"max_iter": 1}, "SCS": {"max_iters": 2}})
    with pytest.raises(DROSolverError) as exc:
        DROESProblem(200, 4, both).solve(R, 0.002)
    assert [a for a, _ in exc.value.attempts] == ["CLARABEL", "SCS"]


def test_epsilon_follows_regime_and_trans(dcfg):
    assert dro_epsilon(dcfg, "normal", False) == pytest.approx(dcfg.eps_base)
    assert dro_epsilon(dcfg, "volatile", True) == pytest.approx(
        dcfg.eps_base * dcfg.eps_regime_multiplier["volatile"] * dcfg.trans_multiplier)
    assert dro_epsilon(dcfg, "calm", False) < dro_epsilon(dcfg, "volatile", False)
    with pytest.raises(InvalidParameterError, match="regime"):
        dro_epsilon(dcfg, "bubble", False)
    R = scenarios(100, 3, 7)
    calm = solve_dro_es(R, dcfg, "calm", False)
    stressed = solve_dro_es(R, dcfg, "volatile", True)
    assert stressed.epsilon > calm.epsilon and stressed.worst_case_es > calm.worst_case_es


def test_bad_config_and_input(dcfg):
    with pytest.raises(InvalidParameterError, match="transport_norm"):
        dataclasses.replace(dcfg, transport_norm="l3")
    with pytest.raises(InvalidParameterError, match="solvers"):
        dataclasses.replace(dcfg, solvers=("NOSUCHSOLVER",))
    with pytest.raises(InvalidParameterError, match="scenarios"):
        DROESProblem(10, 3, dcfg)  # 10 * 0.05 < 1 tail scenario
    prob = DROESProblem(100, 3, dcfg)
    with pytest.raises(InvalidParameterError, match="scenarios"):
        prob.solve(np.ones((100, 4)), 0.0)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        prob.solve(scenarios(100, 3, 0), -1.0)
