"""Cost matrices and matched costs shared by the EMD solvers (``emd``, ``exact_emd``).

``cost="euclidean"`` is ``||x_i - y_j||`` (paper eq. 5), ``"sqeuclidean"`` its square. Both are
computed by differences, never by the ``|x|^2 + |y|^2 - 2 x.y`` expansion, so near-coincident
points keep full float32 accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["COSTS", "cost_matrix", "matched_cost"]

COSTS = ("euclidean", "sqeuclidean")


def cost_matrix(x: jax.Array, y: jax.Array, cost: str) -> jax.Array:
    """``[..., n, m]`` costs between ``x`` ``[..., n, D]`` and ``y`` ``[..., m, D]``.

    Summed coordinate by coordinate (one fused pass each): ~5x faster on CPU than reducing a
    broadcast ``[..., n, m, D]`` array.
    """
    total = jnp.zeros(x.shape[:-1] + (y.shape[-2],), x.dtype)
    for k in range(x.shape[-1]):
        total = total + (x[..., :, k, None] - y[..., None, :, k]) ** 2
    return jnp.sqrt(total) if cost == "euclidean" else total


def matched_cost(x: jax.Array, y: jax.Array, perm: jax.Array, cost: str) -> jax.Array:
    """``[B]`` mean cost of the matching ``x[b, i] -> y[b, perm[b, i]]``.

    Shapes: ``x``, ``y`` ``[B, N, D]``, ``perm`` ``[B, N]`` int.

    Differentiable in ``x`` and ``y`` with the matching fixed (the envelope gradient of an
    optimal matching); the Euclidean cost has gradient 0, not NaN, at coincident points.
    """
    matched = jnp.take_along_axis(y, perm[..., None], axis=1)
    squared = jnp.sum((x - matched) ** 2, axis=-1)
    if cost == "euclidean":
        positive = squared > 0
        squared = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
    return jnp.mean(squared, axis=1)
