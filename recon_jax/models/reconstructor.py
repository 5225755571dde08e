"""The whole network: image -> feature extractor -> latent head -> decoder -> point cloud.

Kim & Lee (2023), Fig. 1: an RGB image ``[B, H, W, 3]`` goes through a feature extractor to a
``[B, 1000]`` feature (section 2.2), two Dense layers give ``mu`` and ``logvar`` and the
reparameterised latent ``z`` ``[B, 100]`` (section 2.3), and an MLP decodes ``z`` into
``[B, 2048, 3]`` points (section 2.4).

Extractors are chosen by name from :data:`EXTRACTORS`, a plain dict from name to a module
constructor (``"efficient"``, ``"resnet18"``, ``"resnet34"``)::

    model = make_model("efficient")
    variables = init_variables(model, jax.random.key(0), image_size=128)
    # training: batch statistics, a sampled z, and updated BatchNorm statistics
    out, updates = model.apply(variables, images, train=True, rngs={"latent": key},
                               mutable=["batch_stats"])
    # evaluation: running statistics and z = mu
    out = model.apply(variables, images)
    out.points  # [B, 2048, 3] float32

``variables`` holds ``"params"`` and ``"batch_stats"`` (BatchNorm running statistics: model state
to carry in the train state and checkpoints; see :mod:`recon_jax.models.layers` for how they are
averaged across devices).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from recon_jax.models.decoder import PointDecoder
from recon_jax.models.efficient import EfficientExtractor
from recon_jax.models.latent import LATENT_RNG, LatentHead
from recon_jax.models.resnet import RESNET18_STAGES, RESNET34_STAGES, ResNetExtractor

__all__ = [
    "EXTRACTORS",
    "Reconstructor",
    "ReconstructorOutput",
    "init_variables",
    "make_extractor",
    "make_model",
]

# name -> constructor taking (feature_dim=..., dtype=..., bn_axis_name=...).
EXTRACTORS: dict[str, Callable[..., nn.Module]] = {
    "efficient": EfficientExtractor,
    "resnet18": functools.partial(ResNetExtractor, stage_sizes=RESNET18_STAGES),
    "resnet34": functools.partial(ResNetExtractor, stage_sizes=RESNET34_STAGES),
}


def _check_encoder(name: str) -> None:
    if name not in EXTRACTORS:
        raise ValueError(f"encoder must be one of {tuple(EXTRACTORS)}, got {name!r}")


def make_extractor(
    name: str,
    *,
    feature_dim: int = 1000,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
) -> nn.Module:
    """The feature extractor called ``name`` (a key of :data:`EXTRACTORS`).

    Its ``__call__(images [B, H, W, 3], *, train) -> [B, feature_dim]``.
    """
    _check_encoder(name)
    return EXTRACTORS[name](feature_dim=feature_dim, dtype=dtype, bn_axis_name=bn_axis_name)


@flax.struct.dataclass
class ReconstructorOutput:
    """What :class:`Reconstructor` returns (a pytree, so it passes through ``jit``).

    Attributes:
      points: ``[B, num_points, 3]`` predicted point cloud, float32.
      mu: ``[B, latent_dim]`` mean of the latent Gaussian, float32.
      logvar: ``[B, latent_dim]`` log-variance (``s`` of the paper's eq. 3), float32.
      z: ``[B, latent_dim]`` the latent fed to the decoder (``mu`` when deterministic).
    """

    points: jax.Array
    mu: jax.Array
    logvar: jax.Array
    z: jax.Array


class Reconstructor(nn.Module):
    """Single-image point-cloud reconstructor (Kim & Lee 2023).

    Attributes:
      encoder: extractor name, a key of :data:`EXTRACTORS`.
      num_points: points in the output cloud.
      latent_dim: size of ``z``.
      feature_dim: size of the extractor's output feature.
      decoder_hidden: hidden widths of the decoder.
      negative_slope: LeakyReLU slope of the decoder.
      dtype: computation dtype (``jnp.float32`` default, ``jnp.bfloat16`` for mixed precision);
        parameters are float32 and every output is float32.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    encoder: str = "efficient"
    num_points: int = 2048
    latent_dim: int = 100
    feature_dim: int = 1000
    decoder_hidden: Sequence[int] = (512, 1024)
    negative_slope: float = 0.01
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def setup(self) -> None:
        _check_encoder(self.encoder)
        self.extractor = make_extractor(
            self.encoder, feature_dim=self.feature_dim, dtype=self.dtype,
            bn_axis_name=self.bn_axis_name,
        )
        self.latent = LatentHead(self.latent_dim, dtype=self.dtype)
        self.decoder = PointDecoder(
            self.num_points, self.decoder_hidden, self.negative_slope, dtype=self.dtype
        )

    def __call__(
        self, images: jax.Array, *, train: bool = False, deterministic: bool | None = None
    ) -> ReconstructorOutput:
        """``[B, H, W, 3]`` images -> :class:`ReconstructorOutput`.

        Args:
          images: float images, NHWC, normalised by the data pipeline.
          train: BatchNorm uses (and, with ``mutable=["batch_stats"]``, updates) batch
            statistics instead of its running averages.
          deterministic: ``z = mu`` if true; otherwise ``z`` is sampled with the ``"latent"``
            RNG stream. Defaults to ``not train``.
        """
        if deterministic is None:
            deterministic = not train
        features = self.extractor(images, train=train)
        mu, logvar, z = self.latent(features, deterministic=deterministic)
        return ReconstructorOutput(self.decoder(z), mu, logvar, z)


def make_model(
    encoder: str = "efficient",
    *,
    num_points: int = 2048,
    latent_dim: int = 100,
    feature_dim: int = 1000,
    dtype: Any = jnp.float32,
    **kwargs: Any,
) -> Reconstructor:
    """A :class:`Reconstructor` with the named extractor; ``kwargs`` go to its other fields."""
    _check_encoder(encoder)
    for name, value in (("num_points", num_points), ("latent_dim", latent_dim),
                        ("feature_dim", feature_dim)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return Reconstructor(
        encoder, num_points=num_points, latent_dim=latent_dim, feature_dim=feature_dim,
        dtype=dtype, **kwargs,
    )


def init_variables(
    model: nn.Module, key: jax.Array, image_size: int | tuple[int, int] = 128, batch_size: int = 1
) -> dict[str, Any]:
    """Initial ``{"params", "batch_stats"}`` of ``model`` for ``[batch_size, H, W, 3]`` images.

    ``key`` is split into the ``"params"`` and ``"latent"`` streams. Shapes of the variables do
    not depend on the image size (global pooling), only the check of the minimum size does.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    params_key, latent_key = jax.random.split(key)
    dummy = jnp.zeros((batch_size, h, w, 3), jnp.float32)
    variables = model.init({"params": params_key, LATENT_RNG: latent_key}, dummy, train=False)
    return dict(variables)
