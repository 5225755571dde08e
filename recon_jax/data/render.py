"""NumPy ray caster for :class:`~recon_jax.data.primitives.Shape`: 137x137 RGBA, 3D-R2N2 cameras.

Rays go through pixel centres (:func:`recon_jax.data.camera.pixel_rays`); every part is
intersected analytically in its unit-solid frame, so silhouettes and normals are exact. Edge
pixels get four more rays (adaptive anti-aliasing, soft edges like Blender's). Shading is
Lambertian with ambient light and two lights fixed in the camera frame. Outside the object
RGBA is (0, 0, 0, 0), as the transparent background of the 3D-R2N2 PNGs; colours are straight
(not premultiplied), as PNG stores them. Design notes: docs/design.md, "recon_jax.data.render".
"""

from __future__ import annotations

import functools

import numpy as np

from recon_jax.data.camera import Camera, camera_directions, pixel_rays, project
from recon_jax.data.primitives import Part, Shape, normals_from_unit

__all__ = ["render", "render_views", "intersect_part"]

_AMBIENT = 0.32
_LIGHTS_CAMERA = tuple(  # (unit direction towards the light in camera coordinates, weight)
    (np.array(d) / np.linalg.norm(d), w)
    for d, w in (((-0.45, 0.65, 0.62), 0.62), ((0.7, 0.05, 0.5), 0.22))
)
# Rotated-grid sub-pixel offsets for the edge pixels (the centre sample is the fifth).
_SUBSAMPLES = np.array([[-0.375, -0.125], [0.125, -0.375], [0.375, 0.125], [-0.125, 0.375]])


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product over the last axis (of length 3), broadcasting."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _hit_distance(part: Part, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``[M]`` nearest positive ``t`` of rays ``o + t d`` with the unit solid (``inf``: miss).

    Args:
        o: ``[3]`` common origin, or ``[M, 3]``, in unit-solid coordinates.
        d: ``[M, 3]`` directions in unit-solid coordinates (any length).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if part.kind == "box":  # slab test
            inv = 1.0 / d
            t1 = (-1.0 - o) * inv
            t2 = (1.0 - o) * inv
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = np.maximum(np.maximum(near[:, 0], near[:, 1]), near[:, 2])
            t_far = np.minimum(np.minimum(far[:, 0], far[:, 1]), far[:, 2])
            return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)
        if part.kind == "ellipsoid":  # |o + t d|^2 = 1, nearer root
            a = _dot(d, d)
            b = 2.0 * _dot(o, d)
            c = _dot(o, o) - 1.0
            disc = b * b - 4.0 * a * c
            t = (-b - np.sqrt(disc)) / (2.0 * a)
            return np.where((disc >= 0) & (t > 0), t, np.inf)
        # Cylinder / cone: side x^2 + z^2 = rho(y)^2 with rho(y) = ra + rb y and |y| <= 1, plus
        # the caps y = -1 (radius 1) and y = 1 (radius taper).
        k = part.taper
        ra, rb = (1.0 + k) / 2.0, (k - 1.0) / 2.0
        ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
        dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
        rho_o = ra + rb * oy
        qa = dx * dx + dz * dz - rb * rb * dy * dy
        qb = 2.0 * (ox * dx + oz * dz - rb * rho_o * dy)
        qc = ox * ox + oz * oz - rho_o * rho_o
        disc = qb * qb - 4.0 * qa * qc
        sq = np.sqrt(np.maximum(disc, 0.0))
        q = -0.5 * (qb + np.where(qb >= 0, sq, -sq))  # numerically stable roots q/qa and qc/q
        best = np.full(d.shape[0], np.inf)
        for t in (q / qa, qc / q):
            ok = (disc >= 0) & (t > 0) & (np.abs(oy + t * dy) <= 1.0)
            best = np.where(ok & (t < best), t, best)
        for y_cap, radius in ((-1.0, 1.0), (1.0, k)):
            if radius <= 0:
                continue
            t = (y_cap - oy) / dy
            x, z = ox + t * dx, oz + t * dz
            ok = (t > 0) & (x * x + z * z <= radius * radius)
            best = np.where(ok & (t < best), t, best)
        return best


def _to_unit_rays(
    part: Part, origin: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    o_unit = ((np.asarray(origin, dtype=np.float64) - part.center) @ part.rotation) / part.size
    d_unit = (np.asarray(directions, dtype=np.float64) @ part.rotation) / part.size
    return o_unit, d_unit


def _normals(part: Part, o_unit: np.ndarray, d_unit: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[M, 3]`` unit object-frame normals at the hits ``o + t d`` (all ``t`` finite)."""
    return normals_from_unit(part, o_unit + t[:, None] * d_unit)


def intersect_part(
    part: Part, origin: np.ndarray, directions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of object-frame rays ``origin + t * directions`` with one part.

    Args:
        origin: ``[3]`` (shared) or ``[M, 3]`` ray origins, object frame.
        directions: ``[M, 3]`` ray directions, object frame (any length; ``t`` is in their units).

    Returns:
        ``(t [M], normals [M, 3])``: ``t = inf`` where the ray misses; unit outward normals in
        the object frame where it hits (zero where it misses).
    """
    o_unit, d_unit = _to_unit_rays(part, origin, directions)
    t = _hit_distance(part, o_unit, d_unit)
    hit = np.isfinite(t)
    normals = np.zeros((len(t), 3))
    o_hit = o_unit if o_unit.ndim == 1 else o_unit[hit]
    normals[hit] = _normals(part, o_hit, d_unit[hit], t[hit])
    return t, normals


@functools.lru_cache(maxsize=8)
def _grid_directions(image_size: int) -> np.ndarray:
    """``[H, W, 3]`` camera-frame directions through the pixel centres (read-only, cached)."""
    centres = np.arange(image_size) + 0.5
    u, v = np.meshgrid(centres, centres)
    dirs = camera_directions(u, v, image_size)
    dirs.setflags(write=False)
    return dirs


def _windows(shape: Shape, camera: Camera, image_size: int) -> list[tuple[int, int, int, int]]:
    """Per part, the pixel rectangle ``(r0, r1, c0, c1)`` covering its projected bounding box."""
    corners = np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
    )
    out = []
    for part in shape.parts:
        pts = (corners * part.size) @ part.rotation.T + part.center
        try:
            uv = project(pts, camera, image_size)
        except ValueError:  # a corner behind the camera: test every pixel
            out.append((0, image_size, 0, image_size))
            continue
        c0, r0 = np.floor(uv.min(axis=0)).astype(int) - 1
        c1, r1 = np.ceil(uv.max(axis=0)).astype(int) + 1
        out.append((max(r0, 0), min(r1, image_size), max(c0, 0), min(c1, image_size)))
    return out


def _trace_pixels(
    shape: Shape,
    camera: Camera,
    windows: list[tuple[int, int, int, int]],
    u: np.ndarray,
    v: np.ndarray,
    image_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hits of rays through arbitrary pixel positions ``u, v`` ``[M]``.

    Returns ``(t [M], part index [M] (-1 = background), normals [M, 3])``.
    """
    origin, dirs = pixel_rays(camera, u, v, image_size)
    m = len(u)
    depth = np.full(m, np.inf)
    ids = np.full(m, -1, dtype=np.int64)
    normals = np.zeros((m, 3))
    for index, (part, (r0, r1, c0, c1)) in enumerate(zip(shape.parts, windows, strict=True)):
        sel = np.flatnonzero((v >= r0) & (v < r1) & (u >= c0) & (u < c1))
        if sel.size == 0:
            continue
        o_unit, d_unit = _to_unit_rays(part, origin, dirs[sel])
        t = _hit_distance(part, o_unit, d_unit)
        closer = t < depth[sel]
        sel = sel[closer]
        depth[sel] = t[closer]
        ids[sel] = index
        normals[sel] = _normals(part, o_unit, d_unit[closer], t[closer])
    return depth, ids, normals


def _shade(shape: Shape, camera: Camera, ids: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """``[M, 3]`` float RGB in [0, 1] for hit part ``ids`` ``[M]`` (all >= 0) with ``normals``."""
    albedo = np.array([p.color for p in shape.parts])[ids]
    n_cam = normals @ camera.rotation.T
    # Face the viewer (the camera is outside every part, so this only guards round-off).
    n_cam = np.where(n_cam[:, 2:3] < 0, -n_cam, n_cam)
    light = np.full(len(ids), _AMBIENT)
    for direction, weight in _LIGHTS_CAMERA:
        light += weight * np.clip(n_cam @ direction, 0.0, None)
    return np.clip(albedo * light[:, None], 0.0, 1.0)


def render(
    shape: Shape, camera: Camera, image_size: int = 137, antialias: bool = True
) -> np.ndarray:
    """Render one view.

    Args:
        shape: the object (object frame: y up, front +x; normalised to diagonal 1 for R2N2
            framing).
        camera: the view (:class:`~recon_jax.data.camera.Camera`).
        image_size: side of the square image in pixels.
        antialias: supersample the edge pixels (5 rays) for soft edges and fractional alpha.

    Returns:
        ``[image_size, image_size, 4]`` uint8 RGBA; alpha 0 (and RGB 0) where no ray hits.
    """
    if image_size < 2:
        raise ValueError(f"image_size must be >= 2, got {image_size}")
    if not shape.parts:
        raise ValueError("shape has no parts")
    grid = _grid_directions(image_size)
    origin, rotation = camera.position, camera.rotation
    windows = _windows(shape, camera, image_size)
    depth = np.full((image_size, image_size), np.inf)
    ids = np.full((image_size, image_size), -1, dtype=np.int64)
    normals = np.zeros((image_size, image_size, 3))
    for index, (part, (r0, r1, c0, c1)) in enumerate(zip(shape.parts, windows, strict=True)):
        if r1 <= r0 or c1 <= c0:
            continue
        o_unit, d_unit = _to_unit_rays(part, origin, grid[r0:r1, c0:c1].reshape(-1, 3) @ rotation)
        t = _hit_distance(part, o_unit, d_unit).reshape(r1 - r0, c1 - c0)
        win_depth = depth[r0:r1, c0:c1]
        closer = t < win_depth
        win_depth[closer] = t[closer]
        ids[r0:r1, c0:c1][closer] = index
        normals[r0:r1, c0:c1][closer] = _normals(
            part, o_unit, d_unit[closer.reshape(-1)], t[closer]
        )
    hit = ids >= 0
    rgb = np.zeros((image_size, image_size, 3))
    rgb[hit] = _shade(shape, camera, ids[hit], normals[hit])
    alpha = hit.astype(np.float64)
    if antialias:
        padded = np.pad(ids, 1, mode="edge")
        edge = (
            (padded[:-2, 1:-1] != ids)
            | (padded[2:, 1:-1] != ids)
            | (padded[1:-1, :-2] != ids)
            | (padded[1:-1, 2:] != ids)
        )
        rows, cols = np.nonzero(edge)
        if rows.size:
            k = len(_SUBSAMPLES)
            u = (cols[:, None] + 0.5 + _SUBSAMPLES[None, :, 0]).reshape(-1)
            v = (rows[:, None] + 0.5 + _SUBSAMPLES[None, :, 1]).reshape(-1)
            _, sub_ids, sub_normals = _trace_pixels(shape, camera, windows, u, v, image_size)
            sub_hit = sub_ids >= 0
            sub_rgb = np.zeros((len(sub_ids), 3))
            sub_rgb[sub_hit] = _shade(shape, camera, sub_ids[sub_hit], sub_normals[sub_hit])
            sub_rgb = sub_rgb.reshape(-1, k, 3)
            sub_hit = sub_hit.reshape(-1, k)
            centre_hit = hit[rows, cols]
            hits = sub_hit.sum(axis=1) + centre_hit
            colour_sum = sub_rgb.sum(axis=1) + rgb[rows, cols]  # misses contribute 0
            rgb[rows, cols] = colour_sum / np.maximum(hits, 1)[:, None]
            alpha[rows, cols] = hits / (k + 1)
    out = np.empty((image_size, image_size, 4), dtype=np.uint8)
    out[..., :3] = np.round(rgb * 255.0).astype(np.uint8)
    out[..., 3] = np.round(alpha * 255.0).astype(np.uint8)
    return out


def render_views(
    shape: Shape, cameras: list[Camera], image_size: int = 137, antialias: bool = True
) -> np.ndarray:
    """``[V, image_size, image_size, 4]`` uint8 RGBA, one image per camera (see :func:`render`)."""
    return np.stack([render(shape, c, image_size, antialias) for c in cameras])
