"""Validating reader for a ShapeNet root in the 3D-R2N2 / 3D-LMNet layout (real or synthetic).

:class:`ShapeNetReader` lists the models of one split (:mod:`recon_jax.data.layout`) and loads
their files, checking each as it reads it: split JSON, views (PNG, ``uint8 [137, 137, 4]``
RGBA), ``rendering_metadata.txt`` (``float32 [num_views, 5]``), point clouds (``.npy``,
``float32 [N, 3]``, finite). A bad file raises :class:`DataError` (a ``UserError``) naming the
file, what it held and what was expected. With ``on_error="skip"`` bad models are dropped with
one :class:`SkippedModelsWarning` listing each and why; nothing is dropped silently. A broken
split file or a bad argument always raises.

Construction only checks that every listed model is on disk; :meth:`ShapeNetReader.validate`
reads every file up front. Loaders always raise on a bad file, also in skip mode.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from recon_jax.data import layout
from recon_jax.data.camera import parse_metadata
from recon_jax.data.layout import DataError

_NPY_LOAD_LOCK = threading.Lock()

__all__ = [
    "DataError",
    "SkippedModelsWarning",
    "SkippedModel",
    "ModelRecord",
    "ShapeNetReader",
    "decode_png",
    "check_points",
    "default_num_points",
]

OnError = Literal["raise", "skip"]
_ON_ERROR: tuple[str, ...] = ("raise", "skip")
_SYNSET_INDEX: dict[str, int] = {syn: i for i, (syn, _) in enumerate(layout.CATEGORIES)}
_NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (numpy.lib.format)


class SkippedModelsWarning(UserWarning):
    """Models were dropped because ``on_error="skip"`` and their files are bad."""


@dataclasses.dataclass(frozen=True)
class SkippedModel:
    """A model left out in skip mode, and why (the :class:`DataError` message)."""

    synset: str
    model_id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """Everything stored for one model, checked.

    ``views``: the ``num_views`` PNG files' bytes, unchanged (each verified to decode to
    ``uint8 [137, 137, 4]``). ``points``: ``{num_points: float32 [num_points, 3]}``.
    ``metadata``: ``float32 [num_views, 5]`` (azimuth deg, elevation deg, in-plane rotation deg,
    distance ratio, field of view deg). ``category``: index into ``layout.CATEGORIES``.
    """

    synset: str
    model_id: str
    category: int
    views: tuple[bytes, ...]
    points: dict[int, np.ndarray]
    metadata: np.ndarray


def default_num_points(split: str) -> int:
    """Points per cloud by split, as 3D-LMNet uses them: 2048 to train, 1024 to evaluate."""
    if split not in layout.SPLITS:
        raise ValueError(f"split must be one of {layout.SPLITS}, got {split!r}")
    return 2048 if split == "train" else 1024


def decode_png(data: bytes, path: str) -> np.ndarray:
    """Decode one rendered view with Pillow: ``uint8 [137, 137, 4]`` (RGBA).

    ``path`` names the source in error messages. Raises :class:`DataError` when ``data`` is not
    a complete PNG, or not ``137 x 137`` ``RGBA``.
    """
    size = layout.RENDER_SIZE
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise DataError(path, f"expected a PNG file, got format {img.format}")
            img.load()
            if img.size != (size, size) or img.mode != "RGBA":
                raise DataError(
                    path,
                    f"expected a {size}x{size} RGBA image, got {img.size[0]}x{img.size[1]} "
                    f"mode {img.mode}",
                )
            return np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"expected a {size}x{size} PNG, got a decompression bomb ({exc})"
                        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"not a readable PNG image ({type(exc).__name__}: {exc})") from exc


def check_points(array: np.ndarray, path: str, num_points: int) -> np.ndarray:
    """Check a loaded point cloud: returns ``float32 [num_points, 3]``.

    float64 is accepted and cast; any other dtype, another shape or a non-finite coordinate
    raises :class:`DataError` naming ``path``.
    """
    if array.dtype not in (np.float32, np.float64):
        raise DataError(path, f"expected a float32 point array, got dtype {array.dtype}")
    if array.shape != (num_points, 3):
        raise DataError(
            path, f"expected a point array of shape ({num_points}, 3), got {array.shape}"
        )
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.shape[0] - finite.all(axis=1).sum())
        raise DataError(path, f"expected finite coordinates, got {bad} point(s) with NaN or inf")
    return np.ascontiguousarray(array, dtype=np.float32)


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise DataError(path, f"missing file, expected {what}") from exc
    except OSError as exc:
        raise DataError(path, f"cannot read {what} ({exc})") from exc


class ShapeNetReader:
    """The models of one split of a ShapeNet root, with checked loaders.

    Args:
        root: directory in the layout of :mod:`recon_jax.data.layout`.
        split: ``"train"`` or ``"test"``.
        categories: synsets or names to keep (``None``: all 13 that the split lists).
        num_points: points per cloud loaded by :meth:`load_points` (default 2048 for ``train``,
            1024 for ``test``, as in 3D-LMNet).
        num_views: rendered views per model (24 in 3D-R2N2).
        on_error: ``"raise"`` (a :class:`DataError` at the first bad model) or ``"skip"`` (drop
            bad models with one :class:`SkippedModelsWarning` listing them).
        validate: read and check every file now (see :meth:`validate`).

    ``models`` lists ``(synset, model_id)`` in table order of categories and split-file order
    within a category; ``i`` in the loaders indexes it. ``skipped`` lists what skip mode left
    out so far.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        categories: Iterable[str] | str | None = None,
        num_points: int | None = None,
        num_views: int = layout.NUM_VIEWS,
        on_error: OnError = "raise",
        validate: bool = False,
    ) -> None:
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise DataError(self.root, "dataset root is not a directory")
        self.split = split
        self.num_points = default_num_points(split) if num_points is None else int(num_points)
        if self.num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points}")
        if not 1 <= num_views <= 100:
            raise ValueError(f"num_views must lie in [1, 100], got {num_views}")
        self.num_views = int(num_views)
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
        self.on_error: OnError = on_error
        self.categories = layout.resolve_categories(categories)
        self._explicit_categories = categories is not None
        self.skipped: list[SkippedModel] = []

        listed = self._read_split()
        models: list[tuple[str, str]] = []
        bad: list[SkippedModel] = []
        for synset, model_id, problem in listed:
            if problem is None:
                problem = self._missing_on_disk(synset, model_id)
            if problem is None:
                models.append((synset, model_id))
            elif on_error == "raise":
                raise problem
            else:
                bad.append(SkippedModel(synset, model_id, str(problem)))
        self.models: list[tuple[str, str]] = models
        self._record_skipped(bad)
        if validate:
            self.validate()

    # ----------------------------------------------------------------------------- listing
    def _read_split(self) -> list[tuple[str, str, DataError | None]]:
        """``(synset, model_id, problem)`` for every wanted entry of the split file."""
        path = layout.split_path(self.root, self.split)
        raw = _read_bytes(path, 'a split file {synset: ["synset/model_id", ...]}')
        try:
            table = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, f"malformed split JSON ({exc})") from exc
        if not isinstance(table, dict):
            raise DataError(
                path,
                f'expected a JSON object {{synset: ["synset/model_id", ...]}}, got '
                f"{type(table).__name__}",
            )
        entries: list[tuple[str, str, DataError | None]] = []
        seen: set[tuple[str, str]] = set()
        for synset, items in table.items():
            if not isinstance(items, list):
                raise DataError(
                    path,
                    f"synset {synset!r}: expected a list of model names, got "
                    f"{type(items).__name__}",
                )
            names = []
            for item in items:
                parts = item.split("/") if isinstance(item, str) else []
                if len(parts) != 2 or parts[0] != synset or not parts[1]:
                    raise DataError(
                        path,
                        f"synset {synset!r}: expected entries '{synset}/<model_id>', got {item!r}",
                    )
                if (synset, parts[1]) in seen:
                    raise DataError(path, f"model {item!r} is listed twice")
                seen.add((synset, parts[1]))
                names.append(parts[1])
            if synset not in _SYNSET_INDEX:
                problem = DataError(
                    path,
                    f"unknown synset {synset!r}; expected one of the 13 3D-R2N2 categories "
                    f"{sorted(_SYNSET_INDEX)}",
                )
                entries.extend((synset, m, problem) for m in names)
            elif synset in self.categories:
                entries.extend((synset, m, None) for m in names)
        listed = {syn for syn, _, problem in entries if problem is None}
        missing = [syn for syn in self.categories if syn not in listed]
        if missing and self._explicit_categories:
            raise DataError(path, f"lists no models of the requested categories {missing}")
        if not entries:
            raise DataError(path, "lists no models")
        order = {syn: i for i, syn in enumerate(self.categories)}
        entries.sort(key=lambda e: order.get(e[0], len(order)))  # stable: file order within
        return entries

    def _missing_on_disk(self, synset: str, model_id: str) -> DataError | None:
        split_file = layout.split_path(self.root, self.split)
        render_dir = layout.rendering_dir(self.root, synset, model_id)
        if not os.path.isdir(render_dir):
            return DataError(
                render_dir,
                f"{split_file} lists model {synset}/{model_id}, but its rendering directory is "
                "not on disk",
            )
        points = layout.pointcloud_path(self.root, synset, model_id, self.num_points)
        if not os.path.isfile(points):
            return DataError(
                points,
                f"{split_file} lists model {synset}/{model_id}, but its {self.num_points}-point "
                "cloud is not on disk",
            )
        return None

    def _record_skipped(self, bad: Sequence[SkippedModel]) -> None:
        if not bad:
            return
        self.skipped.extend(bad)
        listing = "\n".join(f"  {b.synset}/{b.model_id}: {b.reason}" for b in bad)
        warnings.warn(
            f"skipped {len(bad)} bad model(s) of split {self.split!r} under {self.root} "
            f"(on_error='skip'); {len(self.models)} model(s) remain:\n{listing}",
            SkippedModelsWarning,
            stacklevel=3,
        )

    # ----------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.models)

    def _model(self, i: int) -> tuple[str, str]:
        if not -len(self.models) <= i < len(self.models):
            raise IndexError(f"model index {i} out of range for {len(self.models)} models")
        return self.models[i]

    def category_index(self, i: int) -> int:
        """Index of model ``i``'s category in ``layout.CATEGORIES`` (0..12)."""
        return _SYNSET_INDEX[self._model(i)[0]]

    def view_path(self, i: int, view: int) -> str:
        """Path of view ``view`` of model ``i``."""
        if not 0 <= view < self.num_views:
            raise ValueError(f"view must lie in [0, {self.num_views}), got {view}")
        synset, model_id = self._model(i)
        return layout.view_path(self.root, synset, model_id, view)

    def load_view_bytes(self, i: int, view: int) -> bytes:
        """The PNG file of view ``view`` of model ``i``, unchanged (not decoded or checked)."""
        return _read_bytes(self.view_path(i, view), "a rendered view (137x137 RGBA PNG)")

    def load_view(self, i: int, view: int) -> np.ndarray:
        """View ``view`` of model ``i``: ``uint8 [137, 137, 4]`` RGBA, checked."""
        path = self.view_path(i, view)
        return decode_png(_read_bytes(path, "a rendered view (137x137 RGBA PNG)"), path)

    def load_points(self, i: int, num_points: int | None = None) -> np.ndarray:
        """Point cloud of model ``i``: ``float32 [num_points, 3]`` in the canonical frame.

        ``num_points`` defaults to the reader's; 2048 and 1024 are the files of the layout.
        """
        n = self.num_points if num_points is None else int(num_points)
        synset, model_id = self._model(i)
        path = layout.pointcloud_path(self.root, synset, model_id, n)
        if not os.path.isfile(path):
            raise DataError(path, f"missing file, expected a float32 [{n}, 3] .npy point cloud")
        array = None
        try:
            # np.load parses the header with ast.literal_eval, which is not thread-safe on
            # CPython 3.11.7 ("AST constructor recursion depth mismatch", gh-106905); the
            # pipeline's reader threads load clouds concurrently.
            with _NPY_LOAD_LOCK, open(path, "rb") as f:
                if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                    f.seek(0)
                    array = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(path, f"not a readable .npy array ({exc})") from exc
        if array is None:
            raise DataError(path, "not a readable .npy array: the file does not start with the "
                            f"NPY header; expected a float32 [{n}, 3] point cloud (np.save)")
        return check_points(array, path, n)

    def load_metadata(self, i: int) -> np.ndarray:
        """Cameras of model ``i``: ``float32 [num_views, 5]`` (see :func:`parse_metadata`)."""
        synset, model_id = self._model(i)
        path = layout.metadata_path(self.root, synset, model_id)
        raw = _read_bytes(path, f"{self.num_views} lines of camera parameters")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(path, f"expected a text file ({exc})") from exc
        return parse_metadata(text, path, self.num_views)

    def load_model(self, i: int, point_counts: Sequence[int] | None = None) -> ModelRecord:
        """Read and check every file of model ``i``.

        ``point_counts``: the clouds to load (default: the reader's ``num_points``). Raises
        :class:`DataError` on the first bad file.
        """
        synset, model_id = self._model(i)
        counts = (self.num_points,) if point_counts is None else tuple(point_counts)
        views = []
        for v in range(self.num_views):
            data = self.load_view_bytes(i, v)
            decode_png(data, self.view_path(i, v))
            views.append(data)
        points = {n: self.load_points(i, n) for n in counts}
        return ModelRecord(
            synset=synset,
            model_id=model_id,
            category=_SYNSET_INDEX[synset],
            views=tuple(views),
            points=points,
            metadata=self.load_metadata(i),
        )

    def validate(self, point_counts: Sequence[int] | None = None) -> list[SkippedModel]:
        """Read and check every file of every model (see :meth:`load_model`).

        In raise mode the first bad file raises :class:`DataError`; in skip mode bad models are
        removed from ``models`` and reported in one :class:`SkippedModelsWarning`. Returns the
        models skipped by this call.
        """
        kept: list[tuple[str, str]] = []
        bad: list[SkippedModel] = []
        for i, model in enumerate(self.models):
            try:
                self.load_model(i, point_counts)
            except DataError as exc:
                if self.on_error == "raise":
                    raise
                bad.append(SkippedModel(model[0], model[1], str(exc)))
            else:
                kept.append(model)
        self.models = kept
        self._record_skipped(bad)
        return bad

    def __repr__(self) -> str:
        return (
            f"ShapeNetReader(root={self.root!r}, split={self.split!r}, models={len(self.models)}, "
            f"num_points={self.num_points}, on_error={self.on_error!r})"
        )
