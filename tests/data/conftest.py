"""A tiny ShapeNet root in the real 3D-R2N2 / 3D-LMNet layout, written by the tests themselves.

Independent of the synthetic generator: 7 models in 3 categories (airplane, chair, lamp), each
with 24 views as 137x137 RGBA PNGs of the R2N2 kind (a shaded object, antialiased edge, on a
transparent background whose hidden RGB is magenta so that compositing mistakes show), a
``rendering_metadata.txt`` with R2N2-style camera lines, 2048- and 1024-point ``.npy`` clouds,
and the two split JSONs. The arrays written are kept so tests compare against them directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from recon_jax.data import layout

#: synset -> number of models; the first ``TRAIN_COUNT[synset]`` go to train, the rest to test.
FIXTURE_MODELS: dict[str, int] = {"02691156": 3, "03001627": 2, "03636649": 2}
TRAIN_COUNT: dict[str, int] = {"02691156": 2, "03001627": 2, "03636649": 1}
HIDDEN_RGB = (255, 0, 255)  # colour stored under alpha == 0


@dataclasses.dataclass
class ShapeNetFixture:
    """What the fixture wrote: ``root`` and, per ``(synset, model_id)``, the exact arrays."""

    root: str
    splits: dict[str, list[tuple[str, str]]]
    views: dict[tuple[str, str], np.ndarray]  # uint8 [24, 137, 137, 4]
    points: dict[tuple[str, str], dict[int, np.ndarray]]  # {2048: [2048, 3], 1024: [1024, 3]}
    metadata: dict[tuple[str, str], np.ndarray]  # float64 [24, 5] as written

    def path(self, model: tuple[str, str]) -> str:
        return layout.rendering_dir(self.root, *model)


def render_view(rng: np.random.Generator, size: int = layout.RENDER_SIZE) -> np.ndarray:
    """One R2N2-like RGBA view: a shaded ellipse with an antialiased rim, uint8 [size, size, 4]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = rng.uniform(50, 87, size=2)
    ry, rx = rng.uniform(20, 45, size=2)
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    alpha = np.clip((1.0 - r) * 8.0, 0.0, 1.0)  # 1 inside, ramps to 0 over the rim
    base = rng.uniform(40, 220, size=3)
    shade = 0.6 + 0.4 * (xx - cx) / (2 * rx) - 0.2 * (yy - cy) / (2 * ry)
    rgb = np.clip(base[None, None, :] * shade[..., None], 0, 255)
    image = np.empty((size, size, 4), dtype=np.uint8)
    image[..., :3] = np.where(alpha[..., None] > 0, np.round(rgb), HIDDEN_RGB).astype(np.uint8)
    image[..., 3] = np.round(alpha * 255).astype(np.uint8)
    return image


def write_png(path: str, image: np.ndarray, mode: str = "RGBA") -> None:
    Image.fromarray(image, mode=mode).save(path, format="PNG")


def write_shapenet(root: str, seed: int = 0) -> ShapeNetFixture:
    """Write the fixture root under ``root`` and return what was written."""
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    fixture = ShapeNetFixture(root, {"train": [], "test": []}, {}, {}, {})
    for synset, count in FIXTURE_MODELS.items():
        for k in range(count):
            model_id = "".join(rng.choice(list("0123456789abcdef"), size=32))
            model = (synset, model_id)
            render = layout.rendering_dir(root, synset, model_id)
            os.makedirs(render)
            views = np.stack([render_view(rng) for _ in range(layout.NUM_VIEWS)])
            for v in range(layout.NUM_VIEWS):
                write_png(layout.view_path(root, synset, model_id, v), views[v])
            meta = np.column_stack(
                [
                    rng.uniform(0, 360, layout.NUM_VIEWS),
                    rng.uniform(25, 30, layout.NUM_VIEWS),
                    np.zeros(layout.NUM_VIEWS),
                    rng.uniform(0.65, 0.95, layout.NUM_VIEWS),
                    np.full(layout.NUM_VIEWS, 25.0),
                ]
            )
            with open(layout.metadata_path(root, synset, model_id), "w") as f:
                for az, el, rot, dist, fov in meta:
                    f.write(f"{float(az)!r} {float(el)!r} {int(rot)} {float(dist)!r} {int(fov)}\n")
            os.makedirs(os.path.dirname(layout.pointcloud_path(root, synset, model_id, 2048)))
            clouds = {}
            for n in (2048, 1024):
                clouds[n] = (rng.normal(size=(n, 3)) * 0.25).astype(np.float32)
                np.save(layout.pointcloud_path(root, synset, model_id, n), clouds[n])
            split = "train" if k < TRAIN_COUNT[synset] else "test"
            splits[split].setdefault(synset, []).append(f"{synset}/{model_id}")
            fixture.splits[split].append(model)
            fixture.views[model] = views
            fixture.points[model] = clouds
            fixture.metadata[model] = meta
    os.makedirs(os.path.join(root, layout.SPLITS_DIR))
    for split, table in splits.items():
        with open(layout.split_path(root, split), "w") as f:
            json.dump(table, f, indent=1)
    return fixture


@pytest.fixture(scope="session")
def shapenet(tmp_path_factory) -> ShapeNetFixture:
    """The fixture root, shared by tests that only read it."""
    return write_shapenet(str(tmp_path_factory.mktemp("shapenet")))


@pytest.fixture
def make_shapenet(tmp_path, shapenet) -> Callable[[], ShapeNetFixture]:
    """A factory copying the fixture root under ``tmp_path``, for tests that damage it."""

    def make() -> ShapeNetFixture:
        root = str(tmp_path / "shapenet")
        shutil.copytree(shapenet.root, root)
        return dataclasses.replace(shapenet, root=root)

    return make


@pytest.fixture
def absl_flags_parsed():
    """absl flags parsed for the test, as ``recon-jax`` parses them: grain 0.2.18 starts worker
    processes only then. Restores the unparsed state afterwards."""
    from absl import flags

    parsed = flags.FLAGS.is_parsed()
    if not parsed:
        flags.FLAGS(["pytest"])
    yield
    if not parsed:
        flags.FLAGS.unparse_flags()


@pytest.fixture
def absl_flags_unparsed():
    """absl flags unparsed for the test (a notebook that never parsed them); restored after."""
    from absl import flags

    parsed = flags.FLAGS.is_parsed()
    if parsed:
        flags.FLAGS.unparse_flags()
    yield
    if parsed:
        flags.FLAGS(["pytest"])


@pytest.fixture(scope="session")
def shapenet_tfds(shapenet, tmp_path_factory) -> str:
    """``shapenet_r2n2/synthetic`` prepared from the fixture root; returns the data_dir."""
    from recon_jax.data import tfds_builder

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds_builder.build(shapenet.root, data_dir, config="synthetic")
    return data_dir
