"""Test configuration: CPU only, float32 defaults, deterministic NumPy generators."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Many tests compile the same functions (the tiny training step above all): share compiled
# executables through JAX's persistent cache, in a directory private to this test session.
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="recon_jax_xla_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def rng():
    """A fresh NumPy generator with a fixed seed for each test."""
    return np.random.default_rng(0)
