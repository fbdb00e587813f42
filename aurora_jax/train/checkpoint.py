"""Orbax checkpoints of equinox pytrees.

A module is split into its array leaves (saved by orbax's ``StandardCheckpointer``, which writes
to a temporary folder and renames it when complete) and its *skeleton*: the same pytree with
every array replaced by a ``jax.ShapeDtypeStruct``, pickled next to it (``skeleton.pkl``, written
atomically). Restoring reads the skeleton, asks orbax for arrays of exactly those shapes and
dtypes, and unflattens, so the module comes back with its static fields intact.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import equinox as eqx
import jax
import orbax.checkpoint as ocp

from aurora_jax.atomic import atomic_write_bytes
from aurora_jax.errors import ModelUnavailableError

ARRAYS = "arrays"
SKELETON = "skeleton.pkl"


def _skeleton(tree):
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if eqx.is_array(x) else x, tree)


def save_pytree(path: str | Path, tree) -> Path:
    """Save ``tree`` (an eqx.Module or any pytree) under the folder ``path`` (replaced if present)."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    arrays = [x for x in jax.tree_util.tree_leaves(tree) if eqx.is_array(x)]
    target = path / ARRAYS
    if target.exists():
        shutil.rmtree(target)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(target, {"leaves": arrays})
    ckpt.wait_until_finished()
    atomic_write_bytes(path / SKELETON, pickle.dumps(_skeleton(tree)))
    return path


def restore_pytree(path: str | Path):
    """Inverse of :func:`save_pytree`."""
    path = Path(path).resolve()
    if not (path / SKELETON).exists() or not (path / ARRAYS).exists():
        raise ModelUnavailableError(f"no checkpoint at {path} (missing {SKELETON} or {ARRAYS}/)")
    skeleton = pickle.loads((path / SKELETON).read_bytes())
    leaves, treedef = jax.tree_util.tree_flatten(skeleton)
    specs = [x for x in leaves if isinstance(x, jax.ShapeDtypeStruct)]
    restored = ocp.StandardCheckpointer().restore(path / ARRAYS, {"leaves": specs})["leaves"]
    it = iter(restored)
    full = [next(it) if isinstance(x, jax.ShapeDtypeStruct) else x for x in leaves]
    return jax.tree_util.tree_unflatten(treedef, full)
