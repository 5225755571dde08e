"""The 3D-R2N2 camera model against two independent formulations used by the field.

* Mesh R-CNN / PyTorch3D ``R2N2``: ``compute_extrinsic_matrix`` (Blender world, camera on the
  rotated x axis, plus Blender's y-up -> z-up OBJ import rotation) and the NDC focal 2.1875.
* Pixel2Mesh ``camera_info``: camera position from azimuth/elevation and a look-at frame.

Both are rewritten here from their published formulas, not from ``recon_jax.data.camera``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon_jax.data.camera import (
    Camera,
    format_metadata_line,
    parse_metadata_line,
    pixel_rays,
    project,
    sample_cameras,
    world_to_camera,
)

SIZE = 137


def meshrcnn_pixels(points: np.ndarray, line: str, size: int = SIZE) -> np.ndarray:
    """Mesh R-CNN's R2N2 projection, then NDC -> pixel ``(u, v)`` (u right, v down)."""
    az, el, _, ratio, _ = (float(x) for x in line.split())
    distance = ratio * 1.75
    a, e = -math.pi * az / 180.0, -math.pi * el / 180.0
    sa, ca, se, ce = math.sin(a), math.cos(a), math.sin(e), math.cos(e)
    r_world2obj = np.array([[ca * ce, sa * ce, -se], [-sa, ca, 0.0], [ca * se, sa * se, ce]])
    r_obj2cam = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    rt = np.eye(4)
    rt[:3, :3] = r_obj2cam @ r_world2obj
    rt[:3, 3] = -(r_obj2cam @ np.array([distance, 0.0, 0.0]))
    blender_import = np.array(
        [[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]]
    )  # ShapeNet (y up) -> Blender (z up)
    rt = rt @ blender_import
    intrinsic = np.array(
        [[2.1875, 0, 0, 0], [0, 2.1875, 0, 0], [0, 0, -1.002002, -0.2002002], [0, 0, -1.0, 0]]
    )
    hom = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ (intrinsic @ rt).T
    ndc = hom[:, :2] / hom[:, 3:4]
    return np.stack([(ndc[:, 0] + 1) * size / 2, (1 - ndc[:, 1]) * size / 2], axis=1)


def pixel2mesh_pixels(points: np.ndarray, line: str, size: int = SIZE) -> np.ndarray:
    """Pixel2Mesh's ``camera_info`` frame with the 35 mm / 32 mm Blender lens."""
    az, el, _, ratio, _ = (float(x) for x in line.split())
    theta, phi = np.deg2rad(az), np.deg2rad(el)
    d = ratio * 1.75
    cam_pos = np.array(
        [d * np.cos(phi) * np.cos(theta), d * np.sin(phi), d * np.cos(phi) * np.sin(theta)]
    )
    axis_z = cam_pos.copy()
    axis_x = np.cross(np.array([0.0, 1.0, 0.0]), axis_z)
    axis_y = np.cross(axis_z, axis_x)
    cam_mat = np.array([axis_x, axis_y, axis_z])
    cam_mat /= np.linalg.norm(cam_mat, axis=1, keepdims=True)
    p = (points - cam_pos) @ cam_mat.T
    f = size * 35.0 / 32.0
    return np.stack([f * p[:, 0] / -p[:, 2] + size / 2, f * -p[:, 1] / -p[:, 2] + size / 2], axis=1)


def test_project_matches_meshrcnn_and_pixel2mesh(rng):
    points = rng.uniform(-0.5, 0.5, size=(500, 3))
    for camera in sample_cameras(rng, 40):
        line = format_metadata_line(camera)
        ours = project(points, line, SIZE)
        np.testing.assert_allclose(ours, meshrcnn_pixels(points, line), atol=1e-9)
        np.testing.assert_allclose(ours, pixel2mesh_pixels(points, line), atol=1e-9)
        np.testing.assert_allclose(project(points, camera, SIZE), ours, atol=0)


def test_hand_computed_front_view():
    # Azimuth 0, elevation 0: camera on +x at 0.8 * 1.75 = 1.4 looking at the origin; the
    # object's +z points to the camera's left (right = up x back = y x x = -z).
    camera = parse_metadata_line("0 0 0 0.8 25")
    np.testing.assert_allclose(camera.position, [1.4, 0.0, 0.0], atol=1e-15)
    f = SIZE * 35 / 32
    points = np.array([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1], [0.4, 0.0, -0.1]])
    expected = np.array(
        [
            [68.5, 68.5],
            [68.5, 68.5 - f * 0.1 / 1.4],
            [68.5 - f * 0.1 / 1.4, 68.5],
            [68.5 + f * 0.1 / 1.0, 68.5],
        ]
    )
    np.testing.assert_allclose(project(points, camera), expected, atol=1e-9)
    cam = world_to_camera(points, camera)
    np.testing.assert_allclose(cam[:, 2], [-1.4, -1.4, -1.4, -1.0], atol=1e-12)


def test_pixel_rays_invert_project(rng):
    camera = sample_cameras(rng, 1)[0]
    u, v = rng.uniform(0, SIZE, 50), rng.uniform(0, SIZE, 50)
    origin, dirs = pixel_rays(camera, u, v, SIZE)
    np.testing.assert_allclose(origin, camera.position)
    for t in (0.5, 1.3):
        np.testing.assert_allclose(
            project(origin + t * dirs, camera, SIZE), np.stack([u, v], 1), atol=1e-9
        )
    # t is depth: the camera-frame z of origin + t * d is -t.
    np.testing.assert_allclose(world_to_camera(origin + 0.7 * dirs, camera)[:, 2], -0.7, atol=1e-12)


def test_sampled_cameras_are_what_the_file_says(rng):
    cameras = sample_cameras(rng, 200)
    for camera in cameras:
        line = format_metadata_line(camera)
        fields = line.split()
        assert len(fields) == 5 and fields[2] == "0" and fields[4] == "25"
        assert parse_metadata_line(line) == camera
        assert 0.0 <= camera.azimuth < 360.0
        assert 25.0 <= camera.elevation <= 30.0
        assert 0.65 <= camera.distance_ratio <= 0.95
    az = np.array([c.azimuth for c in cameras])
    assert az.min() < 30 and az.max() > 330  # spread over the circle, not a constant


@pytest.mark.parametrize(
    "line, match",
    [
        ("1 2 0 0.7", "expected 5 numbers .* got 4 fields"),
        ("1 2 0 0.7 25 3", "expected 5 numbers .* got 6 fields"),
        ("a 2 0 0.7 25", "expected 5 numbers"),
        ("1 nan 0 0.7 25", "finite"),
        ("1 2 5 0.7 25", "in-plane rotation"),
        ("1 95 0 0.7 25", "elevation"),
        ("1 2 0 0 25", "distance ratio"),
    ],
)
def test_bad_metadata_lines(line, match):
    with pytest.raises(ValueError, match=match):
        parse_metadata_line(line, "x/rendering_metadata.txt:3")
    with pytest.raises(ValueError, match="rendering_metadata.txt:3"):
        parse_metadata_line(line, "x/rendering_metadata.txt:3")


def test_project_rejects_bad_points():
    camera = Camera(10.0, 27.0, 0.8)
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        project(np.zeros((4, 2)), camera)
    with pytest.raises(ValueError, match="in front of the camera"):
        project(camera.position[None] * 2.0, camera)
