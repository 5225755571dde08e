"""Building blocks shared by the feature extractors: input and field checks, conv + BatchNorm.

Every extractor normalises with BatchNorm (momentum 0.9, epsilon 1e-5: PyTorch's defaults in
flax's convention). Its running statistics are model state in the ``"batch_stats"`` collection:
``model.apply(variables, x, train=True, mutable=["batch_stats"])`` returns the updated ones, which
the training step stores with the parameters. With ``train=True`` the batch's statistics
normalise it; under ``jax.jit`` with a batch-sharded input they are the global batch's (XLA
inserts the all-reduce; ``tests/models/test_sharding.py``); under ``shard_map``/``pmap`` pass
``bn_axis_name``. With ``train=False`` the running averages are used, so an image's output does
not depend on its batch. Design notes: docs/design.md, "recon_jax.models".
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = [
    "BN_EPSILON", "BN_MOMENTUM", "ConvBN", "check_images", "check_int", "check_int_tuple",
    "conv_init",
]

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# He (Kaiming) normal initialisation with fan-out, as torchvision initialises ResNet convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``; else a ``ValueError`` whose
    message starts with ``name`` and says what was expected."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_int_tuple(name: str, value: Any, minimum: int, *, allow_empty: bool = False
                    ) -> tuple[int, ...]:
    """``value`` (a list or tuple of integers ``>= minimum``) as a tuple; else ``ValueError``."""
    ok = isinstance(value, (list, tuple)) and (allow_empty or len(value) > 0) and all(
        not isinstance(v, bool) and isinstance(v, int) and v >= minimum for v in value)
    if not ok:
        what = "a" if allow_empty else "a non-empty"
        raise ValueError(f"{name} must be {what} list of integers >= {minimum}, got {value!r}")
    return tuple(value)


def check_images(images: Any, min_size: int, name: str = "images") -> jax.Array:
    """Checks a batch of RGB images and returns it as a floating jax array.

    Args:
      images: ``[B, H, W, 3]`` floating array (NHWC), already normalised by the data pipeline.
      min_size: smallest ``H`` and ``W`` the network accepts.
      name: the argument name used in error messages.

    Raises:
      ValueError: wrong rank, a channel count other than 3, a non-floating dtype, an empty batch,
        or ``H``/``W`` below ``min_size``.
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{name} must have shape [B, H, W, 3] (NHWC), got shape {tuple(images.shape)}"
        )
    if images.shape[-1] != 3:
        raise ValueError(
            f"{name} must have 3 (RGB) channels in the last axis, got shape {tuple(images.shape)}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating point array, got dtype {images.dtype}")
    if images.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(images.shape)}")
    height, width = images.shape[1:3]
    if height < min_size or width < min_size:
        raise ValueError(
            f"{name} must be at least {min_size}x{min_size} pixels for this network, got "
            f"shape {tuple(images.shape)} ({height}x{width})"
        )
    return images


class ConvBN(nn.Module):
    """``k x k`` convolution (no bias), BatchNorm, then optionally ReLU.

    Padding is ``(k - 1) // 2`` before and ``k - 1 - (k - 1) // 2`` after (torchvision's symmetric
    ``(k - 1) / 2`` for odd ``k``; ``(0, 1)`` for ``k = 2``), so a stride-``s`` layer maps ``H`` to
    ``ceil(H / s)`` for every ``k``.

    Attributes:
      features: output channels.
      kernel_size: square kernel side ``k``.
      strides: square stride.
      relu: apply ReLU after the normalisation.
      dtype: computation dtype (parameters stay float32).
      bn_axis_name: mapped axis over which BatchNorm averages statistics under
        ``shard_map``/``pmap``; ``None`` under ``jit`` (global batch statistics already).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    relu: bool = True
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``[B, H, W, C]`` -> ``[B, ceil(H / s), ceil(W / s), features]``."""
        lo = (self.kernel_size - 1) // 2
        pad = (lo, self.kernel_size - 1 - lo)
        x = nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            strides=(self.strides, self.strides),
            padding=(pad, pad),
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            dtype=self.dtype,
            axis_name=self.bn_axis_name,
            name="bn",
        )(x)
        return nn.relu(x) if self.relu else x
