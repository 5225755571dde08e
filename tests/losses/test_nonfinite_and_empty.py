"""NaN/Inf inputs never score well, and an empty batch gives 0, for every loss.

A pair with a NaN or Inf among its valid points must get NaN (never 0 or a finite value) in
every reduction, while the other pairs of the batch keep their exact value (checked against
the same pair computed alone, and against brute forces); padding may hold anything.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from recon_jax.losses import chamfer_distance, emd, exact_emd, f_score, kl_divergence, knn_points
from tests.losses._emd_jits import CANONICAL_BATCH, CANONICAL_POINTS, emd_values_and_grads


@pytest.fixture
def poisoned(rng):
    """``[4, 12, 3]`` clouds: pair 0 has one NaN point in x, pair 1 an Inf in y, pair 2 is clean,
    pair 3 is an all-NaN x (a diverged prediction); pair 2's x padding is NaN (allowed)."""
    x = rng.normal(size=(4, 12, 3)).astype(np.float32)
    y = rng.normal(size=(4, 12, 3)).astype(np.float32)
    x[0, 5] = np.nan
    y[1, 3, 2] = np.inf
    x[3] = np.nan
    lengths = np.array([12, 12, 9, 12])
    x[2, 9:] = np.nan
    return x, y, lengths


def clean_pair_chamfer(x, y, squared):
    d = cdist(x.astype(np.float64), y.astype(np.float64))
    d = d**2 if squared else d
    return d.min(1).mean() + d.min(0).mean()


CHAMFER_COMBOS = list(itertools.product(["mean", "sum", "max", None], ["mean", "sum", None],
                                        [False, True]))


COMBOS = [c for c in CHAMFER_COMBOS if c[0] is not None or c[1] is None]


@jax.jit
def all_combos(x, y, lengths):
    """Every reduction combination, squared and not: one compilation for both tests below."""
    return {
        squared: [
            chamfer_distance(x, y, x_lengths=lengths, squared=squared, point_reduction=pr,
                             batch_reduction=br, single_directional=single)
            for pr, br, single in COMBOS
        ]
        for squared in (True, False)
    }


@pytest.mark.parametrize("squared", [True, False])
def test_chamfer_nonfinite_pair_is_nan_in_every_reduction(poisoned, squared):
    x, y, lengths = poisoned
    combos = COMBOS
    results = all_combos(x, y, lengths)[squared]

    for got, (pr, br, single) in zip(results, combos, strict=True):
        if pr is None:  # per-point distances: NaN at every valid point of a bad pair
            per_x, per_y = (np.asarray(v) if v is not None else None for v in got)
            assert np.all(np.isnan(per_x[[0, 1, 3]]))
            assert np.all(np.isfinite(per_x[2]))
            if not single:
                assert np.all(np.isnan(per_y[[0, 1, 3]])) and np.all(np.isfinite(per_y[2]))
            continue
        got = np.asarray(got)
        if br is not None:
            assert np.isnan(got), (pr, br, single)
        else:
            assert np.all(np.isnan(got[[0, 1, 3]])), (pr, single, got)
            assert np.isfinite(got[2])
    per_pair = results[combos.index(("mean", None, False))]
    np.testing.assert_allclose(per_pair[2], clean_pair_chamfer(x[2, :9], y[2], squared),
                               rtol=1e-5)


def test_chamfer_one_nan_point_does_not_corrupt_the_search(poisoned):
    x, y, lengths = poisoned
    _, (idx_x, idx_y) = chamfer_distance(x, y, batch_reduction=None, return_indices=True)
    idx_x, idx_y = np.asarray(idx_x), np.asarray(idx_y)
    finite = np.delete(np.arange(12), 5)
    d = cdist(x[0, finite].astype(np.float64), y[0].astype(np.float64))
    # Every finite x point still finds its true neighbour; the NaN point has none (-1) and is
    # nobody's neighbour: not "every match to point 0".
    np.testing.assert_array_equal(idx_x[0, finite], d.argmin(1))
    assert idx_x[0, 5] == -1
    np.testing.assert_array_equal(idx_y[0], finite[d.argmin(0)])


def test_chamfer_gradient_of_a_nan_pair_is_zero_not_nan(poisoned):
    x, y, lengths = poisoned

    def per_pair(x, y):
        return chamfer_distance(x, y, x_lengths=lengths, batch_reduction=None)

    gx, gy = jax.grad(lambda a, b: jnp.nansum(per_pair(a, b)), (0, 1))(x, y)
    gx, gy = np.asarray(gx), np.asarray(gy)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gy))
    assert np.all(gx[[0, 1, 3]] == 0) and np.abs(gx[2]).sum() > 0


def test_f_score_and_knn_nonfinite(poisoned):
    x, y, lengths = poisoned
    out = f_score(x, y, 0.5, x_lengths=lengths)
    for v in out:
        v = np.asarray(v)
        assert np.all(np.isnan(v[[0, 1, 3]])) and np.isfinite(v[2])
    knn = knn_points(x, y, 2, x_lengths=lengths)
    d = np.asarray(knn.dists)
    assert np.all(np.isnan(d[[0, 1, 3]])) and np.all(np.isfinite(d[2]))


def test_emd_nonfinite_pair_is_nan_and_others_unchanged(poisoned):
    x, y, lengths = poisoned
    # In the canonical [7, 512] batch of the EMD tests (padding and empty filler pairs), whose
    # jitted value-and-gradient and eager diagnostics are compiled once for all test files.
    values, grad, _ = emd_values_and_grads(x, y, lengths)
    xp = np.zeros((CANONICAL_BATCH, CANONICAL_POINTS, 3), np.float32)
    yp = np.zeros((CANONICAL_BATCH, CANONICAL_POINTS, 3), np.float32)
    xp[:4, :12], yp[:4, :12] = x, y
    x_lengths = np.zeros(CANONICAL_BATCH, np.int32)
    y_lengths = np.zeros(CANONICAL_BATCH, np.int32)
    x_lengths[:4], y_lengths[:4] = lengths, 12
    mean, _ = emd(xp, yp, x_lengths=x_lengths, y_lengths=y_lengths, return_diagnostics=True)
    per_pair, info = emd(xp, yp, x_lengths=x_lengths, y_lengths=y_lengths, batch_reduction=None,
                         return_diagnostics=True)
    np.testing.assert_array_equal(np.asarray(per_pair)[:4], values)
    assert np.all(np.isnan(values[[0, 1, 3]])) and np.isnan(float(mean))
    assert all(np.all(np.isnan(np.asarray(v)[[0, 1, 3]])) for v in info.values())
    assert np.all(np.isfinite(grad)) and np.all(grad[[0, 3]] == 0)
    # The clean pair has the value it has in a batch without any bad pair.
    clean_x, clean_y = x.copy(), y.copy()
    clean_x[[0, 1, 3]], clean_y[[0, 1, 3]] = x[2], y[2]
    clean = emd_values_and_grads(np.nan_to_num(clean_x), clean_y, lengths)[0]
    assert np.all(np.isfinite(clean))
    np.testing.assert_allclose(values[2], clean[2], rtol=1e-6)


def test_exact_emd_nonfinite_pair_is_nan_without_host_error(poisoned):
    x, y, _ = poisoned
    x[2, 9:] = 0.5  # exact_emd has no padding: pair 2 is clean
    c = cdist(x[2].astype(np.float64), y[2].astype(np.float64))
    rows, cols = linear_sum_assignment(c)
    for fn in (exact_emd, jax.jit(exact_emd)):
        values = np.asarray(fn(x, y))
        assert np.all(np.isnan(values[[0, 1, 3]]))
        np.testing.assert_allclose(values[2], c[rows, cols].mean(), rtol=1e-5)


def test_empty_batch_gives_zero_not_nan():
    e = np.zeros((0, 5, 3), np.float32)
    assert float(chamfer_distance(e, e)) == 0.0
    assert float(chamfer_distance(e, e, squared=False, point_reduction="max")) == 0.0
    assert float(chamfer_distance(e, e, weights=np.zeros(0, np.float32))) == 0.0
    assert np.shape(chamfer_distance(e, e, batch_reduction=None)) == (0,)
    assert float(emd(e, e)) == 0.0
    assert float(kl_divergence(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32))) == 0
    assert np.shape(exact_emd(e, e)) == (0,)
    assert np.shape(f_score(e, e, 0.1).f_score) == (0,)
    assert np.shape(knn_points(e, e, 2).idx) == (0, 5, 2)
