"""The paper's efficient feature extractor (Kim & Lee 2023, section 2.2.2, Figs. 4-5).

What the paper asks for, and how this module does it:

* **No early downsizing**: no 7x7/2 stem and no max-pool. A 3x3 stem and one more 3x3 layer run
  at the full input resolution (128x128), where ResNet is already at 32x32 after its stem and
  pool (section 2.2.1, Fig. 3).
* **Few channels, shallow**: 8 channels at full resolution, then four stages of two convolutions
  (32, 64, 128, 256 channels): 11 convolutions in all, against 20 (ResNet-18) and 36 (ResNet-34).
* **Lossless first downsampling**: each stage starts with a 2x2 stride-2 convolution (a
  "patchify" layer, as in ConvNeXt). The first one maps each 2x2x8 = 32 input values to 32
  channels, so it can keep every full-resolution value; ResNet's 7x7/2 conv + 3x3/2 max-pool
  discards three quarters of its 64-channel map.
* **One long skip** (Fig. 5): the stem's features (the "initial features") are average-pooled to
  the last stage's grid and concatenated to it, and the last convolution ("fuse") reads both, so
  they reach the last layer through no intermediate layer (ResNet carries them through many
  residual blocks instead).
* **1000-d output**: global average pooling and a Dense layer, no activation (as ResNet's fc).

Stages at 128x128 (one image, NHWC). Every conv is conv (no bias), BatchNorm, ReLU, with padding
``(k - 1) // 2`` before and ``k - 1 - (k - 1) // 2`` after. Parameters include BatchNorm's scale
and bias (its running statistics are extra state, 2 per channel). FLOPs are XLA's cost analysis
of each layer's evaluation forward pass (multiply-add = 2; BatchNorm and ReLU included; taps that
read padding not counted), measured with :func:`recon_jax.models.flops.layer_table`:

============  ===========================  ===============  ===========  ============
layer         operation                    output           params       MFLOPs
============  ===========================  ===============  ===========  ============
stem          3x3 conv 3->8                128 x 128 x 8            232           7.5
full_res0     3x3 conv 8->8                128 x 128 x 8            592          19.2
stage1_conv0  2x2/2 conv 8->32             64 x 64 x 32           1,088           8.9
stage1_conv1  3x3 conv 32->32              64 x 64 x 32           9,280          74.5
stage2_conv0  2x2/2 conv 32->64            32 x 32 x 64           8,320          17.0
stage2_conv1  3x3 conv 64->64              32 x 32 x 64          36,992          72.6
stage3_conv0  2x2/2 conv 64->128           16 x 16 x 128         33,024          16.9
stage3_conv1  3x3 conv 128->128            16 x 16 x 128        147,712          69.5
stage4_conv0  2x2/2 conv 128->256          8 x 8 x 256          131,584          16.8
stage4_conv1  3x3 conv 256->256            8 x 8 x 256          590,336          63.5
skip          16x16/16 avg-pool of stem,   8 x 8 x 264                0           0.1
              concatenated to stage4
fuse          3x3 conv 264->256            8 x 8 x 256          608,768          65.5
fc            global mean, Dense 256->1000 1000                 257,000           0.5
total                                                         1,824,928         432.7
============  ===========================  ===============  ===========  ============

So 0.433 GFLOPs per 128x128 image, within the paper's 2.9 GFLOPs, against 1.041 for ResNet-18
and 2.080 for ResNet-34 measured the same way (``recon-jax flops``; its section of
``docs/benchmarks.md`` has the current figures, including memory and step time).

Why these widths (measured on this project's 2-core CPU while it was busy, so ratios only): a
first version had 16 channels at full resolution (0.51 GFLOPs). Its training step at batch 32
(full model, Chamfer loss, Adam) needed 551 MiB against ResNet-18's 642 MiB (XLA memory
analysis), and its extractor's training step took 0.86x ResNet-18's on CPU: narrow
full-resolution layers are memory-bound there. With 8 channels the full step needs 432 MiB
(0.67x ResNet-18's; the paper claims about 0.73x) and took 1.8 s against ResNet-18's 2.2 s
(median of 5, interleaved). The 2x2/2 downsampling convolutions have 4/9 of the taps of 3x3/2
ones, and their forward + backward pass ran 1.6-1.8x faster on XLA:CPU.

Any image of at least 16x16 (the total stride) works: a stride-2 layer maps ``n`` to
``ceil(n / 2)`` and the skip's 'SAME' pooling (padding not counted) gives the same grid.
Normalisation and its state: see :mod:`recon_jax.models.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recon_jax.models.layers import ConvBN, check_images

__all__ = ["EfficientExtractor"]


class EfficientExtractor(nn.Module):
    """Full-resolution, narrow, shallow CNN with one long skip, ending in a ``feature_dim`` vector.

    The defaults are the design in the module docstring.

    Attributes:
      stem_features: channels of the full-resolution layers; the stem's output is the "initial
        features" that the long skip carries.
      full_res_layers: 3x3 conv + BN + ReLU layers at full resolution after the stem.
      stage_features: channels of the downsampling stages; each stage is a
        ``down_kernel x down_kernel`` stride-2 conv + BN + ReLU followed by ``stage_depth - 1``
        3x3 conv + BN + ReLU layers.
      stage_depth: convolutions per downsampling stage (at least 1).
      down_kernel: kernel of each stage's stride-2 convolution (2: patchify; 3: ResNet-like).
      fuse_kernel: kernel of the last convolution, which reads the last stage and the pooled
        initial features together; its width is ``stage_features[-1]``.
      feature_dim: size of the output feature (1000 in the paper).
      dtype: computation dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters are float32.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    stem_features: int = 8
    full_res_layers: int = 1
    stage_features: Sequence[int] = (32, 64, 128, 256)
    stage_depth: int = 2
    down_kernel: int = 2
    fuse_kernel: int = 3
    feature_dim: int = 1000
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @property
    def total_stride(self) -> int:
        """Downsampling factor from the input to the last stage."""
        return 2 ** len(self.stage_features)

    @property
    def min_size(self) -> int:
        """Smallest image side: the total stride, so the last stage sees whole input pixels."""
        return self.total_stride

    def _check_fields(self) -> None:
        if not self.stage_features:
            raise ValueError(f"stage_features must not be empty, got {self.stage_features!r}")
        if self.stage_depth < 1 or self.full_res_layers < 0:
            raise ValueError(
                f"stage_depth must be >= 1 and full_res_layers >= 0, got stage_depth="
                f"{self.stage_depth}, full_res_layers={self.full_res_layers}"
            )
        if self.down_kernel < 2:
            raise ValueError(f"down_kernel must be >= 2, got {self.down_kernel}")

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """``[B, H, W, 3]`` images (``H, W >= min_size``, 16 by default) -> ``[B, feature_dim]``.

        ``train`` selects batch statistics (and their update) over running averages in
        BatchNorm.
        """
        self._check_fields()
        x = check_images(images, self.min_size).astype(self.dtype)
        kw = dict(dtype=self.dtype, bn_axis_name=self.bn_axis_name)
        stem = ConvBN(self.stem_features, 3, 1, name="stem", **kw)(x, train=train)
        x = stem
        for i in range(self.full_res_layers):
            x = ConvBN(self.stem_features, 3, 1, name=f"full_res{i}", **kw)(x, train=train)
        for i, features in enumerate(self.stage_features):
            for j in range(self.stage_depth):
                k, strides = (self.down_kernel, 2) if j == 0 else (3, 1)
                x = ConvBN(features, k, strides, name=f"stage{i + 1}_conv{j}", **kw)(
                    x, train=train
                )
        # The long skip: the stem's features average-pooled to the last stage's grid. Each
        # stride-2 layer maps n to ceil(n / 2), so that grid is ceil(H / s) x ceil(W / s), which
        # is also what 'SAME' pooling with window = stride = s gives (padding not averaged in).
        s = self.total_stride
        skip = nn.avg_pool(stem, (s, s), strides=(s, s), padding="SAME", count_include_pad=False)
        x = jnp.concatenate([x, skip], axis=-1)
        x = ConvBN(self.stage_features[-1], self.fuse_kernel, 1, name="fuse", **kw)(
            x, train=train
        )
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.feature_dim, dtype=self.dtype, name="fc")(x)
