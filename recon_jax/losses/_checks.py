"""Argument checks and the shared opening of the losses (shapes are static under ``jit``).

Errors are ``ValueError`` naming the argument, the shape it had and what was expected. Padding
follows PyTorch3D: point ``i`` of cloud ``b`` is valid when ``i < lengths[b]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_cloud",
    "check_pair",
    "check_lengths",
    "check_choice",
    "check_weights",
    "PreparedPair",
    "check_inputs",
    "mask_pair",
    "prepare_pair",
    "resolve_batch_mode",
    "map_pairs",
    "reduce_batch",
]

BATCH_MODES = ("auto", "map", "vmap")
BATCH_REDUCTIONS = ("mean", "sum", None)


def check_cloud(name: str, x) -> jax.Array:
    """``x`` must be a floating ``[B, N, D]`` array; returns it as a jax array."""
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape [B, N, D], got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating point array, got dtype {x.dtype}")
    return x


def check_pair(x, y, x_name: str = "x", y_name: str = "y") -> tuple[jax.Array, jax.Array]:
    """Two clouds ``[B, N, D]`` and ``[B, M, D]`` with equal batch size and dimension."""
    x, y = check_cloud(x_name, x), check_cloud(y_name, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same batch size B, got {x_name} shape "
            f"{tuple(x.shape)} and {y_name} shape {tuple(y.shape)}"
        )
    if x.shape[2] != y.shape[2]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same point dimension D, got {x_name} shape "
            f"{tuple(x.shape)} and {y_name} shape {tuple(y.shape)}"
        )
    return x, y


def check_lengths(name: str, lengths, batch: int, num_points: int) -> jax.Array:
    """``lengths`` must be an integer ``[B]`` array with values in ``[0, num_points]``.

    ``None`` means every cloud is full (all ``num_points`` valid). Values are range-checked when
    they are concrete (not traced under ``jit``).
    """
    if lengths is None:
        return jnp.full((batch,), num_points, dtype=jnp.int32)
    arr = jnp.asarray(lengths)
    if arr.shape != (batch,):
        raise ValueError(f"{name} must have shape [B] = ({batch},), got shape {tuple(arr.shape)}")
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer):
        values = np.asarray(arr)
        if values.size and (values.min() < 0 or values.max() > num_points):
            raise ValueError(
                f"{name} values must lie in [0, {num_points}] (the number of points), "
                f"got min {values.min()} and max {values.max()}"
            )
    return arr.astype(jnp.int32)


def check_choice(name: str, value, choices: tuple) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_weights(weights, batch: int) -> jax.Array | None:
    """``weights``: ``None`` or a floating ``[B]`` array, non-negative (checked when concrete)."""
    if weights is None:
        return None
    arr = jnp.asarray(weights)
    if arr.shape != (batch,):
        raise ValueError(f"weights must have shape [B] = ({batch},), got shape {tuple(arr.shape)}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(f"weights must be a floating point array, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer) and np.any(np.asarray(arr) < 0):
        raise ValueError(f"weights must be >= 0, got min {np.asarray(arr).min()}")
    return arr


class PreparedPair(NamedTuple):
    """Two checked clouds, padding and non-finite points zeroed, in one dtype (>= float32)."""

    x: jax.Array  #: ``[B, N, D]``; 0 at padding and at non-finite valid points
    y: jax.Array  #: ``[B, M, D]``
    x_valid: jax.Array  #: ``[B, N]`` bool, ``i < x_lengths[b]``
    y_valid: jax.Array  #: ``[B, M]`` bool
    x_lengths: jax.Array  #: ``[B]`` int32
    y_lengths: jax.Array  #: ``[B]`` int32
    x_finite: jax.Array  #: ``[B, N]`` bool, valid and every coordinate finite
    y_finite: jax.Array  #: ``[B, M]`` bool
    nonfinite: jax.Array  #: ``[B]`` bool: the pair has a valid point with a NaN or Inf

    @property
    def dtype(self):
        return self.x.dtype


def check_inputs(x, y, x_lengths, y_lengths) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The argument checks of every pair loss: ``(x, y, x_lengths, y_lengths)`` as arrays.

    Clouds ``[B, N, D]``, ``[B, M, D]`` (floating, same ``B`` and ``D``); lengths ``[B]`` int32
    (``None``: full). Run these outside ``jit`` so that concrete lengths are range-checked.
    """
    x, y = check_pair(x, y)
    batch = x.shape[0]
    x_lengths = check_lengths("x_lengths", x_lengths, batch, x.shape[1])
    y_lengths = check_lengths("y_lengths", y_lengths, batch, y.shape[1])
    return x, y, x_lengths, y_lengths


def mask_pair(x, y, x_lengths, y_lengths) -> PreparedPair:
    """Mask checked inputs (:func:`check_inputs`): pure ``jax.numpy``, safe under ``jit``.

    Padding and non-finite valid points are replaced by zeros, so their content never reaches
    a search or a gradient; callers make a ``nonfinite`` pair's loss NaN.
    """
    n, m = x.shape[1], y.shape[1]
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    x_valid = jnp.arange(n)[None, :] < x_lengths[:, None]
    y_valid = jnp.arange(m)[None, :] < y_lengths[:, None]
    x_finite = x_valid & jnp.all(jnp.isfinite(x), axis=-1)
    y_finite = y_valid & jnp.all(jnp.isfinite(y), axis=-1)
    nonfinite = jnp.any(x_valid & ~x_finite, axis=1) | jnp.any(y_valid & ~y_finite, axis=1)
    x = jnp.where(x_finite[..., None], x.astype(dtype), 0)
    y = jnp.where(y_finite[..., None], y.astype(dtype), 0)
    return PreparedPair(x, y, x_valid, y_valid, x_lengths, y_lengths, x_finite, y_finite, nonfinite)


def prepare_pair(x, y, x_lengths, y_lengths) -> PreparedPair:
    """The opening of every pair loss: :func:`check_inputs` then :func:`mask_pair`."""
    return mask_pair(*check_inputs(x, y, x_lengths, y_lengths))


def resolve_batch_mode(batch_mode: str) -> str:
    """``"map"`` or ``"vmap"``; ``"auto"``: ``"map"`` on the CPU backend, else ``"vmap"``."""
    check_choice("batch_mode", batch_mode, BATCH_MODES)
    if batch_mode == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return batch_mode


def map_pairs(fn: Callable, args: tuple, batch_mode: str):
    """``fn(*pair_args)`` over the leading axis of ``args``: ``lax.map`` or ``vmap``."""
    if batch_mode == "map":
        return jax.lax.map(lambda a: fn(*a), args)
    return jax.vmap(fn)(*args)


def reduce_batch(values: jax.Array, batch_reduction: str | None, weights=None) -> jax.Array:
    """Reduce ``[B, ...]`` over the batch: "mean", "sum" or ``None`` (no reduction).

    With ``weights`` ``[B]`` (PyTorch3D semantics) the values are weighted first and "mean"
    divides by ``sum(weights)``; a zero denominator (``B = 0`` or all weights 0) gives 0,
    never NaN (unless a value is NaN).
    """
    if weights is not None:
        weights = weights.astype(values.dtype).reshape((-1,) + (1,) * (values.ndim - 1))
        values = values * weights
    if batch_reduction is None:
        return values
    total = jnp.sum(values, axis=0)
    if batch_reduction == "sum":
        return total
    count = values.shape[0] if weights is None else jnp.sum(weights)
    count = jnp.asarray(count, values.dtype)
    return total / jnp.where(count > 0, count, 1)
