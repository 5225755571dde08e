"""The evaluation protocols against a NumPy re-expression of 3D-LMNet's code and by hand."""

import dataclasses
import subprocess
import sys

import numpy as np
import ot
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from recon_jax import protocol
from recon_jax.errors import UserError

# ---- 3D-LMNet's evaluation re-expressed step by step (github.com/val-iisc/3d-lmnet, 8ad7461) ----
# Written the way their code computes, in float64 (theirs scales and scores in float32): the
# bounding-cube scaling of utils/metrics_utils.py:9-57, the homogeneous-coordinate ICP of
# utils/icp.py with brute-force nearest neighbours (theirs: sklearn), metrics.py:176-178, and the
# metrics of utils/metrics_utils.py:59-90 (the EMD with POT's exact network simplex in place of
# their approximate auction).


def _ref_scale(cloud):
    lo, hi = cloud.min(axis=0), cloud.max(axis=0)
    length = np.abs(hi - lo)
    diff = length.max() - length
    new_min = lo - diff / 2.0
    factor = 1.0 / length.max()
    adjustment = -0.5 - factor * new_min
    return cloud * factor + adjustment


def _ref_best_fit_transform(a, b):
    centroid_a, centroid_b = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd(np.dot((a - centroid_a).T, b - centroid_b))
    r = np.dot(vt.T, u.T)
    if np.linalg.det(r) < 0:
        vt[2, :] *= -1
        r = np.dot(vt.T, u.T)
    t = centroid_b - np.dot(r, centroid_a)
    transform = np.identity(4)
    transform[:3, :3], transform[:3, 3] = r, t
    return transform


def _ref_nearest_neighbor(src, dst):
    d2 = ((src[:, None, :] - dst[None, :, :]) ** 2).sum(-1)
    idx = d2.argmin(axis=1)
    return np.sqrt(d2[np.arange(len(src)), idx]), idx


def _ref_icp(a, b, max_iterations, tolerance):
    src, dst = np.ones((4, a.shape[0])), np.ones((4, b.shape[0]))
    src[:3, :], dst[:3, :] = a.T, b.T
    prev_error = 0
    for _ in range(max_iterations):
        distances, indices = _ref_nearest_neighbor(src[:3, :].T, dst[:3, :].T)
        transform = _ref_best_fit_transform(src[:3, :].T, dst[:3, indices].T)
        src = np.dot(transform, src)
        mean_error = np.mean(distances)
        if np.abs(prev_error - mean_error) < tolerance:
            break
        prev_error = mean_error
    return _ref_best_fit_transform(a, src[:3, :].T)


def _ref_metrics(gt, pr):
    d2 = ((gt[:, None, :] - pr[None, :, :]) ** 2).sum(-1)
    forward = np.sqrt(d2.min(axis=1)).mean()
    backward = np.sqrt(d2.min(axis=0)).mean()
    cost = np.sqrt(d2)
    n = len(gt)
    emd = ot.emd2(np.full(n, 1.0 / n), np.full(n, 1.0 / n), cost, numItermax=10**7)
    return 100 * (forward + backward), 100 * emd


def _ref_3d_lmnet(pred, gt, seed, use_icp=True):
    gt_scaled, pr_scaled = _ref_scale(gt), _ref_scale(pred)
    rand_indices = np.random.default_rng(seed).permutation(len(pred))[:1024]
    pr = pr_scaled[rand_indices]
    if use_icp:
        transform = _ref_icp(gt_scaled, pr, tolerance=1e-10, max_iterations=1000)
        pr = np.matmul(pr, transform[:3, :3]) - transform[:3, 3]
    return _ref_metrics(gt_scaled, pr)


def _surface(rng, n):
    """Points on the faces of a 1 x 0.6 x 0.4 box: a cloud with an object's flat faces."""
    half = np.array([0.5, 0.3, 0.2])
    pts = rng.uniform(-1, 1, size=(n, 3)) * half
    axis = rng.integers(0, 3, n)
    pts[np.arange(n), axis] = np.sign(pts[np.arange(n), axis]) * half[axis]
    return pts


def _pair(seed, degrees=5.0, num_pred=2048):
    """A plausible prediction [num_pred, 3] (noisy, rotated, shifted, scaled), its gt [1024, 3]."""
    rng = np.random.default_rng(seed)
    gt = _surface(rng, 1024)
    rot = Rotation.from_euler("xyz", rng.normal(0, degrees, 3), degrees=True).as_matrix()
    pred = 1.3 * _surface(rng, num_pred) @ rot.T + rng.normal(0, 0.02, (num_pred, 3)) + 0.2
    return pred, gt


# ---- the protocols against the re-expression -------------------------------------------------


@pytest.mark.parametrize("seed,degrees", [(0, 5.0), (1, 20.0), (2, 2.0)])
def test_3d_lmnet_protocol_equals_their_code(seed, degrees):
    pred, gt = _pair(seed, degrees)
    cd, emd = protocol.score_view(pred, gt, protocol="3d-lmnet", seed=seed)
    np.testing.assert_allclose([cd, emd], _ref_3d_lmnet(pred, gt, seed), rtol=1e-6)
    # icp=False: the unaligned figures of the same protocol.
    cd, emd = protocol.score_view(pred, gt, icp=False, seed=seed)
    np.testing.assert_allclose([cd, emd], _ref_3d_lmnet(pred, gt, seed, use_icp=False), rtol=1e-6)


def test_3d_lmnet_protocol_on_unstructured_clouds(rng):
    pred, gt = rng.normal(size=(2048, 3)), rng.uniform(size=(1024, 3))
    cd, emd = protocol.score_view(pred, gt, seed=7)
    np.testing.assert_allclose([cd, emd], _ref_3d_lmnet(pred, gt, 7), rtol=1e-6)


def test_3d_reconstnet_protocol_equals_reference():
    pred, gt = _pair(3)
    cd, emd = protocol.score_view(pred, gt, protocol="3d-reconstnet", seed=5)
    pr = pred[np.random.default_rng(5).permutation(2048)[:1024]]  # no scaling, no ICP
    np.testing.assert_allclose([cd, emd], _ref_metrics(gt, pr), rtol=1e-6)
    # Without the scaling the prediction's 1.3x size and 0.2 shift count: a worse score.
    assert cd > protocol.score_view(pred, gt, protocol="3d-lmnet", seed=5)[0]


def test_icp_and_transform_equal_their_code():
    pred, gt = _pair(4, degrees=15.0)
    p, g = protocol.prepare_view(pred, gt, seed=4)
    rotation, translation, iterations = protocol.icp(g, p)
    ref = _ref_icp(g, p, tolerance=1e-10, max_iterations=1000)
    np.testing.assert_allclose(rotation, ref[:3, :3], atol=1e-9)
    np.testing.assert_allclose(translation, ref[:3, 3], atol=1e-9)
    assert 1 < iterations < 1000
    np.testing.assert_allclose(protocol.align_prediction(p, g), p @ rotation - translation)
    # The iteration cap is honoured.
    assert protocol.icp(g, p, max_iterations=3).iterations == 3


# ---- protocols by name ----------------------------------------------------------------------


def test_protocols_by_name():
    lmnet = protocol.get_protocol("3d-lmnet")
    assert protocol.DEFAULT_PROTOCOL == "3d-lmnet"
    assert (lmnet.bbox_scale, lmnet.num_points, lmnet.icp) == (True, 1024, True)
    assert (lmnet.icp_tolerance, lmnet.icp_max_iterations) == (1e-10, 1000)
    recon = protocol.PROTOCOLS["3d-reconstnet"]
    assert (recon.bbox_scale, recon.num_points) == (False, 1024)
    assert protocol.get_protocol(recon) is recon
    with pytest.raises(dataclasses.FrozenInstanceError):
        lmnet.icp = False
    with pytest.raises(UserError, match="unknown evaluation protocol 'psgn'.*3d-lmnet"):
        protocol.get_protocol("psgn")
    assert "pred @ R - t" in lmnet.describe() and "no ICP" in lmnet.describe(icp=False)


def test_icp_default_follows_the_protocol():
    pred, gt = _pair(5)
    default = protocol.score_view(pred, gt, seed=1)
    assert default == protocol.score_view(pred, gt, icp=True, seed=1)
    assert default != protocol.score_view(pred, gt, icp=False, seed=1)


# ---- hand-computed cases ----------------------------------------------------------------------


def test_normalize_bbox_hand_computed():
    # Box from (1, 2, 3) to (5, 4, 4): centre (3, 3, 3.5), longest side 4.
    pts = np.array([[1.0, 2.0, 3.0], [5.0, 4.0, 4.0], [3.0, 3.0, 3.5]])
    out = protocol.normalize_bbox(pts)
    np.testing.assert_allclose(out, [[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125], [0, 0, 0]])
    # Each cloud on its own: a scaled, shifted copy normalises to the same cloud.
    np.testing.assert_allclose(protocol.normalize_bbox(7.0 * pts - 11.0), out, atol=1e-12)
    # The same as 3D-LMNet's bounding-cube scaling.
    cloud = np.random.default_rng(0).normal(size=(100, 3)) * [3, 1, 0.1] + 5
    np.testing.assert_allclose(protocol.normalize_bbox(cloud), _ref_scale(cloud), atol=1e-12)


def test_subsample_without_replacement(rng):
    pts = np.arange(2048 * 3, dtype=np.float64).reshape(2048, 3)
    sub = protocol.subsample(pts, 1024, rng)
    assert sub.shape == (1024, 3)
    assert len(np.unique(sub[:, 0])) == 1024  # no point drawn twice
    assert np.isin(sub[:, 0], pts[:, 0]).all()
    with pytest.raises(ValueError, match="cannot take 1024 points"):
        protocol.subsample(pts[:10], 1024, rng)


def test_chamfer_hand_computed():
    # pred: the origin; gt: (3, 4, 0) and (0, 0, 1). gt -> pred: (5 + 1) / 2; pred -> gt: 1.
    assert protocol.chamfer(np.zeros((1, 3)), np.array([[3.0, 4, 0], [0, 0, 1]])) == 4.0


def test_chamfer_and_emd_hand_computed():
    # pred: 0 and 3 on a line; gt: 1 and 5. Unsquared CD: gt->pred (1 + 2)/2, pred->gt (1 + 2)/2.
    # EMD: bijection {0->1, 3->5} costs (1 + 2)/2 = 1.5 (the other one costs (5 + 2)/2).
    pred = np.array([[0.0, 0, 0], [3.0, 0, 0]])
    gt = np.array([[1.0, 0, 0], [5.0, 0, 0]])
    np.testing.assert_allclose(protocol.chamfer(pred, gt), 1.5 + 1.5, rtol=1e-6)
    np.testing.assert_allclose(protocol.exact_emd(pred, gt), 1.5, rtol=1e-6)


def test_emd_with_repeated_points():
    # x = [a, a, b], y = [a, b, b]: one a must go to b, so EMD = |a - b| / 3.
    a, b = np.zeros(3), np.array([1.0, 0, 0])
    assert protocol.exact_emd(np.stack([a, a, b]), np.stack([a, b, b])) == pytest.approx(1 / 3)


def test_chamfer_and_emd_against_brute_force(rng):
    pred = rng.normal(size=(3, 64, 3))
    gt = rng.normal(size=(3, 64, 3))
    for v in range(3):
        d = np.linalg.norm(pred[v][:, None] - gt[v][None], axis=-1)
        ref_cd = d.min(0).mean() + d.min(1).mean()
        r, c = linear_sum_assignment(d)
        np.testing.assert_allclose(protocol.chamfer(pred[v], gt[v]), ref_cd, rtol=1e-5)
        np.testing.assert_allclose(protocol.exact_emd(pred[v], gt[v]), d[r, c].mean(), rtol=1e-5)


def test_prepare_view_scales_each_cloud_and_subsamples(rng):
    gt = rng.uniform(-1, 1, size=(1024, 3)) * [1.0, 0.5, 0.25]
    pred = 3.0 * rng.uniform(-1, 1, size=(2048, 3)) + 10.0
    p, g = protocol.prepare_view(pred, gt, seed=rng)
    assert p.shape == g.shape == (1024, 3)
    for cloud in (g, protocol.normalize_bbox(pred)):
        side = cloud.max(0) - cloud.min(0)
        np.testing.assert_allclose(side.max(), 1.0)
        np.testing.assert_allclose((cloud.max(0) + cloud.min(0)) / 2, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"pred must have shape \[N, 3\]"):
        protocol.prepare_view(pred[:, :2], gt, seed=rng)


def test_icp_recovers_a_rigid_motion(rng):
    target = rng.uniform(-0.5, 0.5, size=(500, 3)) * [1.0, 0.6, 0.3]
    rot = Rotation.from_euler("xyz", [8, -5, 6], degrees=True).as_matrix()
    source = target @ rot.T + [0.03, -0.02, 0.01]
    result = protocol.icp(source, target)
    aligned = source @ result.rotation.T + result.translation
    np.testing.assert_allclose(aligned, target, atol=1e-4)
    np.testing.assert_allclose(result.rotation, rot.T, atol=1e-6)
    # ICP never makes the unsquared CD worse on this pair.
    before = protocol.chamfer(source, target)
    after = protocol.chamfer(aligned, target)
    assert after < 0.01 * before


def test_align_prediction_applies_their_formula(rng):
    gt = rng.uniform(-0.5, 0.5, size=(500, 3)) * [1.0, 0.6, 0.3]
    rot = Rotation.from_euler("xyz", [8, -5, 6], degrees=True).as_matrix()
    shift = np.array([0.03, -0.02, 0.01])
    pred = gt @ rot.T + shift
    # ICP moves the ground truth onto the prediction: R = rot, t = shift.
    rotation, translation, _ = protocol.icp(gt, pred)
    np.testing.assert_allclose(rotation, rot, atol=1e-6)
    np.testing.assert_allclose(translation, shift, atol=1e-6)
    # pred @ R - t is gt + t @ R - t (3D-LMNet's formula, not the exact inverse (pred - t) @ R).
    aligned = protocol.align_prediction(pred, gt)
    np.testing.assert_allclose(aligned, gt + shift @ rot - shift, atol=1e-6)
    # Without a translation the formula is the exact inverse.
    np.testing.assert_allclose(protocol.align_prediction(gt @ rot.T, gt), gt, atol=1e-6)


# ---- failed views and degenerate clouds ---------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_prediction_is_a_failed_view(bad):
    pred, gt = _pair(6)
    pred[17, 1] = bad
    cd, emd = protocol.score_view(pred, gt)
    assert np.isnan(cd) and np.isnan(emd)
    assert protocol.score_view(pred, gt, icp=False, with_emd=False)[1] is None
    assert np.isnan(protocol.score_view(np.full((2048, 3), bad), gt)[0])
    assert protocol.is_failed(pred) and not protocol.is_failed(gt)


def test_failed_views_are_counted_and_the_others_scored():
    pairs = [_pair(s) for s in range(3)]
    preds, gts = np.stack([p for p, _ in pairs]), np.stack([g for _, g in pairs])
    preds[1, 0, 0] = np.nan
    np.testing.assert_array_equal(protocol.failed_views(preds), [False, True, False])
    assert protocol.failed_views([np.zeros((0, 3))]).tolist() == [True]
    cd, emd = protocol.score_views(preds, gts, icp=False)
    np.testing.assert_array_equal(np.isnan(cd), [False, True, False])
    np.testing.assert_array_equal(np.isnan(emd), [False, True, False])
    assert cd[0] == protocol.score_view(preds[0], gts[0], icp=False, seed=0)[0]
    # Non-finite ground truth is not scored either.
    assert np.isnan(protocol.score_view(preds[0], np.full((1024, 3), np.nan))[0])


def test_seeds_make_scores_independent_of_order():
    pairs = [_pair(s) for s in range(3)]
    seeds = [(9, v) for v in range(3)]
    cd, emd = protocol.score_views([p for p, _ in pairs], [g for _, g in pairs], seeds=seeds,
                                   with_emd=False)
    assert emd is None
    back, _ = protocol.score_views([p for p, _ in pairs][::-1], [g for _, g in pairs][::-1],
                                   seeds=seeds[::-1], with_emd=False)
    np.testing.assert_array_equal(back[::-1], cd)


def test_repeated_points_equal_their_code(rng):
    # Every predicted point repeated 8 times, and a ground truth with duplicates.
    pred = np.repeat(_pair(7)[0][:256], 8, axis=0)
    gt = _pair(7)[1]
    gt[512:] = gt[:512]
    cd, emd = protocol.score_view(pred, gt, seed=3)
    np.testing.assert_allclose([cd, emd], _ref_3d_lmnet(pred, gt, 3), rtol=1e-6)


def test_collapsed_prediction_gets_a_finite_score(rng):
    # All predicted points equal: only centred (3D-LMNet divides by a zero side and gets NaN).
    gt = protocol.normalize_bbox(_surface(rng, 1024))
    cd, emd = protocol.score_view(np.ones((2048, 3)), gt, icp=False)
    norms = np.linalg.norm(gt, axis=1)
    np.testing.assert_allclose([cd, emd], [100 * (norms.mean() + norms.min()), 100 * norms.mean()])
    assert np.isfinite(protocol.score_view(np.ones((2048, 3)), gt, with_emd=False)[0])


def test_fewer_predicted_points_than_the_ground_truth():
    pred, gt = _pair(8, num_pred=512)
    cd, emd = protocol.score_view(pred, gt, seed=2)
    # All 512 predicted points are kept, against 512 random ground-truth points (same generator).
    r = np.random.default_rng(2)
    pr = _ref_scale(pred)[r.permutation(512)]
    g = _ref_scale(gt)[r.permutation(1024)[:512]]
    transform = _ref_icp(g, pr, tolerance=1e-10, max_iterations=1000)
    ref = _ref_metrics(g, np.matmul(pr, transform[:3, :3]) - transform[:3, 3])
    np.testing.assert_allclose([cd, emd], ref, rtol=1e-6)


def test_prepare_view_with_fewer_predicted_points_subsamples_the_ground_truth(rng):
    pred = rng.normal(size=(512, 3))
    gt = rng.normal(size=(1024, 3))
    p, g = protocol.prepare_view(pred, gt, seed=rng)
    assert p.shape == g.shape == (512, 3)
    # All predicted points are kept (a permutation of the normalised cloud).
    np.testing.assert_allclose(np.sort(p[:, 0]), np.sort(protocol.normalize_bbox(pred)[:, 0]))
    assert np.isin(g[:, 0], protocol.normalize_bbox(gt)[:, 0]).all()


# ---- the module itself --------------------------------------------------------------------------
# (The JAX batched ICP and the device scoring path: tests/test_eval_scoring.py.)


def test_protocol_imports_no_jax():
    """The scoring processes import this module only: it must stay light (no JAX, no flax)."""
    code = ("import sys, recon_jax.protocol; "
            "print(sorted(m for m in ('jax', 'flax', 'recon_jax.evaluate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_predict_output_names_stay_distinct():
    from recon_jax.predict import output_names

    assert output_names(["a/x.png", "b/y.jpg"]) == ["x", "y"]
    assert output_names(["r/02691156/m1/rendering/00.png", "r/02691156/m2/rendering/00.png"]) == [
        "m1_rendering_00", "m2_rendering_00"]
