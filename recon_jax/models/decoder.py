"""The point-cloud decoder (Kim & Lee 2023, section 2.4, Fig. 7).

Fully connected: ``latent_dim -> 512 -> 1024 -> 3 * num_points`` (100 -> 512 -> 1024 -> 6144 in
the paper), LeakyReLU after each hidden layer and no activation on the output, which is reshaped
to ``[B, num_points, 3]`` (x, y, z per point, point ``i`` from outputs ``3i .. 3i + 2``).

The paper names LeakyReLU without its slope. The default here is 0.01, the default of both
PyTorch's ``nn.LeakyReLU`` and ``flax.linen.leaky_relu``, i.e. what an implementation that does
not set it uses; it is a field (``negative_slope``) for those who prefer 0.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["PointDecoder"]


class PointDecoder(nn.Module):
    """MLP from a latent vector to a point cloud.

    Attributes:
      num_points: points in the output cloud (2048 in the paper).
      hidden: widths of the hidden layers (``(512, 1024)`` in the paper).
      negative_slope: LeakyReLU slope for negative inputs.
      dtype: computation dtype; the points are returned in float32.
    """

    num_points: int = 2048
    hidden: Sequence[int] = (512, 1024)
    negative_slope: float = 0.01
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """``[B, latent_dim]`` -> ``[B, num_points, 3]`` float32 points."""
        if z.ndim != 2:
            raise ValueError(f"z must have shape [B, latent_dim], got shape {tuple(z.shape)}")
        x = z
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, dtype=self.dtype, name=f"hidden{i}")(x)
            x = nn.leaky_relu(x, negative_slope=self.negative_slope)
        x = nn.Dense(3 * self.num_points, dtype=self.dtype, name="out")(x)
        return x.reshape(x.shape[0], self.num_points, 3).astype(jnp.float32)
