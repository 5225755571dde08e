"""Networks of Kim & Lee (2023): feature extractors, latent head, decoder, and the whole model.

    from recon_jax.models import make_model, init_variables
    model = make_model("efficient")          # or "resnet18", "resnet34"
    variables = init_variables(model, jax.random.key(0), image_size=128)
    out = model.apply(variables, images)     # out.points [B, 2048, 3], out.mu, out.logvar, out.z

Flax Linen modules, NHWC float images. BatchNorm statistics are model state (``"batch_stats"``):
see :mod:`recon_jax.models.layers`. ``recon-jax flops`` (:mod:`recon_jax.models.flops`, not
imported here) measures parameters, FLOPs, training memory and step time.
"""

from recon_jax.models.decoder import PointDecoder
from recon_jax.models.efficient import EfficientExtractor
from recon_jax.models.latent import LATENT_RNG, LatentHead
from recon_jax.models.reconstructor import (
    EXTRACTORS,
    Reconstructor,
    ReconstructorOutput,
    init_variables,
    make_extractor,
    make_model,
)
from recon_jax.models.resnet import RESNET18_STAGES, RESNET34_STAGES, ResNetExtractor

__all__ = [
    "EXTRACTORS",
    "LATENT_RNG",
    "RESNET18_STAGES",
    "RESNET34_STAGES",
    "EfficientExtractor",
    "LatentHead",
    "PointDecoder",
    "Reconstructor",
    "ReconstructorOutput",
    "ResNetExtractor",
    "init_variables",
    "make_extractor",
    "make_model",
]
