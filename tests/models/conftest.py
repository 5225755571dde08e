"""Shared, once-per-session model variables and a small training step for the model tests.

Keys use the ``rbg`` PRNG (``jax.random.key(seed, impl="rbg")``): XLA:CPU compiles a model's
random initialisation in about 2 s with it, against 10-13 s with the default (partitionable
threefry) on this 2-core machine. The models take any key type.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import jax
import jax.numpy as jnp
import pytest

from recon_jax.models import build_model, init_variables, make_extractor

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "experiments")


def key(seed: int) -> jax.Array:
    """A fast-compiling PRNG key for tests (see the module docstring)."""
    return jax.random.key(seed, impl="rbg")


def load_experiment(name: str) -> types.ModuleType:
    """``experiments/<name>.py`` as a module (loaded once). The scripts import their siblings by
    name, as their directory is on ``sys.path`` when they run, so ``bench_report`` is
    registered under that name first."""
    for module in ("bench_report", name):
        if module not in sys.modules:
            spec = importlib.util.spec_from_file_location(
                module, os.path.join(EXPERIMENTS, module + ".py"))
            sys.modules[module] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[module])
    return sys.modules[name]


@pytest.fixture(scope="session")
def extractors():
    """name -> (module, variables); variable shapes do not depend on the image size.

    ResNet-34 only gets shapes (``jax.eval_shape``: traced, not run) to keep the suite fast; its
    forward pass is the ResNet-18 code with more blocks.
    """
    out = {}
    for name in ("efficient", "efficient_small", "resnet18"):
        module = make_extractor(name)
        out[name] = (module, jax.jit(module.init)(key(0), jnp.zeros((1, 32, 32, 3))))
    module = make_extractor("resnet34")
    out["resnet34"] = (
        module, jax.eval_shape(module.init, key(0), jnp.zeros((1, 32, 32, 3)))
    )
    return out


@pytest.fixture(scope="session")
def efficient_model():
    """``(model, variables, init)``: the efficient_small reconstructor with 64 points and
    32x32 input, its variables from ``key(0)``, and the jitted ``init(key) -> variables`` that
    made them."""
    model = build_model({"encoder": "efficient_small", "num_points": 64, "image_size": 32})
    init = jax.jit(lambda k: init_variables(model, k))
    return model, init(key(0)), init


@pytest.fixture(scope="session")
def efficient_step(efficient_model):
    """The compiled Chamfer training step of ``experiments/bench_train.py`` (Adam 1e-3, state
    donated) of ``efficient_model`` for a batch of 4 images of 32x32; its latent key is a
    threefry ``jax.random.key``."""
    return load_experiment("bench_train").compile_chamfer_step(efficient_model[0], batch_size=4)
