"""TFDS builder ``shapenet_r2n2`` over a ShapeNet root in the 3D-R2N2 / 3D-LMNet layout; no
TensorFlow needed.

It reads a root (real ShapeNet, or the synthetic set of ``recon-jax make-data``) as TFDS's
manual directory and writes ``train`` and ``test`` as array_record files, one example per model
in the reader's order (record ``i`` is ``ShapeNetReader(root, split).models[i]``): ``views``
(the 24 PNG files' bytes, unchanged), ``points_2048`` ``float32 [2048, 3]``, ``points_1024``
``float32 [1024, 3]``, ``metadata`` ``float32 [24, 5]``, ``category`` (index in
``layout.CATEGORIES``), ``synset`` and ``model_id``. Every file is checked while writing;
``on_error="skip"`` drops bad models with a warning and lists them in ``metadata.json``.
Reading goes through ``tfds.data_source`` (array_record + NumPy); :class:`EncodedViews` keeps
the views as PNG bytes so the pipeline decodes only the view it needs. Design notes:
docs/design.md, "recon_jax.data.tfds_builder".
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from recon_jax.data import layout
from recon_jax.data.reader import (
    DataError,
    ShapeNetReader,
    SkippedModel,
    SkippedModelsWarning,
)

__all__ = [
    "ShapeNetConfig",
    "ShapenetR2n2",
    "EncodedViews",
    "build",
    "load_source",
    "skipped_models",
    "directory_usage",
    "source_size",
]

_CITATION = """\
@inproceedings{choy20163d,
  title={3D-R2N2: A Unified Approach for Single and Multi-view 3D Object Reconstruction},
  author={Choy, Christopher B and Xu, Danfei and Gwak, JunYoung and Chen, Kevin and Savarese,
          Silvio},
  booktitle={ECCV}, year={2016}}
@inproceedings{mandikal20183dlmnet,
  title={3D-LMNet: Latent Embedding Matching for Accurate and Diverse 3D Point Cloud
         Reconstruction from a Single Image},
  author={Mandikal, Priyanka and Navaneet, K L and Agarwal, Mayank and Babu, R Venkatesh},
  booktitle={BMVC}, year={2018}}
"""

_MANUAL_INSTRUCTIONS = """\
Point the manual directory at a ShapeNet root in the 3D-R2N2 / 3D-LMNet layout:
  ShapeNetRendering/<synset>/<model_id>/rendering/00.png ... 23.png, rendering_metadata.txt
  ShapeNet_pointclouds/<synset>/<model_id>/pointcloud_2048.npy, pointcloud_1024.npy
  splits/train_models.json, splits/test_models.json
Real data: the 3D-R2N2 renderings (ShapeNetRendering.tgz) and the 3D-LMNet point clouds and
splits. Synthetic data: the output directory of `recon-jax make-data --out DIR`.
"""


@dataclasses.dataclass(eq=False)
class ShapeNetConfig(tfds.core.BuilderConfig):
    """A prepared variant: which categories (``None``: all 13) and views per model."""

    categories: tuple[str, ...] | None = None
    num_views: int = layout.NUM_VIEWS


class EncodedViews(tfds.decode.SkipDecoding):
    """Decoder that keeps each view's PNG bytes, for ``decoders={"views": EncodedViews()}``.

    ``tfds.decode.SkipDecoding`` does this for single features; inside a ``Sequence`` TFDS's
    NumPy path calls ``decode_batch_example_np``, which only TF-backed decoders define. Here it
    returns the serialized sequence: an object array of ``num_views`` ``bytes``.
    """

    def decode_batch_example_np(self, serialized_example: Any) -> np.ndarray:
        return np.asarray(serialized_example, dtype=object)


class ShapenetR2n2(tfds.core.GeneratorBasedBuilder):
    """ShapeNet renderings (3D-R2N2) and point clouds (3D-LMNet), one example per model.

    Extra constructor argument: ``on_error`` (``"raise"`` or ``"skip"``, see
    :class:`~recon_jax.data.reader.ShapeNetReader`). ``file_format`` defaults to array_record.
    """

    name = "shapenet_r2n2"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "PNG bytes, 2048- and 1024-point clouds, cameras."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS
    BUILDER_CONFIGS = [
        ShapeNetConfig(name="synthetic", description="The synthetic set of recon-jax make-data."),
        ShapeNetConfig(name="real", description="ShapeNet (3D-R2N2 renders, 3D-LMNet clouds)."),
    ]
    DEFAULT_CONFIG_NAME = "synthetic"
    # TFDS 4.9 locates a builder's source file (for its checksums file) through the
    # `importlib_resources` backport, which it only installs on Python < 3.9; naming the file
    # here skips that lookup. This builder downloads nothing, so it has no checksums.
    code_path = epath.Path(__file__)

    def __init__(self, *, on_error: str = "raise", **kwargs: Any) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self._on_error = on_error
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    @property
    def _views(self) -> int:
        return getattr(self.builder_config, "num_views", layout.NUM_VIEWS)

    def _info(self) -> tfds.core.DatasetInfo:
        size, views = layout.RENDER_SIZE, self._views
        features = tfds.features.FeaturesDict(
            {
                "views": tfds.features.Sequence(
                    tfds.features.Image(shape=(size, size, 4), encoding_format="png"),
                    length=views,
                ),
                **{
                    f"points_{n}": tfds.features.Tensor(shape=(n, 3), dtype=np.float32)
                    for n in layout.POINT_COUNTS
                },
                "metadata": tfds.features.Tensor(shape=(views, 5), dtype=np.float32),
                "category": tfds.features.ClassLabel(names=[n for _, n in layout.CATEGORIES]),
                "synset": tfds.features.Text(),
                "model_id": tfds.features.Text(),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "ShapeNet in the 3D-R2N2 / 3D-LMNet layout: 137x137 RGBA renders (PNG bytes), "
                "2048- and 1024-point clouds in the canonical frame, camera metadata."
            ),
            features=features,
            homepage="https://github.com/chrischoy/3D-R2N2",
            citation=_CITATION,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        root = os.fspath(dl_manager.manual_dir)
        return {split: self._generate_examples(root, split) for split in layout.SPLITS}

    def _generate_examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        categories = getattr(self.builder_config, "categories", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SkippedModelsWarning)
            reader = ShapeNetReader(
                root,
                split,
                categories=categories,
                num_points=layout.POINT_COUNTS[0],
                num_views=self._views,
                on_error=self._on_error,  # type: ignore[arg-type]
            )
        skipped: list[SkippedModel] = list(reader.skipped)
        for w in caught:  # re-emit anything that is not the listing summary reported below
            if not issubclass(w.category, SkippedModelsWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for i, (synset, model_id) in enumerate(reader.models):
            try:
                record = reader.load_model(i, layout.POINT_COUNTS)
            except DataError as exc:
                if self._on_error == "raise":
                    raise
                skipped.append(SkippedModel(synset, model_id, str(exc)))
                continue
            example = {
                "views": list(record.views),
                **{f"points_{n}": record.points[n] for n in layout.POINT_COUNTS},
                "metadata": record.metadata,
                "category": record.category,
                "synset": synset,
                "model_id": model_id,
            }
            yield f"{synset}/{model_id}", example
        self.info.metadata.setdefault("skipped", {})[split] = [
            dataclasses.asdict(s) for s in skipped
        ]
        self.info.metadata.setdefault("source_root", root)
        if skipped:
            listing = "\n".join(f"  {s.synset}/{s.model_id}: {s.reason}" for s in skipped)
            warnings.warn(
                f"shapenet_r2n2 split {split!r}: skipped {len(skipped)} bad model(s) of {root} "
                f"(on_error='skip'); they are listed in metadata.json:\n{listing}",
                SkippedModelsWarning,
                stacklevel=2,
            )


def build(
    root: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    config: str | ShapeNetConfig = "synthetic",
    on_error: str = "raise",
) -> ShapenetR2n2:
    """Prepare ``shapenet_r2n2/<config>`` from the ShapeNet root ``root`` into ``data_dir``.

    ``root`` is TFDS's manual directory. A dataset already prepared there is reused as is.
    Returns the builder (``builder.as_data_source(split)`` reads it).
    """
    root = os.fspath(root)
    for split in layout.SPLITS:
        path = layout.split_path(root, split)
        if not os.path.isfile(path):
            raise DataError(path, "missing split file; is the manual directory a ShapeNet root?")
    builder = ShapenetR2n2(data_dir=os.fspath(data_dir), config=config, on_error=on_error)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
    return builder


def load_source(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    config: str = "synthetic",
    decode_views: bool = False,
) -> Sequence[dict[str, Any]]:
    """Random-access source over a prepared split (``tfds.data_source``, no TensorFlow).

    Each record is a dict of NumPy values: ``views`` (``object [24]`` PNG bytes, or with
    ``decode_views`` a list of 24 ``uint8 [137, 137, 4]`` decoded by TFDS with Pillow),
    ``points_2048``
    ``float32 [2048, 3]``, ``points_1024`` ``float32 [1024, 3]``, ``metadata`` ``float32 [24, 5]``,
    ``category`` int, ``synset`` and ``model_id`` bytes.
    """
    if split not in layout.SPLITS:
        raise ValueError(f"split must be one of {layout.SPLITS}, got {split!r}")
    decoders = None if decode_views else {"views": EncodedViews()}
    builder = ShapenetR2n2(data_dir=os.fspath(data_dir), config=config)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"shapenet_r2n2/{config} is not prepared under {data_dir}; run "
            f"`recon-jax prepare-tfds --root ROOT --data-dir {data_dir} --config {config}`"
        )
    return builder.as_data_source(split=split, decoders=decoders)


def skipped_models(builder: ShapenetR2n2) -> dict[str, list[SkippedModel]]:
    """The models that ``on_error="skip"`` left out of each split of a prepared dataset."""
    return {split: [SkippedModel(**s) for s in items]
            for split, items in builder.info.metadata.get("skipped", {}).items()}


def directory_usage(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(files, bytes)`` of the regular files under ``path``."""
    files = size = 0
    for dirpath, _, filenames in os.walk(os.fspath(path)):
        files += len(filenames)
        size += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    return files, size


def source_size(root: str | os.PathLike[str], *, num_views: int = layout.NUM_VIEWS) -> int:
    """Bytes of the source files that the builder reads: the split files and, of every listed
    model on disk, its views, metadata and both clouds (files that are missing count 0)."""
    root = os.fspath(root)
    total = 0
    for split in layout.SPLITS:
        total += os.path.getsize(layout.split_path(root, split))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedModelsWarning)  # build() reported them
            reader = ShapeNetReader(root, split, num_views=num_views, on_error="skip")
        for synset, model_id in reader.models:
            paths = [layout.view_path(root, synset, model_id, v) for v in range(num_views)]
            paths.append(layout.metadata_path(root, synset, model_id))
            paths.extend(layout.pointcloud_path(root, synset, model_id, n)
                         for n in layout.POINT_COUNTS)
            total += sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    return total
