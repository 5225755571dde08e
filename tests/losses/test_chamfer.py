"""Tests for ``recon_jax.losses.chamfer`` against a float64 NumPy brute force.

The reference below is independent of the implementation: a full distance matrix in float64,
padding removed by slicing, explicit per-direction means/sums.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.losses.chamfer import chamfer_distance

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def ref_per_point(x, y, x_lengths, y_lengths, squared):
    """Float64 brute force: per-point nearest distances ``[B, N]``, ``[B, M]``; 0 if undefined."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    batch, n, _ = x.shape
    m = y.shape[1]
    dx, dy = np.zeros((batch, n)), np.zeros((batch, m))
    for b in range(batch):
        xb, yb = x[b, : x_lengths[b]], y[b, : y_lengths[b]]
        if len(xb) == 0 or len(yb) == 0:
            continue
        d = ((xb[:, None, :] - yb[None, :, :]) ** 2).sum(-1)
        if not squared:
            d = np.sqrt(d)
        dx[b, : len(xb)] = d.min(1)
        dy[b, : len(yb)] = d.min(0)
    return dx, dy


def ref_chamfer(x, y, x_lengths, y_lengths, squared, point_reduction, batch_reduction, single):
    """Float64 brute-force Chamfer with the documented conventions."""
    dx, dy = ref_per_point(x, y, x_lengths, y_lengths, squared)
    if point_reduction == "mean":
        per_pair = dx.sum(1) / np.maximum(x_lengths, 1)
        if not single:
            per_pair = per_pair + dy.sum(1) / np.maximum(y_lengths, 1)
    else:
        per_pair = dx.sum(1) + (0 if single else dy.sum(1))
    if batch_reduction == "mean":
        return per_pair.mean()
    if batch_reduction == "sum":
        return per_pair.sum()
    return per_pair


def jnp_bruteforce(x, y, x_lengths, y_lengths, squared=True, point_reduction="mean"):
    """Differentiable full-matrix Chamfer in jnp (per pair ``[B]``), for gradient comparisons."""
    n, m = x.shape[1], y.shape[1]
    xv = jnp.arange(n)[None] < x_lengths[:, None]
    yv = jnp.arange(m)[None] < y_lengths[:, None]
    d = jnp.sum((x[:, :, None, :] - y[:, None, :, :]) ** 2, -1)
    if not squared:
        d = jnp.sqrt(d)
    big = jnp.inf
    dx = jnp.min(jnp.where(yv[:, None, :], d, big), axis=2)
    dy = jnp.min(jnp.where(xv[:, :, None], d, big), axis=1)
    dx = jnp.where(xv & (y_lengths[:, None] > 0), dx, 0)
    dy = jnp.where(yv & (x_lengths[:, None] > 0), dy, 0)
    sx, sy = dx.sum(1), dy.sum(1)
    if point_reduction == "mean":
        sx, sy = sx / jnp.maximum(x_lengths, 1), sy / jnp.maximum(y_lengths, 1)
    return sx + sy


def hetero_batch(rng, dim, n=23, m=31):
    """A batch with lengths 0, 1, full and in between, and duplicate points.

    Padding is filled with large garbage so that any leak of padding shows up.
    """
    x_lengths = np.array([n, 0, 1, 17, n, 9, 5])
    y_lengths = np.array([m, 12, 0, 1, m, 30, 0])
    batch = len(x_lengths)
    x = rng.normal(size=(batch, n, dim))
    y = rng.normal(size=(batch, m, dim))
    x[0, 5] = x[0, 2]  # duplicate inside x
    y[0, 7] = y[0, 3] = y[0, 1]  # triplicate inside y
    y[4, :10] = x[4, :10]  # points shared by both clouds
    y[5, 4] = y[5, 9]
    for b in range(batch):
        x[b, x_lengths[b] :] = 1e6
        y[b, y_lengths[b] :] = -1e6
    return x.astype(np.float32), y.astype(np.float32), x_lengths, y_lengths


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


COMBOS = [
    (point_reduction, batch_reduction, single)
    for point_reduction in ["mean", "sum"]
    for batch_reduction in ["mean", "sum", None]
    for single in [False, True]
]


@functools.partial(jax.jit, static_argnames="tile")
def all_combos(x, y, lx, ly, *, tile):
    """The twelve combinations, squared and not: one compilation (the searches are shared)."""
    return {
        squared: [
            chamfer_distance(
                x, y, x_lengths=lx, y_lengths=ly, squared=squared,
                point_reduction=point_reduction, batch_reduction=batch_reduction,
                single_directional=single, tile_size=tile,
            )
            for point_reduction, batch_reduction, single in COMBOS
        ]
        for squared in (True, False)
    }


@pytest.mark.parametrize("dim, tile", [(2, (2048, 256)), (3, (4, 6))])
@pytest.mark.parametrize("squared", [True, False])
def test_matches_bruteforce_all_reductions(rng, dim, tile, squared):
    x, y, lx, ly = hetero_batch(rng, dim)

    for got, combo in zip(all_combos(x, y, lx, ly, tile=tile)[squared], COMBOS, strict=True):
        want = ref_chamfer(x, y, lx, ly, squared, *combo)
        assert got.dtype == jnp.float32
        assert np.shape(got) == np.shape(want), combo
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=str(combo))


def test_hand_computed_case():
    # x = {(0,0), (3,0)}, y = {(0,1)}. Squared: x->y 1 and 9 + 1 = 10; y->x 1.
    x = np.array([[[0.0, 0.0], [3.0, 0.0]]], np.float32)
    y = np.array([[[0.0, 1.0]]], np.float32)
    mean_sq, sum_sq, mean_eucl, single = jax.jit(
        lambda x, y: (
            chamfer_distance(x, y),
            chamfer_distance(x, y, point_reduction="sum"),
            chamfer_distance(x, y, squared=False),
            chamfer_distance(x, y, single_directional=True),
        )
    )(x, y)
    assert float(mean_sq) == pytest.approx((1 + 10) / 2 + 1)
    assert float(sum_sq) == pytest.approx(1 + 10 + 1)
    assert float(mean_eucl) == pytest.approx((1 + np.sqrt(10)) / 2 + 1)
    assert float(single) == pytest.approx((1 + 10) / 2)


@pytest.mark.parametrize("squared", [True, False])
def test_per_point_distances_and_indices(rng, squared):
    x, y, lx, ly = hetero_batch(rng, 3)
    (dist_x, dist_y), (idx_x, idx_y) = chamfer_distance(
        x, y, x_lengths=lx, y_lengths=ly, squared=squared, point_reduction=None,
        batch_reduction=None, return_indices=True, tile_size=(5, 7),
    )
    want_x, want_y = ref_per_point(x, y, lx, ly, squared)
    np.testing.assert_allclose(dist_x, want_x, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(dist_y, want_y, rtol=2e-6, atol=1e-7)
    idx_x, idx_y = np.asarray(idx_x), np.asarray(idx_y)
    assert idx_x.shape == x.shape[:2] and idx_y.shape == y.shape[:2]
    assert idx_x.dtype == np.int32 and idx_y.dtype == np.int32
    sq_x, sq_y = ref_per_point(x, y, lx, ly, True)
    for query, ref, idx, q_len, r_len, want_sq in [
        (x, y, idx_x, lx, ly, sq_x),
        (y, x, idx_y, ly, lx, sq_y),
    ]:
        active = (np.arange(query.shape[1])[None] < q_len[:, None]) & (r_len[:, None] > 0)
        assert np.all(idx[~active] == -1)
        # Each index names a valid point at the true minimum distance (ties allowed).
        assert np.all(idx[active] >= 0) and np.all((idx < r_len[:, None])[active])
        nn = np.take_along_axis(ref.astype(np.float64), np.maximum(idx, 0)[..., None], axis=1)
        d = ((query.astype(np.float64) - nn) ** 2).sum(-1)
        np.testing.assert_allclose(d[active], want_sq[active], rtol=1e-6)


@pytest.mark.parametrize("tile", [1, 1024])
def test_single_directional_indices_and_ties(tile):
    # y[0] and y[2] are the same point: the tie goes to the lowest index, whether the two share
    # a chunk (tile 1024) or not (tile 1).
    x = np.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]], np.float32)
    y = np.array([[[1.9, 0.0, 0.0], [0.2, 0.0, 0.0], [1.9, 0.0, 0.0], [5.0, 5.0, 5.0]]], np.float32)
    (dist_x, dist_y), (idx_x, idx_y) = chamfer_distance(
        x, y, single_directional=True, point_reduction=None, batch_reduction=None,
        return_indices=True, tile_size=tile,
    )
    assert dist_y is None and idx_y is None
    np.testing.assert_array_equal(idx_x, [[1, 0]])
    np.testing.assert_allclose(dist_x, [[0.04, 0.01]], rtol=1e-5)


def test_padding_content_is_ignored(rng):
    x, y, lx, ly = hetero_batch(rng, 3)
    x2, y2 = x.copy(), y.copy()
    for b in range(x.shape[0]):
        x2[b, lx[b] :] = np.nan
        y2[b, ly[b] :] = rng.normal(size=y2[b, ly[b] :].shape)  # would be close neighbours
    f = jax.jit(
        lambda x, y: chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, batch_reduction=None)
    )
    np.testing.assert_array_equal(f(x, y), f(x2, y2))


def test_lengths_none_means_full(rng):
    x = rng.normal(size=(2, 9, 3)).astype(np.float32)
    y = rng.normal(size=(2, 4, 3)).astype(np.float32)
    full = chamfer_distance(x, y, x_lengths=np.array([9, 9]), y_lengths=np.array([4, 4]))
    np.testing.assert_array_equal(chamfer_distance(x, y), full)


def test_all_empty_is_zero():
    x = np.ones((2, 3, 3), np.float32)
    y = np.ones((2, 4, 3), np.float32) * 2
    e = np.zeros((2, 0, 3), np.float32)
    zeros = np.zeros(2, np.int32)
    values = jax.jit(
        lambda x, y, e: (
            chamfer_distance(x, y, x_lengths=zeros, y_lengths=zeros),
            chamfer_distance(x, y, x_lengths=zeros),
            # Zero-size point axes are handled too.
            chamfer_distance(e, y),
            chamfer_distance(x, e),
        )
    )(x, y, e)
    assert [float(v) for v in values] == [0.0, 0.0, 0.0, 0.0]


def test_low_precision_inputs_are_computed_in_float32(rng):
    x = rng.normal(size=(2, 10, 3))
    y = rng.normal(size=(2, 12, 3))
    got = chamfer_distance(x.astype(np.float16), y.astype(np.float16))
    assert got.dtype == jnp.float32
    want = ref_chamfer(
        x.astype(np.float16), y.astype(np.float16), [10, 10], [12, 12], True, "mean", "mean", False
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Precision near zero distance
# ---------------------------------------------------------------------------------------------


def naive_expansion_per_point(x, y):
    """What a plain |x|^2 + |y|^2 - 2 x.y float32 Chamfer would report (no re-computation)."""
    d = (
        jnp.sum(x * x, -1)[:, :, None]
        + jnp.sum(y * y, -1)[:, None, :]
        - 2 * jnp.einsum("bnd,bmd->bnm", x, y, precision=jax.lax.Precision.HIGHEST)
    )
    return jnp.min(d, 2), jnp.min(d, 1)


def test_exact_distances_near_zero_far_from_origin(rng):
    # Coordinates ~100, true neighbour offsets ~1e-3: squared distances ~1e-6, while the
    # expansion's terms are ~3e4, whose float32 rounding (~2e-3) swamps them.
    n = 400
    x = rng.uniform(-100, 100, size=(1, n, 3)).astype(np.float32)
    y = (x[:, rng.permutation(n)] + rng.normal(scale=1e-3, size=(1, n, 3))).astype(np.float32)
    (dist_x, dist_y) = chamfer_distance(x, y, point_reduction=None, batch_reduction=None)
    want_x, want_y = ref_per_point(x, y, [n], [n], True)
    assert want_x.max() < 1e-4  # the setting is the intended one
    rel_x = np.abs(np.asarray(dist_x) - want_x) / want_x
    rel_y = np.abs(np.asarray(dist_y) - want_y) / want_y
    assert rel_x.max() < 1e-5 and rel_y.max() < 1e-5
    # Documented check of why the re-computation exists: the naive expansion is far off.
    naive_x, naive_y = naive_expansion_per_point(jnp.asarray(x), jnp.asarray(y))
    naive_rel = np.abs(np.asarray(naive_x) - want_x) / want_x
    assert np.median(naive_rel) > 1e-1
    assert np.median(naive_rel) > 1e4 * rel_x.max()


def test_nearest_neighbour_found_for_cloud_far_from_origin(rng):
    # A unit-size cloud translated to (1000, 1000, 1000): the expansion's terms are ~3e6 and its
    # rounding (~0.2) exceeds neighbour gaps, so without centring the arg-min would be wrong.
    n = 400  # the shape of the test above: one compilation
    base = rng.normal(size=(1, n, 3))
    x = (base + 1000.0).astype(np.float32)
    y = (rng.normal(size=(1, n, 3)) + 1000.0).astype(np.float32)
    dist_x, dist_y = chamfer_distance(x, y, point_reduction=None, batch_reduction=None)
    want_x, want_y = ref_per_point(x, y, [n], [n], True)
    np.testing.assert_allclose(dist_x, want_x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dist_y, want_y, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


@jax.jit
def ours_and_brute_grads(x, y, lx, ly):
    """Gradients of ours and of the brute force, squared and not (one compilation)."""
    out = {}
    for squared in (True, False):
        out[squared] = []
        for point_reduction in ["mean", "sum"]:
            def ours(x, y, point_reduction=point_reduction, squared=squared):
                return chamfer_distance(
                    x, y, x_lengths=lx, y_lengths=ly, squared=squared,
                    point_reduction=point_reduction, batch_reduction="sum", tile_size=(6, 4),
                )

            def brute(x, y, point_reduction=point_reduction, squared=squared):
                return jnp.sum(jnp_bruteforce(x, y, lx, ly, squared, point_reduction))

            out[squared].append((jax.grad(ours, (0, 1))(x, y), jax.grad(brute, (0, 1))(x, y)))
    return out


@pytest.mark.parametrize("squared", [True, False])
def test_gradient_matches_jnp_bruteforce(rng, squared):
    # No duplicates here: at ties the brute force's jnp.min splits the gradient between them.
    b, n, m = 4, 19, 26
    x = jnp.asarray(rng.normal(size=(b, n, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(b, m, 3)), jnp.float32)
    lx, ly = jnp.array([19, 7, 0, 1]), jnp.array([26, 3, 5, 0])

    for (gx, gy), (bx, by) in ours_and_brute_grads(x, y, lx, ly)[squared]:
        assert np.abs(np.asarray(bx)).sum() > 0
        np.testing.assert_allclose(gx, bx, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gy, by, rtol=1e-4, atol=1e-6)


@jax.jit
def value_grad_jvp(x, y, vx, vy, lx, ly):
    """Chamfer, squared and not: ``(value, (grad_x, grad_y), jvp along (vx, vy))`` each, in one
    compilation (called with float64 arrays under ``jax.enable_x64``)."""
    out = {}
    for squared in (True, False):
        def f(x, y, squared=squared):
            return chamfer_distance(
                x, y, x_lengths=lx, y_lengths=ly, squared=squared, tile_size=(4, 5)
            )

        out[squared] = (f(x, y), jax.grad(f, (0, 1))(x, y), jax.jvp(f, (x, y), (vx, vy))[1])
    return out


@pytest.mark.parametrize("squared", [True, False])
def test_gradient_matches_finite_differences_float64(rng, squared):
    b, n, m = 3, 11, 14
    lx, ly = np.array([11, 4, 6]), np.array([14, 9, 1])
    x0 = rng.normal(size=(b, n, 3))
    y0 = rng.normal(size=(b, m, 3))
    with jax.enable_x64(True):
        zx, zy = jnp.zeros(x0.shape), jnp.zeros(y0.shape)

        def f(x, y):
            return value_grad_jvp(x, y, zx, zy, lx, ly)[squared][0]

        x, y = jnp.asarray(x0), jnp.asarray(y0)
        assert f(x, y).dtype == jnp.float64
        gx, gy = value_grad_jvp(x, y, zx, zy, lx, ly)[squared][1]
        h = 1e-6
        for _ in range(4):
            vx, vy = rng.normal(size=x0.shape), rng.normal(size=y0.shape)
            fd = (f(x + h * vx, y + h * vy) - f(x - h * vx, y - h * vy)) / (2 * h)
            analytic = jnp.sum(gx * vx) + jnp.sum(gy * vy)
            # atol: the FD round-off is ~eps * |f| / h ~ 1e-9, while |g . v| is O(1) typically.
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-8)
        # Forward mode gives the same directional derivative.
        tangent = value_grad_jvp(x, y, jnp.asarray(vx), jnp.asarray(vy), lx, ly)[squared][2]
        np.testing.assert_allclose(tangent, analytic, rtol=1e-10)
    assert jnp.ones(1).dtype == jnp.float32  # x64 switched off again


@jax.jit
def value_and_grads_both(x, y, lx, ly):
    """Chamfer and its gradients, squared and not (one compilation for both tests)."""
    def f(x, y, squared):
        return chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, squared=squared)

    return {s: jax.value_and_grad(functools.partial(f, squared=s), (0, 1))(x, y)
            for s in (True, False)}


@pytest.mark.parametrize("squared", [True, False])
def test_padding_gets_exactly_zero_gradient(rng, squared):
    x, y, lx, ly = hetero_batch(rng, 3)
    x[1, :] = np.nan  # length 0: all padding, even NaN must not leak

    value, (gx, gy) = value_and_grads_both(x, y, lx, ly)[squared]
    assert np.isfinite(value)
    gx, gy = np.asarray(gx), np.asarray(gy)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    for b in range(x.shape[0]):
        assert np.all(gx[b, lx[b] :] == 0)
        assert np.all(gy[b, ly[b] :] == 0)
        # A direction with an empty partner cloud contributes nothing either.
        if ly[b] == 0:
            assert np.all(gx[b] == 0)
        if lx[b] == 0:
            assert np.all(gy[b] == 0)
    # The valid points do get gradient.
    assert np.abs(gx[0]).sum() > 0 and np.abs(gy[0]).sum() > 0


def test_coincident_points_unsquared_no_nan(rng):
    x = rng.normal(size=(2, 8, 3)).astype(np.float32)
    y = np.concatenate([x, x[:, :3]], axis=1)  # every point coincides, some twice
    value, (gx, gy) = jax.jit(
        jax.value_and_grad(lambda a, b: chamfer_distance(a, b, squared=False), (0, 1))
    )(x, y)
    assert float(value) == 0.0
    assert np.all(np.asarray(gx) == 0) and np.all(np.asarray(gy) == 0)


# ---------------------------------------------------------------------------------------------
# Transformations
# ---------------------------------------------------------------------------------------------


def test_jit_with_traced_lengths_matches_eager(rng):
    x, y, lx, ly = hetero_batch(rng, 3)
    f = jax.jit(
        lambda x, y, lx, ly: chamfer_distance(
            x, y, x_lengths=lx, y_lengths=ly, batch_reduction=None, tile_size=(8, 8)
        )
    )
    want = ref_chamfer(x, y, lx, ly, True, "mean", None, False)
    np.testing.assert_allclose(f(x, y, lx, ly), want, rtol=2e-6, atol=1e-7)


def test_vmap_over_extra_axis(rng):
    k, b, n, m = 3, 2, 10, 13
    x = rng.normal(size=(k, b, n, 3)).astype(np.float32)
    y = rng.normal(size=(k, b, m, 3)).astype(np.float32)
    lx = rng.integers(0, n + 1, size=(k, b))
    ly = rng.integers(0, m + 1, size=(k, b))

    def f(x, y, lx, ly):
        return chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, batch_reduction=None)

    loss = jax.grad(lambda a, c, la, lc: jnp.sum(f(a, c, la, lc)))
    # Values and gradients under vmap (one compilation).
    got, g = jax.jit(lambda *args: (jax.vmap(f)(*args), jax.vmap(loss)(*args)))(x, y, lx, ly)
    for i in range(k):
        want = ref_chamfer(x[i], y[i], lx[i], ly[i], True, "mean", None, False)
        np.testing.assert_allclose(got[i], want, rtol=2e-6, atol=1e-7)
    # grad under vmap too
    loss = jax.jit(loss)
    for i in range(k):
        np.testing.assert_allclose(g[i], loss(x[i], y[i], lx[i], ly[i]), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# Tiling and memory
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [1, (5, 7), (23, 31), (64, 3)])
def test_tile_size_does_not_change_result(rng, tile):
    # N, M not multiples of the tiles; tiles smaller than, equal to and larger than the clouds.
    # hetero_batch's shapes: tile (5, 7) shares test_per_point_distances_and_indices' compilation.
    x = rng.normal(size=(7, 23, 3)).astype(np.float32)
    y = rng.normal(size=(7, 31, 3)).astype(np.float32)
    lx, ly = np.array([23, 20, 1, 17, 23, 9, 5]), np.array([31, 12, 2, 1, 31, 30, 29])
    (dist, _), (idx_x, idx_y) = chamfer_distance(
        x, y, x_lengths=lx, y_lengths=ly, point_reduction=None, batch_reduction=None,
        return_indices=True, tile_size=tile,
    )
    want_x, _ = ref_per_point(x, y, lx, ly, True)
    np.testing.assert_allclose(dist, want_x, rtol=2e-6, atol=1e-7)
    # Random data has no ties: the indices are the brute-force arg-mins exactly.
    for b in range(7):
        d = ((x[b, : lx[b], None].astype(np.float64) - y[b, None, : ly[b]]) ** 2).sum(-1)
        np.testing.assert_array_equal(idx_x[b, : lx[b]], d.argmin(1))
        np.testing.assert_array_equal(idx_y[b, : ly[b]], d.argmin(0))


def test_memory_stays_bounded_forward_and_backward():
    # Compile only (nothing runs): XLA's buffer assignment reports the scratch memory needed.
    n = 20000
    spec = jax.ShapeDtypeStruct((2, n, 3), jnp.float32)
    full_matrix_bytes = n * n * 4

    def temp_bytes(fn):
        grad_fn = jax.jit(jax.value_and_grad(fn, (0, 1)))
        return grad_fn.lower(spec, spec).compile().memory_analysis().temp_size_in_bytes

    ours = temp_bytes(lambda x, y: chamfer_distance(x, y))
    ours_unsquared = temp_bytes(lambda x, y: chamfer_distance(x, y, squared=False))
    # Control: the measurement does see an N x M matrix when one exists.
    lengths = jnp.full((2,), n)
    brute = temp_bytes(lambda x, y: jnp.mean(jnp_bruteforce(x, y, lengths, lengths)))
    assert brute > full_matrix_bytes
    assert ours < full_matrix_bytes / 50
    assert ours_unsquared < full_matrix_bytes / 50


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=np.zeros((4, 3), np.float32)), r"x must have shape \[B, N, D\], got shape \(4,"),
        (dict(y=np.zeros((2, 5, 2), np.float32)), r"same point dimension D.*\(2, 5, 2\)"),
        (dict(y=np.zeros((3, 5, 3), np.float32)), r"same batch size B.*\(3, 5, 3\)"),
        (dict(x=np.zeros((2, 4, 3), np.int32)), r"x must be a floating point array"),
        (dict(x_lengths=np.array([1, 5])), r"x_lengths values must lie in \[0, 4\].*max 5"),
        (dict(y_lengths=np.array([-1, 2])), r"y_lengths values must lie in \[0, 5\].*min -1"),
        (dict(x_lengths=np.array([1, 2, 3])), r"x_lengths must have shape \[B\] = \(2,\)"),
        (dict(y_lengths=np.array([1.0, 2.0])), r"y_lengths must be an integer array"),
        (dict(point_reduction="median"), r"point_reduction must be one of .* got 'median'"),
        (dict(batch_reduction="median"), r"batch_reduction must be one of .* got 'median'"),
        (dict(point_reduction=None), r"batch_reduction must be None when point_reduction"),
        (dict(tile_size=0), r"tile_size must be a positive int .* got 0"),
        (dict(tile_size=(4,)), r"tile_size must be .* got \(4,\)"),
        (dict(tile_size=2.5), r"tile_size must be .* got 2.5"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = dict(x=np.zeros((2, 4, 3), np.float32), y=np.zeros((2, 5, 3), np.float32))
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        chamfer_distance(x, y, **args)
