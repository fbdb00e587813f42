"""Distributionally robust Expected-Shortfall portfolio over a Wasserstein ball.

Scenario returns ``r_1..r_N`` (rows of ``R``, ``N x n``) define the empirical law ``P_N``;
the portfolio loss is ``L = -w^T r``. Over the type-1 Wasserstein ball
``B_eps = {Q : W_1(Q, P_N) <= eps}`` with ground cost ``||r - r'||`` (the *transport
norm*), with unbounded support, the worst-case ES has the closed form (Mohajerin Esfahani
& Kuhn 2018, Cor. 5.1, the ES integrand being ``||w||_*/(1-alpha)``-Lipschitz in ``r``):

    sup_{Q in B_eps} ES_alpha^Q(-w^T r)
        = min_t  t + 1/((1-alpha) N) sum_i (-w^T r_i - t)^+  +  eps ||w||_* / (1-alpha)

i.e. the Rockafellar–Uryasev form of the empirical ES plus the dual-norm penalty
``eps ||w||_*`` scaled by ``1/(1-alpha)`` (``||.||_*`` dual to the transport norm: l1<->linf,
l2<->l2). The bound is attained: moving each tail scenario by ``eps/(1-alpha)`` in the
worst direction costs exactly ``eps`` of transport. We minimise it over

    sum_i w_i = budget,  w_min <= w <= w_max,  sum_i max(-w_i, 0) <= short_limit,
    sum_i |w_i - w_prev_i| <= turnover_max

as an LP (linf/l1 dual) or SOCP (l2) in cvxpy, solved by the configured solvers in order
(Clarabel first); a solver error or an inaccurate / iteration-limit status falls through to
the next solver. The radius is ``eps = eps_base * m[regime] * (trans_multiplier if TRANS)``.

:class:`DROESProblem` compiles the problem once for a given ``(N, n)`` with the scenarios,
radius and previous weights as cvxpy parameters (DPP), so re-solving only re-fills data.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from aurora_jax.errors import AuroraError, InvalidParameterError

TRANSPORT_NORMS = {"l1": "linf", "l2": "l2", "linf": "l1"}  # transport norm -> dual norm


class DROInfeasibleError(AuroraError):
    """The constraints admit no portfolio; ``reason`` names the conflicting constraints."""

    status = 422

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"DRO-ES problem is infeasible: {reason}")


class DROUnboundedError(AuroraError):
    """The worst-case ES is unbounded below (an arbitrage among the scenarios and no box)."""

    status = 422

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"DRO-ES problem is unbounded: {reason}")


class DROSolverError(AuroraError):
    """Every configured solver failed; ``attempts`` lists ``(solver, outcome)``."""

    status = 503

    def __init__(self, attempts: list[tuple[str, str]]):
        self.attempts = attempts
        super().__init__(f"every solver failed: {attempts}")


def _opt_float(v) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True)
class DROConfig:
    """Settings of the DRO-ES optimiser (``cfg.risk.dro``; see the module docstring)."""

    alpha: float
    transport_norm: str
    eps_base: float
    eps_regime_multiplier: Mapping[str, float]
    trans_multiplier: float
    budget: float
    w_min: float | None
    w_max: float | None
    short_limit: float | None
    turnover_max: float | None
    solvers: tuple[str, ...]
    solver_opts: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidParameterError("dro.alpha", self.alpha, "in (0, 1)")
        if self.transport_norm not in TRANSPORT_NORMS:
            raise InvalidParameterError("dro.transport_norm", self.transport_norm, f"one of {list(TRANSPORT_NORMS)}")
        if self.eps_base < 0 or self.trans_multiplier < 0:
            raise InvalidParameterError("dro.eps_base", self.eps_base, ">= 0 (and trans_multiplier >= 0)")
        if any(m < 0 for m in self.eps_regime_multiplier.values()):
            raise InvalidParameterError("dro.eps_regime_multiplier", dict(self.eps_regime_multiplier), "values >= 0")
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise InvalidParameterError("dro.w_min", self.w_min, f"<= w_max = {self.w_max}")
        for name in ("short_limit", "turnover_max"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise InvalidParameterError(f"dro.{name}", v, ">= 0 or null")
        if not self.solvers:
            raise InvalidParameterError("dro.solvers", list(self.solvers), "at least one cvxpy solver")
        unknown = [s for s in self.solvers if s not in cp.installed_solvers()]
        if unknown:
            raise InvalidParameterError("dro.solvers", unknown, f"installed solvers {cp.installed_solvers()}")

    @classmethod
    def from_cfg(cls, c) -> DROConfig:
        opts = {str(k): dict(v) for k, v in (c.get("solver_opts") or {}).items()}
        return cls(
            alpha=float(c.alpha), transport_norm=str(c.transport_norm), eps_base=float(c.eps_base),
            eps_regime_multiplier={str(k): float(v) for k, v in c.eps_regime_multiplier.items()},
            trans_multiplier=float(c.trans_multiplier), budget=float(c.budget),
            w_min=_opt_float(c.w_min), w_max=_opt_float(c.w_max),
            short_limit=_opt_float(c.short_limit), turnover_max=_opt_float(c.turnover_max),
            solvers=tuple(str(s) for s in c.solvers), solver_opts=opts,
        )


def dro_epsilon(cfg: DROConfig, regime: str, trans: bool) -> float:
    """``eps = eps_base * multiplier[regime] * (trans_multiplier if trans else 1)``."""
    if regime not in cfg.eps_regime_multiplier:
        raise InvalidParameterError("regime", regime, f"one of {sorted(cfg.eps_regime_multiplier)}")
    return cfg.eps_base * cfg.eps_regime_multiplier[regime] * (cfg.trans_multiplier if trans else 1.0)


def dual_norm(w: np.ndarray, transport_norm: str) -> float:
    """``||w||_*`` for the dual of the transport norm."""
    d = TRANSPORT_NORMS[transport_norm]
    return float({"linf": np.max(np.abs(w)), "l2": np.linalg.norm(w), "l1": np.sum(np.abs(w))}[d])


def empirical_es(weights: np.ndarray, scenarios: np.ndarray, alpha: float) -> float:
    """ES_alpha of ``-R w`` under the empirical law (Acerbi–Tasche = Rockafellar–Uryasev)."""
    losses = np.sort(-np.asarray(scenarios, float) @ np.asarray(weights, float))
    n = losses.size
    tail = n * (1 - alpha)
    m = int(np.floor(tail + 1e-9))
    var = losses[n - m - 1]
    return float((losses[n - m:].sum() + (tail - m) * var) / tail)


def worst_case_es(
    weights: np.ndarray, scenarios: np.ndarray, epsilon: float, alpha: float, transport_norm: str
) -> float:
    """Closed-form worst-case ES over the Wasserstein ball (module docstring)."""
    return empirical_es(weights, scenarios, alpha) + epsilon * dual_norm(weights, transport_norm) / (1 - alpha)


@dataclass(frozen=True)
class DROResult:
    """Optimal weights, the worst-case ES (objective), its parts, and how it was solved."""

    weights: np.ndarray
    worst_case_es: float
    empirical_es: float
    var: float
    epsilon: float
    solver: str
    status: str
    attempts: tuple[tuple[str, str], ...]


class DROESProblem:
    """A compiled DRO-ES problem for ``n_scenarios x n_assets``; call :meth:`solve` repeatedly."""

    def __init__(self, n_scenarios: int, n_assets: int, cfg: DROConfig):
        if n_scenarios < 2 or n_assets < 1:
            raise InvalidParameterError("scenarios", (n_scenarios, n_assets), "N >= 2 rows, n >= 1 assets")
        if n_scenarios * (1 - cfg.alpha) < 1:
            raise InvalidParameterError("scenarios", n_scenarios, f"N (1 - alpha) >= 1 for alpha = {cfg.alpha}")
        self.cfg, self.N, self.n = cfg, n_scenarios, n_assets
        self._check_box()
        self.R = cp.Parameter((n_scenarios, n_assets), name="scenarios")
        self.eps_scaled = cp.Parameter(nonneg=True, name="eps_over_1_minus_alpha")
        self.w = cp.Variable(n_assets, name="w")
        self.t = cp.Variable(name="t")
        self.z = cp.Variable(n_scenarios, nonneg=True, name="z")
        dn = TRANSPORT_NORMS[cfg.transport_norm]
        penalty = {"linf": cp.norm(self.w, "inf"), "l2": cp.norm(self.w, 2), "l1": cp.norm(self.w, 1)}[dn]
        obj = self.t + cp.sum(self.z) / ((1 - cfg.alpha) * n_scenarios) + self.eps_scaled * penalty
        self._named: dict[str, list[cp.Constraint]] = {
            "tail": [self.z >= -self.R @ self.w - self.t],
            "budget": [cp.sum(self.w) == cfg.budget],
            "box": [],
            "short_limit": [],
            "turnover": [],
        }
        if cfg.w_min is not None:
            self._named["box"].append(self.w >= cfg.w_min)
        if cfg.w_max is not None:
            self._named["box"].append(self.w <= cfg.w_max)
        if cfg.short_limit is not None:
            self._named["short_limit"].append(cp.sum(cp.neg(self.w)) <= cfg.short_limit)
        self.w_prev = cp.Parameter(n_assets, name="w_prev")
        self.turnover = cp.Parameter(nonneg=True, name="turnover_max")
        if cfg.turnover_max is not None:
            self._named["turnover"].append(cp.norm(self.w - self.w_prev, 1) <= self.turnover)
            self.turnover.value = cfg.turnover_max
        self._obj = cp.Minimize(obj)
        self.problem = cp.Problem(self._obj, [c for cs in self._named.values() for c in cs])

    def _check_box(self) -> None:
        c, n = self.cfg, self.n
        lo = -np.inf if c.w_min is None else n * c.w_min
        hi = np.inf if c.w_max is None else n * c.w_max
        if not lo <= c.budget <= hi:
            raise DROInfeasibleError(
                f"budget {c.budget} outside [n w_min, n w_max] = [{lo}, {hi}] for n = {n} assets"
            )

    def _diagnose(self) -> str:
        """Name the optional constraint groups whose removal makes the problem feasible."""
        culprits = []
        for drop in ("turnover", "short_limit", "box"):
            if not self._named[drop]:
                continue
            cons = [c for k, cs in self._named.items() if k != drop for c in cs]
            p = cp.Problem(self._obj, cons)
            try:
                p.solve(solver=self.cfg.solvers[0])
            except cp.error.SolverError:
                continue
            if p.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE, cp.UNBOUNDED):
                culprits.append(drop)
        active = [k for k in ("budget", "box", "short_limit", "turnover") if self._named[k]]
        if culprits:
            return f"constraints {active} conflict; feasible without: {culprits}"
        return f"constraints {active} conflict"

    def solve(
        self, scenarios: np.ndarray, epsilon: float, w_prev: np.ndarray | None = None
    ) -> DROResult:
        """Minimise the worst-case ES for these scenarios and radius (module docstring)."""
        R = np.asarray(scenarios, float)
        if R.shape != (self.N, self.n) or not np.all(np.isfinite(R)):
            raise InvalidParameterError("scenarios", R.shape, f"finite array of shape ({self.N}, {self.n})")
        if not (np.isfinite(epsilon) and epsilon >= 0):
            raise InvalidParameterError("epsilon", epsilon, "finite radius >= 0")
        if self.cfg.turnover_max is not None:
            if w_prev is None:
                raise InvalidParameterError("w_prev", None, "previous weights (turnover_max is set)")
            wp = np.asarray(w_prev, float)
            if wp.shape != (self.n,) or not np.all(np.isfinite(wp)):
                raise InvalidParameterError("w_prev", wp.shape, f"finite vector of length {self.n}")
            self.w_prev.value = wp
        else:
            self.w_prev.value = np.zeros(self.n)
        self.R.value = R
        self.eps_scaled.value = float(epsilon) / (1 - self.cfg.alpha)
        attempts: list[tuple[str, str]] = []
        for solver in self.cfg.solvers:
            opts = dict(self.cfg.solver_opts.get(solver, {}))
            try:
                with warnings.catch_warnings():  # an inaccurate status is handled below
                    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                    self.problem.solve(solver=solver, **opts)
            except cp.error.SolverError as exc:
                attempts.append((solver, f"error: {exc}"))
                continue
            status = self.problem.status
            attempts.append((solver, str(status)))
            if status == cp.OPTIMAL:
                w = np.asarray(self.w.value, float)
                return DROResult(
                    weights=w,
                    worst_case_es=float(self.problem.value),
                    empirical_es=empirical_es(w, R, self.cfg.alpha),
                    var=float(self.t.value),
                    epsilon=float(epsilon),
                    solver=solver,
                    status=str(status),
                    attempts=tuple(attempts),
                )
            if status == cp.INFEASIBLE:
                raise DROInfeasibleError(self._diagnose())
            if status == cp.UNBOUNDED:
                raise DROUnboundedError(
                    "some portfolio gains in every scenario and the box/short limits do not bound it"
                )
        raise DROSolverError(attempts)


def solve_dro_es(
    scenarios: np.ndarray,
    cfg: DROConfig,
    regime: str,
    trans: bool,
    w_prev: np.ndarray | None = None,
) -> DROResult:
    """One-shot: compile, set ``eps`` from the regime/TRANS flag, and solve."""
    R = np.asarray(scenarios, float)
    if R.ndim != 2:
        raise InvalidParameterError("scenarios", R.shape, "2-D array (N scenarios, n assets)")
    prob = DROESProblem(R.shape[0], R.shape[1], cfg)
    return prob.solve(R, dro_epsilon(cfg, regime, trans), w_prev)


def asset_weights_table(result: DROResult, assets: Sequence[str]) -> dict[str, float]:
    """``{asset: weight}`` of a result."""
    if len(assets) != result.weights.size:
        raise InvalidParameterError("assets", list(assets), f"{result.weights.size} names")
    return {a: float(w) for a, w in zip(assets, result.weights, strict=True)}
