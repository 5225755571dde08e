"""Shared, once-per-session model variables for the model tests.

Keys use the ``rbg`` PRNG (``jax.random.key(seed, impl="rbg")``): XLA:CPU compiles a model's
random initialisation in about 2 s with it, against 10-13 s with the default (partitionable
threefry) on this 2-core machine. The models take any key type.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from recon_jax.models import init_variables, make_extractor, make_model
from recon_jax.models.flops import compile_train_step


def key(seed: int) -> jax.Array:
    """A fast-compiling PRNG key for tests (see the module docstring)."""
    return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="session")
def extractors():
    """name -> (module, variables); variable shapes do not depend on the image size.

    ResNet-34 only gets shapes (``jax.eval_shape``: traced, not run) to keep the suite fast; its
    forward pass is the ResNet-18 code with more blocks.
    """
    out = {}
    for name in ("efficient", "resnet18"):
        module = make_extractor(name)
        out[name] = (module, jax.jit(module.init)(key(0), jnp.zeros((1, 32, 32, 3))))
    module = make_extractor("resnet34")
    out["resnet34"] = (
        module, jax.eval_shape(module.init, key(0), jnp.zeros((1, 32, 32, 3)))
    )
    return out


@pytest.fixture(scope="session")
def efficient_model():
    """``(model, variables, init)``: the efficient reconstructor with 64 points, its variables
    from ``key(0)`` for 32x32 images, and the jitted ``init(key) -> variables`` that made them."""
    model = make_model("efficient", num_points=64)
    init = jax.jit(lambda k: init_variables(model, k, image_size=32))
    return model, init(key(0)), init


@pytest.fixture(scope="session")
def efficient_step(efficient_model):
    """The compiled training step (Adam 1e-3, Chamfer, state donated) of ``efficient_model`` for
    a batch of 4 images of 32x32; its latent key is a threefry ``jax.random.key``."""
    model = efficient_model[0]
    return compile_train_step(model, image_size=32, batch_size=4)
