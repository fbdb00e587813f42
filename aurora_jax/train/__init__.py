"""Training of the forecast engine: stages, orbax checkpoints, and the model registry.

Entry points: :func:`aurora_jax.train.pipeline.train_experiment` (``just train``) and
:func:`aurora_jax.train.registry.load_latest` / :func:`~aurora_jax.train.registry.run_list`
(``just models``). Imported lazily: ``from aurora_jax.train import train_experiment, load_latest``.
"""

from __future__ import annotations

_EXPORTS = {
    "train_experiment": "aurora_jax.train.pipeline",
    "engine_config": "aurora_jax.train.pipeline",
    "load_latest": "aurora_jax.train.registry",
    "load_version": "aurora_jax.train.registry",
    "list_entries": "aurora_jax.train.registry",
    "RegistryEntry": "aurora_jax.train.registry",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
