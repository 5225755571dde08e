"""The paper's efficient feature extractor (Kim & Lee 2023, section 2.2.2, Figs. 4-5).

A plain CNN that keeps the full input resolution through the first half of its convolutions
(no 7x7/2 stem, no max-pool), is shallow and narrow, carries its initial features (the stem's
output) straight to the last convolution (one long skip, average-pooled to the last grid and
concatenated), and ends in a 1000-d feature (global mean, Dense). Each convolution is conv (no
bias), BatchNorm, ReLU (:class:`recon_jax.models.layers.ConvBN`). Input ``[B, H, W, 3]`` with
``H, W >= min_size`` (the total stride); output ``[B, feature_dim]`` in the compute dtype.

:class:`EfficientExtractor`'s defaults are the paper's network (``"efficient"``: 8 convolutions,
4 of them at full resolution, 0.72x ResNet-34's multiply-adds at every input size);
:data:`EFFICIENT_SMALL` holds the fields of the lighter CPU variant and ablation
(``"efficient_small"``: 2 of 11 convolutions at full resolution, 0.19x). Widths, stage tables and
measurements: docs/design.md, "recon_jax.models".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recon_jax.models.layers import ConvBN, check_images, check_int, check_int_tuple

__all__ = ["EFFICIENT_SMALL", "EfficientExtractor"]

#: Fields of the ``efficient_small`` variant (the rest are :class:`EfficientExtractor`'s).
EFFICIENT_SMALL: dict[str, Any] = {
    "stem_features": 8,
    "full_res_layers": 1,
    "stage_features": (32, 64, 128, 256),
    "stage_depth": 2,
    "down_kernel": 2,
    "fuse_kernel": 3,
}


class EfficientExtractor(nn.Module):
    """Full-resolution, narrow, shallow CNN with one long skip, ending in a ``feature_dim`` vector.

    Attributes:
      stem_features: channels of the full-resolution layers; the stem's output is the "initial
        features" that the long skip carries.
      full_res_layers: 3x3 conv + BN + ReLU layers at full resolution after the stem.
      stage_features: channels of the downsampling stages; each stage is a
        ``down_kernel x down_kernel`` stride-2 conv + BN + ReLU followed by ``stage_depth - 1``
        3x3 conv + BN + ReLU layers.
      stage_depth: convolutions per downsampling stage (at least 1).
      down_kernel: kernel of each stage's stride-2 convolution (3: ResNet-like; 2: patchify).
      fuse_kernel: kernel of the last convolution, which reads the last stage and the pooled
        initial features together; its width is ``stage_features[-1]``.
      feature_dim: size of the output feature (1000 in the paper).
      dtype: computation dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters are float32.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    stem_features: int = 32
    full_res_layers: int = 3
    stage_features: Sequence[int] = (64, 128, 256)
    stage_depth: int = 1
    down_kernel: int = 3
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

    def check_fields(self) -> None:
        """``ValueError`` (its message starts with the field's name) for a bad field."""
        check_int("stem_features", self.stem_features, 1)
        check_int("full_res_layers", self.full_res_layers, 0)
        check_int_tuple("stage_features", self.stage_features, 1)
        check_int("stage_depth", self.stage_depth, 1)
        check_int("down_kernel", self.down_kernel, 2)
        check_int("fuse_kernel", self.fuse_kernel, 1)
        check_int("feature_dim", self.feature_dim, 1)

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """``[B, H, W, 3]`` images (``H, W >= min_size``) -> ``[B, feature_dim]``.

        ``train`` selects batch statistics (and their update) over running averages in
        BatchNorm.
        """
        self.check_fields()
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
