"""Where a config's data lives: the dataset root, its TFDS copy, and its splits as sources.

``data_cfg`` is the ``data`` section of a nested config (``experiments/configs/default.py``).
The root is ``data_cfg.data_dir`` (a ShapeNet root) or, when that is empty, the synthetic set in
``data_cfg.synthetic_dir``, generated on first use. Its TFDS copy (``shapenet_r2n2``, config
``"real"`` or ``"synthetic"``) is prepared on first use in ``data_cfg.tfds_dir`` or ``ROOT/tfds``.
A split opens as a random-access source of per-model records (see
:mod:`recon_jax.data.tfds_builder`) for :mod:`recon_jax.data.pipeline`. With several JAX
processes (shared storage), :func:`open_sources` lets process 0 generate and prepare while the
others wait at a coordination-service barrier.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from recon_jax.data import layout, synthetic, tfds_builder
from recon_jax.errors import UserError

__all__ = [
    "DATA_READY_TIMEOUT_S",
    "data_root",
    "tfds_dir",
    "tfds_config",
    "open_source",
    "open_sources",
]

#: How long the other processes wait for process 0 to generate and prepare the data (seconds).
DATA_READY_TIMEOUT_S = 4 * 3600
_BARRIERS = itertools.count()  # every process opens sources in the same order: same names


def data_root(data_cfg: ml_collections.ConfigDict, *, progress: bool = True) -> str:
    """``data_cfg.data_dir`` if set; else ``data_cfg.synthetic_dir``, generated if it holds no
    dataset yet (``synthetic_models_per_category``, ``synthetic_seed``, ``synthetic_categories``;
    an existing one is used as it is: delete it to regenerate with other settings).

    Raises:
        UserError: ``synthetic_dir`` holds an incomplete dataset, or a generation field is bad.
    """
    if data_cfg.data_dir:
        return data_cfg.data_dir
    root = data_cfg.synthetic_dir
    if os.path.isfile(layout.split_path(root, "test")):  # written last
        return root
    render_dir = os.path.join(root, layout.RENDER_DIR)
    if os.path.isdir(render_dir) and os.listdir(render_dir):
        raise UserError(f"data.synthetic_dir {root!r} holds an incomplete dataset (no "
                        f"{layout.split_path(root, 'test')}); delete it to generate it again")
    if data_cfg.synthetic_models_per_category < 2:  # 80/20 split: one model is train only
        raise UserError("config field data.synthetic_models_per_category: expected at least 2 "
                        "(a test model per category), got "
                        f"{data_cfg.synthetic_models_per_category}")
    synthetic.generate_dataset(
        root,
        models_per_category=data_cfg.synthetic_models_per_category,
        seed=data_cfg.synthetic_seed,
        categories=tuple(data_cfg.synthetic_categories) or None,
        progress=progress,
        # forked workers can deadlock on jax.distributed's threads
        start_method="spawn" if jax.process_count() > 1 else None,
    )
    return root


def tfds_dir(data_cfg: ml_collections.ConfigDict) -> str:
    """Where the TFDS copy of the config's dataset lives: ``data_cfg.tfds_dir`` or ``ROOT/tfds``
    (without generating anything)."""
    if data_cfg.get("tfds_dir"):
        return data_cfg.tfds_dir
    root = data_cfg.data_dir or data_cfg.synthetic_dir
    return os.path.join(root, "tfds")


def tfds_config(data_cfg: ml_collections.ConfigDict) -> str:
    """The ``shapenet_r2n2`` config of the dataset: ``"real"`` with ``data_dir``, else
    ``"synthetic"``."""
    return "real" if data_cfg.data_dir else "synthetic"


def open_source(data_cfg: ml_collections.ConfigDict, split: str, *, progress: bool = True
                ) -> Sequence[dict[str, Any]]:
    """Split ``split`` (``"train"`` or ``"test"``) of the config's dataset as a TFDS data
    source, generating the synthetic set and preparing the TFDS copy first when needed.

    One process only: with several, call :func:`open_sources` on every process.
    """
    tfds.disable_progress_bar()
    root = data_root(data_cfg, progress=progress)
    directory, name = tfds_dir(data_cfg), tfds_config(data_cfg)
    tfds_builder.build(root, directory, config=name)
    return tfds_builder.load_source(directory, split, config=name)


def open_sources(data_cfg: ml_collections.ConfigDict, splits: Sequence[str] = layout.SPLITS,
                 *, progress: bool = True) -> tuple[Sequence[dict[str, Any]], ...]:
    """:func:`open_source` of each of ``splits``, in order, on every process.

    With several JAX processes, process 0 generates and prepares the data (on storage that all
    processes share) while the others wait for it at a barrier of JAX's coordination service
    (not a device collective, whose set-up would time out first), up to
    :data:`DATA_READY_TIMEOUT_S`. Every process must call it, the same number of times.
    """
    several, first = jax.process_count() > 1, jax.process_index() == 0
    name = f"recon_jax_data_ready_{next(_BARRIERS)}"

    def barrier() -> None:
        ocp.multihost.sync_global_processes(name, timeout=DATA_READY_TIMEOUT_S,
                                            processes=set(range(jax.process_count())))

    if several and not first:
        barrier()
    opened = tuple(open_source(data_cfg, split, progress=progress and first) for split in splits)
    if several and first:
        barrier()
    return opened
