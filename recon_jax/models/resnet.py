"""ResNet-18 and ResNet-34 feature extractors: the paper's "existing techniques" (section 2.2.1).

He et al. (2016) with BasicBlocks, laid out exactly as torchvision's ``resnet18``/``resnet34``
(Flax, NHWC): 7x7/2 stem with 64 channels, 3x3/2 max-pool, four stages of BasicBlocks (64, 128,
256, 512 channels; :data:`RESNET18_STAGES` ``(2, 2, 2, 2)`` or :data:`RESNET34_STAGES`
``(3, 4, 6, 3)`` blocks; a 1x1/2 conv + BN shortcut where the shape changes), global mean and a
Dense 512 -> 1000 with no activation (torchvision's ``fc``), the feature the latent head reads.
Trainable parameters 11,689,512 and 21,797,672, the same as torchvision's. Input
``[B, H, W, 3]`` with ``H, W >= 32`` (the total stride); output ``[B, feature_dim]``.
Stage table and measurements: docs/design.md, "recon_jax.models".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recon_jax.models.layers import ConvBN, check_images, check_int, check_int_tuple

__all__ = ["RESNET18_STAGES", "RESNET34_STAGES", "BasicBlock", "ResNetExtractor"]

RESNET18_STAGES = (2, 2, 2, 2)
RESNET34_STAGES = (3, 4, 6, 3)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1 conv + BN) shortcut, then ReLU.

    Attributes:
      features: output channels.
      strides: stride of the first convolution and of the projection shortcut.
      dtype: computation dtype.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``[B, H, W, C]`` -> ``[B, ceil(H / strides), ceil(W / strides), features]``."""
        kw = dict(dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        y = ConvBN(self.features, 3, self.strides, name="conv_bn1", **kw)(x, train=train)
        y = ConvBN(self.features, 3, 1, relu=False, name="conv_bn2", **kw)(y, train=train)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = ConvBN(self.features, 1, self.strides, relu=False, name="shortcut", **kw)(
                x, train=train
            )
        return nn.relu(x + y)


class ResNetExtractor(nn.Module):
    """ResNet image encoder ending in a ``feature_dim`` vector.

    Attributes:
      stage_sizes: BasicBlocks per stage, e.g. :data:`RESNET18_STAGES`.
      num_filters: channels of the stem and of the first stage; doubled at each later stage.
      feature_dim: size of the output feature (1000 in the paper).
      dtype: computation dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters are float32.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    stage_sizes: Sequence[int] = RESNET18_STAGES
    num_filters: int = 64
    feature_dim: int = 1000
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @property
    def min_size(self) -> int:
        """Smallest image side: the total stride (2 in the stem, 2 in the pool, 2 per stage)."""
        return 4 * 2 ** (len(self.stage_sizes) - 1)

    def check_fields(self) -> None:
        """``ValueError`` (its message starts with the field's name) for a bad field."""
        check_int_tuple("stage_sizes", self.stage_sizes, 1)
        check_int("num_filters", self.num_filters, 1)
        check_int("feature_dim", self.feature_dim, 1)

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """``[B, H, W, 3]`` images (``H, W >= 32``) -> ``[B, feature_dim]`` features.

        ``train`` selects batch statistics (and their update) over running averages in
        BatchNorm.
        """
        self.check_fields()
        x = check_images(images, self.min_size).astype(self.dtype)
        kw = dict(dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        x = ConvBN(self.num_filters, 7, 2, name="stem", **kw)(x, train=train)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                strides = 2 if i > 0 and j == 0 else 1
                x = BasicBlock(
                    self.num_filters * 2**i, strides, name=f"layer{i + 1}_block{j}", **kw
                )(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.feature_dim, dtype=self.dtype, name="fc")(x)
