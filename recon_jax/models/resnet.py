"""ResNet-18 and ResNet-34 feature extractors: the paper's "existing techniques" (section 2.2.1).

He et al. (2016) with BasicBlocks, laid out exactly as torchvision's ``resnet18``/``resnet34``
(Flax, NHWC) so that parameter counts and FLOPs can be compared with the literature:

========  =====================================  ===================  =========================
stage     layers                                 output at 128x128    notes
========  =====================================  ===================  =========================
stem      7x7/2 conv 64, BN, ReLU                64 x 64 x 64         padding 3
pool      3x3/2 max-pool                         32 x 32 x 64         padding 1
layer1    n1 BasicBlocks, 64 channels            32 x 32 x 64
layer2    n2 BasicBlocks, 128 channels, /2       16 x 16 x 128        1x1/2 conv + BN shortcut
layer3    n3 BasicBlocks, 256 channels, /2       8 x 8 x 256          1x1/2 conv + BN shortcut
layer4    n4 BasicBlocks, 512 channels, /2       4 x 4 x 512          1x1/2 conv + BN shortcut
head      global average pool, Dense 512->1000   1000
========  =====================================  ===================  =========================

``(n1, n2, n3, n4)`` is ``(2, 2, 2, 2)`` for ResNet-18 and ``(3, 4, 6, 3)`` for ResNet-34. A
BasicBlock is ``3x3 conv, BN, ReLU, 3x3 conv, BN`` plus the shortcut, then ReLU. Convolutions have
no bias. The 1000-d output has no activation (it is torchvision's ``fc``), and it is the feature
the latent head reads (paper section 2.3).

Parameters: 11,689,512 (ResNet-18) and 21,797,672 (ResNet-34) trainable, the same as
torchvision's; BatchNorm running statistics are extra state (``"batch_stats"``), see
:mod:`recon_jax.models.layers`. At 128x128, XLA's cost analysis gives 1.041 (ResNet-18) and
2.080 (ResNet-34) GFLOPs per image (multiply-add = 2, BatchNorm and ReLU included, taps on the
padding not counted; at 224x224 the usual tables say 1.8 and 3.6 G multiply-adds). ``recon-jax
flops`` (:mod:`recon_jax.models.flops`) measures them with memory and step time.

Images must be at least 32x32 (the total stride), so that layer4 sees at least one input pixel
per output pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recon_jax.models.layers import ConvBN, check_images

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

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """``[B, H, W, 3]`` images (``H, W >= 32``) -> ``[B, feature_dim]`` features.

        ``train`` selects batch statistics (and their update) over running averages in
        BatchNorm.
        """
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
