"""Boundary checks shared by the simulation modules: typed errors at construction time.

Each check inspects *concrete* values (Python numbers, numpy arrays, concrete JAX arrays) and
raises :class:`~aurora_jax.errors.InvalidParameterError` naming the field and its allowed range.
Traced values (inside ``jit``) cannot be inspected; they pass through unchecked, which is why
every public constructor validates before anything is traced.
"""

from __future__ import annotations

import numpy as np
from jax.core import Tracer

from aurora_jax.errors import InvalidParameterError


def _concrete(value) -> np.ndarray | None:
    if isinstance(value, Tracer):
        return None
    leaves = value
    try:
        return np.asarray(leaves, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _shown(arr: np.ndarray):
    return float(arr) if arr.ndim == 0 else arr.tolist() if arr.size <= 8 else f"array{arr.shape}"


def check_finite(field: str, value) -> None:
    arr = _concrete(value)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise InvalidParameterError(field, _shown(arr), "finite values (no NaN or inf)")


def check_open_interval(field: str, value, lo: float, hi: float) -> None:
    """``lo < value < hi`` elementwise."""
    check_finite(field, value)
    arr = _concrete(value)
    if arr is not None and not np.all((arr > lo) & (arr < hi)):
        raise InvalidParameterError(field, _shown(arr), f"{lo} < {field} < {hi}")


def check_positive(field: str, value) -> None:
    """``value > 0`` elementwise."""
    check_finite(field, value)
    arr = _concrete(value)
    if arr is not None and not np.all(arr > 0):
        raise InvalidParameterError(field, _shown(arr), f"{field} > 0")


def check_nonnegative(field: str, value) -> None:
    """``value >= 0`` elementwise."""
    check_finite(field, value)
    arr = _concrete(value)
    if arr is not None and not np.all(arr >= 0):
        raise InvalidParameterError(field, _shown(arr), f"{field} >= 0")


def check_positive_int(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(field, value, "an integer >= 1")
    return int(value)


def check_closed_interval(field: str, value, lo: float, hi: float) -> None:
    """``lo <= value <= hi`` elementwise."""
    check_finite(field, value)
    arr = _concrete(value)
    if arr is not None and not np.all((arr >= lo) & (arr <= hi)):
        raise InvalidParameterError(field, _shown(arr), f"{lo} <= {field} <= {hi}")
