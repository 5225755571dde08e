"""Tests for ``recon_jax.losses.knn_points`` against a float64 NumPy brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.losses import chamfer_distance, knn_points


def ref_knn(x, y, lx, ly, k, norm=2, squared=None):
    """Float64 brute force: ``[B, N, k]`` sorted distances and indices, 0 / -1 where none."""
    squared = (norm == 2) if squared is None else squared
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    batch, n, _ = x.shape
    dists, idx = np.zeros((batch, n, k)), -np.ones((batch, n, k), np.int64)
    for b in range(batch):
        xb, yb = x[b, : lx[b]], y[b, : ly[b]]
        if not len(xb) or not len(yb):
            continue
        diff = xb[:, None] - yb[None]
        d = np.abs(diff).sum(-1) if norm == 1 else np.sqrt((diff**2).sum(-1))
        d = d**2 if squared else d
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        kk = order.shape[1]
        idx[b, : len(xb), :kk] = order
        dists[b, : len(xb), :kk] = np.take_along_axis(d, order, axis=1)
    return dists, idx


def batch(rng, n=21, m=9, dim=3):
    lx, ly = np.array([n, 0, 5, n, 13]), np.array([m, 4, 0, 2, m])
    x = rng.normal(size=(len(lx), n, dim)).astype(np.float32)
    y = rng.normal(size=(len(lx), m, dim)).astype(np.float32)
    for b in range(len(lx)):
        x[b, lx[b]:] = np.nan
        y[b, ly[b]:] = -1e6
    return x, y, lx, ly


KS = [1, 3, 12]  # 12 > M = 9: the extra entries are -1
NORMS = [(2, None), (2, False), (1, None)]


@jax.jit
def knn_all_settings(x, y, lx, ly):
    """``knn_points`` for every ``k`` and norm of the test below: one compilation."""
    return {
        (k, i): knn_points(x, y, k, x_lengths=lx, y_lengths=ly, norm=norm, squared=squared,
                           tile_size=(4, 3))
        for k in KS
        for i, (norm, squared) in enumerate(NORMS)
    }


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("norm, squared", NORMS)
def test_matches_bruteforce(rng, k, norm, squared):
    x, y, lx, ly = batch(rng)
    got = knn_all_settings(x, y, lx, ly)[k, NORMS.index((norm, squared))]
    want_d, want_i = ref_knn(x, y, lx, ly, k, norm, squared)
    assert got.dists.shape == want_d.shape and got.idx.dtype == jnp.int32
    np.testing.assert_allclose(got.dists, want_d, rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(got.idx, want_i)  # random data: no ties
    assert got.knn is None


def test_ties_go_to_the_lowest_index_and_return_nn():
    x = np.zeros((1, 1, 3), np.float32)
    y = np.array([[[2, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 3]]], np.float32)
    for tile in [1, 2, 64]:
        out = knn_points(x, y, 4, return_nn=True, tile_size=tile)
        np.testing.assert_array_equal(out.idx, [[[1, 2, 3, 0]]])
        np.testing.assert_allclose(out.dists, [[[1, 1, 1, 4]]])
        np.testing.assert_array_equal(out.knn[0, 0], y[0, [1, 2, 3, 0]])


def test_gradient_matches_jnp_bruteforce(rng):
    x = jnp.asarray(rng.normal(size=(2, 10, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(2, 14, 3)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(2, 10, 3)), jnp.float32)

    def ours(x, y):
        return jnp.sum(knn_points(x, y, 3).dists * weights)

    def brute(x, y):
        d = jnp.sum((x[:, :, None] - y[:, None]) ** 2, -1)
        neg, _ = jax.lax.top_k(-d, 3)
        return jnp.sum(-neg * weights)

    grads = jax.jit(lambda x, y: (jax.grad(ours, (0, 1))(x, y), jax.grad(brute, (0, 1))(x, y)))
    ours_grads, brute_grads = grads(x, y)  # one compilation
    for a, b in zip(ours_grads, brute_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_chamfer_search_is_knn_with_one_neighbour(rng):
    x, y, lx, ly = batch(rng)
    (per_x, _), (idx_x, _) = chamfer_distance(
        x, y, x_lengths=lx, y_lengths=ly, point_reduction=None, batch_reduction=None,
        return_indices=True,
    )
    out = knn_points(x, y, 1, x_lengths=lx, y_lengths=ly)
    np.testing.assert_array_equal(out.idx[..., 0], idx_x)
    np.testing.assert_array_equal(out.dists[..., 0], per_x)


def test_memory_stays_bounded():
    n = 20000
    spec = jax.ShapeDtypeStruct((1, n, 3), jnp.float32)
    fn = jax.jit(jax.grad(lambda x, y: jnp.sum(knn_points(x, y, 4).dists), (0, 1)))
    temp = fn.lower(spec, spec).compile().memory_analysis().temp_size_in_bytes
    assert temp < n * n * 4 / 50


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(k=0), "k must be a positive int"), (dict(k=2.0), "k must be"),
     (dict(norm=0), "norm must be"), (dict(tile_size=(0, 3)), "tile_size")],
)
def test_bad_inputs(kwargs, match):
    x = np.zeros((1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        knn_points(x, x, **kwargs)
