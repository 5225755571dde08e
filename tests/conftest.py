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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "experiments", "configs", "tiny.py")


def tiny_config(data_dir: str, *overrides: str):
    """The tiny config on ``data_dir`` with ``SECTION.FIELD=VALUE`` overrides."""
    from recon_jax import configs

    config = configs.load_config_file(TINY)
    config.data.synthetic_dir = data_dir
    configs.apply_overrides(config, overrides)
    return config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny synthetic set, generated once (through the same path `train` uses)."""
    from recon_jax.data import sources

    root = str(tmp_path_factory.mktemp("synthetic"))
    config = tiny_config(os.path.join(root, "data"))
    sources.data_root(config.data, progress=False)
    return config.data.synthetic_dir


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """One tiny run of 12 steps (test CD and a checkpoint every 6), shared by the command tests:
    ``(workdir, config)``. Tests must not change it."""
    from recon_jax import train

    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    config = tiny_config(data_dir, "optim.num_steps=12", "eval.every=6",
                         "optim.learning_rate=3e-3")
    train.train_and_evaluate(config, workdir, log=lambda _: None)
    return workdir, config
