"""Test configuration: CPU only, float32 defaults, deterministic NumPy generators."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A fresh NumPy generator with a fixed seed for each test."""
    return np.random.default_rng(0)
