"""A synthetic ShapeNet-like dataset in the exact layout of the real one (``recon-jax make-data``).

Per category and model index: a random object from the category's part grammar
(:mod:`recon_jax.data.shapes`, normalised like ShapeNet: bounding box centred, diagonal 1, y up,
front +x), ``views`` 137x137 RGBA renders from cameras drawn as 3D-R2N2 drew them
(:mod:`recon_jax.data.camera`) with ``rendering_metadata.txt`` and ``renderings.txt``, 2048- and
1024-point clouds (independent samples uniform by area on the outer surface, float32, object
frame), 80/20 splits per category, and optionally ``contact_sheet.png`` (view 00 beside the
2048-point cloud of each category's first model). Training reads 24 views; fewer are for tests.

Deterministic: each random choice of a model comes from
``SeedSequence(entropy=seed, spawn_key=(synset, index, purpose))``, so a model's bytes depend
only on ``(seed, synset, index)``, not on workers or other categories. Design notes:
docs/design.md, "recon_jax.data.synthetic".
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tqdm.auto import tqdm

from recon_jax import viz
from recon_jax.data import layout
from recon_jax.data.camera import Camera, format_metadata_line, parse_metadata_line, sample_cameras
from recon_jax.data.primitives import Shape, sample_outer_surface
from recon_jax.data.render import render
from recon_jax.data.shapes import make_object
from recon_jax.errors import UserError

__all__ = [
    "MAX_VIEWS",
    "GenerationSummary",
    "object_rng",
    "model_id",
    "split_models",
    "generate_model",
    "write_model",
    "generate_dataset",
    "write_contact_sheet",
]

MAX_VIEWS = 100  # view files are named NN.png
# The purposes of a model's random streams (the last element of the SeedSequence spawn key).
_ID, _SHAPE, _CAMERAS, _POINTS = 0, 1, 2, 3  # _POINTS + i for the i-th point cloud
_SPLIT_KEY = 2**31 - 1  # spawn-key index of a category's split permutation (never a model index)


@dataclasses.dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: the output directory.
        seed, views, models_per_category: the generation parameters.
        train, test: ``{synset: [model_id, ...]}`` per split (sorted ids).
        num_models, num_images: totals written.
        num_parts: mean number of parts per object.
        seconds: wall time of the whole generation (contact sheet included).
        contact_sheet: path of the contact sheet PNG, or None.
    """

    root: str
    seed: int
    views: int
    models_per_category: int
    train: dict[str, list[str]]
    test: dict[str, list[str]]
    num_models: int
    num_images: int
    num_parts: float
    seconds: float
    contact_sheet: str | None


def object_rng(seed: int, synset: str, index: int, purpose: int) -> np.random.Generator:
    """The generator of one purpose of model ``index`` of ``synset`` (see module docstring)."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(int(synset), index, purpose))
    return np.random.default_rng(ss)


def model_id(seed: int, synset: str, index: int) -> str:
    """The deterministic 32-hex-digit id of model ``index`` of ``synset`` under ``seed``."""
    return object_rng(seed, synset, index, _ID).bytes(16).hex()


def split_models(seed: int, synset: str, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """80/20 split of one category's ids: ``(train, test)``, each sorted.

    ``n_test = round(n / 5)`` (integer rounding), at least 1 when ``n >= 2``, 0 when ``n == 1``.
    """
    n = len(ids)
    n_test = 0 if n < 2 else max(1, (n + 2) // 5)
    order = object_rng(seed, synset, _SPLIT_KEY, 0).permutation(n)
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def generate_model(
    seed: int, synset: str, index: int, views: int = layout.NUM_VIEWS
) -> tuple[Shape, list[Camera], dict[int, np.ndarray]]:
    """Model ``index`` of ``synset`` in memory: its shape, cameras and float32 point clouds.

    Returns:
        ``(shape, cameras, {num_points: [num_points, 3] float32})`` for ``layout.POINT_COUNTS``.
    """
    shape = make_object(synset, object_rng(seed, synset, index, _SHAPE))
    cameras = sample_cameras(object_rng(seed, synset, index, _CAMERAS), views)
    clouds = {
        n: sample_outer_surface(shape, n, object_rng(seed, synset, index, _POINTS + i))[0].astype(
            np.float32
        )
        for i, n in enumerate(layout.POINT_COUNTS)
    }
    return shape, cameras, clouds


def write_model(
    root: str, seed: int, synset: str, index: int, views: int = layout.NUM_VIEWS
) -> tuple[str, int]:
    """Generate and write model ``index`` of ``synset`` under ``root``.

    Returns:
        ``(model_id, number of parts)``.
    """
    mid = model_id(seed, synset, index)
    shape, cameras, clouds = generate_model(seed, synset, index, views)
    render_dir = layout.rendering_dir(root, synset, mid)
    os.makedirs(render_dir, exist_ok=True)
    for view, camera in enumerate(cameras):
        image = render(shape, camera, layout.RENDER_SIZE)
        Image.fromarray(image).save(layout.view_path(root, synset, mid, view), format="PNG")
    with open(layout.metadata_path(root, synset, mid), "w") as f:
        f.write("".join(format_metadata_line(c) + "\n" for c in cameras))
    with open(os.path.join(render_dir, "renderings.txt"), "w") as f:  # as in ShapeNetRendering
        f.write("".join(f"{view:02d}.png\n" for view in range(len(cameras))))
    for n, cloud in clouds.items():
        path = layout.pointcloud_path(root, synset, mid, n)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, cloud)
    return mid, len(shape.parts)


def _write_model_task(task: tuple[str, int, str, int, int]) -> tuple[str, str, int]:
    root, seed, synset, index, views = task
    mid, parts = write_model(root, seed, synset, index, views)
    return synset, mid, parts


def _pool_context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    """``start_method`` if given, else ``fork`` where the platform has it, else ``spawn``.

    Forking is safe here when the caller has JAX's runtime loaded: the workers only run NumPy
    and Pillow code and never touch JAX. It is not once ``jax.distributed`` is initialised
    (its gRPC threads can leave a forked child deadlocked): pass ``"spawn"`` then. ``spawn``
    re-imports the caller's main module in every worker, which fails for ``python -`` and stdin
    scripts, hence not the default.
    """
    if start_method is not None:
        return multiprocessing.get_context(start_method)
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _prepare_root(root: str, overwrite: bool) -> None:
    if os.path.exists(root) and not os.path.isdir(root):
        raise UserError(f"out directory {root!r} exists and is not a directory")
    existing = [
        d
        for d in (layout.RENDER_DIR, layout.POINTS_DIR, layout.SPLITS_DIR)
        if os.path.isdir(os.path.join(root, d)) and os.listdir(os.path.join(root, d))
    ]
    if existing and not overwrite:
        raise UserError(
            f"out directory {root!r} already holds a dataset ({', '.join(existing)}); pass "
            "overwrite=True (--overwrite) to replace it, or choose another directory"
        )
    for d in existing:
        shutil.rmtree(os.path.join(root, d))
    os.makedirs(root, exist_ok=True)


def generate_dataset(
    out_dir: str,
    models_per_category: int = 40,
    views: int = layout.NUM_VIEWS,
    seed: int = 0,
    workers: int | None = None,
    categories: Iterable[str] | str | None = None,
    contact_sheet: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    start_method: str | None = None,
) -> GenerationSummary:
    """Write the synthetic dataset under ``out_dir`` (see the module docstring).

    Args:
        out_dir: output root (created if missing).
        models_per_category: models per category (>= 1).
        views: renders per model, 1 to 100 (3D-R2N2 and training: 24).
        seed: non-negative integer; the same seed gives the same bytes.
        workers: processes (default: the CPUs this process may use); 1 runs inline.
        categories: names or synsets (default all 13).
        contact_sheet: also write ``out_dir/contact_sheet.png``.
        overwrite: replace an existing dataset in ``out_dir`` (only its three layout folders).
        progress: show a tqdm progress bar.
        start_method: the worker pool's multiprocessing start method (default ``fork`` where
            available; ``spawn`` in a process that runs ``jax.distributed``).

    Raises:
        UserError: for out-of-range arguments, unknown categories, or an existing dataset in
            ``out_dir`` without ``overwrite``.
    """
    for name, value, lo in (
        ("models_per_category", models_per_category, 1),
        ("views", views, 1),
        ("seed", seed, 0),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
            raise UserError(f"{name} must be an integer >= {lo}, got {value!r}")
    if views > MAX_VIEWS:
        raise UserError(f"views must be at most {MAX_VIEWS}, got {views}")
    if workers is None:
        workers = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise UserError(f"workers must be an integer >= 1, got {workers!r}")
    synsets = layout.resolve_categories(categories)
    start = time.perf_counter()
    _prepare_root(out_dir, overwrite)

    ids = {syn: [model_id(seed, syn, i) for i in range(models_per_category)] for syn in synsets}
    for syn, syn_ids in ids.items():
        if len(set(syn_ids)) != len(syn_ids):  # 128-bit ids: never expected
            raise RuntimeError(f"model id collision in category {syn} with seed {seed}")
    tasks = [
        (out_dir, int(seed), syn, i, int(views))
        for syn in synsets
        for i in range(models_per_category)
    ]

    parts_total = 0
    with tqdm(total=len(tasks), unit="model", desc="make-data", disable=not progress) as bar:
        if workers == 1 or len(tasks) == 1:
            results = map(_write_model_task, tasks)
            for _, _, n_parts in results:
                parts_total += n_parts
                bar.update()
        else:
            with warnings.catch_warnings():
                # JAX, when loaded, warns at every fork; the workers never use it (see above).
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                pool = _pool_context(start_method).Pool(min(workers, len(tasks)))
            with pool:
                for _, _, n_parts in pool.imap_unordered(_write_model_task, tasks, chunksize=1):
                    parts_total += n_parts
                    bar.update()

    train, test = {}, {}
    for syn in synsets:
        train[syn], test[syn] = split_models(seed, syn, ids[syn])
    os.makedirs(os.path.join(out_dir, layout.SPLITS_DIR), exist_ok=True)
    for split, table in (("train", train), ("test", test)):
        payload = {syn: [f"{syn}/{mid}" for mid in mids] for syn, mids in table.items()}
        with open(layout.split_path(out_dir, split), "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")

    sheet = None
    if contact_sheet:
        sheet = os.path.join(out_dir, "contact_sheet.png")
        write_contact_sheet(out_dir, [(syn, ids[syn][0]) for syn in synsets], sheet)
    return GenerationSummary(
        root=out_dir,
        seed=int(seed),
        views=int(views),
        models_per_category=int(models_per_category),
        train=train,
        test=test,
        num_models=len(tasks),
        num_images=len(tasks) * int(views),
        num_parts=parts_total / len(tasks),
        seconds=time.perf_counter() - start,
        contact_sheet=sheet,
    )


def write_contact_sheet(
    root: str, models: Sequence[tuple[str, str]], path: str, per_row: int = 4
) -> None:
    """A PNG of ``(synset, model_id)`` models as written: view 00 beside its 2048-point cloud.

    The scatter is seen from view 00's azimuth and elevation (object frame mapped to matplotlib's
    z-up axes by the rotation ``(x, y, z) -> (x, -z, y)``, so it is not mirrored) and coloured by
    height. Reads the files back from ``root``, so it shows exactly what was written.
    """
    if not models:
        raise ValueError("models must name at least one (synset, model_id)")
    rows = math.ceil(len(models) / per_row)
    fig = Figure(figsize=(4.0 * per_row, 2.1 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for k, (syn, mid) in enumerate(models):
        image = np.asarray(Image.open(layout.view_path(root, syn, mid, 0)).convert("RGBA"))
        with open(layout.metadata_path(root, syn, mid)) as f:
            camera = parse_metadata_line(f.readline(), layout.metadata_path(root, syn, mid))
        cloud = np.load(layout.pointcloud_path(root, syn, mid, layout.POINT_COUNTS[0]))
        r, c = divmod(k, per_row)
        ax = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 1)
        ax.imshow(image)
        ax.set_title(f"{layout.SYNSET_TO_NAME[syn]} {mid[:8]}", fontsize=8)
        ax.axis("off")
        ax3 = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 2, projection="3d")
        viz.scatter_cloud(ax3, cloud, elev=camera.elevation, azim=-camera.azimuth,
                          point_size=0.6, zoom=1.5)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.95, wspace=0.02, hspace=0.15)
    fig.savefig(path, format="png", metadata={"Software": None})
