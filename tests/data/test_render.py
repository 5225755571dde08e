"""The ray caster on scenes with known images: a sphere's disc, a box's faces, edges, occlusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon_jax.data.camera import Camera, focal_length_px, project
from recon_jax.data.primitives import Shape, box, ellipsoid
from recon_jax.data.render import render, render_views

SIZE = 137


def sphere_shape(radius: float, center=(0.0, 0.0, 0.0), color=(0.6, 0.6, 0.6)) -> Shape:
    return Shape("00000000", (ellipsoid("ball", center, (radius,) * 3, color),))


def test_sphere_silhouette_is_its_exact_disc():
    radius = 0.3
    camera = Camera(azimuth=40.0, elevation=27.0, distance_ratio=0.8)  # distance 1.4
    image = render(sphere_shape(radius), camera, SIZE)
    alpha = image[..., 3].astype(float) / 255
    # A centred sphere projects to a disc of radius f * r / sqrt(d^2 - r^2) about the centre.
    d = 0.8 * 1.75
    disc_r = focal_length_px(SIZE) * radius / math.sqrt(d * d - radius * radius)
    jj, ii = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    dist = np.hypot(jj - SIZE / 2, ii - SIZE / 2)
    assert np.all(alpha[dist < disc_r - 1.0] == 1.0)
    assert np.all(alpha[dist > disc_r + 1.0] == 0.0)
    # Anti-aliased rim: coverage sums to the disc's area within a fraction of the perimeter.
    assert alpha.sum() == pytest.approx(math.pi * disc_r**2, abs=0.1 * 2 * math.pi * disc_r)
    rim = (dist > disc_r - 0.7) & (dist < disc_r + 0.7)
    assert np.mean((alpha[rim] > 0) & (alpha[rim] < 1)) > 0.5
    # Straight alpha: RGB is 0 exactly where alpha is 0.
    assert np.all(image[..., :3][image[..., 3] == 0] == 0)


def test_lambertian_shading_follows_the_key_light():
    camera = Camera(azimuth=0.0, elevation=25.0, distance_ratio=0.8)
    image = render(sphere_shape(0.3), camera, SIZE).astype(float)
    c = SIZE // 2
    upper_left = image[c - 18, c - 18, :3].mean()
    lower_right = image[c + 18, c + 18, :3].mean()
    centre = image[c, c, :3].mean()
    assert upper_left > centre > lower_right > 0  # key light from the viewer's upper left
    # Grey albedo stays grey; colour scales with albedo.
    assert np.ptp(image[c, c, :3]) <= 1
    red = render(sphere_shape(0.3, color=(0.8, 0.1, 0.1)), camera, SIZE).astype(float)
    assert red[c, c, 0] > 4 * red[c, c, 1]


def test_nearer_part_occludes_and_box_faces_shade_differently():
    camera = Camera(azimuth=30.0, elevation=28.0, distance_ratio=0.8)
    back = ellipsoid("back", (0.0, 0.0, 0.0), (0.25, 0.25, 0.25), (0.1, 0.1, 0.9))
    front_centre = 0.35 * camera.position / np.linalg.norm(camera.position)
    front = ellipsoid("front", front_centre, (0.06, 0.06, 0.06), (0.9, 0.1, 0.1))
    image = render(Shape("00000000", (back, front)), camera, SIZE)
    u, v = project(front_centre[None], camera, SIZE)[0]
    pixel = image[int(v), int(u)]
    assert pixel[0] > 3 * pixel[2]  # the red ball in front hides the blue one
    cube = Shape("00000000", (box("cube", (0, 0, 0), (0.2, 0.2, 0.2), (0.7, 0.7, 0.7)),))
    cam = Camera(azimuth=45.0, elevation=30.0, distance_ratio=0.9)
    img = render(cube, cam, SIZE)
    # Three visible faces: top (+y), +x and +z; project their centres and compare brightness.
    centres = np.array([[0, 0.2, 0], [0.2, 0, 0], [0, 0, 0.2]])
    uv = project(centres, cam, SIZE).astype(int)
    shades = [img[v, u, :3].mean() for u, v in uv]
    assert len({round(s) for s in shades}) == 3
    assert all(img[v, u, 3] == 255 for u, v in uv)


def test_render_views_and_errors():
    cams = [Camera(a, 26.0, 0.7) for a in (0.0, 90.0, 180.0)]
    images = render_views(sphere_shape(0.2, center=(0.1, 0.0, 0.0)), cams, SIZE)
    assert images.shape == (3, SIZE, SIZE, 4) and images.dtype == np.uint8
    # The off-centre ball moves: towards the camera at azimuth 0 (bigger), away at 180.
    areas = (images[..., 3] > 0).sum(axis=(1, 2))
    assert areas[0] > areas[1] > areas[2]
    with pytest.raises(ValueError, match="image_size"):
        render(sphere_shape(0.2), cams[0], 1)
    with pytest.raises(ValueError, match="no parts"):
        render(Shape("00000000", ()), cams[0])
