"""PyTorch3D/Kaolin parity of ``chamfer_distance`` and ``f_score`` against NumPy brute forces.

The references follow PyTorch3D's ``chamfer_distance`` (``norm``, ``weights``,
``point_reduction="max"``, normals with ``abs_cosine``, ``single_directional``) and Tatarchenko
et al. 2019 for the F-score, written from their definitions with full float64 distance matrices
and padding removed by slicing.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.losses import chamfer_distance, f_score

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def ref_distance_matrix(a, b, norm, squared):
    """Float64 ``[len(a), len(b)]`` distances under ``norm`` (1 or 2), squared or not."""
    diff = a[:, None, :] - b[None, :, :]
    d = np.abs(diff).sum(-1) if norm == 1 else np.sqrt((diff**2).sum(-1))
    return d**2 if squared else d


def ref_chamfer(x, y, lx, ly, *, norm=2, squared=None, point_reduction="mean",
                batch_reduction="mean", single=False, weights=None, xn=None, yn=None,
                abs_cosine=True):
    """PyTorch3D's chamfer_distance semantics, brute force in float64.

    Returns ``loss`` or ``(loss, loss_normals)`` like ``chamfer_distance``.
    """
    squared = (norm == 2) if squared is None else squared
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    batch = x.shape[0]
    pairs, pairs_n = [], []

    def reduce(values):
        if point_reduction == "max":
            return values.max() if len(values) else 0.0
        return values.sum() / (max(len(values), 1) if point_reduction == "mean" else 1)

    for b in range(batch):
        xb, yb = x[b, : lx[b]], y[b, : ly[b]]
        dx, dy = np.zeros(len(xb)), np.zeros(len(yb))
        nx, ny = np.zeros(len(xb)), np.zeros(len(yb))
        if len(xb) and len(yb):
            d = ref_distance_matrix(xb, yb, norm, squared)
            dx, dy = d.min(1), d.min(0)
            if xn is not None:
                def cos(u, v):
                    return (u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)

                cx = cos(xn[b, : lx[b]], yn[b, d.argmin(1)])
                cy = cos(yn[b, : ly[b]], xn[b, d.argmin(0)])
                nx = 1 - (np.abs(cx) if abs_cosine else cx)
                ny = 1 - (np.abs(cy) if abs_cosine else cy)
        for values_x, values_y, out in [(dx, dy, pairs), (nx, ny, pairs_n)]:
            value = reduce(values_x)
            if not single:
                other = reduce(values_y)
                value = max(value, other) if point_reduction == "max" else value + other
            out.append(value)
    results = []
    for per_pair in (np.array(pairs), np.array(pairs_n)):
        w = np.ones(batch) if weights is None else np.asarray(weights, np.float64)
        per_pair = per_pair * w
        if batch_reduction == "sum":
            per_pair = per_pair.sum()
        elif batch_reduction == "mean":
            total = w.sum()
            per_pair = per_pair.sum() / total if total > 0 else 0.0
        results.append(per_pair)
    return tuple(results) if xn is not None else results[0]


def ref_f_score(x, y, lx, ly, threshold):
    """Tatarchenko et al. 2019: precision, recall, F per pair (Euclidean, strict < threshold)."""
    out = []
    for b in range(x.shape[0]):
        xb = np.asarray(x[b, : lx[b]], np.float64)
        yb = np.asarray(y[b, : ly[b]], np.float64)
        if len(xb) == 0 or len(yb) == 0:
            out.append((0.0, 0.0, 0.0))
            continue
        d = ref_distance_matrix(xb, yb, 2, False)
        p, r = np.mean(d.min(1) < threshold), np.mean(d.min(0) < threshold)
        out.append((p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0))
    return np.array(out).T


def random_batch(rng, n=23, m=31, dim=3):
    """Random clouds (no ties) with lengths 0, 1, full and in between; garbage padding."""
    lx = np.array([n, 0, 1, 17, n, 9])
    ly = np.array([m, 12, 0, 1, m, 30])
    x = rng.normal(size=(len(lx), n, dim))
    y = rng.normal(size=(len(lx), m, dim))
    for b in range(len(lx)):
        x[b, lx[b]:] = 1e6
        y[b, ly[b]:] = np.nan
    return x.astype(np.float32), y.astype(np.float32), lx, ly


WEIGHTS = np.array([0.5, 2.0, 1.0, 0.0, 3.0, 1.5], np.float32)

# ---------------------------------------------------------------------------------------------
# Distances: norm, squared, reductions, weights, single_directional
# ---------------------------------------------------------------------------------------------

COMBOS = list(itertools.product(["mean", "sum", "max"], ["mean", "sum", None], [False, True]))
SQUARED = {2: (None, False), 1: (None, True)}  # the squared settings tested per norm


@functools.partial(jax.jit, static_argnames="norm")
def all_combos_of_norm(x, y, lx, ly, *, norm):
    """Every combination of reductions and single_directional, for both ``SQUARED[norm]``
    settings, unweighted and weighted: one compilation per norm (the searches are shared)."""
    return [
        [
            chamfer_distance(
                x, y, x_lengths=lx, y_lengths=ly, norm=norm, squared=squared,
                weights=WEIGHTS if weighted else None, point_reduction=pr, batch_reduction=br,
                single_directional=single, tile_size=(8, 5),
            )
            for pr, br, single in COMBOS
        ]
        for squared, weighted in itertools.product(SQUARED[norm], (False, True))
    ]


@pytest.mark.parametrize("norm, squared", [(2, None), (2, False), (1, None), (1, True)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_pytorch3d_semantics(rng, norm, squared, weighted):
    x, y, lx, ly = random_batch(rng)
    weights = WEIGHTS if weighted else None
    variants = list(itertools.product(SQUARED[norm], (False, True)))
    results = all_combos_of_norm(x, y, lx, ly, norm=norm)[variants.index((squared, weighted))]

    for got, (pr, br, single) in zip(results, COMBOS, strict=True):
        want = ref_chamfer(x, y, lx, ly, norm=norm, squared=squared, point_reduction=pr,
                           batch_reduction=br, single=single, weights=weights)
        assert np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, err_msg=str((pr, br, single)))


def test_norm_one_finds_the_l1_nearest_neighbour():
    # From the origin, (0.9, 0.9) is nearer in L2 (1.27 < 1.3) and (1.3, 0) in L1 (1.3 < 1.8).
    x = np.zeros((1, 1, 2), np.float32)
    y = np.array([[[0.9, 0.9], [1.3, 0.0]]], np.float32)
    (d1, _), (i1, _) = chamfer_distance(x, y, norm=1, point_reduction=None,
                                         batch_reduction=None, return_indices=True)
    (d2, _), (i2, _) = chamfer_distance(x, y, norm=2, point_reduction=None,
                                         batch_reduction=None, return_indices=True)
    assert int(i1[0, 0]) == 1 and int(i2[0, 0]) == 0
    np.testing.assert_allclose(d1[0, 0], 1.3, rtol=1e-6)
    np.testing.assert_allclose(d2[0, 0], 1.62, rtol=1e-6)


def test_max_is_the_hausdorff_distance(rng):
    x = rng.normal(size=(2, 30, 3)).astype(np.float32)
    y = rng.normal(size=(2, 40, 3)).astype(np.float32)
    got = chamfer_distance(x, y, point_reduction="max", batch_reduction=None, squared=False)
    for b in range(2):
        d = ref_distance_matrix(x[b].astype(np.float64), y[b].astype(np.float64), 2, False)
        hausdorff = max(d.min(1).max(), d.min(0).max())  # symmetric Hausdorff distance
        np.testing.assert_allclose(got[b], hausdorff, rtol=1e-6)


def test_weights_gradient_and_all_zero_weights(rng):
    x, y, lx, ly = random_batch(rng)

    def loss(x, w):
        return chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, weights=w, batch_reduction="sum")

    grad = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))
    gx, g1, g0 = np.asarray(grad(x, np.stack([WEIGHTS, np.ones_like(WEIGHTS), 0 * WEIGHTS])))
    np.testing.assert_allclose(gx, g1 * WEIGHTS[:, None, None], rtol=1e-5, atol=1e-7)
    assert np.all(g0 == 0)
    zero = np.zeros(len(lx), np.float32)
    assert float(chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, weights=zero)) == 0.0


# ---------------------------------------------------------------------------------------------
# Normals
# ---------------------------------------------------------------------------------------------


@jax.jit
def all_normals_combos(x, y, lx, ly, xn, yn):
    """Every combination without "max", with ``abs_cosine`` False and True: one compilation."""
    return [
        [
            chamfer_distance(
                x, y, x_lengths=lx, y_lengths=ly, x_normals=xn, y_normals=yn,
                abs_cosine=abs_cosine, point_reduction=pr, batch_reduction=br,
                single_directional=single, weights=WEIGHTS,
            )
            for pr, br, single in COMBOS if pr != "max"
        ]
        for abs_cosine in (False, True)
    ]


@pytest.mark.parametrize("abs_cosine", [True, False])
def test_normals_match_pytorch3d_semantics(rng, abs_cosine):
    x, y, lx, ly = random_batch(rng)
    xn = rng.normal(size=x.shape).astype(np.float32)
    yn = rng.normal(size=y.shape).astype(np.float32)
    yn[1, 12:] = np.nan  # normals of padding never matter

    results = all_normals_combos(x, y, lx, ly, xn, yn)[int(abs_cosine)]
    combos = [c for c in COMBOS if c[0] != "max"]
    for got, (pr, br, single) in zip(results, combos, strict=True):
        want = ref_chamfer(x, y, lx, ly, point_reduction=pr, batch_reduction=br, single=single,
                           weights=WEIGHTS, xn=xn.astype(np.float64), yn=yn.astype(np.float64),
                           abs_cosine=abs_cosine)
        assert isinstance(got, tuple) and len(got) == 2
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=str((pr, br, single)))


def test_normals_only_change_the_return_when_given(rng):
    x = rng.normal(size=(2, 10, 3)).astype(np.float32)
    y = rng.normal(size=(2, 12, 3)).astype(np.float32)

    @jax.jit
    def run(x, y):
        return (
            chamfer_distance(x, y),
            chamfer_distance(x, y, x_normals=x, y_normals=y),
            # The normals term is differentiable in the normals (the neighbours are fixed).
            jax.grad(lambda n: chamfer_distance(x, y, x_normals=n, y_normals=y)[1])(x),
            # Parallel normals give 0, opposite ones 0 with abs_cosine and 2 without.
            chamfer_distance(x, x, x_normals=x, y_normals=-x, point_reduction="sum")[1],
            chamfer_distance(x, x, x_normals=x, y_normals=-x, abs_cosine=False)[1],
        )

    plain, (loss, loss_normals), grad, same, flipped = run(x, y)
    assert isinstance(plain, jax.Array) and plain.shape == () and loss_normals.shape == ()
    np.testing.assert_array_equal(loss, plain)
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).sum() > 0
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    assert float(flipped) == pytest.approx(4.0, rel=1e-5)  # 2 per direction


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x_normals=np.zeros((2, 4, 3), np.float32)), "given together"),
        (dict(x_normals=np.zeros((2, 3, 3), np.float32), y_normals=np.zeros((2, 5, 3))),
         r"x_normals must have shape"),
        (dict(x_normals=np.zeros((2, 4, 3), np.float32), y_normals=np.zeros((2, 5, 2))),
         "same dimension"),
        (dict(x_normals=np.zeros((2, 4, 3), np.float32), y_normals=np.zeros((2, 5, 3)),
              point_reduction="max"), "max"),
        (dict(weights=np.ones(3, np.float32)), r"weights must have shape \[B\] = \(2,\)"),
        (dict(weights=np.array([1.0, -1.0], np.float32)), "weights must be >= 0"),
        (dict(weights=np.array([1, 1])), "weights must be a floating"),
        (dict(norm=3), "norm must be 1"),
        (dict(squared="yes"), "squared must be a bool"),
        (dict(batch_mode="pmap"), "batch_mode"),
    ],
)
def test_bad_options_raise(kwargs, match):
    x, y = np.zeros((2, 4, 3), np.float32), np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        chamfer_distance(x, y, **kwargs)


# ---------------------------------------------------------------------------------------------
# Batch modes
# ---------------------------------------------------------------------------------------------


def test_batch_modes_give_identical_values_and_gradients(rng):
    x, y, lx, ly = random_batch(rng)

    def fn(mode):
        def loss(x, y, squared):
            return chamfer_distance(x, y, x_lengths=lx, y_lengths=ly, squared=squared,
                                    batch_mode=mode, batch_reduction=None, tile_size=(8, 8))

        def both(x, y):
            return [(loss(x, y, s), jax.grad(lambda a, b, s=s: loss(a, b, s).sum(), (0, 1))(x, y))
                    for s in (True, False)]

        return jax.jit(both)(x, y)

    results = {mode: fn(mode) for mode in ("map", "vmap", "auto")}
    for mode in ("vmap", "auto"):  # auto is map on the CPU
        for (value, (gx, gy)), (value_map, (gx_map, gy_map)) in zip(
            results[mode], results["map"], strict=True
        ):
            np.testing.assert_array_equal(value, value_map)
            np.testing.assert_array_equal(gx, gx_map)
            np.testing.assert_array_equal(gy, gy_map)


# ---------------------------------------------------------------------------------------------
# F-score
# ---------------------------------------------------------------------------------------------


@jax.jit
def f_score_jit(x, y, threshold, lx, ly):
    return f_score(x, y, threshold, x_lengths=lx, y_lengths=ly)


@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_f_score_matches_reference(rng, threshold):
    x, y, lx, ly = random_batch(rng)
    got = f_score_jit(x, y, threshold, lx, ly)  # one compilation for both thresholds
    want = ref_f_score(x, y, lx, ly, threshold)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    f = np.asarray(got.f_score)
    assert np.any((0 < f) & (f < 1)), f  # the setting is informative


def test_f_score_hand_computed():
    # x: 3 points, two within 0.5 of y; y: 2 points, one within 0.5 of x.
    x = np.array([[[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]], np.float32)
    y = np.array([[[0.2, 0.0], [9.0, 0.0]]], np.float32)
    p, r, f = f_score(x, y, 0.5)
    # x: 0 -> 0.2 hits, 1 -> 0.8 misses, 5 -> 4 misses; y: 0.2 hits, 9 misses.
    np.testing.assert_allclose([p[0], r[0]], [1 / 3, 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(f[0], 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), rtol=1e-6)
    # Exactly at the threshold is not a hit (strict, as Tatarchenko et al.).
    p, r, _ = f_score(x, y, 0.2)
    assert float(p[0]) == 0 and float(r[0]) == 0


def test_f_score_bad_threshold():
    x = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        f_score(x, x, 0.0)
    with pytest.raises(ValueError, match="threshold must be a scalar"):
        f_score(x, x, jnp.ones(2))
