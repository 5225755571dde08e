"""Data for recon_jax: the ShapeNet layout, a validating reader, a TFDS builder, a grain pipeline.

Submodules are imported on first use of a name below, so ``import recon_jax.data`` stays cheap
(TFDS and grain load only when their functions are asked for):

* :mod:`~recon_jax.data.layout`: paths, constants and categories of the 3D-R2N2 / 3D-LMNet
  layout, and :class:`DataError`;
* :mod:`~recon_jax.data.reader`: :class:`ShapeNetReader`;
* :mod:`~recon_jax.data.tfds_builder`: the ``shapenet_r2n2`` builder, ``build``, ``load_source``;
* :mod:`~recon_jax.data.sources`: a config's dataset root and splits (made on first use);
* :mod:`~recon_jax.data.pipeline`: ``train_dataset``, ``eval_dataset``, ``load_image_file``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DataError",
    "SkippedModelsWarning",
    "ShapeNetReader",
    "ShapenetR2n2",
    "build_tfds",
    "load_source",
    "data_root",
    "open_source",
    "open_sources",
    "ReaderSource",
    "preprocess_view",
    "load_image_file",
    "train_dataset",
    "eval_dataset",
]

_EXPORTS: dict[str, tuple[str, str]] = {
    "DataError": ("recon_jax.data.layout", "DataError"),
    "SkippedModelsWarning": ("recon_jax.data.reader", "SkippedModelsWarning"),
    "ShapeNetReader": ("recon_jax.data.reader", "ShapeNetReader"),
    "ShapenetR2n2": ("recon_jax.data.tfds_builder", "ShapenetR2n2"),
    "build_tfds": ("recon_jax.data.tfds_builder", "build"),
    "load_source": ("recon_jax.data.tfds_builder", "load_source"),
    "data_root": ("recon_jax.data.sources", "data_root"),
    "open_source": ("recon_jax.data.sources", "open_source"),
    "open_sources": ("recon_jax.data.sources", "open_sources"),
    "ReaderSource": ("recon_jax.data.pipeline", "ReaderSource"),
    "preprocess_view": ("recon_jax.data.pipeline", "preprocess_view"),
    "load_image_file": ("recon_jax.data.pipeline", "load_image_file"),
    "train_dataset": ("recon_jax.data.pipeline", "train_dataset"),
    "eval_dataset": ("recon_jax.data.pipeline", "eval_dataset"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recon_jax.data' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
