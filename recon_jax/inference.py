"""What training, evaluation and prediction share: the run's files, data sources and the forward.

* :func:`data_root` -- the dataset a config points at (the synthetic set, generated on first
  use, when ``config.data_dir`` is empty);
* :func:`open_source` -- a split of it as a TFDS data source (prepared on first use);
* :func:`resize_images` / :func:`make_predict_fn` -- the deterministic forward (``z = mu``,
  BatchNorm running statistics) on ``[B, 128, 128, 3]`` pipeline images;
* :func:`save_config` / :func:`load_config` / :func:`load_variables` -- a work directory's
  config (``config.json``) and the parameters of its best or latest checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from recon_jax.data import layout

__all__ = [
    "data_root",
    "open_source",
    "resize_images",
    "make_predict_fn",
    "save_config",
    "load_config",
    "load_variables",
]

CONFIG_FILE = "config.json"
#: Which parameters of a run to load: best by test CD, latest, or the untrained initialisation.
CHECKPOINTS = ("best", "latest", "init")


def data_root(config: ml_collections.ConfigDict, *, progress: bool = True) -> str:
    """``config.data_dir`` if set; else ``config.synthetic_dir``, generating it if absent.

    An existing synthetic directory is used as it is (whatever its size); delete it to
    regenerate with other settings.
    """
    if config.data_dir:
        return config.data_dir
    root = config.synthetic_dir
    if not os.path.isfile(layout.split_path(root, "test")):
        from recon_jax.data.synthetic import generate_dataset

        generate_dataset(
            root,
            models_per_category=config.synthetic_models_per_category,
            seed=config.synthetic_seed,
            categories=tuple(config.synthetic_categories) or None,
            progress=progress,
            # forked workers can deadlock on jax.distributed's threads
            start_method="spawn" if jax.process_count() > 1 else None,
        )
    return root


def open_source(config: ml_collections.ConfigDict, split: str) -> Any:
    """Split ``split`` of the config's dataset as a TFDS data source (prepared on first use).

    The prepared copy lives in ``config.tfds_dir`` or, when that is empty, in ``ROOT/tfds``;
    TFDS config "real" when ``config.data_dir`` is set, else "synthetic".
    """
    import tensorflow_datasets as tfds

    from recon_jax.data.tfds_builder import build, load_source

    tfds.disable_progress_bar()
    root = data_root(config)
    tfds_dir = config.get("tfds_dir") or os.path.join(root, "tfds")
    name = "real" if config.data_dir else "synthetic"
    build(root, tfds_dir, config=name)
    return load_source(tfds_dir, split, config=name)


def resize_images(images: jax.Array, size: int) -> jax.Array:
    """``[B, H, W, 3]`` -> ``[B, size, size, 3]`` (antialiased bilinear; identity if equal)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    shape = (images.shape[0], size, size, images.shape[3])
    return jax.image.resize(images, shape, method="linear", antialias=True)


def make_predict_fn(model: Any, image_size: int) -> Callable[[Any, jax.Array], jax.Array]:
    """Jitted ``(variables, images [B, H, W, 3]) -> points [B, num_points, 3]`` with ``z = mu``."""

    @jax.jit
    def predict(variables: Any, images: jax.Array) -> jax.Array:
        images = resize_images(jnp.asarray(images, jnp.float32), image_size)
        return model.apply(variables, images, train=False).points

    return predict


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """The config of an experiment file, as ``recon-jax train --config PATH`` reads it.

    ``PATH`` is a Python file defining ``get_config()``; ``FILE.py:ARG`` calls
    ``get_config("ARG")`` (e.g. ``experiments/configs/compare.py:paper``).
    """
    import importlib.util

    file, arg = path.rsplit(":", 1) if ":" in path and not path.endswith(".py") else (path, None)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"config file {file!r} not found")
    spec = importlib.util.spec_from_file_location(
        "recon_jax_config_" + os.path.splitext(os.path.basename(file))[0], file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{file}: defines no get_config()")
    return module.get_config() if arg is None else module.get_config(arg)


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Write ``workdir/config.json`` (what eval and predict rebuild the model from)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
        f.write(config.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """Read ``workdir/config.json``; a clear error if ``workdir`` holds no training run."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a work directory of `train`?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def load_variables(
    workdir: str, *, which: str = "best"
) -> tuple[ml_collections.ConfigDict, Any, dict[str, Any], int]:
    """The model and ``{"params", "batch_stats"}`` of a run: its ``best`` or ``latest``
    checkpoint, or ``init``, the untrained initialisation (step 0, the baseline to beat).

    Returns:
      ``(config, model, variables, step)``.
    """
    from recon_jax import train

    if which not in CHECKPOINTS:
        raise ValueError(f"which must be one of {CHECKPOINTS}, got {which!r}")
    config = load_config(workdir)
    model = train.create_model(config)
    tx = train.create_optimizer(config)
    if which == "init":
        state = train.create_train_state(config, model, tx)
        return config, model, {"params": state.params, "batch_stats": state.batch_stats}, 0
    abstract = jax.eval_shape(lambda: train.create_train_state(config, model, tx))
    manager = train.checkpoint_manager(workdir, keep=config.keep_checkpoints, asynchronous=False)
    step = manager.best_step() if which == "best" else manager.latest_step()
    if step is None:
        step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
    state, _ = train.restore_checkpoint(manager, abstract, step)
    manager.close()
    return config, model, {"params": state.params, "batch_stats": state.batch_stats}, step
