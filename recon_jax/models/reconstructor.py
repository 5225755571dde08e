"""The whole network: image -> feature extractor -> latent head -> decoder -> point cloud.

Kim & Lee (2023), Fig. 1: RGB images ``[B, H, W, 3]`` (float, as the data pipeline gives them,
any size) are resized to ``image_size`` inside the model (antialiased bilinear), a feature
extractor gives ``[B, 1000]`` (section 2.2), two Dense layers give ``mu``, ``logvar`` and the
reparameterised ``z`` ``[B, 100]`` (section 2.3), and an MLP decodes ``z`` into
``[B, 2048, 3]`` points (section 2.4). Every output is float32 whatever the compute dtype.

    model = build_model(config.model)        # a ConfigDict or a plain dict
    variables = init_variables(model, jax.random.key(0))   # {"params", "batch_stats"}
    out, updates = model.apply(variables, images, train=True, rngs={"latent": key},
                               mutable=["batch_stats"])      # training: sampled z
    out = model.apply(variables, images)                     # evaluation: z = mu
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from recon_jax.errors import UserError
from recon_jax.models.decoder import PointDecoder
from recon_jax.models.efficient import EFFICIENT_SMALL, EfficientExtractor
from recon_jax.models.latent import LATENT_RNG, LatentHead
from recon_jax.models.layers import check_images, check_int, check_int_tuple
from recon_jax.models.resnet import RESNET18_STAGES, RESNET34_STAGES, ResNetExtractor

__all__ = [
    "DTYPES",
    "EXTRACTORS",
    "MODEL_FIELDS",
    "Reconstructor",
    "ReconstructorOutput",
    "build_model",
    "extractor_field_names",
    "init_variables",
    "make_extractor",
    "resize_images",
]

#: name -> constructor of the extractor; keyword arguments are its fields (``feature_dim``,
#: ``dtype``, ``bn_axis_name`` and the extractor-specific ones, which override the defaults).
EXTRACTORS: dict[str, Callable[..., nn.Module]] = {
    "efficient": EfficientExtractor,
    "efficient_small": functools.partial(EfficientExtractor, **EFFICIENT_SMALL),
    "resnet18": functools.partial(ResNetExtractor, stage_sizes=RESNET18_STAGES),
    "resnet34": functools.partial(ResNetExtractor, stage_sizes=RESNET34_STAGES),
}

#: The compute dtypes a config may name.
DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

#: The fields of a config's ``model`` section (``experiments/configs/default.py``).
MODEL_FIELDS = ("encoder", "extractor", "image_size", "feature_dim", "latent_dim",
                "decoder_hidden", "negative_slope", "num_points", "dtype")

# Extractor fields that the Reconstructor sets itself.
_RESERVED = ("feature_dim", "dtype", "bn_axis_name", "parent", "name")


def _extractor_class(name: str) -> type:
    ctor = EXTRACTORS[name]
    return ctor.func if isinstance(ctor, functools.partial) else ctor


def extractor_field_names(name: str) -> tuple[str, ...]:
    """The fields of extractor ``name`` a config may set (``model.extractor.<field>``)."""
    return tuple(f.name for f in dataclasses.fields(_extractor_class(name))
                 if f.name not in _RESERVED)


def _check_encoder(name: Any) -> None:
    if not isinstance(name, str) or name not in EXTRACTORS:
        raise ValueError(f"encoder must be one of {tuple(EXTRACTORS)}, got {name!r}")


def make_extractor(
    name: str,
    *,
    feature_dim: int = 1000,
    dtype: Any = jnp.float32,
    bn_axis_name: str | None = None,
    **fields: Any,
) -> nn.Module:
    """The feature extractor called ``name`` (a key of :data:`EXTRACTORS`), its ``fields``
    (lists become tuples) checked.

    Its ``__call__(images [B, H, W, 3], *, train) -> [B, feature_dim]``.

    Raises:
      ValueError: an unknown name or field, or a bad value; the message starts with the field.
    """
    _check_encoder(name)
    allowed = extractor_field_names(name)
    for key in fields:
        if key not in allowed:
            raise ValueError(f"{key} is not a field of the {name!r} extractor; expected one of "
                             f"{allowed}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    # parent=None: an unbound module even when made inside another module's setup (which
    # adopts it on assignment).
    module = EXTRACTORS[name](feature_dim=feature_dim, dtype=dtype, bn_axis_name=bn_axis_name,
                              parent=None, **fields)
    module.check_fields()
    return module


def resize_images(images: jax.Array, size: int) -> jax.Array:
    """``[B, H, W, C]`` -> ``[B, size, size, C]``: ``jax.image.resize(method="linear",
    antialias=True)`` (antialiased bilinear), the input itself when it already has that size."""
    if images.shape[1:3] == (size, size):
        return images
    return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                            method="linear", antialias=True)


@flax.struct.dataclass
class ReconstructorOutput:
    """What :class:`Reconstructor` returns (a pytree, so it passes through ``jit``).

    Attributes:
      points: ``[B, num_points, 3]`` predicted point cloud, float32.
      mu: ``[B, latent_dim]`` mean of the latent Gaussian, float32.
      logvar: ``[B, latent_dim]`` log-variance (``s`` of the paper's eq. 3), float32.
      z: ``[B, latent_dim]`` the latent fed to the decoder (``mu`` when deterministic), float32.
    """

    points: jax.Array
    mu: jax.Array
    logvar: jax.Array
    z: jax.Array


class Reconstructor(nn.Module):
    """Single-image point-cloud reconstructor (Kim & Lee 2023).

    Attributes:
      encoder: extractor name, a key of :data:`EXTRACTORS`.
      extractor_fields: ``(field, value)`` pairs overriding the extractor's defaults.
      image_size: side of the square network input; images are resized to it.
      feature_dim: size of the extractor's output feature.
      latent_dim: size of ``z``.
      decoder_hidden: hidden widths of the decoder.
      negative_slope: LeakyReLU slope of the decoder.
      num_points: points in the output cloud.
      dtype: compute dtype of the extractor and the decoder (``jnp.float32`` default,
        ``jnp.bfloat16`` for mixed precision); parameters, the latent head (at least) and every
        output are float32.
      bn_axis_name: see :class:`recon_jax.models.layers.ConvBN`.
    """

    encoder: str = "efficient"
    extractor_fields: tuple[tuple[str, Any], ...] = ()
    image_size: int = 128
    feature_dim: int = 1000
    latent_dim: int = 100
    decoder_hidden: Sequence[int] = (512, 1024)
    negative_slope: float = 0.01
    num_points: int = 2048
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def make_extractor(self) -> nn.Module:
        """This model's extractor as a module of its own (unbound; for measurements)."""
        return make_extractor(self.encoder, feature_dim=self.feature_dim, dtype=self.dtype,
                              bn_axis_name=self.bn_axis_name, **dict(self.extractor_fields))

    def check_fields(self) -> None:
        """``ValueError`` (its message starts with the field's name) for a bad field."""
        _check_encoder(self.encoder)
        extractor = self.make_extractor()
        check_int("image_size", self.image_size, extractor.min_size)
        check_int("latent_dim", self.latent_dim, 1)
        check_int_tuple("decoder_hidden", self.decoder_hidden, 1, allow_empty=True)
        ok = isinstance(self.negative_slope, (int, float)) and not isinstance(
            self.negative_slope, bool) and math.isfinite(self.negative_slope)
        if not ok:
            raise ValueError(f"negative_slope must be a finite number, got "
                             f"{self.negative_slope!r}")
        check_int("num_points", self.num_points, 1)

    def setup(self) -> None:
        self.check_fields()
        self.extractor = self.make_extractor()
        # The latent head computes in float32 at least: it is cheap, and its outputs feed the KL
        # term directly.
        self.latent = LatentHead(self.latent_dim,
                                 dtype=jnp.promote_types(self.dtype, jnp.float32))
        self.decoder = PointDecoder(
            self.num_points, tuple(self.decoder_hidden), self.negative_slope, dtype=self.dtype
        )

    def __call__(
        self, images: jax.Array, *, train: bool = False, deterministic: bool | None = None
    ) -> ReconstructorOutput:
        """``[B, H, W, 3]`` images -> :class:`ReconstructorOutput`.

        Args:
          images: float images, NHWC, normalised by the data pipeline; resized to
            ``image_size`` (antialiased bilinear, :func:`resize_images`) when ``H`` or ``W``
            differs.
          train: BatchNorm uses (and, with ``mutable=["batch_stats"]``, updates) batch
            statistics instead of its running averages.
          deterministic: ``z = mu`` if true; otherwise ``z`` is sampled with the ``"latent"``
            RNG stream. Defaults to ``not train``.
        """
        if deterministic is None:
            deterministic = not train
        images = check_images(images, 1)
        images = resize_images(images.astype(jnp.float32), self.image_size)
        features = self.extractor(images, train=train)
        mu, logvar, z = self.latent(features, deterministic=deterministic)
        return ReconstructorOutput(self.decoder(z), mu, logvar, z)


def _field_error(prefix: str, error: ValueError) -> UserError:
    return UserError(f"config field {prefix}{error}")


def build_model(model_cfg: Mapping[str, Any]) -> Reconstructor:
    """The :class:`Reconstructor` that a config's ``model`` section describes.

    ``model_cfg`` is a ``ConfigDict`` or a plain mapping (e.g. read back from JSON, sequences as
    lists) with the fields :data:`MODEL_FIELDS` (``experiments/configs/default.py`` documents
    them); a missing field takes :class:`Reconstructor`'s default. ``extractor`` is a mapping of
    fields of the chosen extractor (empty: its defaults); ``dtype`` a key of :data:`DTYPES`.

    Raises:
      UserError: an unknown field or a bad value, naming ``model.<field>`` (or
        ``model.extractor.<field>``) and what was expected.
    """
    if hasattr(model_cfg, "to_dict"):
        model_cfg = model_cfg.to_dict()
    if not isinstance(model_cfg, Mapping):
        raise UserError(f"config section model: expected a mapping of fields, got {model_cfg!r}")
    unknown = sorted(set(model_cfg) - set(MODEL_FIELDS))
    if unknown:
        raise UserError(f"config field model.{unknown[0]} does not exist; expected fields "
                        f"{MODEL_FIELDS}")
    fields = dict(model_cfg)
    extractor = fields.pop("extractor", None) or {}
    if hasattr(extractor, "to_dict"):
        extractor = extractor.to_dict()
    if not isinstance(extractor, Mapping):
        raise UserError(f"config field model.extractor: expected a mapping of extractor fields, "
                        f"got {extractor!r}")
    dtype = fields.pop("dtype", "float32")
    if dtype not in DTYPES:
        raise UserError(f"config field model.dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    try:
        _check_encoder(fields.get("encoder", "efficient"))
        check_int("feature_dim", fields.get("feature_dim", 1000), 1)
    except ValueError as e:
        raise _field_error("model.", e) from None
    try:
        make_extractor(fields.get("encoder", "efficient"), **extractor)
    except ValueError as e:
        raise _field_error("model.extractor.", e) from None
    if isinstance(fields.get("decoder_hidden"), list):
        fields["decoder_hidden"] = tuple(fields["decoder_hidden"])
    extractor_fields = tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in extractor.items()))
    model = Reconstructor(extractor_fields=extractor_fields, dtype=DTYPES[dtype], **fields)
    try:
        model.check_fields()
    except ValueError as e:
        raise _field_error("model.", e) from None
    return model


def init_variables(model: Reconstructor, key: jax.Array, batch_size: int = 1) -> dict[str, Any]:
    """Initial ``{"params", "batch_stats"}`` of ``model`` for ``[batch_size, image_size,
    image_size, 3]`` images.

    ``key`` is split into the ``"params"`` and ``"latent"`` streams. The variables' shapes do not
    depend on the image size (global pooling).
    """
    params_key, latent_key = jax.random.split(key)
    dummy = jnp.zeros((batch_size, model.image_size, model.image_size, 3), jnp.float32)
    variables = model.init({"params": params_key, LATENT_RNG: latent_key}, dummy, train=False)
    return dict(variables)
