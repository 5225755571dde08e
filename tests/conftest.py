"""Test configuration: CPU only, float32 defaults, deterministic NumPy generators."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import shutil  # noqa: E402
import tempfile  # noqa: E402

# Many tests compile the same functions (the tiny training step above all), in this process, in
# the other xdist workers and in the commands the tests start: share compiled executables through
# JAX's persistent cache, in a directory private to this test session. The environment carries it
# to the workers and subprocesses; the process that made it removes it at the end.
_CACHE_OWNER = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _CACHE_OWNER:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="recon_jax_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    if _CACHE_OWNER:
        shutil.rmtree(os.environ.pop("JAX_COMPILATION_CACHE_DIR"), ignore_errors=True)


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


def _built_once(tmp_path_factory, name: str, build) -> str:
    """``build(path)`` once per test session, however many xdist workers ask: the first builds
    under a file lock, the others wait for it and reuse the result. Returns ``path``."""
    import fcntl

    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent  # shared by this session's workers
    else:
        root = tmp_path_factory.getbasetemp()
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            build(str(path))
            done.touch()
    return str(path)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny synthetic set, generated once (through the same path `train` uses)."""
    from recon_jax.data import sources

    def build(root):
        sources.data_root(tiny_config(os.path.join(root, "data")).data, progress=False)

    return os.path.join(_built_once(tmp_path_factory, "synthetic", build), "data")


#: The shared trained run's overrides of the tiny config.
TRAINED = ("optim.num_steps=12", "eval.every=6")


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """One tiny run of 12 steps (test CD and a checkpoint every 6), shared by the command tests
    (and by the xdist workers): ``(workdir, config)``. Tests must not change it."""
    from recon_jax import train

    config = tiny_config(data_dir, *TRAINED)
    workdir = _built_once(tmp_path_factory, "trained", lambda path: train.train_and_evaluate(
        config, path, log=lambda _: None))
    return workdir, config
