"""Solid primitives of the synthetic ShapeNet-like objects: geometry, inside tests, sampling.

An object is a :class:`Shape`: a category synset and a tuple of :class:`Part` s, each one of
four convex unit solids mapped into the object frame by ``p = center + rotation @ (size * q)``:
``"box"`` (``max|q_i| <= 1``, ``size`` = half-extents), ``"ellipsoid"`` (``|q| <= 1``, semi-axes),
``"cylinder"`` and ``"cone"`` (the frustum ``|qy| <= 1``, ``qx^2 + qz^2 <= rho(qy)^2`` with
``rho(y) = ((1 - y) + taper * (1 + y)) / 2``; ``size = (rx, half_height, rz)``). Everything is
analytic and vectorised over points: exact bounds and areas, uniform-by-area surface samples,
outward normals, the strict inside test, and :func:`sample_outer_surface` (i.i.d. points
uniform by area on the outer surface of the union). Frame of ShapeNetCore v1: y up, front +x,
left/right along z. Design notes: docs/design.md, "recon_jax.data.primitives".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "KINDS",
    "Part",
    "Shape",
    "make_part",
    "box",
    "ellipsoid",
    "cylinder",
    "frustum_between",
    "box_between",
    "rot_x",
    "rot_y",
    "rot_z",
    "frame_from_axis",
    "mirror_z",
    "part_bounds",
    "part_area",
    "to_unit",
    "inside_part",
    "sample_part_surface",
    "unit_normals",
    "normals_from_unit",
    "surface_normals",
    "outer_surface_mask",
    "sample_outer_surface",
]

KINDS: tuple[str, ...] = ("box", "ellipsoid", "cylinder", "cone")

# Strict-inside margin in unit-solid coordinates (relative to the part's size): a point on a
# part's own surface (or on a face shared exactly with another part) is never "inside".
_INSIDE_EPS = 1e-9
# Quadrature resolution for the curved areas (the integrands are smooth and periodic in phi).
_N_PHI = 256
_N_GAUSS = 96


@dataclasses.dataclass(frozen=True, eq=False)
class Part:
    """One solid of an object (see the module docstring for the unit solids).

    Attributes:
        name: a label such as ``"seat"`` or ``"wing_left"`` (for humans and tests).
        kind: one of :data:`KINDS`.
        center: ``[3]`` float64, position of the unit solid's origin in the object frame.
        rotation: ``[3, 3]`` float64 rotation (det +1); its columns are the part's local x, y, z
            axes expressed in the object frame.
        size: ``[3]`` float64 positive per-axis scale (half-extents, semi-axes, or
            ``(rx, half_height, rz)`` for cylinders and cones), in object units.
        taper: top radius over base radius for cylinders (1) and cones (``[0, 1]``); 1 otherwise.
        color: ``[3]`` float64 albedo in ``[0, 1]``.
    """

    name: str
    kind: str
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray
    taper: float
    color: np.ndarray

    def transformed(self, scale: float, offset: np.ndarray) -> Part:
        """This part after ``p -> scale * p + offset`` (``scale > 0``)."""
        return dataclasses.replace(
            self, center=scale * self.center + offset, size=scale * self.size
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Shape:
    """An object: its category synset and its parts (the solid is the union of the parts)."""

    synset: str
    parts: tuple[Part, ...]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact axis-aligned bounds ``(lo [3], hi [3])`` of the union of the parts."""
        lows, highs = zip(*(part_bounds(p) for p in self.parts), strict=True)
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def normalized(self) -> Shape:
        """The ShapeNet normalisation: bounding box centred at the origin, diagonal 1."""
        lo, hi = self.bounds()
        scale = 1.0 / float(np.linalg.norm(hi - lo))
        offset = -scale * (lo + hi) / 2.0
        return Shape(self.synset, tuple(p.transformed(scale, offset) for p in self.parts))

    def inside(self, points: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """``[N]`` bool: point ``i`` is strictly inside some part other than ``exclude[i]``.

        Args:
            points: ``[N, 3]`` object-frame coordinates.
            exclude: optional ``[N]`` int part index to ignore per point (its own part), or None.
        """
        points = np.asarray(points, dtype=np.float64)
        result = np.zeros(len(points), dtype=bool)
        for index, part in enumerate(self.parts):
            hit = inside_part(part, points)
            if exclude is not None:
                hit &= exclude != index
            result |= hit
        return result


# --------------------------------------------------------------------------------------------
# Rotations and constructors
# --------------------------------------------------------------------------------------------


def rot_x(angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` radians about +x (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` radians about +y (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` radians about +z (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def frame_from_axis(y_axis: Sequence[float], x_hint: Sequence[float]) -> np.ndarray:
    """``[3, 3]`` rotation whose local y is ``y_axis`` and local x is ``x_hint`` made orthogonal.

    Raises:
        ValueError: if ``y_axis`` is zero or ``x_hint`` is (nearly) parallel to it.
    """
    y = np.asarray(y_axis, dtype=np.float64)
    norm = np.linalg.norm(y)
    if not norm > 0:
        raise ValueError(f"y_axis must be a nonzero 3-vector, got {y_axis!r}")
    y = y / norm
    x = np.asarray(x_hint, dtype=np.float64)
    x = x - np.dot(x, y) * y
    norm_x = np.linalg.norm(x)
    if not norm_x > 1e-9:
        raise ValueError(f"x_hint {x_hint!r} must not be parallel to y_axis {y_axis!r}")
    x = x / norm_x
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def make_part(
    name: str,
    kind: str,
    center: Sequence[float],
    size: Sequence[float],
    color: Sequence[float],
    rotation: np.ndarray | None = None,
    taper: float = 1.0,
) -> Part:
    """Validated :class:`Part` constructor (arrays copied to float64).

    Raises:
        ValueError: unknown ``kind``, non-positive or non-finite ``size``, a ``rotation`` that is
            not a proper ``[3, 3]`` rotation, a ``taper`` outside ``[0, 1]`` (or != 1 for a
            cylinder), or a ``color`` outside ``[0, 1]``.
    """
    if kind not in KINDS:
        raise ValueError(f"part {name!r}: kind must be one of {KINDS}, got {kind!r}")
    center_a = np.asarray(center, dtype=np.float64).reshape(-1)
    size_a = np.asarray(size, dtype=np.float64).reshape(-1)
    color_a = np.asarray(color, dtype=np.float64).reshape(-1)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    if center_a.shape != (3,) or not np.all(np.isfinite(center_a)):
        raise ValueError(f"part {name!r}: center must be 3 finite numbers, got {center!r}")
    if size_a.shape != (3,) or not np.all(np.isfinite(size_a)) or not np.all(size_a > 0):
        raise ValueError(f"part {name!r}: size must be 3 positive finite numbers, got {size!r}")
    if color_a.shape != (3,) or not np.all((color_a >= 0) & (color_a <= 1)):
        raise ValueError(f"part {name!r}: color must be 3 numbers in [0, 1], got {color!r}")
    if (
        rot.shape != (3, 3)
        or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-9)
        or not np.linalg.det(rot) > 0
    ):
        raise ValueError(f"part {name!r}: rotation must be a proper 3x3 rotation, got {rot!r}")
    taper = float(taper)
    if kind == "cylinder" and taper != 1.0:
        raise ValueError(f"part {name!r}: a cylinder has taper 1, got {taper}")
    if kind == "cone" and not 0.0 <= taper <= 1.0:
        raise ValueError(f"part {name!r}: a cone's taper must lie in [0, 1], got {taper}")
    if kind in ("box", "ellipsoid"):
        taper = 1.0
    return Part(name, kind, center_a, rot, size_a, taper, color_a)


def box(name: str, center, half, color, rotation=None) -> Part:
    """A box with half-extents ``half`` ``[3]`` along its local axes."""
    return make_part(name, "box", center, half, color, rotation)


def ellipsoid(name: str, center, radii, color, rotation=None) -> Part:
    """An ellipsoid with semi-axes ``radii`` ``[3]`` along its local axes."""
    return make_part(name, "ellipsoid", center, radii, color, rotation)


def cylinder(name: str, center, radius, half_height, color, rotation=None, radius_z=None) -> Part:
    """A cylinder around local y; elliptic when ``radius_z`` differs from ``radius``."""
    rz = radius if radius_z is None else radius_z
    return make_part(name, "cylinder", center, (radius, half_height, rz), color, rotation)


def frustum_between(
    name: str,
    base: Sequence[float],
    top: Sequence[float],
    radius: float,
    color,
    taper: float = 1.0,
    radius_z: float | None = None,
    x_hint: Sequence[float] = (1.0, 0.0, 0.0),
) -> Part:
    """A cylinder (``taper == 1``) or cone from the centre of its base to the centre of its top.

    Args:
        base, top: ``[3]`` end points of the axis (the base ellipse sits at ``base``).
        radius: base semi-axis along the local x direction (``x_hint`` made orthogonal).
        taper: top radius / base radius.
        radius_z: base semi-axis along local z (default ``radius``).
        x_hint: direction of the local x axis (only matters for elliptic sections); if it is
            parallel to the axis, the world x or z axis is used instead.
    """
    base_a = np.asarray(base, dtype=np.float64)
    top_a = np.asarray(top, dtype=np.float64)
    axis = top_a - base_a
    length = float(np.linalg.norm(axis))
    if not length > 0:
        raise ValueError(f"part {name!r}: base and top must differ, got {base!r} and {top!r}")
    hint = np.asarray(x_hint, dtype=np.float64)
    for candidate in (hint, np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])):
        residual = candidate - np.dot(candidate, axis) / length**2 * axis
        if np.linalg.norm(residual) > 1e-6 * np.linalg.norm(candidate):
            hint = candidate
            break
    rot = frame_from_axis(axis, hint)
    rz = radius if radius_z is None else radius_z
    kind = "cylinder" if taper == 1.0 else "cone"
    return make_part(name, kind, (base_a + top_a) / 2, (radius, length / 2, rz), color, rot, taper)


def box_between(
    name: str,
    start: Sequence[float],
    end: Sequence[float],
    half_x: float,
    half_z: float,
    color,
    x_hint: Sequence[float] = (1.0, 0.0, 0.0),
) -> Part:
    """A box whose local y axis runs from ``start`` to ``end`` (its end faces' centres).

    ``half_x`` and ``half_z`` are the half-extents across, with local x along ``x_hint`` made
    orthogonal to the axis (or the world x or z axis if ``x_hint`` is parallel to it).
    """
    proto = frustum_between(name, start, end, half_x, color, radius_z=half_z, x_hint=x_hint)
    return make_part(name, "box", proto.center, proto.size, color, proto.rotation)


_MIRROR_Z = np.diag([1.0, 1.0, -1.0])


def mirror_z(part: Part, name: str | None = None) -> Part:
    """The mirror image of ``part`` in the x-y plane (``z -> -z``); stays a proper rotation."""
    return dataclasses.replace(
        part,
        name=part.name if name is None else name,
        center=part.center * np.array([1.0, 1.0, -1.0]),
        rotation=_MIRROR_Z @ part.rotation @ _MIRROR_Z,
    )


# --------------------------------------------------------------------------------------------
# Geometry of one part
# --------------------------------------------------------------------------------------------


def _frustum_coefficients(taper: float) -> tuple[float, float]:
    """``(a, b)`` with ``rho(y) = a + b * y``: radius 1 at ``y = -1`` and ``taper`` at ``y = 1``."""
    return (1.0 + taper) / 2.0, (taper - 1.0) / 2.0


def part_bounds(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Exact axis-aligned bounds ``(lo [3], hi [3])`` of one part in the object frame."""
    rs = part.rotation * part.size[None, :]  # [3 world, 3 local]: column j = local axis j * size
    if part.kind == "box":
        half = np.abs(rs).sum(axis=1)
        return part.center - half, part.center + half
    if part.kind == "ellipsoid":
        half = np.sqrt((rs**2).sum(axis=1))
        return part.center - half, part.center + half
    # Frustum: the convex hull of its two end ellipses, so its bounds are theirs.
    ellipse = np.sqrt(rs[:, 0] ** 2 + rs[:, 2] ** 2)
    axis = rs[:, 1]
    lows, highs = [], []
    for sign, radius in ((-1.0, 1.0), (1.0, part.taper)):
        centre = part.center + sign * axis
        lows.append(centre - radius * ellipse)
        highs.append(centre + radius * ellipse)
    return np.minimum(*lows), np.maximum(*highs)


def _periodic_mean(fn) -> float:
    """Mean over ``phi in [0, 2 pi)`` of a smooth periodic function (trapezoid rule)."""
    phi = np.arange(_N_PHI) * (2.0 * np.pi / _N_PHI)
    return float(np.mean(fn(phi)))


def _ellipsoid_density(u: np.ndarray, phi: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Area element of the ellipsoid in ``(u = cos(theta), phi)``: ``dA = g du dphi``."""
    s2 = 1.0 - u**2
    return np.sqrt(
        (r[1] * r[2]) ** 2 * s2 * np.cos(phi) ** 2
        + (r[0] * r[1]) ** 2 * s2 * np.sin(phi) ** 2
        + (r[0] * r[2]) ** 2 * u**2
    )


def _side_density(phi: np.ndarray, part: Part) -> np.ndarray:
    """The phi factor of the frustum side's area element ``dA = rho(y) * g(phi) dy dphi``."""
    rx, h, rz = part.size
    _, b = _frustum_coefficients(part.taper)
    return np.sqrt((h * rz * np.cos(phi)) ** 2 + (h * rx * np.sin(phi)) ** 2 + (rx * rz * b) ** 2)


def part_area(part: Part) -> float:
    """Total surface area of one part (object units squared; hidden faces included)."""
    if part.kind == "box":
        x, y, z = part.size
        return float(8.0 * (x * y + y * z + z * x))
    if part.kind == "ellipsoid":
        u, w = np.polynomial.legendre.leggauss(_N_GAUSS)
        phi = np.arange(_N_PHI) * (2.0 * np.pi / _N_PHI)
        per_u = _ellipsoid_density(u[:, None], phi[None, :], part.size).mean(axis=1)
        return float(2.0 * np.pi * np.sum(w * per_u))
    rx, _, rz = part.size
    a, _ = _frustum_coefficients(part.taper)
    side = 2.0 * a * 2.0 * np.pi * _periodic_mean(lambda p: _side_density(p, part))
    caps = np.pi * rx * rz * (1.0 + part.taper**2)
    return float(side + caps)


def to_unit(part: Part, points: np.ndarray) -> np.ndarray:
    """``[N, 3]`` object-frame points -> ``[N, 3]`` unit-solid coordinates of ``part``."""
    return ((np.asarray(points, dtype=np.float64) - part.center) @ part.rotation) / part.size


def _from_unit(part: Part, q: np.ndarray) -> np.ndarray:
    """``[N, 3]`` unit-solid coordinates -> ``[N, 3]`` object-frame points."""
    return (q * part.size) @ part.rotation.T + part.center


def inside_part(part: Part, points: np.ndarray, eps: float = _INSIDE_EPS) -> np.ndarray:
    """``[N]`` bool: strictly inside ``part`` by a relative margin ``eps`` (surface excluded)."""
    q = to_unit(part, points)
    if part.kind == "box":
        return np.max(np.abs(q), axis=1) < 1.0 - eps
    if part.kind == "ellipsoid":
        return np.sum(q**2, axis=1) < 1.0 - eps
    a, b = _frustum_coefficients(part.taper)
    rho = a + b * q[:, 1]
    return (np.abs(q[:, 1]) < 1.0 - eps) & (q[:, 0] ** 2 + q[:, 2] ** 2 < (1.0 - eps) * rho**2)


def _rejection(rng: np.random.Generator, n: int, propose, accept_ratio) -> np.ndarray:
    """``n`` draws: ``propose(m) -> params [m, k]`` kept with probability ``accept_ratio``."""
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = max(2 * (n - have), 16)
        params = propose(m)
        keep = rng.random(m) < accept_ratio(params)
        out.append(params[keep])
        have += int(keep.sum())
    return np.concatenate(out)[:n]


def _unit_disc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform by area in the unit disc, as ``(x, z)``."""
    r = np.sqrt(rng.random(n))
    phi = rng.random(n) * (2.0 * np.pi)
    return r * np.cos(phi), r * np.sin(phi)


def sample_part_surface(part: Part, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` i.i.d. points uniform by area on the whole surface of ``part`` (object frame)."""
    if n == 0:
        return np.zeros((0, 3))
    if part.kind == "box":
        x, y, z = part.size
        face_areas = np.array([y * z, y * z, x * z, x * z, x * y, x * y])
        face = rng.choice(6, size=n, p=face_areas / face_areas.sum())
        q = rng.uniform(-1.0, 1.0, size=(n, 3))
        axis = face // 2
        q[np.arange(n), axis] = np.where(face % 2 == 0, 1.0, -1.0)
        return _from_unit(part, q)
    if part.kind == "ellipsoid":
        r = part.size
        g_max = max(r[1] * r[2], r[0] * r[1], r[0] * r[2])
        params = _rejection(
            rng,
            n,
            lambda m: np.stack([rng.uniform(-1, 1, m), rng.uniform(0, 2 * np.pi, m)], axis=1),
            lambda p: _ellipsoid_density(p[:, 0], p[:, 1], r) / g_max,
        )
        u, phi = params[:, 0], params[:, 1]
        s = np.sqrt(np.clip(1.0 - u**2, 0.0, None))
        q = np.stack([s * np.cos(phi), u, s * np.sin(phi)], axis=1)
        return _from_unit(part, q)
    # Frustum: side (area element rho(y) g(phi)) and two elliptic caps (areas pi rx rz, times
    # taper^2 for the top).
    rx, h, rz = part.size
    a, b = _frustum_coefficients(part.taper)
    side_area = 2.0 * a * 2.0 * np.pi * _periodic_mean(lambda p: _side_density(p, part))
    areas = np.array([side_area, np.pi * rx * rz, np.pi * rx * rz * part.taper**2])
    which = rng.choice(3, size=n, p=areas / areas.sum())
    q = np.empty((n, 3))
    side = np.flatnonzero(which == 0)
    if side.size:
        m = side.size
        # rho(y) = (1 - y)/2 + taper (1 + y)/2: a mixture of the linear densities ~(1 - y), weight
        # 1, and ~(1 + y), weight taper; each sampled by inverse CDF.
        upper = rng.random(m) < part.taper / (1.0 + part.taper)
        root = np.sqrt(rng.random(m))
        y = np.where(upper, 2.0 * root - 1.0, 1.0 - 2.0 * root)
        g_max = np.sqrt((h * max(rx, rz)) ** 2 + (rx * rz * b) ** 2)
        phi = _rejection(
            rng,
            m,
            lambda k: rng.uniform(0, 2 * np.pi, (k, 1)),
            lambda p: _side_density(p[:, 0], part) / g_max,
        )[:, 0]
        rho = a + b * y
        q[side] = np.stack([rho * np.cos(phi), y, rho * np.sin(phi)], axis=1)
    for cap, y_cap, radius in ((1, -1.0, 1.0), (2, 1.0, part.taper)):
        idx = np.flatnonzero(which == cap)
        if idx.size:
            dx, dz = _unit_disc(rng, idx.size)
            q[idx] = np.stack([radius * dx, np.full(idx.size, y_cap), radius * dz], axis=1)
    return _from_unit(part, q)


def unit_normals(part: Part, q: np.ndarray) -> np.ndarray:
    """``[M, 3]`` outward (unnormalised) normals of the unit solid at its surface points ``q``.

    Boxes: the axis of the largest ``|q_i|``; ellipsoids: ``q``; cylinders and cones: the caps'
    axis within 1e-9 of ``|q_y| = 1``, else the gradient of ``x^2 + z^2 - rho(y)^2``.
    """
    if part.kind == "box":
        axis = np.abs(q).argmax(axis=1)
        rows = np.arange(len(q))
        n = np.zeros_like(q)
        n[rows, axis] = np.sign(q[rows, axis])
        return n
    if part.kind == "ellipsoid":
        return q
    a, b = _frustum_coefficients(part.taper)
    side = np.stack([q[:, 0], -b * (a + b * q[:, 1]), q[:, 2]], axis=1)
    cap = np.zeros_like(q)
    cap[:, 1] = np.sign(q[:, 1])
    return np.where((np.abs(q[:, 1]) >= 1.0 - 1e-9)[:, None], cap, side)


def normals_from_unit(part: Part, q: np.ndarray) -> np.ndarray:
    """``[M, 3]`` unit outward object-frame normals at unit-solid surface points ``q``."""
    n = (unit_normals(part, q) / part.size) @ part.rotation.T  # inverse transpose of the map
    norm = np.sqrt(np.einsum("ij,ij->i", n, n))[:, None]
    return n / np.where(norm > 0, norm, 1.0)


def surface_normals(part: Part, points: np.ndarray) -> np.ndarray:
    """``[M, 3]`` unit outward normals of ``part`` at object-frame surface points ``[M, 3]``."""
    return normals_from_unit(part, to_unit(part, points))


def outer_surface_mask(shape: Shape, points: np.ndarray, part_index: np.ndarray) -> np.ndarray:
    """``[M]`` bool: point ``i``, on the surface of part ``part_index[i]``, is on the outer surface.

    A point is dropped when it is strictly inside another part; when the other side of its face
    is covered by another part (faces in contact: a point ``delta`` outwards is inside another
    part); or when it duplicates a coplanar face of a part with a lower index that bounds the
    same side (a point ``delta`` inwards is inside that part), so shared faces count once.
    ``delta`` is ``1e-7`` of the bounding box diagonal.
    """
    points = np.asarray(points, dtype=np.float64)
    part_index = np.asarray(part_index)
    normals = np.zeros_like(points)
    for j, part in enumerate(shape.parts):
        sel = part_index == j
        if sel.any():
            normals[sel] = surface_normals(part, points[sel])
    lo, hi = shape.bounds()
    delta = 1e-7 * float(np.linalg.norm(hi - lo))
    outward, inward = points + delta * normals, points - delta * normals
    keep = np.ones(len(points), dtype=bool)
    for j, part in enumerate(shape.parts):
        other = part_index != j
        keep &= ~(other & (inside_part(part, points) | inside_part(part, outward)))
        keep &= ~((part_index > j) & inside_part(part, inward))
    return keep


def sample_outer_surface(
    shape: Shape, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` i.i.d. points uniform by area on the outer surface of the union of the parts.

    Candidates are drawn i.i.d. from the area-weighted mixture of the parts' whole surfaces (a
    multinomial split across parts, then a random permutation), and those not on the outer
    surface (:func:`outer_surface_mask`: inside another part, on a face in contact with another
    part, or a duplicate of a shared coplanar face) are rejected; the survivors are i.i.d.
    uniform on the outer surface. Batches repeat until ``n`` survive.

    Returns:
        ``(points [n, 3] float64, part_index [n] int64)`` in the object frame.

    Raises:
        ValueError: if ``n`` is negative, or no part has any outer surface.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    areas = np.array([part_area(p) for p in shape.parts])
    probs = areas / areas.sum()
    points: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    drawn, kept = 0, 0
    while kept < n:
        if drawn >= 20 * max(n, 1000) and kept == 0:
            raise ValueError("the shape has no outer surface: every surface point is inside a part")
        rate = kept / drawn if drawn else 0.75
        m = int((n - kept) / max(rate, 0.05) * 1.15) + 64
        counts = rng.multinomial(m, probs)
        pts = np.concatenate(
            [sample_part_surface(p, int(c), rng) for p, c in zip(shape.parts, counts, strict=True)]
        )
        idx = np.repeat(np.arange(len(shape.parts)), counts)
        order = rng.permutation(m)
        pts, idx = pts[order], idx[order]
        keep = outer_surface_mask(shape, pts, idx)
        points.append(pts[keep])
        indices.append(idx[keep])
        drawn += m
        kept += int(keep.sum())
    return np.concatenate(points)[:n], np.concatenate(indices)[:n]
