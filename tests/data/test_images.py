"""load_image_file: any PNG/JPEG a user gives, preprocessed exactly as the pipeline's views."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from recon_jax.data import layout
from recon_jax.data.layout import DataError
from recon_jax.data.pipeline import eval_dataset, load_image_file
from recon_jax.data.reader import ShapeNetReader

from .conftest import HIDDEN_RGB
from .test_pipeline import SHARD, expected_image


def test_a_render_is_what_the_pipeline_feeds(shapenet):
    """137x137 RGBA: bit for bit the pipeline's image of that view (and the hand reference)."""
    reader = ShapeNetReader(shapenet.root, "test")
    views = (0, 7, 23)
    batch = next(iter(eval_dataset(reader, batch_size=len(views), views=views, **SHARD)))
    model = reader.models[0]
    for b, view in enumerate(views):
        image = load_image_file(layout.view_path(shapenet.root, *model, view))
        assert image.shape == (128, 128, 3) and image.dtype == np.float32
        np.testing.assert_array_equal(image, batch["image"][b])
        np.testing.assert_allclose(image, expected_image(shapenet.views[model][view]), atol=1e-6)


def test_sixteen_bit_greyscale_keeps_its_levels(tmp_path):
    """A 16-bit greyscale PNG is not binarised (Pillow's RGBA conversion clips it at 255)."""
    rows = np.linspace(0, 65535, 137).round().astype(np.uint16)
    grey = np.repeat(rows[:, None], 137, axis=1)
    path = str(tmp_path / "grey16.png")
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    image = load_image_file(path)
    expected = (grey[4:-5, 4:-5].astype(np.float64) / 65535.0)[..., None].repeat(3, axis=2)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert len(np.unique(image)) == 128  # one level per row, not two
    # another size: resized, a constant level stays that level
    flat = np.full((90, 150), 30000, np.uint16)
    Image.fromarray(flat).save(path)
    np.testing.assert_allclose(load_image_file(path), 30000 / 65535, atol=1e-6)


def test_other_sizes_are_centre_cropped_and_resized(tmp_path):
    """300x100: the centre 100x100 square (green) fills the 128x128 input; the side thirds
    (red, blue) are cropped away before resizing, so nothing of them bleeds in."""
    rgb = np.zeros((100, 300, 3), np.uint8)
    rgb[:, :100, 0] = rgb[:, 100:200, 1] = rgb[:, 200:, 2] = 255
    path = str(tmp_path / "wide.png")
    Image.fromarray(rgb).save(path)
    image = load_image_file(path)
    assert image.shape == (128, 128, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, np.broadcast_to([0.0, 1.0, 0.0], image.shape), atol=1e-6)
    Image.fromarray(rgb.transpose(1, 0, 2)).save(path)  # tall: the same square
    np.testing.assert_allclose(load_image_file(path), image, atol=1e-6)
    # greyscale and palette images of other sizes
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(path)
    np.testing.assert_allclose(load_image_file(path), 100 / 255, atol=1e-6)
    Image.fromarray(rgb).convert("P").save(path)
    np.testing.assert_allclose(load_image_file(path), image, atol=1e-6)


def test_transparency_is_composited_before_resizing(tmp_path):
    """The colour stored under alpha 0 (magenta) never shows, also at the resized edges: every
    pixel is a grey between the black object and the white background."""
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., :3] = HIDDEN_RGB
    rgba[70:190, 50:210] = (0, 0, 0, 255)
    path = str(tmp_path / "object.png")
    Image.fromarray(rgba).save(path)
    image = load_image_file(path)
    np.testing.assert_allclose(image[..., 0], image[..., 1], atol=1e-6)
    np.testing.assert_allclose(image[..., 2], image[..., 1], atol=1e-6)
    assert image[0, 0, 0] == 1.0 and image[64, 64, 0] == 0.0
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_jpeg_and_exif_orientation(tmp_path):
    rgb = np.zeros((137, 137, 3), np.uint8)
    rgb[:, 69:] = 255  # right half white
    path = str(tmp_path / "photo.jpg")
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    Image.fromarray(rgb).save(path, quality=95, exif=exif)
    image = load_image_file(path)
    assert image.shape == (128, 128, 3)
    assert image[:, :40].min() > 0.9 and image[:, -40:].max() < 0.1  # upright: left is white


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "truncated"])
def test_unreadable_files_name_the_file(tmp_path, shapenet, kind):
    path = str(tmp_path / "input.png")
    if kind == "directory":
        os.mkdir(path)
    elif kind == "text":
        open(path, "w").write("not an image\n")
    elif kind == "truncated":
        model = shapenet.splits["train"][0]
        data = open(layout.view_path(shapenet.root, *model, 0), "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        load_image_file(path)
    assert info.value.path == path and str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("limit", [5000, 15000])
def test_decompression_bomb_is_a_data_error(shapenet, monkeypatch, limit):
    """Over Pillow's limit (a warning) or twice over it (an error): a DataError naming the file."""
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", limit)  # 137 * 137 = 18769 pixels
    path = layout.view_path(shapenet.root, *shapenet.splits["train"][0], 0)
    with pytest.raises(DataError, match="image too large") as info:
        load_image_file(path)
    assert info.value.path == path
