"""Exact assignment in JAX (recon_jax.losses.assignment) against SciPy's linear_sum_assignment.

Shapes are shared between tests on purpose (the solver compiles once per [B, N] shape). The >= 50
pair check at 1024 and 2048 points is experiments/bench_exact_emd.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from recon_jax.losses.assignment import (
    SOLVERS,
    auction_assignment,
    auction_assignment_cost,
    hungarian_assignment,
)

RTOL = 1e-5  # the required agreement with SciPy's optimum
KINDS = ("sphere", "box", "gauss", "translated", "duplicated", "ties")


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def make_pair(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 clouds ``[n, 3]`` of one kind (surfaces, Gaussians, copies, duplicates, ties)."""
    if kind == "sphere":  # two independent samples of the unit sphere
        x, y = _unit(rng.normal(size=(n, 3))), _unit(rng.normal(size=(n, 3)))
    elif kind == "box":  # samples of a box surface: one coordinate pushed onto a face
        half = np.array([1.0, 0.5, 0.25])
        x, y = rng.uniform(-1, 1, (2, n, 3)) * half
        for c, axis in zip((x, y), rng.integers(0, 3, (2, n)), strict=True):
            c[np.arange(n), axis] = np.sign(c[np.arange(n), axis]) * half[axis]
    elif kind == "gauss":  # shifted, anisotropic Gaussians
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + 0.3
    elif kind == "translated":  # a copy, translated and shuffled: the optimum is the translation
        x = rng.uniform(size=(n, 3))
        y = x[rng.permutation(n)] + [0.1, -0.05, 0.02]
    elif kind == "duplicated":  # every point four times in both clouds
        x, y = np.repeat(rng.uniform(size=(2, n // 4, 3)), 4, axis=1)
    else:  # "ties": integer grid points, many exactly equal costs
        x, y = rng.integers(0, 4, (2, n, 3)).astype(float)
    return x.astype(np.float32), y.astype(np.float32)


def scipy_cost(x: np.ndarray, y: np.ndarray, cost: str = "euclidean") -> np.ndarray:
    """``[B]`` optimal mean cost per point (float64 cost matrices of the float32 points)."""
    out = []
    for a, b in zip(x, y, strict=True):
        matrix = cdist(a.astype(np.float64), b.astype(np.float64), cost)
        out.append(matrix[linear_sum_assignment(matrix)].mean())
    return np.array(out)


def batch(n: int, pairs_per_kind: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [make_pair(k, n, rng) for k in KINDS for _ in range(pairs_per_kind)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def assert_optimal(values, reference) -> None:
    values = np.asarray(values, np.float64)
    np.testing.assert_array_less(np.abs(values - reference), RTOL * reference + 1e-12)


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_auction_equals_scipy(cost):
    x, y = batch(64, pairs_per_kind=2)  # 12 pairs
    assert_optimal(auction_assignment_cost(x, y, cost=cost), scipy_cost(x, y, cost))


def test_auction_equals_scipy_1024_points():
    rng = np.random.default_rng(1)
    pairs = [make_pair("sphere", 1024, rng), make_pair("duplicated", 1024, rng)]
    x, y = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    values, perm, converged = auction_assignment_cost(x, y, return_permutation=True)
    assert np.all(converged)
    assert_optimal(values, scipy_cost(x, y))
    for row in np.asarray(perm):  # a permutation
        np.testing.assert_array_equal(np.sort(row), np.arange(1024))


def test_hungarian_equals_scipy():
    x, y = batch(64, pairs_per_kind=2)
    for batch_mode in ("map", "vmap"):
        values = auction_assignment_cost(x, y, solver="hungarian", batch_mode=batch_mode)
        assert_optimal(values, scipy_cost(x, y))


def test_cost_matrices_with_ties_and_negative_entries():
    """Generic matrices (integer costs with many ties, any sign, leading dims [2, 6])."""
    rng = np.random.default_rng(2)
    matrices = rng.integers(-20, 20, (2, 6, 64, 64)).astype(np.float32)
    perm, converged = auction_assignment(matrices)
    hperm, hconverged = hungarian_assignment(matrices)
    assert perm.shape == (2, 6, 64) and converged.shape == (2, 6)
    assert np.all(converged) and np.all(hconverged)
    for idx in np.ndindex(2, 6):
        m = matrices[idx]
        best = m[linear_sum_assignment(m)].sum()
        assert m[np.arange(64), np.asarray(perm[idx])].sum() == best  # integers: exact
        assert m[np.arange(64), np.asarray(hperm[idx])].sum() == best


@jax.jit
def jit_and_vmapped(x, y):
    """``auction_assignment_cost`` under ``jit``, and under ``vmap`` (in the same compilation:
    the folded solves have the plain call's ``[12, 64, 64]`` shape and share its solver)."""
    mapped = jax.vmap(auction_assignment_cost)(x.reshape(3, 4, 64, 3), y.reshape(3, 4, 64, 3))
    single = jax.vmap(auction_assignment_cost, in_axes=(0, None))(x[:, None], y[:1])
    return auction_assignment_cost(x, y), mapped, single


def test_jit_vmap_and_no_host_callback():
    x, y = batch(64, pairs_per_kind=2)
    eager = np.asarray(auction_assignment_cost(x, y))
    # All pairs bidding in the same rounds (the accelerator mode) finds the same optimum.
    np.testing.assert_allclose(auction_assignment_cost(x, y, batch_mode="vmap"), eager, rtol=1e-6)
    jitted, mapped, single = jit_and_vmapped(x, y)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    # vmap over a leading axis folds into the solver's batch axis (same values).
    np.testing.assert_allclose(np.asarray(mapped).ravel(), eager, rtol=1e-6)
    # ... also with an unbatched argument: every x[b] against the same y.
    assert_optimal(np.asarray(single).ravel(), scipy_cost(x, np.repeat(y[:1], 12, axis=0)))
    # The whole computation stays on the device: no callback primitive anywhere in the jaxpr.
    for solver in SOLVERS:
        jaxpr = str(jax.make_jaxpr(functools.partial(auction_assignment_cost, solver=solver))(x, y))
        assert "while" in jaxpr and "callback" not in jaxpr  # nested jaxprs are printed
    hosted = jax.make_jaxpr(
        lambda a: jax.pure_callback(np.sin, jax.ShapeDtypeStruct(a.shape, a.dtype), a)
    )(x)
    assert "callback" in str(hosted)  # the check above would see one


def test_degenerate_cases():
    x, y = batch(64, pairs_per_kind=2)
    # Identical clouds, also shuffled: exactly 0, and the permutation undoes the shuffle.
    shuffle = np.random.default_rng(3).permutation(64)
    values, perm, converged = auction_assignment_cost(x, x[:, shuffle], return_permutation=True)
    np.testing.assert_array_equal(values, 0.0)
    same = x[:, shuffle][np.arange(12)[:, None], np.asarray(perm)]
    np.testing.assert_array_equal(same, x)
    # NaN or inf in one pair: NaN there, the other pairs unchanged.
    bad = x.copy()
    bad[1, 5, 0], bad[4, 0, 2] = np.nan, np.inf
    values = np.asarray(auction_assignment_cost(bad, y))
    assert np.isnan(values[[1, 4]]).all()
    keep = np.setdiff1d(np.arange(12), [1, 4])
    assert_optimal(values[keep], scipy_cost(x[keep], y[keep]))
    # N = 1: the distance of the only pair of points; N = 0: 0.
    one = auction_assignment_cost(x[:, :1], y[:, :1])
    np.testing.assert_allclose(one, np.linalg.norm(x[:, 0] - y[:, 0], axis=-1), rtol=1e-6)
    np.testing.assert_array_equal(auction_assignment_cost(x[:, :0], y[:, :0]), 0.0)


def test_iteration_bound_gives_nan_not_a_wrong_value():
    x, y = batch(64, pairs_per_kind=2)
    values, perm, converged = auction_assignment_cost(
        x, y, max_iterations=3, return_permutation=True
    )
    assert np.isnan(values).all() and not np.asarray(converged).any()
    for row in np.asarray(perm):  # still a permutation, safe to gather with
        np.testing.assert_array_equal(np.sort(row), np.arange(64))


def test_gradient_is_the_fixed_optimal_matching():
    x, y = batch(64, pairs_per_kind=2)
    x[:, 0] = y[:, 0]  # coincident points: gradient 0, not NaN
    grad = np.asarray(jax.grad(lambda a: jnp.sum(auction_assignment_cost(a, y)))(x))
    expected = np.zeros_like(x)
    for b in range(len(x)):
        rows, cols = linear_sum_assignment(cdist(x[b].astype(np.float64), y[b], "euclidean"))
        diff = x[b][rows] - y[b][cols]
        norm = np.linalg.norm(diff, axis=-1, keepdims=True)
        expected[b][rows] = np.where(norm > 0, diff / np.where(norm > 0, norm, 1), 0) / 64
    # Kinds with exact ties have several optimal matchings (and gradients): check the others.
    unique = [2 * KINDS.index(k) + i for k in ("sphere", "box", "gauss") for i in (0, 1)]
    np.testing.assert_allclose(grad[unique], expected[unique], atol=1e-6)
    assert np.isfinite(grad).all()


def test_bad_arguments():
    x = np.zeros((2, 8, 3), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        auction_assignment_cost(x, x[:, :7])
    with pytest.raises(ValueError, match="solver"):
        auction_assignment_cost(x, x, solver="simplex")
    with pytest.raises(ValueError, match="cost"):
        auction_assignment_cost(x, x, cost="cityblock")
    with pytest.raises(ValueError, match=r"\[\.\.\., N, N\]"):
        auction_assignment(np.zeros((3, 4), np.float32))
