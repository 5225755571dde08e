"""The ShapeNet on-disk layout (3D-R2N2 renderings + 3D-LMNet point clouds), its categories, and
:class:`DataError`, the error for a file that breaks it.

Real ShapeNet and the synthetic set of ``recon-jax make-data`` share it::

    ROOT/ShapeNetRendering/<synset>/<model_id>/rendering/00.png ... 23.png   137x137 RGBA
    ROOT/ShapeNetRendering/<synset>/<model_id>/rendering/rendering_metadata.txt   one line a view:
        "azimuth elevation in_plane_rotation distance_ratio field_of_view" (deg, deg, 0, -, deg)
    ROOT/ShapeNet_pointclouds/<synset>/<model_id>/pointcloud_2048.npy   float32 [2048, 3] (train)
    ROOT/ShapeNet_pointclouds/<synset>/<model_id>/pointcloud_1024.npy   float32 [1024, 3] (eval)
    ROOT/splits/train_models.json, ROOT/splits/test_models.json   {synset: ["synset/id", ...]}

Point clouds are in the object's canonical frame (y up), the same target for all 24 views.
Reading and validating live in :mod:`recon_jax.data.reader`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from recon_jax.errors import UserError

__all__ = [
    "DataError",
    "CATEGORIES",
    "SYNSET_TO_NAME",
    "NAME_TO_SYNSET",
    "NUM_VIEWS",
    "RENDER_SIZE",
    "CROP",
    "IMAGE_SIZE",
    "POINT_COUNTS",
    "RENDER_DIR",
    "POINTS_DIR",
    "SPLITS_DIR",
    "SPLITS",
    "category_synset",
    "resolve_categories",
    "rendering_dir",
    "view_path",
    "metadata_path",
    "pointcloud_path",
    "split_path",
]


class DataError(UserError):
    """A file of the dataset is missing or does not hold what the layout requires.

    ``path`` is the offending file (or directory); the message starts with it and says what
    was expected.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return type(self), (self.path, str(self)[len(self.path) + 2:])


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
#: Point clouds stored per model: the training target (2048) and the evaluation one (1024).
POINT_COUNTS: Final[tuple[int, ...]] = (2048, 1024)

RENDER_DIR: Final[str] = "ShapeNetRendering"
POINTS_DIR: Final[str] = "ShapeNet_pointclouds"
SPLITS_DIR: Final[str] = "splits"
SPLITS: Final[tuple[str, ...]] = ("train", "test")


def category_synset(category: str) -> str:
    """The synset of ``category``, given as a name (``"chair"``) or a synset (``"03001627"``).

    Raises:
        UserError: naming ``category`` if it is neither one of the 13 names nor their synsets.
    """
    if category in SYNSET_TO_NAME:
        return category
    if category in NAME_TO_SYNSET:
        return NAME_TO_SYNSET[category]
    known = ", ".join(f"{name} ({syn})" for syn, name in CATEGORIES)
    raise UserError(f"categories: unknown category {category!r}; expected a synset or name of: "
                    f"{known}")


def resolve_categories(categories: Iterable[str] | str | None) -> tuple[str, ...]:
    """Synsets of ``categories`` (names or synsets; one string is one category), in the order of
    :data:`CATEGORIES`, without duplicates. ``None`` means all 13.

    Raises:
        UserError: an unknown entry (named), or no category at all.
    """
    if categories is None:
        return tuple(syn for syn, _ in CATEGORIES)
    if isinstance(categories, str):
        categories = [categories]
    wanted = {category_synset(c) for c in categories}
    if not wanted:
        raise UserError("categories must name at least one category, got an empty list")
    return tuple(syn for syn, _ in CATEGORIES if syn in wanted)


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
