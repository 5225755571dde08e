"""The ShapeNet on-disk layout that the field uses (3D-R2N2 renderings + 3D-LMNet point clouds).

Real ShapeNet and the synthetic set that ``recon-jax make-data`` writes share this layout, so a
single reader serves both::

    ROOT/ShapeNetRendering/<synset>/<model_id>/rendering/00.png ... 23.png   137x137 RGBA, 24 views
    ROOT/ShapeNetRendering/<synset>/<model_id>/rendering/rendering_metadata.txt
        one line per view: "azimuth elevation in_plane_rotation distance_ratio field_of_view"
        (degrees, degrees, always 0, unitless, degrees; 3D-R2N2 writes fov 25)
    ROOT/ShapeNet_pointclouds/<synset>/<model_id>/pointcloud_2048.npy   float32 [2048, 3] (train)
    ROOT/ShapeNet_pointclouds/<synset>/<model_id>/pointcloud_1024.npy   float32 [1024, 3] (eval)
    ROOT/splits/train_models.json, ROOT/splits/test_models.json
        {synset: ["synset/model_id", ...], ...}

Point clouds are in the object's canonical frame (y up), the same target for all 24 views.
This module only names paths and constants; reading and validating live in ``reader.py``.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "CATEGORIES",
    "SYNSET_TO_NAME",
    "NAME_TO_SYNSET",
    "NUM_VIEWS",
    "RENDER_SIZE",
    "CROP",
    "IMAGE_SIZE",
    "RENDER_DIR",
    "POINTS_DIR",
    "SPLITS_DIR",
    "SPLITS",
    "rendering_dir",
    "view_path",
    "metadata_path",
    "pointcloud_path",
    "split_path",
]

#: The 13 ShapeNet categories of 3D-R2N2, as (synset, name), in the order tables list them.
CATEGORIES: Final[tuple[tuple[str, str], ...]] = (
    ("02691156", "airplane"),
    ("02828884", "bench"),
    ("02933112", "cabinet"),
    ("02958343", "car"),
    ("03001627", "chair"),
    ("03211117", "monitor"),
    ("03636649", "lamp"),
    ("03691459", "speaker"),
    ("04090263", "rifle"),
    ("04256520", "sofa"),
    ("04379243", "table"),
    ("04401088", "telephone"),
    ("04530566", "vessel"),
)
SYNSET_TO_NAME: Final[dict[str, str]] = dict(CATEGORIES)
NAME_TO_SYNSET: Final[dict[str, str]] = {name: syn for syn, name in CATEGORIES}

NUM_VIEWS: Final[int] = 24  # views rendered per model (00.png ... 23.png)
RENDER_SIZE: Final[int] = 137  # ShapeNetRendering PNGs are 137x137 RGBA
CROP: Final[tuple[int, int]] = (4, -5)  # 3D-LMNet crops image[4:-5, 4:-5] ...
IMAGE_SIZE: Final[int] = RENDER_SIZE - CROP[0] + CROP[1]  # ... to 128x128

RENDER_DIR: Final[str] = "ShapeNetRendering"
POINTS_DIR: Final[str] = "ShapeNet_pointclouds"
SPLITS_DIR: Final[str] = "splits"
SPLITS: Final[tuple[str, ...]] = ("train", "test")


def rendering_dir(root: str, synset: str, model_id: str) -> str:
    """``ROOT/ShapeNetRendering/<synset>/<model_id>/rendering``."""
    return os.path.join(root, RENDER_DIR, synset, model_id, "rendering")


def view_path(root: str, synset: str, model_id: str, view: int) -> str:
    """Path of view ``view`` (0-based) as ``NN.png``."""
    return os.path.join(rendering_dir(root, synset, model_id), f"{view:02d}.png")


def metadata_path(root: str, synset: str, model_id: str) -> str:
    """Path of ``rendering_metadata.txt`` (one line per view)."""
    return os.path.join(rendering_dir(root, synset, model_id), "rendering_metadata.txt")


def pointcloud_path(root: str, synset: str, model_id: str, num_points: int) -> str:
    """Path of ``pointcloud_<num_points>.npy`` (2048 for training, 1024 for evaluation)."""
    return os.path.join(root, POINTS_DIR, synset, model_id, f"pointcloud_{num_points}.npy")


def split_path(root: str, split: str) -> str:
    """Path of ``splits/<split>_models.json`` for ``split`` in ``SPLITS``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return os.path.join(root, SPLITS_DIR, f"{split}_models.json")
