"""Argument checks shared by the losses: shapes are static under ``jit``, so these always run.

Errors are ``ValueError`` naming the argument, the shape it had and what was expected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_cloud", "check_pair", "check_lengths", "check_choice"]


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
