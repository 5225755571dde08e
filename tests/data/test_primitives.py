"""Primitive geometry against closed forms, fine triangulations and brute-force ray marching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon_jax.data.primitives import (
    Shape,
    box,
    ellipsoid,
    frustum_between,
    inside_part,
    make_part,
    mirror_z,
    part_area,
    part_bounds,
    rot_x,
    rot_y,
    rot_z,
    sample_outer_surface,
    sample_part_surface,
)
from recon_jax.data.render import intersect_part

GREY = (0.5, 0.5, 0.5)


def random_rotation(rng) -> np.ndarray:
    return rot_z(rng.uniform(0, 6.3)) @ rot_y(rng.uniform(0, 6.3)) @ rot_x(rng.uniform(0, 6.3))


def random_part(rng, kind: str):
    size = rng.uniform(0.05, 0.3, 3)
    taper = {"cylinder": 1.0, "cone": float(rng.choice([0.0, rng.uniform(0.1, 0.9)]))}.get(kind, 1)
    return make_part(kind, kind, rng.uniform(-0.2, 0.2, 3), size, GREY, random_rotation(rng), taper)


def local(part, points):
    """Unit-solid coordinates, written out from the documented map (not ``to_unit``)."""
    return np.linalg.solve(part.rotation, (points - part.center).T).T / part.size


def rho(part, y):
    return (1 - y) / 2 + part.taper * (1 + y) / 2


def surface_residual(part, points) -> np.ndarray:
    """0 on the surface of ``part`` (unit-solid units), from the definitions in the docstring."""
    q = local(part, points)
    if part.kind == "box":
        return np.abs(np.abs(q).max(axis=1) - 1)
    if part.kind == "ellipsoid":
        return np.abs(np.linalg.norm(q, axis=1) - 1)
    r = np.hypot(q[:, 0], q[:, 2])
    side = np.abs(r - rho(part, np.clip(q[:, 1], -1, 1))) + np.maximum(np.abs(q[:, 1]) - 1, 0)
    cap = np.abs(np.abs(q[:, 1]) - 1) + np.maximum(r - rho(part, np.sign(q[:, 1])), 0)
    return np.minimum(side, cap)


def implicit_inside(part, points, eps=1e-9) -> np.ndarray:
    q = local(part, points)
    if part.kind == "box":
        return np.all(np.abs(q) < 1 - eps, axis=1)
    if part.kind == "ellipsoid":
        return np.sum(q**2, axis=1) < 1 - eps
    return (np.abs(q[:, 1]) < 1 - eps) & (
        np.hypot(q[:, 0], q[:, 2]) < rho(part, q[:, 1]) * (1 - eps)
    )


def grid_area(fn, n_u: int, n_v: int, u_range, v_range) -> tuple[np.ndarray, np.ndarray]:
    """Areas and centroids of the triangles of a parametric surface ``fn(u, v) -> [.., 3]``."""
    u = np.linspace(*u_range, n_u)
    v = np.linspace(*v_range, n_v)
    p = fn(u[:, None], v[None, :])  # [n_u, n_v, 3]
    a, b, c, d = p[:-1, :-1], p[1:, :-1], p[1:, 1:], p[:-1, 1:]
    areas, cents = [], []
    for x, y, z in ((a, b, c), (a, c, d)):
        areas.append(0.5 * np.linalg.norm(np.cross(y - x, z - x), axis=-1).reshape(-1))
        cents.append(((x + y + z) / 3).reshape(-1, 3))
    return np.concatenate(areas), np.concatenate(cents)


def ellipsoid_mesh(r):
    return grid_area(
        lambda t, f: np.stack(
            np.broadcast_arrays(
                r[0] * np.sin(t) * np.cos(f), r[1] * np.cos(t), r[2] * np.sin(t) * np.sin(f)
            ),
            -1,
        ),
        700,
        1400,
        (0, np.pi),
        (0, 2 * np.pi),
    )


def frustum_side_mesh(rx, h, rz, k):
    return grid_area(
        lambda y, f: np.stack(
            np.broadcast_arrays(
                rx * ((1 - y) / 2 + k * (1 + y) / 2) * np.cos(f),
                h * y + 0 * f,
                rz * ((1 - y) / 2 + k * (1 + y) / 2) * np.sin(f),
            ),
            -1,
        ),
        200,
        2000,
        (-1, 1),
        (0, 2 * np.pi),
    )


def test_areas_closed_forms():
    r, h = 0.2, 0.3
    assert part_area(ellipsoid("s", (0, 0, 0), (r, r, r), GREY)) == pytest.approx(
        4 * np.pi * r**2, rel=1e-10
    )
    assert part_area(box("b", (0, 0, 0), (0.1, 0.2, 0.3), GREY)) == pytest.approx(
        2 * (0.2 * 0.4 + 0.4 * 0.6 + 0.2 * 0.6), rel=1e-12
    )
    cyl = frustum_between("c", (0, -h, 0), (0, h, 0), r, GREY)
    assert part_area(cyl) == pytest.approx(2 * np.pi * r * (r + 2 * h), rel=1e-10)
    for k in (0.0, 0.4):
        cone = frustum_between("k", (0, -h, 0), (0, h, 0), r, GREY, taper=k)
        slant = math.hypot(r - k * r, 2 * h)
        expected = np.pi * (r + k * r) * slant + np.pi * r**2 * (1 + k**2)
        assert part_area(cone) == pytest.approx(expected, rel=1e-10)


def test_areas_elliptic_against_triangulation():
    r = np.array([0.3, 0.1, 0.2])
    areas, _ = ellipsoid_mesh(r)
    assert part_area(ellipsoid("e", (0, 0, 0), r, GREY)) == pytest.approx(areas.sum(), rel=2e-5)
    rx, h, rz, k = 0.25, 0.15, 0.08, 0.35
    side, _ = frustum_side_mesh(rx, h, rz, k)
    part = make_part("f", "cone", (0, 0, 0), (rx, h, rz), GREY, taper=k)
    assert part_area(part) == pytest.approx(side.sum() + np.pi * rx * rz * (1 + k**2), rel=2e-5)


def _check_fraction(inside_sample: np.ndarray, expected: float):
    n = inside_sample.size
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(inside_sample.mean() - expected) < 4.5 * sigma + 1e-4, (
        inside_sample.mean(),
        expected,
    )


def test_sampling_is_uniform_by_area(rng):
    n = 60_000
    r = np.array([0.3, 0.1, 0.2])
    part = ellipsoid("e", (0, 0, 0), r, GREY)
    pts = sample_part_surface(part, n, rng)
    assert surface_residual(part, pts).max() < 1e-12
    areas, cents = ellipsoid_mesh(r)
    for region in (lambda p: p[:, 1] > 0.05, lambda p: p[:, 0] > 0.15, lambda p: p[:, 2] < -0.1):
        _check_fraction(region(pts), areas[region(cents)].sum() / areas.sum())

    rx, h, rz, k = 0.25, 0.15, 0.08, 0.35
    part = make_part("f", "cone", (0, 0, 0), (rx, h, rz), GREY, taper=k)
    pts = sample_part_surface(part, n, rng)
    assert surface_residual(part, pts).max() < 1e-12
    side, cents = frustum_side_mesh(rx, h, rz, k)
    total = side.sum() + np.pi * rx * rz * (1 + k**2)
    on_bottom = np.abs(pts[:, 1] + h) < 1e-12
    on_top = np.abs(pts[:, 1] - h) < 1e-12
    _check_fraction(on_bottom, np.pi * rx * rz / total)
    _check_fraction(on_top, np.pi * rx * rz * k**2 / total)
    upper_side = (pts[:, 1] > 0) & ~on_top
    _check_fraction(upper_side, side[cents[:, 1] > 0].sum() / total)
    wide = (np.abs(pts[:, 0]) > 0.12) & ~on_top & ~on_bottom
    _check_fraction(wide, side[np.abs(cents[:, 0]) > 0.12].sum() / total)

    part = box("b", (0, 0, 0), (0.1, 0.2, 0.3), GREY, random_rotation(rng))
    q = local(part, sample_part_surface(part, n, rng))
    for axis, expected in ((0, 0.2 * 0.3), (1, 0.1 * 0.3), (2, 0.1 * 0.2)):
        _check_fraction(np.abs(np.abs(q[:, axis]) - 1) < 1e-9, expected / (0.06 + 0.03 + 0.02))


@pytest.mark.parametrize("kind", ["box", "ellipsoid", "cylinder", "cone"])
def test_bounds_are_exact(rng, kind):
    for _ in range(5):
        part = random_part(rng, kind)
        lo, hi = part_bounds(part)
        pts = sample_part_surface(part, 40_000, rng)
        assert np.all(pts >= lo - 1e-12) and np.all(pts <= hi + 1e-12)
        # Tight: dense samples come close to every face of the box (corners of a box: exact).
        np.testing.assert_allclose(pts.min(axis=0), lo, atol=0.02 * np.max(part.size))
        np.testing.assert_allclose(pts.max(axis=0), hi, atol=0.02 * np.max(part.size))


@pytest.mark.parametrize("kind", ["box", "ellipsoid", "cylinder", "cone"])
def test_inside_part(rng, kind):
    part = random_part(rng, kind)
    pts = rng.uniform(-0.6, 0.6, size=(20_000, 3))
    np.testing.assert_array_equal(inside_part(part, pts), implicit_inside(part, pts))
    assert inside_part(part, pts).any() and not inside_part(part, pts).all()
    assert not inside_part(part, sample_part_surface(part, 1000, rng)).any()


@pytest.mark.parametrize("kind", ["box", "ellipsoid", "cylinder", "cone"])
def test_intersection_against_ray_marching(rng, kind):
    """``intersect_part`` = the first entry found by marching the ray through this file's own
    inside test (then bisection); normals are unit, face the ray and are perpendicular to the
    surface (nearby hits lie in the tangent plane)."""
    steps = np.linspace(0.0, 2.0, 2001)
    checked = 0
    for _ in range(3):
        part = random_part(rng, kind)
        origin = rng.normal(size=3)
        origin *= 1.5 / np.linalg.norm(origin)
        dirs = part.center + rng.uniform(-1, 1, size=(150, 3)) * part.size.max() - origin
        t, normals = intersect_part(part, origin, dirs)
        march = origin + steps[None, :, None] * dirs[:, None, :]  # [R, S, 3]
        inside = implicit_inside(part, march.reshape(-1, 3), eps=0).reshape(len(dirs), -1)
        entered = inside.any(axis=1)
        first = inside.argmax(axis=1)
        # A ray the march misses may only graze the part (a chord shorter than one step).
        graze = np.flatnonzero(~entered & np.isfinite(t))
        after = origin + (t[graze, None] + 2e-3) * dirs[graze]
        assert not implicit_inside(part, after, eps=0).any()
        lo, hi = steps[np.maximum(first - 1, 0)], steps[first]
        for _ in range(60):
            mid = (lo + hi) / 2
            now_in = implicit_inside(part, origin + mid[:, None] * dirs, eps=0)
            hi, lo = np.where(now_in, mid, hi), np.where(now_in, lo, mid)
        np.testing.assert_allclose(t[entered], hi[entered], rtol=1e-9, atol=1e-12)
        n, d = normals[entered], dirs[entered]
        assert np.all(np.einsum("ij,ij->i", n, d) < 0)
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
        p = origin + t[entered, None] * d
        for delta in np.eye(3) * 1e-6:
            t2, _ = intersect_part(part, origin, d + delta)
            step = origin + t2[:, None] * (d + delta) - p
            length = np.linalg.norm(step, axis=1)
            same_face = np.isfinite(t2) & (length < 1e-4)  # not across an edge
            tangential = np.abs(np.einsum("ij,ij->i", n, step))
            assert np.all(tangential[same_face] < 1e-3 * length[same_face] + 1e-12)
        checked += int(entered.sum())
    assert checked > 100


def test_outer_surface_of_two_spheres(rng):
    r1, r2, dist = 0.3, 0.2, 0.35
    a = ellipsoid("a", (0, 0, 0), (r1,) * 3, GREY)
    b = ellipsoid("b", (dist, 0, 0), (r2,) * 3, GREY)
    pts, idx = sample_outer_surface(Shape("00000000", (a, b)), 30_000, rng)
    assert pts.shape == (30_000, 3) and idx.shape == (30_000,)
    d_a = np.linalg.norm(pts, axis=1)
    d_b = np.linalg.norm(pts - (dist, 0, 0), axis=1)
    assert np.all(d_a > r1 - 1e-12) and np.all(d_b > r2 - 1e-12)  # nothing strictly inside
    np.testing.assert_allclose(np.where(idx == 0, d_a, d_b), np.where(idx == 0, r1, r2), atol=1e-12)
    x0 = (dist**2 + r1**2 - r2**2) / (2 * dist)  # plane of the intersection circle
    visible_a = 4 * np.pi * r1**2 - 2 * np.pi * r1 * (r1 - x0)
    visible_b = 4 * np.pi * r2**2 - 2 * np.pi * r2 * (r2 - (dist - x0))
    _check_fraction(idx == 0, visible_a / (visible_a + visible_b))


def test_outer_surface_drops_contact_faces_and_counts_shared_faces_once(rng):
    # Two unit boxes (scaled by 0.2) face to face at x = 0: the union is a 2 x 1 x 1 box, the
    # contact square is inside it. Outer area 10; the top face (y = 1) has 2 of it.
    s = 0.2
    a = box("a", (-s / 2, s / 2, s / 2), (s / 2, s / 2, s / 2), GREY)
    b = box("b", (s / 2, s / 2, s / 2), (s / 2, s / 2, s / 2), GREY)
    pts, _ = sample_outer_surface(Shape("00000000", (a, b)), 20_000, rng)
    assert np.all(np.abs(pts[:, 0]) > 1e-9)  # nothing on the contact square
    _check_fraction(np.abs(pts[:, 1] - s) < 1e-12, 2 / 10)
    # Two 2 x 1 x 1 boxes overlapping over 1 x 1 x 1: their coplanar top faces overlap on
    # x in [1, 2]; the union is 3 x 1 x 1 (area 14, top 3) and must be uniform along x.
    a = box("a", (s, s / 2, s / 2), (s, s / 2, s / 2), GREY)
    b = box("b", (2 * s, s / 2, s / 2), (s, s / 2, s / 2), GREY)
    pts, idx = sample_outer_surface(Shape("00000000", (a, b)), 30_000, rng)
    top = np.abs(pts[:, 1] - s) < 1e-12
    _check_fraction(top, 3 / 14)
    _check_fraction((pts[top, 0] > s) & (pts[top, 0] < 2 * s), 1 / 3)
    assert not np.any(
        (np.abs(pts[:, 0] - s) < 1e-12)
        | (np.abs(pts[:, 0] - 2 * s) < 1e-12) & (pts[:, 1] > 1e-9) & (pts[:, 1] < s - 1e-9)
    )  # inner end faces dropped


def test_shape_normalization_and_mirror(rng):
    parts = (
        box("a", (0.3, 1.0, -0.2), (0.2, 0.1, 0.4), GREY, random_rotation(rng)),
        frustum_between("b", (0, 0, 0), (0.5, 0.7, 0.1), 0.1, GREY, taper=0.3),
    )
    raw = Shape("03001627", parts + (mirror_z(parts[1], "b_mirror"),))
    pts = sample_part_surface(raw.parts[1], 2000, rng)
    assert surface_residual(raw.parts[2], pts * (1, 1, -1)).max() < 1e-9
    assert np.linalg.det(raw.parts[2].rotation) == pytest.approx(1.0)
    shape = raw.normalized()
    lo, hi = shape.bounds()
    np.testing.assert_allclose(np.linalg.norm(hi - lo), 1.0, rtol=1e-12)
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-12)
    # The normalisation is one similarity for all parts: surface points map to surface points.
    raw_lo, raw_hi = raw.bounds()
    scale = 1.0 / np.linalg.norm(raw_hi - raw_lo)
    moved = (pts - (raw_lo + raw_hi) / 2) * scale
    assert surface_residual(shape.parts[1], moved).max() < 1e-9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="torus"), "kind"),
        (dict(size=(0.1, -0.1, 0.1)), "size"),
        (dict(size=(0.1, 0.1)), "size"),
        (dict(rotation=np.diag([1.0, 1.0, -1.0])), "rotation"),
        (dict(rotation=2 * np.eye(3)), "rotation"),
        (dict(kind="cone", taper=1.5), "taper"),
        (dict(kind="cylinder", taper=0.5), "taper"),
        (dict(color=(1.2, 0, 0)), "color"),
        (dict(center=(0, np.inf, 0)), "center"),
    ],
)
def test_make_part_validation(kwargs, match):
    args = dict(name="p", kind="box", center=(0, 0, 0), size=(0.1, 0.1, 0.1), color=GREY)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_part(**args)
