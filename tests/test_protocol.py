"""The evaluation protocol against hand-computed values (SPEC section 6)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

from recon_jax import protocol


def test_normalize_bbox_hand_computed():
    # Box from (1, 2, 3) to (5, 4, 4): centre (3, 3, 3.5), longest side 4.
    pts = np.array([[1.0, 2.0, 3.0], [5.0, 4.0, 4.0], [3.0, 3.0, 3.5]])
    out = protocol.normalize_bbox(pts)
    np.testing.assert_allclose(out, [[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125], [0, 0, 0]])
    # Each cloud on its own: a scaled, shifted copy normalises to the same cloud.
    np.testing.assert_allclose(protocol.normalize_bbox(7.0 * pts - 11.0), out, atol=1e-12)


def test_subsample_without_replacement(rng):
    pts = np.arange(2048 * 3, dtype=np.float64).reshape(2048, 3)
    sub = protocol.subsample(pts, 1024, rng)
    assert sub.shape == (1024, 3)
    assert len(np.unique(sub[:, 0])) == 1024  # no point drawn twice
    assert np.isin(sub[:, 0], pts[:, 0]).all()
    with pytest.raises(ValueError, match="cannot take 1024 points"):
        protocol.subsample(pts[:10], 1024, rng)


def test_cd_emd_hand_computed():
    # pred: 0 and 3 on a line; gt: 1 and 5. Unsquared CD: gt->pred (1 + 2)/2, pred->gt (1 + 2)/2.
    # EMD: bijection {0->1, 3->5} costs (1 + 2)/2 = 1.5 (the other one costs (5 + 2)/2).
    pred = np.array([[[0.0, 0, 0], [3.0, 0, 0]]])
    gt = np.array([[[1.0, 0, 0], [5.0, 0, 0]]])
    cd, emd = protocol.cd_emd(pred, gt)
    np.testing.assert_allclose(cd, [100 * (1.5 + 1.5)], rtol=1e-6)
    np.testing.assert_allclose(emd, [100 * 1.5], rtol=1e-6)


def test_cd_emd_against_brute_force(rng):
    pred = rng.normal(size=(3, 64, 3))
    gt = rng.normal(size=(3, 64, 3))
    cd, emd = protocol.cd_emd(pred, gt)
    for v in range(3):
        d = np.linalg.norm(pred[v][:, None] - gt[v][None], axis=-1)
        ref_cd = d.min(0).mean() + d.min(1).mean()
        r, c = linear_sum_assignment(d)
        np.testing.assert_allclose(cd[v], 100 * ref_cd, rtol=1e-5)
        np.testing.assert_allclose(emd[v], 100 * d[r, c].mean(), rtol=1e-5)


def test_prepare_pair_scales_each_cloud_and_subsamples(rng):
    gt = rng.uniform(-1, 1, size=(1024, 3)) * [1.0, 0.5, 0.25]
    pred = 3.0 * rng.uniform(-1, 1, size=(2048, 3)) + 10.0
    p, g = protocol.prepare_pair(pred, gt, rng)
    assert p.shape == g.shape == (1024, 3)
    for cloud in (g, protocol.normalize_bbox(pred)):
        side = cloud.max(0) - cloud.min(0)
        np.testing.assert_allclose(side.max(), 1.0)
        np.testing.assert_allclose((cloud.max(0) + cloud.min(0)) / 2, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"pred must have shape \[N, 3\]"):
        protocol.prepare_pair(pred[:, :2], gt, rng)


def test_icp_recovers_a_rigid_motion(rng):
    target = rng.uniform(-0.5, 0.5, size=(500, 3)) * [1.0, 0.6, 0.3]
    rot = Rotation.from_euler("xyz", [8, -5, 6], degrees=True).as_matrix()
    source = target @ rot.T + [0.03, -0.02, 0.01]
    aligned = protocol.icp(source, target)
    np.testing.assert_allclose(aligned, target, atol=1e-4)
    # ICP never makes the unsquared CD worse on this pair.
    before, _ = protocol.cd_emd(source[None], target[None], with_emd=False)
    after, _ = protocol.cd_emd(aligned[None], target[None], with_emd=False)
    assert after[0] < 0.01 * before[0]


def test_prepare_pair_with_fewer_predicted_points_subsamples_the_ground_truth(rng):
    pred = rng.normal(size=(512, 3))
    gt = rng.normal(size=(1024, 3))
    p, g = protocol.prepare_pair(pred, gt, rng)
    assert p.shape == g.shape == (512, 3)
    # All predicted points are kept (a permutation of the normalised cloud).
    np.testing.assert_allclose(np.sort(p[:, 0]), np.sort(protocol.normalize_bbox(pred)[:, 0]))
    assert np.isin(g[:, 0], protocol.normalize_bbox(gt)[:, 0]).all()


def test_predict_output_names_stay_distinct():
    from recon_jax.predict import output_names

    assert output_names(["a/x.png", "b/y.jpg"]) == ["x", "y"]
    assert output_names(["r/02691156/m1/rendering/00.png", "r/02691156/m2/rendering/00.png"]) == [
        "m1_rendering_00", "m2_rendering_00"]
