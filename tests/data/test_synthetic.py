"""The synthetic generator: layout and formats, determinism, surface point clouds,
and cameras checked against the renders with an independent (Mesh R-CNN) projection."""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from recon_jax.cli import main
from recon_jax.data import layout
from recon_jax.data.camera import Camera, format_metadata_line
from recon_jax.data.primitives import part_area, sample_part_surface
from recon_jax.data.reader import ShapeNetReader
from recon_jax.data.render import render
from recon_jax.data.shapes import make_object
from recon_jax.data.synthetic import generate_dataset, generate_model, model_id, split_models
from recon_jax.errors import UserError
from tests.data.test_camera import meshrcnn_pixels
from tests.data.test_primitives import implicit_inside, surface_residual

SYNSETS = [syn for syn, _ in layout.CATEGORIES]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def tree_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    summary = generate_dataset(
        root, models_per_category=2, views=3, seed=7, workers=1, contact_sheet=False, progress=False
    )
    return root, summary


def read_split(root: str, split: str) -> dict[str, list[str]]:
    with open(layout.split_path(root, split)) as f:
        return json.load(f)


def test_layout_and_formats(dataset):
    root, summary = dataset
    assert sorted(os.listdir(root)) == [layout.RENDER_DIR, layout.POINTS_DIR, layout.SPLITS_DIR]
    train, test = read_split(root, "train"), read_split(root, "test")
    assert sorted(train) == sorted(test) == sorted(SYNSETS)
    for synset in SYNSETS:
        entries = train[synset] + test[synset]
        assert len(entries) == 2 and len(set(entries)) == 2 and len(test[synset]) == 1
        on_disk = sorted(os.listdir(os.path.join(root, layout.RENDER_DIR, synset)))
        assert sorted(e.split("/")[1] for e in entries) == on_disk
        assert sorted(os.listdir(os.path.join(root, layout.POINTS_DIR, synset))) == on_disk
        for entry in entries:
            syn, mid = entry.split("/")
            assert syn == synset and HEX32.match(mid)
            files = sorted(os.listdir(layout.rendering_dir(root, syn, mid)))
            assert files == [
                "00.png",
                "01.png",
                "02.png",
                "rendering_metadata.txt",
                "renderings.txt",
            ]
            for view in range(3):
                with Image.open(layout.view_path(root, syn, mid, view)) as img:
                    assert img.format == "PNG" and img.mode == "RGBA"
                    assert img.size == (layout.RENDER_SIZE, layout.RENDER_SIZE)
                    rgba = np.asarray(img)
                alpha = rgba[..., 3]
                assert alpha[0, 0] == 0 and (alpha == 0).mean() > 0.3  # transparent background
                assert (alpha == 255).sum() > 100  # an opaque object
                assert np.all(rgba[alpha == 0][:, :3] == 0)
                object_rgb = rgba[alpha == 255][:, :3].astype(float)
                assert object_rgb.std() > 1.0  # shaded, not flat
            with open(layout.metadata_path(root, syn, mid)) as f:
                lines = f.read().splitlines()
            assert len(lines) == 3
            for line in lines:
                az, el, zero, ratio, fov = line.split()
                assert 0 <= float(az) < 360 and 25 <= float(el) <= 30
                assert zero == "0" and fov == "25" and 0.65 <= float(ratio) <= 0.95
            for n in (2048, 1024):
                cloud = np.load(layout.pointcloud_path(root, syn, mid, n))
                assert cloud.dtype == np.float32 and cloud.shape == (n, 3)
                assert np.all(np.isfinite(cloud))
                lo, hi = cloud.min(axis=0), cloud.max(axis=0)
                assert 0.9 < np.linalg.norm(hi - lo) <= 1.0 + 1e-6  # ShapeNet normalisation
                assert np.all(np.abs(lo + hi) < 0.1)  # centred
    assert summary.num_models == 26 and summary.num_images == 78
    assert summary.contact_sheet is None


def test_split_sizes_are_80_20(tmp_path):
    ids = [f"{i:032x}" for i in range(41)]
    for n, n_test in ((1, 0), (2, 1), (3, 1), (5, 1), (8, 2), (10, 2), (40, 8), (41, 8)):
        train, test = split_models(0, "03001627", ids[:n])
        assert len(test) == n_test and len(train) == n - n_test
        assert sorted(train + test) == sorted(ids[:n])
    assert split_models(0, "03001627", ids) == split_models(0, "03001627", ids)
    assert split_models(0, "03001627", ids) != split_models(1, "03001627", ids)
    summary = generate_dataset(
        str(tmp_path),
        models_per_category=10,
        views=1,
        seed=1,
        workers=1,
        categories=["chair", "02691156"],
        contact_sheet=False,
        progress=False,
    )
    train, test = read_split(str(tmp_path), "train"), read_split(str(tmp_path), "test")
    assert sorted(train) == ["02691156", "03001627"]
    for synset in train:
        assert len(train[synset]) == 8 and len(test[synset]) == 2
        assert not set(train[synset]) & set(test[synset])
        assert [f"{synset}/{m}" for m in summary.train[synset]] == train[synset]


def test_same_seed_same_bytes(tmp_path):
    kwargs = dict(
        models_per_category=2,
        views=2,
        seed=3,
        categories=["chair", "lamp", "rifle"],
        progress=False,
    )
    a, b, c, d = (str(tmp_path / x) for x in "abcd")
    generate_dataset(a, workers=1, contact_sheet=True, **kwargs)
    generate_dataset(b, workers=2, contact_sheet=True, **kwargs)
    files_a, files_b = tree_bytes(a), tree_bytes(b)
    assert "contact_sheet.png" in files_a and len(files_a) == 2 + 6 * (2 + 2 + 2) + 1
    assert files_a == files_b
    with Image.open(io.BytesIO(files_a["contact_sheet.png"])) as sheet:
        assert sheet.format == "PNG" and sheet.size[0] >= 1000
    # A model depends only on (seed, synset, index), not on the other categories requested.
    generate_dataset(c, workers=1, contact_sheet=False, **{**kwargs, "categories": ["rifle"]})
    files_c = tree_bytes(c)
    rifle = {k: v for k, v in files_a.items() if "04090263" in k and "splits" not in k}
    assert rifle and all(files_c[k] == v for k, v in rifle.items())
    # A different seed: new ids and different contents.
    generate_dataset(d, workers=1, contact_sheet=False, **{**kwargs, "seed": 4})
    files_d = tree_bytes(d)
    assert not set(files_d) & {k for k in files_a if k.endswith((".png", ".npy", ".txt"))}
    ids = {model_id(s, "03001627", 0) for s in (3, 4)}
    assert len(ids) == 2 and all(HEX32.match(m) for m in ids)
    cloud = lambda files, seed: next(  # noqa: E731
        v
        for k, v in files.items()
        if model_id(seed, "03001627", 0) in k and k.endswith("pointcloud_2048.npy")
    )
    assert cloud(files_a, 3) != cloud(files_d, 4)


def visible_area_shares(shape, rng, n=3000) -> np.ndarray:
    """Each part's share of the outer surface area, by Monte Carlo with this file's own inside
    test. Also asserts the grammar's promise that no exposed face lies on another part's surface
    (faces in contact or coplanar), which makes "not strictly inside another part" the whole
    definition of the outer surface."""
    visible = []
    for i, part in enumerate(shape.parts):
        pts = sample_part_surface(part, n, rng)
        hidden = np.zeros(n, dtype=bool)
        for j, other in enumerate(shape.parts):
            if j != i:
                hidden |= implicit_inside(other, pts, eps=1e-9)
        exposed = pts[~hidden]
        for j, other in enumerate(shape.parts):
            if j != i:
                shared = surface_residual(other, exposed) * other.size.max() < 1e-9
                assert shared.sum() <= 2, (part.name, other.name, shared.sum())
        visible.append(part_area(part) * (1 - hidden.mean()))
    visible = np.array(visible)
    return visible / visible.sum()


@pytest.mark.parametrize("synset", SYNSETS)
def test_point_clouds_on_outer_surface_covering_parts(synset, rng):
    shape, _, clouds = generate_model(5, synset, 0, views=1)
    assert {n: c.shape for n, c in clouds.items()} == {2048: (2048, 3), 1024: (1024, 3)}
    assert not np.array_equal(clouds[2048][:1024], clouds[1024])  # independent samples
    points = np.concatenate([clouds[2048], clouds[1024]]).astype(np.float64)
    # On the surface: distance to the nearest part's surface ~ float32 rounding.
    residual = np.stack([surface_residual(p, points) * p.size.max() for p in shape.parts], 1)
    assert residual.min(axis=1).max() < 1e-5
    # Outer surface only: no point strictly inside any part.
    for part in shape.parts:
        assert not implicit_inside(part, points, eps=1e-5).any(), part.name
    # Every part has outer surface, and every part with at least 0.5% of it gets points; the
    # counts per part follow the visible areas (uniform by area).
    shares = visible_area_shares(shape, rng)
    assert np.all(shares > 0), [p.name for p, s in zip(shape.parts, shares, strict=True) if s == 0]
    counts = np.bincount(residual.argmin(axis=1), minlength=len(shape.parts))
    expected = shares * len(points)
    for part, count, exp in zip(shape.parts, counts, expected, strict=True):
        if exp >= 15:
            assert count > 0, part.name
            assert abs(count - exp) < 5 * np.sqrt(exp) + 0.06 * exp, (part.name, count, exp)


@pytest.mark.parametrize("category", ["airplane", "chair", "lamp", "rifle", "table", "vessel"])
def test_cameras_are_right(category):
    """Projecting the point cloud with each metadata line (Mesh R-CNN's R2N2 camera, written
    independently in test_camera.py) lands >= 95% of the points on the rendered silhouette
    (alpha > 0) in every view, and the projected points cover the silhouette (so it is not just
    a large blob). Negative controls: the mirror image of the projection, or a camera a quarter
    turn off, miss the silhouette (except on the nearly rotationally symmetric lamps)."""
    shape, cameras, clouds = generate_model(0, layout.NAME_TO_SYNSET[category], 1)
    points = np.concatenate([clouds[2048], clouds[1024]]).astype(np.float64)
    size = layout.RENDER_SIZE
    fractions, mirrored, turned = [], [], []
    for camera in cameras:
        alpha = render(shape, camera)[..., 3]
        line = format_metadata_line(camera)
        pix = np.floor(meshrcnn_pixels(points, line)).astype(int)
        assert np.all((pix >= 0) & (pix < size))
        on_object = alpha[pix[:, 1], pix[:, 0]] > 0
        assert on_object.mean() >= 0.95, (line, on_object.mean())
        fractions.append(on_object.mean())
        hit = np.zeros_like(alpha, dtype=bool)
        hit[pix[:, 1], pix[:, 0]] = True
        assert binary_dilation(hit, iterations=2)[alpha == 255].mean() > 0.9
        mirrored.append((alpha[pix[:, 1], size - 1 - pix[:, 0]] > 0).mean())
        off = Camera((camera.azimuth + 90) % 360, camera.elevation, camera.distance_ratio)
        pix = np.clip(np.floor(meshrcnn_pixels(points, format_metadata_line(off))), 0, size - 1)
        pix = pix.astype(int)
        turned.append((alpha[pix[:, 1], pix[:, 0]] > 0).mean())
    assert len(fractions) == 24 and np.mean(fractions) > 0.98
    if category != "lamp":
        assert np.mean(mirrored) < 0.85 and np.mean(turned) < 0.85, (mirrored, turned)


REQUIRED_PARTS = {
    "airplane": ["fuselage", "wing_left", "wing_right", "fin", "stabilizer_left"],
    "bench": ["seat|seat_slat_0", "leg_|side_panel_"],
    "cabinet": ["body", "door_0|drawer_0"],
    "car": ["body", "cabin", "wheel_fl", "wheel_fr", "wheel_bl", "wheel_br"],
    "chair": ["seat", "back", "leg_|star_leg_"],
    "monitor": ["screen_body", "display"],
    "lamp": ["base", "stem|lower_arm", "shade"],
    "speaker": ["cabinet", "woofer_0|grille"],
    "rifle": ["receiver", "barrel", "stock"],
    "sofa": ["base", "back", "arm_left", "arm_right", "seat_cushion_0"],
    "table": ["top", "leg_|column|end_panel_"],
    "telephone": ["body|base", "screen|handset"],
    "vessel": ["hull", "bow", "deck"],
}


@pytest.mark.parametrize("category", sorted(REQUIRED_PARTS))
def test_objects_have_their_category_parts(category):
    for index in range(12):
        shape = make_object(category, np.random.default_rng([index, 17]))
        names = [p.name for p in shape.parts]
        for pattern in REQUIRED_PARTS[category]:
            assert any(re.match(pattern, n) for n in names), (category, index, pattern, names)
        lo, hi = shape.bounds()
        assert np.linalg.norm(hi - lo) == pytest.approx(1.0) and np.allclose(lo + hi, 0)
        assert shape.synset == layout.NAME_TO_SYNSET[category]


def test_cli_and_errors(tmp_path, capsys):
    out = str(tmp_path / "data")
    argv = [
        "make-data",
        "--out",
        out,
        "--models-per-category",
        "2",
        "--categories",
        "chair",
        "--workers",
        "1",
        "--no-contact-sheet",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "wrote 2 models (1 categories, 24 views each" in capsys.readouterr().out
    assert os.path.isfile(layout.view_path(out, "03001627", model_id(0, "03001627", 0), 0))
    for split in layout.SPLITS:  # as training reads them: 24 views per model, both splits
        reader = ShapeNetReader(out, split)
        assert reader.num_views == layout.NUM_VIEWS and len(reader) == 1
        assert not reader.validate()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a dataset" in err and err.count("\n") == 1
    # fewer (or more) views than training reads, or no test model: refused in one line,
    # nothing written
    first = sorted(model_id(0, "03001627", i) for i in range(2))
    for extra, message in ((["--views", "2"], "--views 2: training"),
                           (["--models-per-category", "1"], "--models-per-category 1: at least 2")):
        assert main(argv + ["--overwrite"] + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"recon-jax make-data: error: {message}") and err.count("\n") == 1
        assert sorted(os.listdir(os.path.join(out, layout.RENDER_DIR, "03001627"))) == first
    assert main(argv + ["--overwrite", "--seed", "1"]) == 0
    assert sorted(os.listdir(os.path.join(out, layout.RENDER_DIR, "03001627"))) == sorted(
        model_id(1, "03001627", i) for i in range(2)
    )
    for kwargs, match in (
        (dict(views=0), "views"),
        (dict(views=101), "views"),
        (dict(models_per_category=0), "models_per_category"),
        (dict(seed=-1), "seed"),
        (dict(workers=0), "workers"),
        (dict(categories=["sofa", "bicycle"]), "bicycle"),
        (dict(categories=[]), "at least one category"),
        (dict(categories="bicycle"), "unknown category 'bicycle'"),
    ):
        with pytest.raises(UserError, match=match):
            generate_dataset(str(tmp_path / "bad"), progress=False, **kwargs)
