"""The evaluation protocol of 3D-LMNet's ``metrics.py`` that the field's tables follow (SPEC §6).

For one test view, with a predicted cloud ``pred`` ``[P, 3]`` (P = 2048 from the model) and the
1024-point ground truth ``gt`` ``[G, 3]``:

1. scale each cloud on its own so that its axis-aligned bounding box is centred at the origin
   and its longest side is 1 (:func:`normalize_bbox`);
2. take ``G`` = 1024 predicted points at random, without replacement (:func:`subsample`);
   a model that outputs fewer points (``P < G``, our small CPU configs) keeps all its ``P``
   points and ``P`` ground-truth points are drawn instead, since the exact EMD needs equal
   sizes;
3. optionally align the prediction to the ground truth with rigid point-to-point ICP
   (:func:`icp`; 3D-LMNet does this, we report both);
4. CD = mean_g min_p ||g - p|| + mean_p min_g ||p - g||: **unsquared** Euclidean distances,
   mean over each cloud's points, the two directions added (no 1/2);
   EMD = mean_i ||p_i - g_phi(i)|| over the **exact** optimal bijection phi (Hungarian;
   3D-LMNet used an approximate auction algorithm: our EMD is never above theirs for the same
   clouds);
5. both multiplied by 100 (:data:`SCALE`). Tables average per category, then take the mean of
   the categories.

Everything here runs on the host in NumPy/SciPy (float64), except CD and EMD, which use the
library's own losses in a batched call.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["SCALE", "normalize_bbox", "subsample", "icp", "prepare_pair", "cd_emd"]

#: Tables report CD and EMD multiplied by this factor.
SCALE = 100.0


def normalize_bbox(points: np.ndarray) -> np.ndarray:
    """Centre the axis-aligned bounding box at the origin and scale its longest side to 1.

    Args:
      points: ``[..., N, 3]``.
    Returns:
      float64 array of the same shape. A degenerate cloud (all points equal) is only centred.
    """
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=-2, keepdims=True), points.max(axis=-2, keepdims=True)
    side = (hi - lo).max(axis=-1, keepdims=True)
    side = np.where(side > 0, side, 1.0)
    return (points - (lo + hi) / 2) / side


def subsample(points: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` points of ``points`` ``[N, 3]`` drawn at random without replacement (N >= num)."""
    n = points.shape[0]
    if n < num:
        raise ValueError(f"cannot take {num} points from a cloud of shape {points.shape}")
    return points[rng.choice(n, size=num, replace=False)]


def icp(
    source: np.ndarray,
    target: np.ndarray,
    *,
    max_iterations: int = 50,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Rigid point-to-point ICP (Besl & McKay 1992): align ``source`` ``[N, 3]`` to ``target``.

    Each iteration pairs every source point with its nearest target point (k-d tree) and
    applies the rotation and translation that minimise the squared distances of the pairs
    (Kabsch/Umeyama, no scaling, reflections excluded). Stops when the mean pair distance
    improves by less than ``tolerance`` or after ``max_iterations``.

    Returns:
      the transformed source ``[N, 3]`` (float64).
    """
    src = np.asarray(source, dtype=np.float64).copy()
    tgt = np.asarray(target, dtype=np.float64)
    tree = cKDTree(tgt)
    previous = np.inf
    for _ in range(max_iterations):
        dist, idx = tree.query(src)
        matched = tgt[idx]
        mu_s, mu_t = src.mean(0), matched.mean(0)
        h = (src - mu_s).T @ (matched - mu_t)
        u, _, vt = np.linalg.svd(h)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
        src = (src - mu_s) @ rot.T + mu_t
        err = dist.mean()
        if previous - err < tolerance:
            break
        previous = err
    return src


def prepare_pair(
    pred: np.ndarray,
    gt: np.ndarray,
    rng: np.random.Generator,
    *,
    use_icp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-3 of the protocol for one view: returns (pred, gt), both ``[min(P, G), 3]``."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    for name, arr in (("pred", pred), ("gt", gt)):
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(f"{name} must have shape [N, 3], got {arr.shape}")
    num = min(pred.shape[0], gt.shape[0])
    pred = subsample(normalize_bbox(pred), num, rng)
    gt = normalize_bbox(gt)
    if gt.shape[0] > num:
        gt = subsample(gt, num, rng)
    if use_icp:
        pred = icp(pred, gt)
    return pred, gt


def cd_emd(
    pred: np.ndarray, gt: np.ndarray, *, with_emd: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Steps 4-5 on prepared clouds ``[V, G, 3]`` (V views): CD and exact EMD, each ``[V]``, x100.

    CD is unsquared (mean over each cloud, directions added); EMD the exact bijection's mean
    matched distance (``None`` unless ``with_emd``).
    """
    import jax.numpy as jnp

    from recon_jax.losses import chamfer_distance, exact_emd

    p = jnp.asarray(pred, dtype=jnp.float32)
    g = jnp.asarray(gt, dtype=jnp.float32)
    cd = chamfer_distance(p, g, squared=False, point_reduction="mean", batch_reduction=None)
    cd = np.asarray(cd, np.float64) * SCALE
    if not with_emd:
        return cd, None
    return cd, np.asarray(exact_emd(p, g), np.float64) * SCALE
