"""One optax training loop with early stopping on a later-in-time validation split.

``fit_module`` minimizes ``loss(model, train_data, noise)`` with ``clip_by_global_norm -> adamw``.
Each step's minibatch indices and random draws, ``noise = loss.noise(rng, train_data)``, come from
a numpy Generator seeded by the caller: the compiled step is a deterministic function of
``(params, opt_state, data, noise)`` with no random-number generation inside (XLA compiles
threefry hashing slowly on CPU, and this keeps training bit-reproducible). Every ``eval_every`` steps it evaluates
``val_loss(model, val_data)`` (deterministic); the best model so far is kept, and training stops
after ``patience`` evaluations without an improvement of more than ``min_delta``. A rich
progress bar shows the stage, the running training loss and the best validation loss.

Losses are hashable callables (frozen dataclasses) and the data are arguments, so the compiled
step is cached per (loss, settings, shapes): training the same experiment twice in one process
compiles once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aurora_jax.errors import InvalidParameterError


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    learning_rate: float
    eval_every: int
    patience: int
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    min_delta: float = 0.0

    @classmethod
    def from_cfg(cls, c, stage: str = "<stage>") -> LoopSettings:
        s = cls(steps=int(c.steps), learning_rate=float(c.learning_rate), eval_every=int(c.eval_every),
                patience=int(c.patience), weight_decay=float(c.get("weight_decay", 0.0)),
                clip_norm=float(c.get("clip_norm", 1.0)), min_delta=float(c.get("min_delta", 0.0)))
        for name in ("steps", "eval_every", "patience"):
            if getattr(s, name) < 1:
                raise InvalidParameterError(f"train.{stage}.{name}", getattr(s, name), "an integer >= 1")
        if not s.learning_rate > 0:
            raise InvalidParameterError(f"train.{stage}.learning_rate", s.learning_rate, "> 0")
        return s

    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(self.clip_norm),
                           optax.adamw(self.learning_rate, weight_decay=self.weight_decay))


@dataclass
class FitResult:
    model: eqx.Module
    best_val: float
    best_step: int
    steps_run: int
    history: list[dict] = field(default_factory=list)   # step, train_loss, val_loss

    def summary(self) -> dict:
        return {"best_val": self.best_val, "best_step": self.best_step, "steps_run": self.steps_run,
                "evals": len(self.history)}


def stage_progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not enabled)


@functools.lru_cache(maxsize=64)
def _compiled(loss: Callable, val_loss: Callable, settings: LoopSettings):
    """``(optimizer, step, evaluate)``. A loss with ``parts`` (a tuple of losses with the same
    signature, summed) gets one compiled gradient per part: XLA compile time grows faster than
    the graph, so two halves compile much quicker than their sum."""
    opt = settings.optimizer()
    parts = tuple(getattr(loss, "parts", None) or (loss,))

    def _grad_fn(part):
        @eqx.filter_jit
        def grad(params, static, data, noise):
            return eqx.filter_value_and_grad(lambda p: part(eqx.combine(p, static), data, noise))(params)

        return grad

    grads_fns = tuple(_grad_fn(p) for p in parts)

    @eqx.filter_jit
    def update(params, opt_state, grads):
        updates, opt_state = opt.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state

    def step(params, static, opt_state, data, noise):
        value, grads = grads_fns[0](params, static, data, noise)
        for g in grads_fns[1:]:
            v, gr = g(params, static, data, noise)
            value = value + v
            grads = jax.tree_util.tree_map(jnp.add, grads, gr)
        params, opt_state = update(params, opt_state, grads)
        return params, opt_state, value

    @eqx.filter_jit
    def evaluate(params, static, data):
        return val_loss(eqx.combine(params, static), data)

    return opt, step, evaluate


def fit_module(model: eqx.Module, loss: Callable, val_loss: Callable, train_data, val_data,
               settings: LoopSettings, rng: np.random.Generator, *, name: str = "stage",
               progress: bool = True) -> FitResult:
    """Train the inexact-array leaves of ``model`` (module docstring). ``loss`` has a
    ``noise(rng, train_data)`` method; ``val_loss(model, val_data)`` is deterministic."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt, step, evaluate = _compiled(loss, val_loss, settings)
    opt_state = opt.init(params)
    best_params, best_val, best_step = params, float(evaluate(params, static, val_data)), 0
    history: list[dict] = [{"step": 0, "train_loss": None, "val_loss": best_val}]
    bad, running, n_run, steps_run = 0, 0.0, 0, 0
    with stage_progress(progress) as bar:
        task = bar.add_task(name, total=settings.steps, info=f"val {best_val:.4f}")
        for i in range(settings.steps):
            params, opt_state, value = step(params, static, opt_state, train_data, loss.noise(rng, train_data))
            running += float(value)
            n_run += 1
            steps_run = i + 1
            if steps_run % settings.eval_every and steps_run != settings.steps:
                bar.update(task, completed=steps_run)
                continue
            v = float(evaluate(params, static, val_data))
            train_avg = running / n_run
            running, n_run = 0.0, 0
            history.append({"step": steps_run, "train_loss": train_avg, "val_loss": v})
            if np.isfinite(v) and v < best_val - settings.min_delta:
                best_params, best_val, best_step, bad = params, v, steps_run, 0
            else:
                bad += 1
            bar.update(task, completed=steps_run,
                       info=f"train {train_avg:.4f}  val {v:.4f}  best {best_val:.4f}@{best_step}")
            if bad >= settings.patience or not np.isfinite(train_avg):
                break
        bar.update(task, completed=settings.steps)
    return FitResult(eqx.combine(best_params, static), best_val, best_step, steps_run, history)


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """The numpy Generator of one training stage (independent streams per stage name)."""
    return np.random.default_rng([int(seed), *stage.encode()])


def take(tree, idx):
    """Rows ``idx`` of every leaf of a stacked pytree."""
    return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), tree)


def num_rows(tree) -> int:
    return int(jax.tree_util.tree_leaves(tree)[0].shape[0])


def normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def uniform_open(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniforms in (0, 1) (never exactly 0: they enter logarithms)."""
    return np.maximum(rng.random(shape, dtype=np.float32), np.float32(1e-7))
