"""ShapeNetReader on a fixture in the real layout, and on each kind of bad input."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from recon_jax.data import layout
from recon_jax.data.camera import parse_metadata
from recon_jax.data.reader import (
    DataError,
    ShapeNetReader,
    SkippedModelsWarning,
    decode_png,
)

from .conftest import write_png


def test_lists_models_in_category_order(shapenet):
    for split in layout.SPLITS:
        reader = ShapeNetReader(shapenet.root, split)
        assert reader.models == shapenet.splits[split]
        assert len(reader) == len(shapenet.splits[split])
    assert ShapeNetReader(shapenet.root, "train").num_points == 2048
    assert ShapeNetReader(shapenet.root, "test").num_points == 1024


def test_category_filter_by_name_or_synset(shapenet):
    by_name = ShapeNetReader(shapenet.root, "train", categories=["chair", "airplane"])
    by_synset = ShapeNetReader(shapenet.root, "train", categories=["03001627", "02691156"])
    expected = [m for m in shapenet.splits["train"] if m[0] in ("02691156", "03001627")]
    assert by_name.models == by_synset.models == expected
    assert [by_name.category_index(i) for i in range(len(by_name))] == [0, 0, 4, 4]
    with pytest.raises(ValueError, match="categories: unknown category 'spaceship'"):
        ShapeNetReader(shapenet.root, "train", categories=["spaceship"])
    with pytest.raises(DataError, match="requested categories"):
        ShapeNetReader(shapenet.root, "test", categories="chair")  # no chair in test


def test_loaders_return_the_files(shapenet):
    reader = ShapeNetReader(shapenet.root, "train", validate=True)
    for i, model in enumerate(reader.models):
        for v in (0, 7, 23):
            view = reader.load_view(i, v)
            assert view.dtype == np.uint8 and view.shape == (137, 137, 4)
            np.testing.assert_array_equal(view, shapenet.views[model][v])
            with open(layout.view_path(shapenet.root, *model, v), "rb") as f:
                assert reader.load_view_bytes(i, v) == f.read()
        for n in (2048, 1024):
            points = reader.load_points(i, n)
            assert points.dtype == np.float32 and points.shape == (n, 3)
            np.testing.assert_array_equal(points, shapenet.points[model][n])
        meta = reader.load_metadata(i)
        assert meta.dtype == np.float32 and meta.shape == (24, 5)
        np.testing.assert_array_equal(meta, shapenet.metadata[model].astype(np.float32))
        record = reader.load_model(i, (2048, 1024))
        assert record.synset == model[0] and record.model_id == model[1]
        assert len(record.views) == 24 and sorted(record.points) == [1024, 2048]


def test_bad_arguments(shapenet, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        ShapeNetReader(shapenet.root, "val")
    with pytest.raises(ValueError, match="on_error must be one of"):
        ShapeNetReader(shapenet.root, "train", on_error="ignore")
    with pytest.raises(DataError, match="not a directory"):
        ShapeNetReader(str(tmp_path / "nowhere"), "train")
    reader = ShapeNetReader(shapenet.root, "train")
    with pytest.raises(ValueError, match=r"view must lie in \[0, 24\)"):
        reader.load_view(0, 24)
    with pytest.raises(IndexError):
        reader.load_points(len(reader))


# ------------------------------------------------------------------------------ bad files
# Each damage function breaks one file of model `model` and returns the path the error must name.


def _damage_missing_png(fx, model):
    path = layout.view_path(fx.root, *model, 5)
    os.remove(path)
    return path


def _damage_corrupt_png(fx, model):
    path = layout.view_path(fx.root, *model, 3)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return path


def _damage_truncated_png(fx, model):
    path = layout.view_path(fx.root, *model, 3)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def _damage_png_size(fx, model):
    path = layout.view_path(fx.root, *model, 0)
    write_png(path, fx.views[model][0][:64, :64])
    return path


def _damage_png_mode(fx, model):
    path = layout.view_path(fx.root, *model, 0)
    write_png(path, np.ascontiguousarray(fx.views[model][0][..., :3]), mode="RGB")
    return path


def _damage_points_shape(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    np.save(path, fx.points[model][2048][:, :2])
    return path


def _damage_points_count(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    np.save(path, fx.points[model][2048][:2000])
    return path


def _damage_points_dtype(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    np.save(path, fx.points[model][2048].astype(np.int32))
    return path


def _damage_points_nan(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    points = fx.points[model][2048].copy()
    points[17, 1] = np.nan
    points[40, 0] = np.inf
    np.save(path, points)
    return path


def _damage_points_not_npy(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    with open(path, "wb") as f:
        f.write(b"not an npy file at all")
    return path


def _damage_points_text(fx, model):
    path = layout.pointcloud_path(fx.root, *model, 2048)
    np.savetxt(path, fx.points[model][2048])  # a text file named .npy
    return path


def _damage_metadata_columns(fx, model):
    path = layout.metadata_path(fx.root, *model)
    lines = open(path).read().splitlines()
    lines[4] = "10.0 25.0 0 0.8"
    open(path, "w").write("\n".join(lines) + "\n")
    return path


def _damage_metadata_text(fx, model):
    path = layout.metadata_path(fx.root, *model)
    lines = open(path).read().splitlines()
    lines[2] = "10.0 twenty-five 0 0.8 25"
    open(path, "w").write("\n".join(lines) + "\n")
    return path


def _damage_metadata_count(fx, model):
    path = layout.metadata_path(fx.root, *model)
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[:23]) + "\n")
    return path


def _damage_metadata_missing(fx, model):
    path = layout.metadata_path(fx.root, *model)
    os.remove(path)
    return path


FILE_DAMAGE = {
    "missing png": (_damage_missing_png, "missing file"),
    "corrupt png": (_damage_corrupt_png, "not a readable PNG"),
    "truncated png": (_damage_truncated_png, "not a readable PNG"),
    "png size": (_damage_png_size, "expected a 137x137 RGBA image, got 64x64"),
    "png mode": (_damage_png_mode, "expected a 137x137 RGBA image, got 137x137 mode RGB"),
    "points shape": (_damage_points_shape, r"shape \(2048, 3\), got \(2048, 2\)"),
    "points count": (_damage_points_count, r"shape \(2048, 3\), got \(2000, 3\)"),
    "points dtype": (_damage_points_dtype, "expected a float32 point array, got dtype int32"),
    "points nan": (_damage_points_nan, "expected finite coordinates, got 2 point"),
    "points not npy": (_damage_points_not_npy, "not a readable .npy"),
    "points text file": (_damage_points_text, "not a readable .npy array: the file does not "
                         r"start with the NPY header; expected a float32 \[2048, 3\]"),
    "metadata columns": (_damage_metadata_columns, "line 5: expected 5 numbers"),
    "metadata text": (_damage_metadata_text, "line 3: expected 5 numbers"),
    "metadata count": (_damage_metadata_count, "expected 24 lines"),
    "metadata missing": (_damage_metadata_missing, "missing file"),
}


@pytest.mark.parametrize("kind", list(FILE_DAMAGE))
def test_bad_file_raises_naming_it(make_shapenet, kind):
    fx = make_shapenet()
    damage, message = FILE_DAMAGE[kind]
    model = fx.splits["train"][2]
    path = damage(fx, model)
    reader = ShapeNetReader(fx.root, "train")  # listing only checks presence of dirs
    with pytest.raises(DataError, match=message) as info:
        reader.validate()
    assert isinstance(info.value, ValueError)
    assert info.value.path == path and str(info.value).startswith(path)
    assert "pickle" not in str(info.value)  # np.load's words for a file that is not .npy
    # the loader for that file raises the same error when read directly
    i = reader.models.index(model)
    with pytest.raises(DataError, match=message):
        reader.load_model(i)


def test_split_names_model_not_on_disk(make_shapenet):
    fx = make_shapenet()
    split_file = layout.split_path(fx.root, "train")
    table = json.load(open(split_file))
    table["03001627"].append("03001627/deadbeef")
    json.dump(table, open(split_file, "w"))
    render_dir = layout.rendering_dir(fx.root, "03001627", "deadbeef")
    with pytest.raises(DataError, match="not on disk") as info:
        ShapeNetReader(fx.root, "train")
    assert info.value.path == render_dir
    assert split_file in str(info.value) and "03001627/deadbeef" in str(info.value)


def test_missing_point_cloud_is_not_on_disk(make_shapenet):
    fx = make_shapenet()
    model = fx.splits["test"][0]
    path = layout.pointcloud_path(fx.root, *model, 1024)
    os.remove(path)
    with pytest.raises(DataError, match="1024-point cloud is not on disk") as info:
        ShapeNetReader(fx.root, "test")
    assert info.value.path == path
    ShapeNetReader(fx.root, "test", num_points=2048)  # the 2048-point file is still there


def test_unknown_synset(make_shapenet):
    fx = make_shapenet()
    split_file = layout.split_path(fx.root, "train")
    table = json.load(open(split_file))
    table["99999999"] = ["99999999/abc"]
    json.dump(table, open(split_file, "w"))
    with pytest.raises(DataError, match="unknown synset '99999999'") as info:
        ShapeNetReader(fx.root, "train")
    assert info.value.path == split_file


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"02691156": ["02691156/a", ', "malformed split JSON"),
        ('["02691156/a"]', "expected a JSON object"),
        ('{"02691156": "02691156/a"}', "expected a list of model names"),
        ('{"02691156": ["03001627/a"]}', "expected entries '02691156/<model_id>'"),
        ('{"02691156": [17]}', "expected entries"),
        ('{"02691156": ["02691156/a", "02691156/a"]}', "listed twice"),
        ("{}", "lists no models"),
    ],
)
def test_malformed_split_file(make_shapenet, content, message):
    fx = make_shapenet()
    split_file = layout.split_path(fx.root, "train")
    with open(split_file, "w") as f:
        f.write(content)
    for on_error in ("raise", "skip"):  # a broken split file is never skippable
        with pytest.raises(DataError, match=message) as info:
            ShapeNetReader(fx.root, "train", on_error=on_error)
        assert info.value.path == split_file


def test_missing_split_file(make_shapenet):
    fx = make_shapenet()
    os.remove(layout.split_path(fx.root, "test"))
    with pytest.raises(DataError, match="missing file") as info:
        ShapeNetReader(fx.root, "test")
    assert info.value.path == layout.split_path(fx.root, "test")


def test_skip_mode_warns_with_count_and_list(make_shapenet):
    fx = make_shapenet()
    good = fx.splits["train"]
    _damage_corrupt_png(fx, good[0])
    _damage_points_nan(fx, good[3])
    split_file = layout.split_path(fx.root, "train")
    table = json.load(open(split_file))
    table["03001627"].append("03001627/deadbeef")  # not on disk
    table["99999999"] = ["99999999/abc"]  # unknown synset
    json.dump(table, open(split_file, "w"))

    with pytest.warns(SkippedModelsWarning, match="skipped 2 bad model") as record:
        reader = ShapeNetReader(fx.root, "train", on_error="skip")
    text = str(record[0].message)
    assert "03001627/deadbeef" in text and "99999999/abc" in text
    assert reader.models == good  # listing-time problems dropped, file problems not yet seen

    with pytest.warns(SkippedModelsWarning, match="skipped 2 bad model") as record:
        skipped = reader.validate()
    text = str(record[0].message)
    for model in (good[0], good[3]):
        assert f"{model[0]}/{model[1]}" in text
    assert "not a readable PNG" in text and "finite coordinates" in text
    assert [(s.synset, s.model_id) for s in skipped] == [good[0], good[3]]
    assert reader.models == [good[1], good[2], good[4]]
    assert len(reader.skipped) == 4
    for i in range(len(reader)):
        reader.load_model(i)  # everything left is readable


def test_clean_data_never_warns(shapenet):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = ShapeNetReader(shapenet.root, "train", on_error="skip", validate=True)
    assert reader.models == shapenet.splits["train"] and reader.skipped == []


def test_metadata_rules_are_the_camera_rules(make_shapenet):
    """One parser: a line no camera can have (in-plane rotation, elevation, distance ratio) is
    a bad metadata file for the reader too."""
    fx = make_shapenet()
    model = fx.splits["train"][0]
    path = layout.metadata_path(fx.root, *model)
    lines = open(path).read().splitlines()
    reader = ShapeNetReader(fx.root, "train")
    for line, message in (("10 25 90 0.8 25", "line 4: the in-plane rotation"),
                          ("10 95 0 0.8 25", "line 4: elevation must lie in"),
                          ("10 25 0 -0.8 25", r"line 4: distance ratio \(4th field\)")):
        open(path, "w").write("\n".join(lines[:3] + [line] + lines[4:]) + "\n")
        with pytest.raises(DataError, match=message) as info:
            reader.load_metadata(0)
        assert info.value.path == path


def test_decompression_bomb_is_a_data_error_naming_the_file(make_shapenet, monkeypatch):
    fx = make_shapenet()
    model = fx.splits["train"][0]
    path = layout.view_path(fx.root, *model, 3)
    reader = ShapeNetReader(fx.root, "train")
    # 137 * 137 = 18769 pixels: over twice the limit, Pillow raises DecompressionBombError
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 9000)
    with pytest.raises(DataError, match="decompression bomb") as info:
        reader.load_view(0, 3)
    assert info.value.path == path and str(info.value).startswith(path)
    with pytest.raises(DataError, match="decompression bomb"):
        reader.validate()


def test_decode_png_and_parse_metadata_directly(shapenet):
    model = shapenet.splits["test"][0]
    with open(layout.view_path(shapenet.root, *model, 1), "rb") as f:
        np.testing.assert_array_equal(decode_png(f.read(), "x"), shapenet.views[model][1])
    with pytest.raises(DataError, match="^where: not a readable PNG"):
        decode_png(b"", "where")
    meta = parse_metadata("1 2 0 0.7 25\n\n3 4 0 0.8 25\n", "m.txt", num_views=2)
    expected = np.array([[1, 2, 0, 0.7, 25], [3, 4, 0, 0.8, 25]], dtype=np.float32)
    np.testing.assert_array_equal(meta, expected)
    with pytest.raises(DataError, match="line 1: expected finite numbers"):
        parse_metadata("nan 2 0 0.7 25\n", "m.txt", num_views=1)
