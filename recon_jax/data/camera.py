"""The 3D-R2N2 camera of ``rendering_metadata.txt``, read as the field reads it, and the one
parser of that file.

A line holds ``azimuth elevation in_plane distance_ratio fov`` (degrees, degrees, always 0,
unitless, degrees). Object frame of ShapeNetCore v1 (y up, front +x); the camera sits at
``d * (cos el cos az, sin el, cos el sin az)`` with ``d = distance_ratio * 1.75`` and looks at
the origin (OpenGL axes, visible points have negative camera z). The lens is Blender's default
(35 mm on a 32 mm sensor: ``f = image_size * 35 / 32`` px), not the recorded ``fov``. Pixel
coordinates ``(u, v)`` are continuous (column, row), ``(0, 0)`` the top-left corner of the
image::

    u = cx + f * x_cam / (-z_cam),   v = cy - f * y_cam / (-z_cam),   cx = cy = image_size / 2

References: Pixel2Mesh ``camera_info``, DISN ``getBlenderProj``, Mesh R-CNN
``compute_extrinsic_matrix``. Design notes: docs/design.md, "recon_jax.data.camera".
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from recon_jax.data.layout import NUM_VIEWS, DataError

__all__ = [
    "MAX_CAMERA_DISTANCE",
    "FOCAL_LENGTH_MM",
    "SENSOR_SIZE_MM",
    "RECORDED_FOV",
    "AZIMUTH_RANGE",
    "ELEVATION_RANGE",
    "DISTANCE_RATIO_RANGE",
    "Camera",
    "METADATA_COLUMNS",
    "parse_metadata",
    "parse_metadata_line",
    "format_metadata_line",
    "sample_cameras",
    "focal_length_px",
    "world_to_camera",
    "project",
    "camera_directions",
    "pixel_rays",
]

MAX_CAMERA_DISTANCE = 1.75  # 3D-R2N2's constant: camera distance = distance_ratio * 1.75
FOCAL_LENGTH_MM = 35.0  # Blender's default lens, used for the renders
SENSOR_SIZE_MM = 32.0  # Blender's default sensor width
RECORDED_FOV = 25.0  # the fifth metadata field as 3D-R2N2 writes it (not the lens)
AZIMUTH_RANGE = (0.0, 360.0)
ELEVATION_RANGE = (25.0, 30.0)
DISTANCE_RATIO_RANGE = (0.65, 0.95)
METADATA_COLUMNS = 5  # azimuth, elevation, in-plane rotation, distance ratio, field of view
_DIGITS = 6  # decimals written to rendering_metadata.txt


@dataclasses.dataclass(frozen=True)
class Camera:
    """One 3D-R2N2 view: azimuth and elevation in degrees, distance ratio, recorded fov."""

    azimuth: float
    elevation: float
    distance_ratio: float
    fov: float = RECORDED_FOV

    @functools.cached_property
    def position(self) -> np.ndarray:
        """``[3]`` camera centre in the object frame."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        d = self.distance_ratio * MAX_CAMERA_DISTANCE
        return np.array(
            [d * math.cos(el) * math.cos(az), d * math.sin(el), d * math.cos(el) * math.sin(az)]
        )

    @functools.cached_property
    def rotation(self) -> np.ndarray:
        """``[3, 3]`` world-to-camera rotation; rows are the camera's right, up, back axes."""
        back = self.position / np.linalg.norm(self.position)
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        return np.stack([right, up, back])


def focal_length_px(image_size: int) -> float:
    """Focal length in pixels of the 3D-R2N2 lens for a square image of ``image_size`` pixels."""
    return image_size * FOCAL_LENGTH_MM / SENSOR_SIZE_MM


def _parse_row(line: str, path: str, where: str = "") -> tuple[float, ...]:
    """The five numbers of one metadata line, checked; errors name ``path`` and ``where``."""
    fields = line.split()
    if len(fields) != METADATA_COLUMNS:
        raise DataError(path, f"{where}expected {METADATA_COLUMNS} numbers 'azimuth elevation 0 "
                        f"distance_ratio fov', got {len(fields)} fields {line.strip()!r}")
    try:
        values = tuple(float(f) for f in fields)
    except ValueError:
        raise DataError(path, f"{where}expected {METADATA_COLUMNS} numbers, got "
                        f"{line.strip()!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(path, f"{where}expected finite numbers, got {line.strip()!r}")
    _, el, in_plane, ratio, _ = values
    if in_plane != 0.0:
        raise DataError(path, f"{where}the in-plane rotation (3rd field) must be 0, got "
                        f"{line.strip()!r}")
    if not abs(el) < 90.0:
        raise DataError(path, f"{where}elevation must lie in (-90, 90) degrees, got "
                        f"{line.strip()!r}")
    if not ratio > 0.0:
        raise DataError(path, f"{where}distance ratio (4th field) must be > 0, got "
                        f"{line.strip()!r}")
    return values


def parse_metadata(text: str, path: str, num_views: int = NUM_VIEWS) -> np.ndarray:
    """``rendering_metadata.txt`` -> ``float32 [num_views, 5]``, one row per view.

    Blank lines are ignored. Every line must hold five finite numbers with in-plane rotation 0,
    ``|elevation| < 90`` and ``distance_ratio > 0`` (a camera outside the object looking at it).

    Raises:
        DataError: naming ``path`` and the line, or the wrong number of lines.
    """
    rows = [_parse_row(line, path, f"line {lineno}: ")
            for lineno, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(rows) != num_views:
        raise DataError(path, f"expected {num_views} lines (one per view), got {len(rows)}")
    return np.asarray(rows, dtype=np.float32)


def parse_metadata_line(line: str, source: str = "metadata line") -> Camera:
    """One line ``"az el 0 distance_ratio fov"`` as a :class:`Camera` (rules of
    :func:`parse_metadata`).

    Raises:
        DataError: naming ``source`` when the line breaks a rule.
    """
    az, el, _, ratio, fov = _parse_row(line, source)
    return Camera(az, el, ratio, fov)


def format_metadata_line(camera: Camera) -> str:
    """The ``rendering_metadata.txt`` line of ``camera`` (no newline)."""
    return (
        f"{camera.azimuth:.{_DIGITS}f} {camera.elevation:.{_DIGITS}f} 0 "
        f"{camera.distance_ratio:.{_DIGITS}f} {camera.fov:g}"
    )


def sample_cameras(rng: np.random.Generator, n: int) -> list[Camera]:
    """``n`` views drawn as 3D-R2N2 drew them, rounded to the decimals the file stores.

    The returned cameras equal ``parse_metadata_line(format_metadata_line(camera))`` exactly.
    """
    az = rng.uniform(*AZIMUTH_RANGE, size=n)
    el = rng.uniform(*ELEVATION_RANGE, size=n)
    ratio = rng.uniform(*DISTANCE_RATIO_RANGE, size=n)
    cameras = []
    for a, e, r in zip(az, el, ratio, strict=True):
        a = round(float(a), _DIGITS) % 360.0
        cameras.append(Camera(a, round(float(e), _DIGITS), round(float(r), _DIGITS)))
    return cameras


def _as_camera(camera: Camera | str) -> Camera:
    if isinstance(camera, Camera):
        return camera
    if isinstance(camera, str):
        return parse_metadata_line(camera)
    raise ValueError(f"camera must be a Camera or a metadata line, got {type(camera).__name__}")


def world_to_camera(points: np.ndarray, camera: Camera | str) -> np.ndarray:
    """``[N, 3]`` object-frame points -> ``[N, 3]`` camera coordinates (x right, y up, z back)."""
    cam = _as_camera(camera)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {points.shape}")
    return (points - cam.position) @ cam.rotation.T


def project(points: np.ndarray, camera: Camera | str, image_size: int = 137) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` = ``(u, v)`` (column, row; continuous, see module docstring).

    Args:
        points: ``[N, 3]`` points in the object frame.
        camera: a :class:`Camera` or a ``rendering_metadata.txt`` line.
        image_size: side of the square render in pixels (137 for 3D-R2N2).

    Raises:
        ValueError: for a malformed ``points`` shape or metadata line, or a point not in front of
            the camera (camera z >= 0).
    """
    p = world_to_camera(points, camera)
    depth = -p[:, 2]
    if np.any(depth <= 0):
        raise ValueError(f"{int(np.sum(depth <= 0))} points are not in front of the camera")
    f = focal_length_px(image_size)
    c = image_size / 2.0
    return np.stack([c + f * p[:, 0] / depth, c - f * p[:, 1] / depth], axis=1)


def camera_directions(u: np.ndarray, v: np.ndarray, image_size: int = 137) -> np.ndarray:
    """Camera-frame directions ``[*S, 3]`` of the rays through continuous pixel coordinates.

    ``u, v`` are arrays of one shape ``S`` (columns, rows); the directions have camera z = -1.
    """
    f = focal_length_px(image_size)
    c = image_size / 2.0
    u, v = np.broadcast_arrays(np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64))
    return np.stack([(u - c) / f, -(v - c) / f, -np.ones_like(u)], axis=-1)


def pixel_rays(
    camera: Camera | str, u: np.ndarray, v: np.ndarray, image_size: int = 137
) -> tuple[np.ndarray, np.ndarray]:
    """Rays through continuous pixel coordinates: the inverse of :func:`project`.

    Args:
        u, v: arrays of the same shape ``S`` (columns and rows, continuous).

    Returns:
        ``(origin [3], directions [*S, 3])`` in the object frame; the directions are not
        normalised (camera-frame z component -1, so ``t`` along them is depth).
    """
    cam = _as_camera(camera)
    return cam.position, camera_directions(u, v, image_size) @ cam.rotation
