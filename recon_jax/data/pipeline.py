"""Grain input pipeline: per-process training and evaluation batches as NumPy dicts, and the
one image preprocessing (:func:`preprocess_view`, :func:`load_image_file`).

Sources are random-access sequences of per-model records: the TFDS source of
:func:`recon_jax.data.tfds_builder.load_source` or a :class:`ReaderSource` (a reader passed in
is wrapped in one). A view is decoded, cropped ``[4:-5, 4:-5]`` to 128x128 (3D-LMNet),
composited over white (:data:`BACKGROUND`) and scaled to ``[0, 1]``. Batches hold ``image``
``float32 [B, 128, 128, 3]``, ``points`` ``float32 [B, N, 3]`` (canonical frame), ``category``
``int32 [B]`` (index in ``layout.CATEGORIES``), ``synset`` and ``model_id`` ``str [B]``, ``view``
``int32 [B]``, ``camera`` ``float32 [B, 5]`` (that view's metadata line), ``mask`` ``bool [B]``
(False only for evaluation padding). Training: the process's models (strided shard), shuffled
per epoch, repeated, ``drop_remainder``. Evaluation: every (model, view) in fixed order, in
contiguous per-process blocks padded to the same number of batches. Iterators have
``get_state()`` / ``set_state()``. ``num_workers > 0`` (grain worker processes) needs absl
flags parsed (see :func:`train_dataset`). Design notes: docs/design.md, "recon_jax.data.pipeline".
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import grain
import jax
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from recon_jax.data import layout
from recon_jax.data.layout import DataError
from recon_jax.data.reader import ShapeNetReader, decode_png

__all__ = [
    "BACKGROUND",
    "ReaderSource",
    "preprocess_view",
    "load_image_file",
    "train_dataset",
    "eval_dataset",
]

#: Background the RGBA renders are composited over, in [0, 1] (white).
BACKGROUND: float = 1.0
Views = Literal["random", "all"]
_GREY16_MODES = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes of 16-bit greyscale PNGs


def _composite(rgba: np.ndarray) -> np.ndarray:
    """``float32 [H, W, 4]`` straight (PNG) alpha in ``[0, 1]`` -> ``float32 [H, W, 3]``:
    ``rgb * a + BACKGROUND * (1 - a)``."""
    alpha = rgba[..., 3:]
    return rgba[..., :3] * alpha + np.float32(BACKGROUND) * (np.float32(1.0) - alpha)


def _crop(image: np.ndarray) -> np.ndarray:
    lo, hi = layout.CROP
    return image[lo:hi, lo:hi]


def preprocess_view(rgba: np.ndarray) -> np.ndarray:
    """``uint8 [137, 137, 4]`` RGBA render -> ``float32 [128, 128, 3]`` in ``[0, 1]``.

    Crops ``[4:-5, 4:-5]``, scales to ``[0, 1]`` and composites over :data:`BACKGROUND` with
    straight (PNG) alpha: ``rgb * a + BACKGROUND * (1 - a)``.
    """
    size = layout.RENDER_SIZE
    if rgba.shape != (size, size, 4) or rgba.dtype != np.uint8:
        raise ValueError(
            f"rgba must be uint8 [{size}, {size}, 4], got {rgba.dtype} {tuple(rgba.shape)}"
        )
    return _composite(_crop(rgba).astype(np.float32) * np.float32(1.0 / 255.0))


def _float_rgba(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> ``float32 [H, W, 4]`` in ``[0, 1]`` (16-bit greyscale kept 16-bit)."""
    if image.mode in _GREY16_MODES:
        grey = np.clip(np.asarray(image, dtype=np.float32) / np.float32(65535.0), 0.0, 1.0)
        return np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
    rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    return rgba.astype(np.float32) * np.float32(1.0 / 255.0)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """``float32 [S, S, 3]`` -> ``[size, size, 3]``, Lanczos (antialiased), clipped to [0, 1]."""
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c]), mode="F").resize(
            (size, size), Image.Resampling.LANCZOS))
        for c in range(rgb.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file (PNG, JPEG, any mode Pillow reads) as the network's input: ``float32
    [128, 128, 3]`` in ``[0, 1]``, preprocessed as the pipeline preprocesses ShapeNet views.

    A 137x137 image is cropped ``[4:-5, 4:-5]`` and composited over :data:`BACKGROUND` exactly
    as :func:`preprocess_view` (identical values for a 137x137 RGBA render); any other size is
    composited, centre-cropped to a square and resized to 128x128 (Lanczos, antialiased).
    16-bit greyscale keeps its 16 bits; the EXIF orientation of photos is applied. Not
    thread-safe (it turns Pillow's decompression-bomb warning into an error while it reads).

    Raises:
        DataError: naming ``path`` when it is missing, not an image, truncated, or larger than
            Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = ImageOps.exif_transpose(image)
                w, h = image.size
                render = (w, h) == (layout.RENDER_SIZE, layout.RENDER_SIZE)
                if not render:  # the centre square (cropping commutes with compositing)
                    side = min(w, h)
                    left, top = (w - side) // 2, (h - side) // 2
                    image = image.crop((left, top, left + side, top + side))
                rgba = _float_rgba(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, f"image too large: {exc}") from exc
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise DataError(path, f"cannot open image ({exc.strerror})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"not a readable image file ({type(exc).__name__}: {exc})") from exc
    if render:
        return _composite(_crop(rgba))
    return _resize(_composite(rgba), layout.IMAGE_SIZE)


class _ReaderViews(Sequence):
    """The PNG bytes of one model's views, read from disk on access (a lazy ``Sequence``)."""

    def __init__(self, reader: ShapeNetReader, index: int) -> None:
        self._reader, self._index = reader, index

    def __len__(self) -> int:
        return self._reader.num_views

    def __getitem__(self, view: int) -> bytes:  # type: ignore[override]
        return self._reader.load_view_bytes(self._index, view)


class ReaderSource:
    """Random-access source over a :class:`ShapeNetReader`, with the TFDS record layout.

    ``point_counts``: the clouds each record carries (default: the reader's ``num_points``).
    Views are read lazily, so an example built from one view reads one PNG file.
    """

    def __init__(self, reader: ShapeNetReader, point_counts: Sequence[int] | None = None) -> None:
        self.reader = reader
        self.point_counts = (
            (reader.num_points,) if point_counts is None else tuple(int(n) for n in point_counts)
        )

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        synset, model_id = self.reader.models[index]
        return {
            "views": _ReaderViews(self.reader, index),
            **{f"points_{n}": self.reader.load_points(index, n) for n in self.point_counts},
            "metadata": self.reader.load_metadata(index),
            "category": self.reader.category_index(index),
            "synset": synset,
            "model_id": model_id,
        }

    def __repr__(self) -> str:
        return f"ReaderSource({self.reader!r}, point_counts={self.point_counts})"


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8")
    return str(value)


@dataclasses.dataclass(frozen=True)
class _LoadExample:
    """``(model_index, view, valid)`` -> one preprocessed example dict (see module docstring)."""

    source: Any
    num_points: int
    num_views: int

    def __call__(self, item: tuple[int, int, bool]) -> dict[str, Any]:
        model, view, valid = item
        record = self.source[int(model)]
        synset, model_id = _text(record["synset"]), _text(record["model_id"])
        views = record["views"]
        if len(views) != self.num_views:
            raise ValueError(
                f"record {model} ({synset}/{model_id}) has {len(views)} views, "
                f"expected num_views={self.num_views}"
            )
        key = f"points_{self.num_points}"
        if key not in record:
            raise ValueError(
                f"record {model} ({synset}/{model_id}) has no {self.num_points}-point cloud; "
                f"available: {sorted(k for k in record if k.startswith('points_'))}"
            )
        name = f"{synset}/{model_id} view {view:02d}.png"
        rgba = decode_png(bytes(views[view]), name)
        points = np.asarray(record[key], dtype=np.float32)
        if points.shape != (self.num_points, 3):
            raise ValueError(
                f"{synset}/{model_id}: {key} has shape {points.shape}, "
                f"expected ({self.num_points}, 3)"
            )
        return {
            "image": preprocess_view(rgba),
            "points": points,
            "category": np.int32(record["category"]),
            "synset": np.str_(synset),
            "model_id": np.str_(model_id),
            "view": np.int32(view),
            "camera": np.asarray(record["metadata"], dtype=np.float32)[view],
            "mask": np.bool_(valid),
        }


@dataclasses.dataclass(frozen=True)
class _RandomView:
    """Model index -> ``(model_index, random view, True)``."""

    num_views: int

    def __call__(self, model: int, rng: np.random.Generator) -> tuple[int, int, bool]:
        return int(model), int(rng.integers(self.num_views)), True


@dataclasses.dataclass(frozen=True)
class _Pair:
    """Flat index ``k`` over ``models x views`` -> ``(models[k // V], views[k % V], True)``."""

    models: np.ndarray
    views: tuple[int, ...]

    def __call__(self, k: int) -> tuple[int, int, bool]:
        m, v = divmod(int(k), len(self.views))
        return int(self.models[m]), self.views[v], True


@dataclasses.dataclass(frozen=True)
class _EvalItem:
    """Index ``k`` of this process's padded block -> ``(model, view, valid)``.

    Global item ``g = start + k`` is ``(g // V, views[g % V])``; past the block's end the item
    is global item 0 with ``valid=False``.
    """

    start: int
    stop: int
    views: tuple[int, ...]

    def __call__(self, k: int) -> tuple[int, int, bool]:
        g = self.start + int(k)
        valid = g < self.stop
        m, v = divmod(g if valid else 0, len(self.views))
        return m, self.views[v], valid


def _as_source(source: Any, num_points: int) -> Any:
    if isinstance(source, ShapeNetReader):
        return ReaderSource(source, point_counts=(num_points,))
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise ValueError(
            f"source must be a random-access sequence of records or a ShapeNetReader, got "
            f"{type(source).__name__}"
        )
    if len(source) == 0:
        raise ValueError("source is empty: it holds no models")
    return source


def _resolve_shard(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None and process_count is None:
        return jax.process_index(), jax.process_count()
    if process_index is None or process_count is None:
        raise ValueError(
            "process_index and process_count must be given together (or both None to ask JAX), "
            f"got process_index={process_index}, process_count={process_count}"
        )
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got process_index={process_index}, "
            f"process_count={process_count}"
        )
    return int(process_index), int(process_count)


def _check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _finish(
    ds: grain.MapDataset,
    batch_size: int,
    num_threads: int,
    num_workers: int,
    prefetch: int | None,
    *,
    batch_in_workers: bool,
) -> grain.IterDataset:
    """Threads, batching and worker processes.

    ``batch_in_workers``: each worker batches its own slice (elements ``w, w + W, ...``; cheap
    IPC, for the infinite training stream). Otherwise workers hand over single elements, which
    grain interleaves back into the original order, and this process batches them (for the
    finite evaluation pass, where batching per worker would drop or reorder items).
    """
    if num_threads < 0 or num_workers < 0:
        raise ValueError(
            f"num_threads and num_workers must be >= 0, got {num_threads} and {num_workers}"
        )
    buffer = prefetch if prefetch is not None else max(2 * batch_size, 16)
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=buffer)
    out = ds.to_iter_dataset(read)
    workers = grain.MultiprocessingOptions(num_workers=num_workers)
    if num_workers > 0:
        _check_workers_can_start()
    if batch_in_workers:
        out = out.batch(batch_size, drop_remainder=True)
        return out.mp_prefetch(workers) if num_workers > 0 else out
    if num_workers > 0:
        out = out.mp_prefetch(workers)
    return out.batch(batch_size, drop_remainder=True)


def _check_workers_can_start() -> None:
    """grain 0.2.18 reads an absl flag (``--grain_enable_multiprocess_worker_profiling``) in
    this process when it starts worker processes, which raises until the application has
    parsed absl flags (fixed in grain after 0.2.18). Say so, and how, before grain fails."""
    try:
        grain.config.py_debug_mode  # noqa: B018  (raises while absl flags are unparsed)
    except Exception as exc:  # absl.flags.UnparsedFlagAccessError
        if type(exc).__name__ != "UnparsedFlagAccessError":
            raise
        raise RuntimeError(
            "num_workers > 0: grain starts its worker processes only once absl flags are "
            "parsed; call jax.config.parse_flags_with_absl() first (`recon-jax` does)"
        ) from None


def train_dataset(
    source: Any,
    *,
    batch_size: int,
    num_points: int = 2048,
    views: Views = "random",
    seed: int = 0,
    num_views: int = layout.NUM_VIEWS,
    process_index: int | None = None,
    process_count: int | None = None,
    num_threads: int = 4,
    num_workers: int = 0,
    prefetch: int | None = None,
) -> grain.IterDataset:
    """Infinite, shuffled training batches for this process (see the module docstring).

    Args:
        source: a record source (TFDS data source, :class:`ReaderSource`) or a reader.
        batch_size: examples per batch on this process.
        num_points: the cloud to use as target (``points_<num_points>`` of the records).
        views: ``"random"`` (one seeded random view per model per epoch) or ``"all"`` (every
            (model, view) pair once per epoch).
        seed: seeds the shuffle and the view draws (different per epoch, same per seed).
        num_views: views per model in the records.
        process_index, process_count: this process's shard of the models (strided:
            ``models[process_index::process_count]``); both ``None`` asks JAX.
        num_threads: reader threads in each process (they never change the stream).
        num_workers: worker processes (0: none). With ``W`` workers, worker ``w`` batches
            elements ``w, w + W, ...`` of the stream and batches come from the workers in turn:
            deterministic and resumable, but another order than with ``W = 0``. Needs absl
            flags parsed (``jax.config.parse_flags_with_absl()``; ``recon-jax`` does).
        prefetch: elements buffered ahead (default ``max(2 * batch_size, 16)``).
    """
    _check_positive("batch_size", batch_size)
    _check_positive("num_views", num_views)
    if views not in ("random", "all"):
        raise ValueError(f"views must be 'random' or 'all', got {views!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32), got {seed}")
    source = _as_source(source, num_points)
    index, count = _resolve_shard(process_index, process_count)
    models = np.arange(len(source))[index::count]
    if models.size == 0:
        raise ValueError(
            f"process {index} of {count} gets no models: the source holds only {len(source)}"
        )
    if views == "random":
        ds = grain.MapDataset.source(models).shuffle(seed=seed)
        ds = ds.random_map(_RandomView(num_views), seed=(seed + 1) % 2**32)
    else:
        ds = grain.MapDataset.range(models.size * num_views).shuffle(seed=seed)
        ds = ds.map(_Pair(models, tuple(range(num_views))))
    ds = ds.repeat().map(_LoadExample(source, num_points, num_views))
    return _finish(ds, batch_size, num_threads, num_workers, prefetch, batch_in_workers=True)


def eval_dataset(
    source: Any,
    *,
    batch_size: int,
    num_points: int = 1024,
    views: Sequence[int] | None = None,
    num_views: int = layout.NUM_VIEWS,
    process_index: int | None = None,
    process_count: int | None = None,
    num_threads: int = 4,
    num_workers: int = 0,
    prefetch: int | None = None,
) -> grain.IterDataset:
    """One deterministic pass over every (model, view), model-major, as padded batches.

    The ``len(source) * len(views)`` items are split into ``process_count`` contiguous blocks
    of ``ceil(total / process_count)``; every process yields the same number of batches
    (the last ones padded with ``mask == False`` copies of item 0). Concatenating the valid
    items of processes ``0, 1, ...`` gives the global order.

    Args:
        views: the views to evaluate (default all ``num_views``), in this order per model.
        Others: as in :func:`train_dataset`.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("num_views", num_views)
    view_list = tuple(range(num_views)) if views is None else tuple(int(v) for v in views)
    if not view_list or any(not 0 <= v < num_views for v in view_list):
        raise ValueError(
            f"views must be a non-empty list of views in [0, {num_views}), got {views}"
        )
    source = _as_source(source, num_points)
    index, count = _resolve_shard(process_index, process_count)
    total = len(source) * len(view_list)
    per_process = math.ceil(total / count)
    padded = math.ceil(per_process / batch_size) * batch_size
    start = index * per_process
    stop = min(start + per_process, total)
    ds = grain.MapDataset.range(padded).map(_EvalItem(start, stop, view_list))
    ds = ds.map(_LoadExample(source, num_points, num_views))
    return _finish(ds, batch_size, num_threads, num_workers, prefetch, batch_in_workers=False)
