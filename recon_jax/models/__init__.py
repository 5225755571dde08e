"""Networks of Kim & Lee (2023): feature extractors, latent head, decoder, and the whole model.

    from recon_jax.models import build_model, init_variables
    model = build_model(config.model)        # encoder "efficient", "efficient_small", "resnet18",
                                             # "resnet34"; image_size, dtype, ... (all fields)
    variables = init_variables(model, jax.random.key(0))
    out = model.apply(variables, images)     # images [B, H, W, 3] -> out.points [B, N, 3], out.mu,
                                             # out.logvar, out.z (all float32)

Flax Linen modules, NHWC float images, resized to ``model.image_size`` inside the model.
BatchNorm statistics are model state (``"batch_stats"``): see :mod:`recon_jax.models.layers`.
Parameters, FLOPs and training memory are measured by :mod:`recon_jax.measure`.
"""

from recon_jax.models.decoder import PointDecoder
from recon_jax.models.efficient import EFFICIENT_SMALL, EfficientExtractor
from recon_jax.models.latent import LATENT_RNG, LatentHead
from recon_jax.models.reconstructor import (
    DTYPES,
    EXTRACTORS,
    MODEL_FIELDS,
    Reconstructor,
    ReconstructorOutput,
    build_model,
    extractor_field_names,
    init_variables,
    make_extractor,
    resize_images,
)
from recon_jax.models.resnet import RESNET18_STAGES, RESNET34_STAGES, ResNetExtractor

__all__ = [
    "DTYPES",
    "EFFICIENT_SMALL",
    "EXTRACTORS",
    "LATENT_RNG",
    "MODEL_FIELDS",
    "RESNET18_STAGES",
    "RESNET34_STAGES",
    "EfficientExtractor",
    "LatentHead",
    "PointDecoder",
    "Reconstructor",
    "ReconstructorOutput",
    "ResNetExtractor",
    "build_model",
    "extractor_field_names",
    "init_variables",
    "make_extractor",
    "resize_images",
]
