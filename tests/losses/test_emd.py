"""Tests for ``recon_jax.losses.emd`` against SciPy, POT, finite differences and hand-made cases.

References are independent of the implementation: SciPy's ``linear_sum_assignment`` and POT's
``ot.emd2`` on float64 cost matrices, hand-computed assignments, float64 NumPy finite
differences. Clouds are sampled on surfaces (sphere, box, torus), normalised like ShapeNet
(bounding-box diagonal 1), with "prediction vs target"-like partners: an independent resample of
the same surface (the hardest case: small EMD), a noisy copy, a different shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from recon_jax.losses import SinkhornSchedule, _costs, sinkhorn
from recon_jax.losses.emd import emd, exact_emd
from tests.losses._emd_jits import emd_values_and_grads

# ---------------------------------------------------------------------------------------------
# Clouds and references
# ---------------------------------------------------------------------------------------------


def sample_surface(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on a surface, randomly rotated, bounding-box diagonal 1, centred."""
    if kind == "sphere":
        p = rng.normal(size=(n, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif kind in ("box", "plank"):  # a plank: long and thin, the slowest case for Sinkhorn
        half = np.array([1.0, 0.6, 0.3]) if kind == "box" else np.array([1.0, 0.1, 0.03])
        areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
        face = rng.choice(3, size=n, p=areas / areas.sum())
        p = (rng.random((n, 3)) * 2 - 1) * half
        p[np.arange(n), face] = rng.choice([-1.0, 1.0], size=n) * half[face]
    elif kind == "torus":  # (not exactly area-uniform, which does not matter here)
        u, v = rng.random(n) * 2 * np.pi, rng.random(n) * 2 * np.pi
        p = np.stack(
            [(1 + 0.3 * np.cos(v)) * np.cos(u), (1 + 0.3 * np.cos(v)) * np.sin(u), 0.3 * np.sin(v)],
            axis=1,
        )
    else:
        raise AssertionError(kind)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    p = p @ (q * np.sign(np.diag(r))).T
    lo, hi = p.min(0), p.max(0)
    return ((p - (lo + hi) / 2) / np.linalg.norm(hi - lo)).astype(np.float32)


def make_pair(kind: str, mode: str, n: int, rng: np.random.Generator) -> tuple:
    """A target cloud and a partner: independent resample, noisy permuted copy, other shape."""
    x = sample_surface(kind, n, rng)
    if mode == "resample":
        y = sample_surface(kind, n, rng)
    elif mode == "noisy":
        y = (x + 0.01 * rng.normal(size=x.shape))[rng.permutation(n)].astype(np.float32)
    else:
        y = sample_surface(mode, n, rng)
    return x, y


def scipy_exact(x, y, cost="euclidean") -> np.ndarray:
    """``[B]`` mean matched cost of the optimal bijection (SciPy, float64)."""
    out = []
    for xb, yb in zip(np.asarray(x, np.float64), np.asarray(y, np.float64), strict=True):
        c = cdist(xb, yb, "euclidean" if cost == "euclidean" else "sqeuclidean")
        rows, cols = linear_sum_assignment(c)
        out.append(c[rows, cols].mean())
    return np.array(out)


def pot_exact(x, y, cost="euclidean") -> np.ndarray:
    """``[B]`` exact transport cost between uniform measures (POT network simplex, float64)."""
    out = []
    for xb, yb in zip(np.asarray(x, np.float64), np.asarray(y, np.float64), strict=True):
        c = cdist(xb, yb, "euclidean" if cost == "euclidean" else "sqeuclidean")
        a, b = np.full(len(xb), 1.0 / len(xb)), np.full(len(yb), 1.0 / len(yb))
        # Total cost of a plan of mass 1 = mean cost per point. The iteration bound (default 1e5)
        # is raised for 2048 points, where it could stop the network simplex early.
        out.append(ot.emd2(a, b, c, numItermax=10**7))
    return np.array(out)


# One compilation per (shape, settings), and each costs seconds: the tests share these. Most
# evaluations go through emd_values_and_grads ([7, 512] with lengths, one compilation per cost);
# the eager calls below use [7, 512] with diagnostics (the surface_emd fixture) or [2, 256]
# (the shape of docs/losses.md's example, which test_package.py runs).
emd_per_pair = jax.jit(lambda x, y: emd(x, y, batch_reduction=None))


@functools.partial(jax.jit, static_argnames="cost")
def white_box_solve(x, y, *, cost):
    """``(f, g, eps)`` of the internal solve that ``emd`` runs on one pair ``[n, D]``."""
    n = x.shape[0]
    cost_matrix = _costs.cost_matrix(x, y, cost)
    a = jnp.full((n,), 1.0 / n)
    valid = jnp.ones((n, n), bool)
    schedule = sinkhorn.default_schedule(cost)
    bound = sinkhorn.axis_lower_bound(x, y, a, a, cost)
    f, g, eps, _ = sinkhorn.solve(cost_matrix, a, a, valid, schedule, lower_bound=bound)
    return f, g, eps

SURFACE_PAIRS = [
    ("sphere", "resample"),
    ("box", "resample"),
    ("torus", "resample"),
    ("sphere", "noisy"),
    ("torus", "noisy"),
    ("sphere", "box"),
    ("plank", "resample"),
]


@pytest.fixture(scope="module")
def surface_batch():
    """``[7, 512, 3]`` clouds and partners (see ``SURFACE_PAIRS``) and their exact EMD."""
    rng = np.random.default_rng(1)
    pairs = [make_pair(kind, mode, 512, rng) for kind, mode in SURFACE_PAIRS]
    x = np.stack([p[0] for p in pairs])
    y = np.stack([p[1] for p in pairs])
    return x, y, scipy_exact(x, y)


@pytest.fixture(scope="module")
def surface_emd(surface_batch):
    """Eager ``emd`` of the surface pairs (no padding), per pair, with its diagnostics."""
    x, y, _ = surface_batch
    values, info = emd(x, y, batch_reduction=None, return_diagnostics=True)
    return np.asarray(values), {key: np.asarray(value) for key, value in info.items()}


# ---------------------------------------------------------------------------------------------
# exact_emd
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_exact_emd_matches_scipy_and_pot(rng, cost):
    # [12, 64]: the shape of the other eager exact_emd calls (eager ops compile once per shape).
    x = rng.normal(size=(12, 64, 3)).astype(np.float32)
    y = (rng.normal(size=(12, 64, 3)) + 0.5).astype(np.float32)
    got = np.asarray(exact_emd(x, y, cost=cost))
    assert got.shape == (12,)
    np.testing.assert_allclose(got, scipy_exact(x, y, cost), rtol=1e-5)
    np.testing.assert_allclose(got, pot_exact(x, y, cost), rtol=1e-5)


def test_exact_emd_hand_computed():
    # The optimal bijection is 0 -> 1 (distance 0.2), 1 -> 2 (0.4), 2 -> 0 (0.5).
    x = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]]], np.float32)
    y = np.array([[[0.0, 3.5], [0.2, 0.0], [2.0, 0.4]]], np.float32)
    np.testing.assert_allclose(exact_emd(x, y), [(0.2 + 0.4 + 0.5) / 3], rtol=1e-6)
    np.testing.assert_allclose(
        exact_emd(x, y, cost="sqeuclidean"), [(0.04 + 0.16 + 0.25) / 3], rtol=1e-6
    )


def test_exact_emd_jit_and_vmap(rng):
    x = rng.normal(size=(4, 2, 30, 3)).astype(np.float32)
    y = rng.normal(size=(4, 2, 30, 3)).astype(np.float32)
    expected = np.stack([scipy_exact(x[i], y[i]) for i in range(4)])
    np.testing.assert_allclose(jax.jit(exact_emd)(x[0], y[0]), expected[0], rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(exact_emd)(x, y), expected, rtol=1e-5)
    # Only x batched: y is broadcast to every call.
    np.testing.assert_allclose(
        jax.vmap(exact_emd, in_axes=(0, None))(x, y[0]),
        np.stack([scipy_exact(x[i], y[0]) for i in range(4)]),
        rtol=1e-5,
    )


def test_exact_emd_gradient_is_the_matching_gradient(rng):
    x = rng.normal(size=(1, 40, 3)).astype(np.float32)
    y = rng.normal(size=(1, 40, 3)).astype(np.float32)
    rows, cols = linear_sum_assignment(cdist(x[0].astype(np.float64), y[0].astype(np.float64)))
    diff = x[0] - y[0, cols[np.argsort(rows)]]
    expected = diff / np.linalg.norm(diff, axis=1, keepdims=True) / 40
    grad_x, grad_y = jax.grad(lambda a, b: exact_emd(a, b)[0], argnums=(0, 1))(x, y)
    np.testing.assert_allclose(grad_x[0], expected, atol=1e-6)
    np.testing.assert_allclose(grad_y.sum(), -expected.sum(), atol=1e-5)
    # Coincident points: zero gradient, not NaN.
    grad_same = jax.grad(lambda a: exact_emd(a, jnp.asarray(x))[0])(jnp.asarray(x))
    assert np.all(np.asarray(grad_same) == 0)


def test_exact_emd_bad_inputs(rng):
    x = rng.normal(size=(12, 64, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="same number of points"):
        exact_emd(x, x[:, :63])
    with pytest.raises(ValueError, match="cost"):
        exact_emd(x, x, cost="cityblock")
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        exact_emd(x[0], x[0])


# ---------------------------------------------------------------------------------------------
# emd: accuracy
# ---------------------------------------------------------------------------------------------


def test_emd_matches_exact_on_surface_pairs(surface_batch):
    x, y, exact = surface_batch
    got, _, _ = emd_values_and_grads(x, y)
    rel = np.abs(got - exact) / exact
    # Measured: worst 0.03%. The uncorrected <P, C> is 0.6% off on the first pair.
    assert rel.max() < 0.003, rel
    assert rel.mean() < 0.001, rel


def test_emd_squared_cost_matches_exact(surface_batch):
    x, y, _ = surface_batch
    x, y = x[:3], y[:3]  # the three resampled surfaces: the hardest ones
    got, _, _ = emd_values_and_grads(x, y, cost="sqeuclidean")
    exact = scipy_exact(x, y, "sqeuclidean")
    assert np.max(np.abs(got - exact) / exact) < 0.003  # measured: worst 0.02%


def test_emd_unequal_sizes_matches_pot(rng):
    x = sample_surface("sphere", 400, rng)[None]
    y = sample_surface("sphere", 300, rng)[None]
    got = np.asarray(emd(x, y, batch_reduction=None))
    np.testing.assert_allclose(got, pot_exact(x, y), rtol=0.005)


@pytest.mark.slow
def test_emd_matches_exact_at_2048_points():
    rng = np.random.default_rng(2)
    pairs = [
        make_pair(kind, mode, 2048, rng)
        for kind, mode in [
            ("sphere", "resample"),
            ("torus", "resample"),
            ("box", "noisy"),
            ("sphere", "box"),
            ("plank", "resample"),
        ]
    ]
    x, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    exact = pot_exact(x, y)  # the same optimum as SciPy's assignment, 3x faster at 2048 points
    got = np.asarray(emd_per_pair(x, y))
    rel = np.abs(got - exact) / exact
    assert rel.max() < 0.003, rel  # measured on 88 pairs (module docstring): worst 0.40%


def test_emd_of_a_cloud_with_itself_is_zero(surface_batch):
    x = surface_batch[0][:1]
    spacing = cdist(x[0], x[0]) + np.eye(512) * 1e9
    value, _, _ = emd_values_and_grads(x, x)
    assert abs(float(value[0])) < 1e-4 * spacing.min(1).mean()


def test_emd_symmetric_and_permutation_invariant(surface_batch, rng):
    x, y, _ = surface_batch
    x, y = x[:1], y[:1]
    px, py = x[:, rng.permutation(512)], y[:, rng.permutation(512)]
    # Three independent pairs of one batch: (x, y), (y, x), both permuted.
    values, _, _ = emd_values_and_grads(np.concatenate([x, y, px]), np.concatenate([y, x, py]))
    value = float(values[0])
    np.testing.assert_allclose(float(values[1]), value, rtol=1e-3)
    np.testing.assert_allclose(float(values[2]), value, rtol=1e-3)


@pytest.mark.parametrize("cost, power", [("euclidean", 1), ("sqeuclidean", 2)])
def test_emd_scale_and_translation(surface_batch, cost, power):
    x, y, _ = surface_batch
    x, y = x[:1], y[:1]
    values, _, _ = emd_values_and_grads(
        np.concatenate([x, 7.0 * x + 3.0]), np.concatenate([y, 7.0 * y + 3.0]), cost=cost
    )
    value, moved = float(values[0]), float(values[1])
    np.testing.assert_allclose(moved, 7.0**power * value, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# emd: padding
# ---------------------------------------------------------------------------------------------


def test_emd_padding_equals_unpadded_and_gets_zero_gradient(surface_batch, surface_emd):
    x, y, _ = surface_batch
    xp, yp = x[:2].copy(), y[:2].copy()
    # 400 and 300 points: the unpadded reference has test_emd_unequal_sizes_matches_pot's shape.
    x_lengths, y_lengths = np.array([400, 512]), np.array([300, 512])
    xp[0, 400:] = np.nan  # padding content must never matter
    yp[0, 300:] = 1e6
    values, grad_x, grad_y = emd_values_and_grads(xp, yp, x_lengths, y_lengths)
    unpadded = np.asarray(emd(x[:1, :400], y[:1, :300], batch_reduction=None))
    np.testing.assert_allclose(values[0], unpadded[0], rtol=1e-4)
    np.testing.assert_allclose(values[1], surface_emd[0][1], rtol=1e-4)  # unpadded, eager
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_y))
    assert np.all(grad_x[0, 400:] == 0) and np.all(grad_y[0, 300:] == 0)
    assert np.abs(grad_x[0, :400]).sum() > 0 and np.abs(grad_y[0, :300]).sum() > 0


def test_emd_empty_cloud_contributes_zero(surface_batch):
    x, y, _ = surface_batch
    x_lengths, y_lengths = np.array([0, 512]), np.array([512, 512])
    values, grad_x, grad_y = emd_values_and_grads(x[:2], y[:2], x_lengths, y_lengths)
    assert values[0] == 0 and values[1] > 0
    assert np.all(grad_x[0] == 0) and np.all(grad_y[0] == 0)
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(grad_y))


# ---------------------------------------------------------------------------------------------
# emd: gradients
# ---------------------------------------------------------------------------------------------


def test_emd_gradient_agrees_with_the_exact_matching(surface_batch):
    x, y, _ = surface_batch
    _, grad_x, _ = emd_values_and_grads(x, y)
    for b in range(3):  # resampled surfaces: many near-ties, the least favourable case
        rows, cols = linear_sum_assignment(cdist(x[b].astype(np.float64), y[b].astype(np.float64)))
        diff = x[b] - y[b, cols[np.argsort(rows)]]
        exact = diff / np.linalg.norm(diff, axis=1, keepdims=True) / 512
        g = np.asarray(grad_x[b])
        cosine = np.sum(g * exact) / np.linalg.norm(g) / np.linalg.norm(exact)
        assert cosine > 0.95, cosine  # measured 0.97-1.0


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_emd_gradient_is_the_fixed_plan_derivative(surface_batch, cost):
    """The gradient equals float64 finite differences of <P, C(x, y)> with P frozen."""
    x, y, _ = surface_batch
    # The gradient of emd(x[3][None], y[3][None]): pairs are independent.
    grad_x = emd_values_and_grads(x, y, cost=cost)[1][3]
    x, y = x[3], y[3]  # sphere, noisy copy
    n = x.shape[0]
    # The plan the solver finds (white box: the same internal solve that emd runs).
    f, g, eps = white_box_solve(x, y, cost=cost)
    f, g, eps = (np.asarray(v, np.float64) for v in (f, g, eps))
    c64 = cdist(x.astype(np.float64), y.astype(np.float64))
    c64 = c64 if cost == "euclidean" else c64**2
    plan = np.exp((f[:, None] + g[None, :] - c64) / eps) / n**2

    def frozen(points):  # <P, C(points, y)> in float64
        d = cdist(points, y.astype(np.float64))
        return np.sum(plan * (d if cost == "euclidean" else d**2))

    h = 1e-5
    for i, k in [(0, 0), (17, 1), (200, 2), (511, 0)]:
        step = np.zeros((n, 3))
        step[i, k] = h
        base = x.astype(np.float64)
        numeric = (frozen(base + step) - frozen(base - step)) / (2 * h)
        np.testing.assert_allclose(grad_x[i, k], numeric, rtol=1e-3, atol=1e-7)


def test_emd_directional_derivative_matches_finite_differences(surface_batch):
    """Envelope theorem, black box: d/dt emd(x + t v, y) (re-solving each time) = <grad, v>."""
    x, y, _ = surface_batch
    _, grad_x, _ = emd_values_and_grads(x, y)
    x, y = x[:1], y[:1]  # sphere vs an independent resample
    t = 0.003  # small against the point spacing (~0.03): the exact EMD is only piecewise smooth
    directions = [
        np.broadcast_to(np.array([1.0, 0.0, 0.0], np.float32), x.shape),  # a translation
        np.roll(x, 1, axis=2) * np.array([1.0, -0.5, 0.25], np.float32),  # a smooth field
    ]
    # emd(x + t v, y) and emd(x - t v, y) for both directions: four pairs, each solved anew.
    moved = np.concatenate([x + s * t * v for v in directions for s in (1, -1)])
    values, _, _ = emd_values_and_grads(moved, np.repeat(y, 4, axis=0))
    for k, direction in enumerate(directions):
        predicted = float(np.sum(grad_x[:1] * direction))
        numeric = (float(values[2 * k]) - float(values[2 * k + 1])) / (2 * t)
        np.testing.assert_allclose(numeric, predicted, rtol=0.03)


def test_emd_jvp_matches_grad(surface_batch, rng):
    x, y, _ = surface_batch
    x, y = x[:2, :256], y[:2, :256]
    dx = rng.normal(size=x.shape).astype(np.float32)
    dy = rng.normal(size=y.shape).astype(np.float32)
    value, tangent = jax.jvp(lambda a, b: emd(a, b, batch_reduction="sum"), (x, y), (dx, dy))
    _, grad_x, grad_y = emd_values_and_grads(x, y)  # of the sum over pairs
    np.testing.assert_allclose(float(value), float(emd(x, y, batch_reduction="sum")), rtol=1e-6)
    np.testing.assert_allclose(
        float(tangent), float(np.sum(grad_x * dx) + np.sum(grad_y * dy)), rtol=1e-4
    )


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_emd_gradient_finite_with_duplicates_and_coincident_points(surface_batch, cost):
    x = surface_batch[0][:1].copy()
    x[0, 1] = x[0, 0]  # a duplicated point
    x[0, 2] = x[0, 0]
    # Two pairs: identical clouds; every point at a tiny distance.
    _, grad_x, grad_y = emd_values_and_grads(
        np.concatenate([x, x]), np.concatenate([x, x + 1e-4]), cost=cost
    )
    for k in range(2):
        assert np.all(np.isfinite(grad_x[k])) and np.all(np.isfinite(grad_y[k]))


# ---------------------------------------------------------------------------------------------
# emd: transformations, batching, options
# ---------------------------------------------------------------------------------------------


def test_emd_vmap_batch_modes_and_reductions(surface_batch):
    x, y, _ = surface_batch
    x, y = x[:2, :256], y[:2, :256]
    per_pair = np.asarray(emd(x, y, batch_reduction=None))
    np.testing.assert_allclose(
        emd(x, y, batch_reduction=None, batch_mode="vmap"), per_pair, rtol=1e-4
    )
    np.testing.assert_allclose(
        jax.jit(jax.vmap(lambda a, b: emd(a[None], b[None])))(x, y), per_pair, rtol=1e-4
    )
    np.testing.assert_allclose(emd(x, y), per_pair.mean(), rtol=1e-5)
    np.testing.assert_allclose(emd(x, y, batch_reduction="sum"), per_pair.sum(), rtol=1e-5)


def test_emd_diagnostics(surface_batch, surface_emd):
    x, y, exact = surface_batch
    values, info = surface_emd  # eager
    np.testing.assert_allclose(values, emd_values_and_grads(x, y)[0], rtol=1e-5)  # == jit
    assert set(info) == {"plan_cost", "marginal_error", "epsilon", "lower_bound"}
    assert all(v.shape == (7,) for v in info.values())
    assert np.all(np.asarray(info["lower_bound"]) <= exact * (1 + 1e-5))
    assert np.all(np.asarray(info["epsilon"]) > 0)
    assert np.all(np.asarray(info["epsilon"]) < 0.01 * exact)
    assert np.all(np.asarray(info["marginal_error"]) < 0.02)
    np.testing.assert_allclose(info["plan_cost"], values, rtol=0.02)


def test_emd_custom_schedule_and_plain_sinkhorn(surface_batch):
    x, y, exact = surface_batch
    x, y, exact = x[3:4], y[3:4], exact[3:4]  # noisy copy: converges fast
    schedule = SinkhornSchedule(coarse_stages=[(3.0, 20), (0.3, 100)], relaxation=1.0)
    got = emd(x, y, schedule=schedule, batch_reduction=None)
    # Final eps = 0.3 s ~ 0.28 EMD here: a positive entropic bias of several percent (measured
    # +6.8%), which the default schedule (final eps ~ 0.001 EMD) does not have.
    rel = (float(got[0]) - exact[0]) / exact[0]
    assert 0.02 < rel < 0.15, rel


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": np.zeros((4, 3))}, r"x must have shape \[B, N, D\]"),
        ({"y": np.zeros((2, 5, 2))}, "same point dimension"),
        ({"y": np.zeros((3, 5, 3))}, "same batch size"),
        ({"x": np.zeros((2, 5, 3), np.int32)}, "floating point"),
        ({"cost": "cosine"}, "cost"),
        ({"x_lengths": np.array([5])}, "x_lengths must have shape"),
        ({"y_lengths": np.array([5, 6])}, r"y_lengths values must lie in \[0, 5\]"),
        ({"x_lengths": np.array([5.0, 5.0])}, "integer"),
        ({"schedule": ((3.0, 10),)}, "schedule must be a SinkhornSchedule"),
        ({"batch_mode": "pmap"}, "batch_mode"),
        ({"batch_reduction": "max"}, "batch_reduction"),
    ],
)
def test_emd_bad_inputs(kwargs, match):
    args = {"x": np.zeros((2, 5, 3), np.float32), "y": np.zeros((2, 5, 3), np.float32)}
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        emd(x, y, **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"coarse_stages": []}, "coarse_stages"),
        ({"coarse_stages": [(0.0, 10)]}, "coarse_stages"),
        ({"fine_stages": [(0.1, 0)]}, "fine_stages"),
        ({"fine_stages": [(0.1, True)]}, "fine_stages"),
        ({"fine_stages": [0.1]}, "fine_stages"),
        ({"relaxation": 2.0}, "relaxation"),
        ({"relaxation": 0.5}, "relaxation"),
        ({"eps_floor": 0.0}, "eps_floor"),
    ],
)
def test_schedule_bad_inputs(kwargs, match):
    args = {"coarse_stages": [(3.0, 10)], **kwargs}
    with pytest.raises(ValueError, match=match):
        SinkhornSchedule(**args)


# ---------------------------------------------------------------------------------------------
# emd: repeated points (the nearest-neighbour lower bound is 0)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cost, power", [("euclidean", 1), ("sqeuclidean", 2)])
def test_emd_same_points_other_multiplicities(cost, power):
    # x = [a, a, b], y = [a, b, b]: every point has a coincident partner (nearest-neighbour
    # bound 0) but one unit of mass must travel |a - b|: EMD = |a - b| / 3 (squared: |a - b|^2/3).
    a, b = np.array([0.3, -1.2, 0.5]), np.array([1.1, 0.4, -0.2])
    x = np.array([[a, a, b]], np.float32)
    y = np.array([[a, b, b]], np.float32)
    want = np.linalg.norm(a - b) ** power / 3
    got = float(emd_values_and_grads(x, y, cost=cost)[0][0])
    assert abs(got - want) / want < 0.01, (got, want)
    np.testing.assert_allclose(exact_emd(x, y, cost=cost), [want], rtol=1e-5)


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_emd_points_drawn_with_replacement_match_exact(cost):
    # 64 points drawn with replacement from 20 (both clouds), at three scales: the two clouds
    # share every point, only the multiplicities differ.
    rng = np.random.default_rng(3)
    xs, ys = [], []
    for k in range(8):
        base = rng.normal(size=(20, 3)) * [0.01, 1.0, 100.0][k % 3]
        xs.append(base[rng.integers(0, 20, 64)])
        ys.append(base[rng.integers(0, 20, 64)])
    x, y = np.array(xs, np.float32), np.array(ys, np.float32)
    got, _, _ = emd_values_and_grads(x, y, cost=cost)
    want = scipy_exact(x, y, cost)
    assert np.all(got > 0), got
    rel = np.abs(got - want) / want
    assert rel.max() < 0.01, rel  # measured: worst 1.3e-5 (Euclidean), 2.9e-5 (squared)


# ---------------------------------------------------------------------------------------------
# emd: the schedule object
# ---------------------------------------------------------------------------------------------


def test_emd_with_the_training_schedule(surface_batch):
    # The call the training step makes when a config gives stages (and schedule=None otherwise).
    x, y, exact = surface_batch
    x, y, exact = x[:2, :256], y[:2, :256], scipy_exact(x[:2, :256], y[:2, :256])
    schedule = SinkhornSchedule(
        coarse_stages=((3.0, 5), (1.0, 15), (0.3, 20)), fine_stages=((0.02, 10), (0.004, 10))
    )
    assert schedule.iterations == 60 and schedule.for_cost("euclidean").relaxation == 1.9
    assert hash(schedule) == hash(SinkhornSchedule(
        coarse_stages=[(3, 5), (1, 15), (0.3, 20)], fine_stages=[(0.02, 10), (0.004, 10)]
    ))  # normalised to tuples of (float, int): a jit static argument

    @jax.jit
    def step(x, y):
        def loss(a):
            per_pair = emd(a, y, batch_reduction=None, schedule=schedule)
            return jnp.sum(per_pair), per_pair

        return jax.value_and_grad(loss, has_aux=True)(x)

    (value, per_pair), grad = step(x, y)
    per_pair = np.asarray(per_pair)
    assert np.all(np.abs(per_pair - exact) / exact < 0.02), per_pair / exact - 1  # 0.05%, 0.16%
    np.testing.assert_allclose(float(value), per_pair.sum(), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(grad))) and np.abs(np.asarray(grad)).sum() > 0
    default = emd(x, y, batch_reduction=None, schedule=None)
    np.testing.assert_array_equal(
        default, emd(x, y, batch_reduction=None, schedule=sinkhorn.default_schedule("euclidean"))
    )


# ---------------------------------------------------------------------------------------------
# exact_emd: solvers
# ---------------------------------------------------------------------------------------------


@jax.jit
def exact_emd_all_solvers(x, y):
    """``exact_emd`` with every cost and solver: one compilation (both costs share the auction)."""
    return {
        (cost, solver): exact_emd(x, y, cost=cost, solver=solver)
        for cost in ("euclidean", "sqeuclidean")
        for solver in ("scipy", "jax", "auto")
    }


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_exact_emd_solvers_agree_with_scipy(rng, cost):
    x = rng.normal(size=(3, 40, 3)).astype(np.float32)
    y = (rng.normal(size=(3, 40, 3)) + 0.3).astype(np.float32)
    y[2, :10] = y[2, 10:20]  # duplicated points: ties
    want = scipy_exact(x, y, cost)
    results = exact_emd_all_solvers(x, y)  # under jit
    for solver in ("scipy", "jax", "auto"):
        got = np.asarray(results[cost, solver])
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=solver)
    with pytest.raises(ValueError, match="solver"):
        exact_emd(x, y, solver="hungarian")


def test_exact_emd_jax_falls_back_to_scipy_with_a_warning_when_the_auction_bound_is_hit(
        monkeypatch):
    import functools
    import sys
    import warnings

    emd_module = sys.modules["recon_jax.losses.emd"]  # the attribute `emd` is the function

    rng = np.random.default_rng(3)
    # [12, 64]: the shape of test_assignment.py's batches (the auction compiles once per shape).
    x = rng.normal(size=(12, 64, 3)).astype(np.float32)
    y = rng.normal(size=(12, 64, 3)).astype(np.float32)
    reference = np.asarray(emd_module.exact_emd(x, y, solver="scipy"))
    monkeypatch.setattr(emd_module, "auction_assignment_cost",
                        functools.partial(emd_module.auction_assignment_cost, max_iterations=1))
    with pytest.warns(UserWarning, match=r"12 pair\(s\) hit the auction's iteration bound"):
        fallback = np.asarray(emd_module.exact_emd(x, y, solver="jax"))
    np.testing.assert_allclose(fallback, reference, rtol=1e-6)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the full bound: no fallback, the same optimum
        np.testing.assert_allclose(np.asarray(emd_module.exact_emd(x, y, solver="jax")),
                                   reference, rtol=1e-5)
