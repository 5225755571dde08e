"""shapenet_r2n2 TFDS builder: build and read back with TensorFlow absent, equal to the reader."""

from __future__ import annotations

import importlib.abc
import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recon_jax.data import layout
from recon_jax.data.reader import DataError, ShapeNetReader, SkippedModelsWarning, decode_png

tfds = pytest.importorskip("tensorflow_datasets")
tfds_builder = pytest.importorskip("recon_jax.data.tfds_builder")


class HideTensorFlow(importlib.abc.MetaPathFinder):
    """Wraps an import finder so that it finds no ``tensorflow`` (as if not installed)."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return None
        return self.finder.find_spec(name, path, target)

    def invalidate_caches(self):
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


def _hidden(meta_path: list) -> list:
    return [HideTensorFlow(f) if hasattr(f, "find_spec") else f for f in meta_path]


# The same hook, as the first lines of a fresh interpreter.
_HIDE_TENSORFLOW = (
    "import importlib.abc, sys\n"
    + inspect.getsource(HideTensorFlow)
    + inspect.getsource(_hidden)
    + "sys.meta_path[:] = _hidden(sys.meta_path)\n"
)


def _tensorflow_modules() -> list[str]:
    return [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]


@pytest.fixture
def no_tensorflow(monkeypatch):
    """TensorFlow unimportable (every finder hides it), then check that nothing imported it."""
    assert _tensorflow_modules() == []
    monkeypatch.setattr(sys, "meta_path", _hidden(sys.meta_path))
    yield
    assert _tensorflow_modules() == []


def _assert_matches_reader(source, reader, *, decoded=False):
    """Every record equals what the reader loads, in the reader's order."""
    assert len(source) == len(reader)
    for i, (synset, model_id) in enumerate(reader.models):
        record = source[i]
        assert record["synset"] == synset.encode() and record["model_id"] == model_id.encode()
        assert record["category"] == reader.category_index(i)
        for n in (2048, 1024):
            points = record[f"points_{n}"]
            assert points.dtype == np.float32 and points.shape == (n, 3)
            np.testing.assert_array_equal(points, reader.load_points(i, n))
        np.testing.assert_array_equal(record["metadata"], reader.load_metadata(i))
        views = record["views"]
        assert len(views) == layout.NUM_VIEWS
        for v in range(layout.NUM_VIEWS):
            if decoded:
                np.testing.assert_array_equal(views[v], reader.load_view(i, v))
            else:
                assert views[v] == reader.load_view_bytes(i, v)


def test_build_and_read_back_without_tensorflow(shapenet, tmp_path, no_tensorflow):
    data_dir = str(tmp_path / "tfds")
    builder = tfds_builder.build(shapenet.root, data_dir, config="synthetic")
    assert builder.info.file_format.value == "array_record"
    files = os.listdir(builder.data_dir)
    assert any(".array_record-" in f for f in files)
    assert not any("tfrecord" in f for f in files)
    assert isinstance(builder.info.features["views"].feature, tfds.features.Image)
    for split in layout.SPLITS:
        reader = ShapeNetReader(shapenet.root, split)
        assert builder.info.splits[split].num_examples == len(reader)
        # PNG bytes, for the pipeline to decode with Pillow
        _assert_matches_reader(tfds_builder.load_source(data_dir, split), reader)
        # TFDS's own NumPy decoding (Pillow) of the Image feature
        decoded = tfds_builder.load_source(data_dir, split, decode_views=True)
        _assert_matches_reader(decoded, reader, decoded=True)
        # the public entry point, by registered name
        by_name = tfds.data_source(
            "shapenet_r2n2/synthetic",
            split=split,
            data_dir=data_dir,
            download=False,
            decoders={"views": tfds_builder.EncodedViews()},
        )
        _assert_matches_reader(by_name, reader)
    assert builder.info.metadata["skipped"] == {"train": [], "test": []}


def test_in_a_process_that_cannot_import_tensorflow(shapenet, tmp_path):
    """Same round trip in a fresh interpreter whose import system refuses TensorFlow."""
    script = _HIDE_TENSORFLOW + textwrap.dedent(
        f"""
        import importlib.util
        assert importlib.util.find_spec("tensorflow") is None
        import numpy as np
        from recon_jax.data import tfds_builder
        from recon_jax.data.reader import ShapeNetReader

        tfds_builder.build({shapenet.root!r}, {str(tmp_path / "tfds")!r})
        reader = ShapeNetReader({shapenet.root!r}, "train")
        source = tfds_builder.load_source({str(tmp_path / "tfds")!r}, "train")
        for i in range(len(reader)):
            r = source[i]
            assert r["views"][5] == reader.load_view_bytes(i, 5)
            assert np.array_equal(r["points_2048"], reader.load_points(i, 2048))
        assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
        print("READ", len(source))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"READ {len(shapenet.splits['train'])}" in done.stdout


def test_prepared_size_is_about_the_source_size(shapenet, shapenet_tfds):
    builder = tfds_builder.ShapenetR2n2(data_dir=shapenet_tfds, config="synthetic")
    source = tfds_builder.source_size(shapenet.root)
    # Decoded views alone would be 24 * 137 * 137 * 4 bytes = 1.8 MB per model, 13x the PNGs.
    assert len(shapenet.views) * 24 * 137 * 137 * 4 > 10 * source
    # The serialized examples hold the PNG bytes and float32 clouds: about the source size.
    raw = tfds.decode.DeserializeMethod.RAW_BYTES
    payload = sum(
        len(record)
        for split in layout.SPLITS
        for record in builder.as_data_source(split, deserialize_method=raw)
    )
    assert 0.9 * source <= payload <= 1.05 * source, (payload, source)
    # On disk, array_record (riegeli) adds padding in 64 KiB blocks, a few per file; it
    # vanishes on real sizes (130 synthetic models: 0.98x the source, see the report).
    files = [f for f in os.listdir(builder.data_dir) if ".array_record-" in f]
    _, prepared = tfds_builder.directory_usage(builder.data_dir)
    assert prepared <= payload + len(files) * 3 * 65536 + 16384, (prepared, payload)


def test_skip_mode_records_and_warns(make_shapenet, tmp_path, no_tensorflow):
    fx = make_shapenet()
    bad = fx.splits["train"][1]
    with open(layout.view_path(fx.root, *bad, 9), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DataError, match="09.png: not a readable PNG"):
        tfds_builder.build(fx.root, str(tmp_path / "strict"))
    with pytest.warns(SkippedModelsWarning, match="skipped 1 bad model") as record:
        builder = tfds_builder.build(fx.root, str(tmp_path / "lenient"), on_error="skip")
    assert f"{bad[0]}/{bad[1]}" in str(record[0].message)
    assert builder.info.splits["train"].num_examples == len(fx.splits["train"]) - 1
    assert builder.info.splits["test"].num_examples == len(fx.splits["test"])
    skipped = builder.info.metadata["skipped"]["train"]
    assert [(s["synset"], s["model_id"]) for s in skipped] == [bad]
    assert "09.png" in skipped[0]["reason"]
    # persisted with the dataset
    with open(os.path.join(builder.data_dir, "metadata.json")) as f:
        assert json.load(f)["skipped"]["train"][0]["model_id"] == bad[1]
    source = tfds_builder.load_source(str(tmp_path / "lenient"), "train")
    kept = [m for m in fx.splits["train"] if m != bad]
    assert [r["model_id"].decode() for r in source] == [m[1] for m in kept]


def test_category_config(shapenet, tmp_path):
    config = tfds_builder.ShapeNetConfig(name="lamps", categories=("lamp",))
    builder = tfds_builder.build(shapenet.root, str(tmp_path), config=config)
    lamps = [m for m in shapenet.splits["train"] if m[0] == "03636649"]
    source = builder.as_data_source("train", decoders={"views": tfds_builder.EncodedViews()})
    assert [(r["synset"].decode(), r["model_id"].decode()) for r in source] == lamps
    rgba = decode_png(source[0]["views"][0], "view 0")
    np.testing.assert_array_equal(rgba, shapenet.views[lamps[0]][0])


def test_errors(shapenet, tmp_path):
    with pytest.raises(DataError, match="missing split file"):
        tfds_builder.build(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="not prepared"):
        tfds_builder.load_source(str(tmp_path / "empty"), "train")
    with pytest.raises(ValueError, match="split must be one of"):
        tfds_builder.load_source(str(tmp_path), "validation")
    with pytest.raises(ValueError, match="on_error must be"):
        tfds_builder.ShapenetR2n2(data_dir=str(tmp_path), on_error="ignore")


def test_cli_skip_a_missing_model_exits_0_with_a_warning(make_shapenet, tmp_path, capsys):
    """``prepare-tfds --on-error skip``: a split naming a model not on disk is left out with a
    one-line warning, sizes are reported, exit status 0; ``--on-error raise``: a one-line
    error, exit status 2. Run twice (the second reuses the prepared copy): the same report."""
    from recon_jax.cli import main

    fx = make_shapenet()
    split_file = layout.split_path(fx.root, "train")
    table = json.load(open(split_file))
    table["03001627"].append("03001627/deadbeef")
    json.dump(table, open(split_file, "w"))
    argv = ["prepare-tfds", "--root", fx.root, "--data-dir", str(tmp_path / "tfds"),
            "--on-error", "skip"]
    for _ in range(2):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert f"train: {len(fx.splits['train'])} models" in out
        assert f"test: {len(fx.splits['test'])} models" in out
        assert "prepared " in out and "source " in out
        messages = [line for line in err.splitlines() if line.startswith("recon-jax")]
        assert "Traceback" not in err and len(messages) == 1, err  # besides TFDS's progress
        assert messages[0].startswith("recon-jax prepare-tfds: warning: split 'train': skipped 1 "
                                      "bad model(s) (03001627/deadbeef)")
    source = tfds_builder.load_source(str(tmp_path / "tfds"), "train")
    assert len(source) == len(fx.splits["train"])
    argv = ["prepare-tfds", "--root", fx.root, "--data-dir", str(tmp_path / "strict")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    messages = [line for line in err.splitlines() if line.startswith("recon-jax")]
    assert "Traceback" not in err and len(messages) == 1, err
    assert messages[0].startswith("recon-jax prepare-tfds: error: ")
    assert "03001627/deadbeef" in messages[0] and "not on disk" in messages[0]
