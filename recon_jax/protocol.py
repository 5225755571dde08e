"""Evaluation protocols of the field's tables, by name (:data:`PROTOCOLS`), one view at a time.

``"3d-lmnet"`` (default) is 3D-LMNet's ``metrics.py``: the prediction ``[P, 3]`` and the 1024-point
ground truth ``[G, 3]`` are each scaled so that their bounding box is centred with longest side 1;
1024 random predicted points are kept; ICP moves the ground truth onto them and the prediction is
mapped back with 3D-LMNet's formula ``pred @ R - t``. ``"3d-reconstnet"``: no scaling, ICP off.
CD = mean_g min_p ||g - p|| + mean_p min_g ||p - g|| (unsquared, the two means added);
EMD = mean_i ||p_i - g_phi(i)|| over the exact optimal bijection phi (SciPy's Hungarian solver;
3D-LMNet's auction is approximate, so this EMD is never above theirs). Both x100 (:data:`SCALE`).
A prediction with any NaN/Inf (or no point) is a failed view: CD and EMD are NaN
(:func:`failed_views`). NumPy/SciPy in float64, one view at a time, and no JAX: a light module for
the scoring processes (the batched JAX version is in :mod:`recon_jax.evaluate`). Design notes:
docs/design.md.
Reference: Mandikal et al., "3D-LMNet", BMVC 2018, github.com/val-iisc/3d-lmnet at 8ad7461.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from recon_jax.errors import UserError

__all__ = [
    "SCALE", "SeedLike", "Protocol", "PROTOCOLS", "DEFAULT_PROTOCOL", "get_protocol", "IcpResult",
    "normalize_bbox", "subsample", "kabsch", "icp", "align_prediction", "prepare_view",
    "chamfer", "exact_emd", "is_failed", "failed_views", "score_view", "score_views",
]

#: Tables report CD and EMD multiplied by this factor.
SCALE = 100.0

#: A seed for :func:`numpy.random.default_rng`, e.g. ``(base_seed, view_index)``.
SeedLike = int | Sequence[int] | np.random.Generator


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
      name: key in :data:`PROTOCOLS`.
      bbox_scale: scale prediction and ground truth each on its own (:func:`normalize_bbox`).
      num_points: predicted points drawn at random (and ground-truth size expected).
      icp: whether ICP runs unless the caller says otherwise.
      icp_tolerance: ICP stops when the mean matched distance changes by less than this.
      icp_max_iterations: ICP's iteration cap.
      source: where the protocol comes from.
    """

    name: str
    bbox_scale: bool
    num_points: int
    icp: bool
    icp_tolerance: float
    icp_max_iterations: int
    source: str

    def describe(self, icp: bool | None = None) -> str:
        """One paragraph for reports: every step, with ``icp`` (default: the protocol's)."""
        use_icp = self.icp if icp is None else icp
        scale = ("prediction and 1024-point ground truth each scaled so that the axis-aligned "
                 "bounding box is centred at the origin with longest side 1; " if self.bbox_scale
                 else "no scaling (clouds in the dataset's frame); ")
        align = (f"ICP moves the ground truth onto the prediction (each ground-truth point "
                 f"matched to its nearest predicted point, tolerance {self.icp_tolerance:g}, at "
                 f"most {self.icp_max_iterations} iterations) and the prediction is mapped back "
                 "as pred @ R - t; " if use_icp else "no ICP; ")
        return (f"Protocol {self.name} ({self.source}): per view, {scale}{self.num_points} "
                f"random predicted points (a model with fewer keeps all its P points against P "
                f"random ground-truth points); {align}CD = mean_g min_p ||g-p|| + mean_p min_g "
                "||p-g|| (unsquared); EMD = mean matched distance of the exact optimal bijection; "
                "both x100; a prediction with NaN/Inf is a failed view (not scored); averaged "
                "per category, then the mean of the categories.")


PROTOCOLS: dict[str, Protocol] = {
    "3d-lmnet": Protocol(
        name="3d-lmnet", bbox_scale=True, num_points=1024, icp=True,
        # metrics.py:177 calls icp(..., tolerance=1e-10, max_iterations=1000).
        icp_tolerance=1e-10, icp_max_iterations=1000,
        source="3D-LMNet metrics.py, utils/metrics_utils.py, utils/icp.py"),
    # 3D-ReconstNet's evaluation code is not public; Kim & Lee's Table 2 row for it was measured
    # without bounding-box scaling on 1024 predicted points. ICP off unless asked.
    "3d-reconstnet": Protocol(
        name="3d-reconstnet", bbox_scale=False, num_points=1024, icp=False,
        icp_tolerance=1e-10, icp_max_iterations=1000,
        source="3D-ReconstNet as reported by Kim & Lee Table 2"),
}

DEFAULT_PROTOCOL = "3d-lmnet"


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The :class:`Protocol` named ``protocol`` (a :class:`Protocol` is returned as is)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown evaluation protocol {protocol!r}: expected one of "
                        f"{', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


class IcpResult(NamedTuple):
    """``rotation`` ``[3, 3]`` and ``translation`` ``[3]`` map the ICP source onto the target
    (``x -> rotation @ x + translation``); ``iterations``: updates applied."""

    rotation: np.ndarray
    translation: np.ndarray
    iterations: int


def normalize_bbox(points: np.ndarray) -> np.ndarray:
    """Centre the axis-aligned bounding box at the origin and scale its longest side to 1.

    3D-LMNet ``utils/metrics_utils.py:9-57`` (``scale``) pads the box to a cube of the longest
    side and maps it to [-0.5, 0.5]^3, which is this. A cloud whose points are all equal is only
    centred (3D-LMNet divides by 0 and gets NaN).

    Args:
      points: ``[..., N, 3]``.
    Returns:
      float64 array of the same shape.
    """
    points = np.asarray(points, dtype=np.float64)
    lo, hi = points.min(axis=-2, keepdims=True), points.max(axis=-2, keepdims=True)
    side = (hi - lo).max(axis=-1, keepdims=True)
    side = np.where(side > 0, side, 1.0)
    return (points - (lo + hi) / 2) / side


def subsample(points: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` points of ``points`` ``[N, 3]`` at random without replacement (N >= num): the first
    ``num`` of a random permutation, as 3D-LMNet ``metrics.py:176``."""
    n = points.shape[0]
    if n < num:
        raise ValueError(f"cannot take {num} points from a cloud of shape {points.shape}")
    return points[rng.permutation(n)[:num]]


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid motion of paired points (no scaling, no reflection).

    Returns ``(rotation [3, 3], translation [3])`` minimising
    ``sum_i ||rotation @ source_i + translation - target_i||^2`` for ``[N, 3]`` inputs: centroids,
    SVD of the cross-covariance, the last singular direction flipped if the rotation would be a
    reflection (3D-LMNet ``utils/icp.py:4-45``, ``best_fit_transform``).
    """
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
    if np.linalg.det(vt.T @ u.T) < 0:
        vt = vt * np.array([[1.0], [1.0], [-1.0]])
    rotation = vt.T @ u.T
    return rotation, mu_t - rotation @ mu_s


def icp(
    source: np.ndarray,
    target: np.ndarray,
    *,
    tolerance: float = 1e-10,
    max_iterations: int = 1000,
) -> IcpResult:
    """Rigid point-to-point ICP as 3D-LMNet runs it (``utils/icp.py:67-118``).

    Each iteration matches every (moving) ``source`` point to its nearest ``target`` point (k-d
    tree on the fixed target; ``utils/icp.py:101``), moves the source by the :func:`kabsch`
    motion of the pairs (lines 104-107), and stops when the mean matched distance (measured
    before the move) differs from the previous iteration's by less than ``tolerance`` (lines
    110-113; the first comparison is against 0, line 97), or after ``max_iterations`` moves
    (line 99). The result is the :func:`kabsch` motion from the original source to its final
    position (line 116).

    Args:
      source, target: ``[N, 3]`` and ``[M, 3]``, finite (3D-LMNet requires N = M).
    """
    src = np.asarray(source, dtype=np.float64)
    tgt = np.asarray(target, dtype=np.float64)
    tree = cKDTree(tgt)
    moved = src
    previous = 0.0
    iterations = 0
    while iterations < max_iterations:
        dist, idx = tree.query(moved)
        rotation, translation = kabsch(moved, tgt[idx])
        moved = moved @ rotation.T + translation
        iterations += 1
        error = float(dist.mean())
        if abs(previous - error) < tolerance:
            break
        previous = error
    rotation, translation = kabsch(src, moved)
    return IcpResult(rotation, translation, iterations)


def align_prediction(
    pred: np.ndarray, gt: np.ndarray, *, tolerance: float = 1e-10, max_iterations: int = 1000,
) -> np.ndarray:
    """3D-LMNet's alignment step (``metrics.py:177-178``): ICP moves ``gt`` ``[N, 3]`` onto
    ``pred`` ``[N, 3]`` (each ground-truth point matched to its nearest predicted point), then
    returns ``pred @ R - t``. That is their formula, kept as is: the exact inverse of the motion
    would be ``(pred - t) @ R``; the two differ by ``t @ (R - I)``.
    """
    rotation, translation, _ = icp(gt, pred, tolerance=tolerance, max_iterations=max_iterations)
    return np.asarray(pred, dtype=np.float64) @ rotation - translation


def prepare_view(
    pred: np.ndarray, gt: np.ndarray, *, protocol: str | Protocol = DEFAULT_PROTOCOL,
    seed: SeedLike = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaling and subsampling of one view (no ICP): returns ``(pred, gt)``, both ``[n, 3]``
    float64 with ``n = min(protocol.num_points, P, G)``.

    The prediction is scaled on all its ``P`` points (3D-LMNet ``metrics.py:239`` scales the
    full cloud), then ``n`` of them are drawn with ``np.random.default_rng(seed)``; the ground
    truth is subsampled (with the same generator) only when ``G > n``.
    """
    proto = get_protocol(protocol)
    pred, gt = _check_cloud("pred", pred), _check_cloud("gt", gt)
    if proto.bbox_scale:
        pred, gt = normalize_bbox(pred), normalize_bbox(gt)
    num = min(proto.num_points, pred.shape[0], gt.shape[0])
    rng = np.random.default_rng(seed)
    pred = subsample(pred, num, rng)
    if gt.shape[0] > num:
        gt = subsample(gt, num, rng)
    return pred, gt


def chamfer(pred: np.ndarray, gt: np.ndarray) -> float:
    """Unsquared Chamfer distance of ``[N, 3]`` and ``[M, 3]`` (not x100): mean_g min_p ||g - p||
    + mean_p min_g ||p - g|| (3D-LMNet ``utils/metrics_utils.py:59-74``)."""
    forward, _ = cKDTree(pred).query(gt)
    backward, _ = cKDTree(gt).query(pred)
    return float(forward.mean() + backward.mean())


def exact_emd(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Euclidean distance of the optimal bijection of two ``[N, 3]`` clouds (not x100).

    3D-LMNet (``utils/metrics_utils.py:76-90``) reports the same mean over an approximate auction
    matching; the exact optimum is never above it.
    """
    cost = cdist(pred, gt)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def is_failed(pred: np.ndarray) -> bool:
    """A failed view: the prediction has a NaN/Inf coordinate or no point."""
    pred = np.asarray(pred)
    return pred.size == 0 or not bool(np.isfinite(pred).all())


def failed_views(preds: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``[V]`` bool: which predictions (``[V, P, 3]`` or a list of ``[P, 3]``) are failed views."""
    return np.array([is_failed(p) for p in preds], dtype=bool)


def score_view(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    protocol: str | Protocol = DEFAULT_PROTOCOL,
    icp: bool | None = None,
    seed: SeedLike = 0,
    with_emd: bool = True,
) -> tuple[float, float | None]:
    """CD and EMD (x100) of one view under ``protocol``.

    Args:
      pred: ``[P, 3]`` prediction (any P >= 1; 2048 from the model).
      gt: ``[G, 3]`` ground truth (1024 points for ShapeNet).
      protocol: a name in :data:`PROTOCOLS` or a :class:`Protocol`.
      icp: align with ICP (``None``: the protocol's default; ``False``: unaligned figures).
      seed: seeds the random subsample (an int, a sequence such as ``(seed, view_index)``, or a
        ``np.random.Generator``), so results do not depend on the order views are scored in.
      with_emd: also compute the exact EMD (about 70 ms for 1024 points); else EMD is ``None``.
    Returns:
      ``(cd, emd)`` as floats; both NaN for a failed view (:func:`is_failed`).
    """
    proto = get_protocol(protocol)
    gt = _check_cloud("gt", gt)
    if is_failed(pred) or is_failed(gt):
        return float("nan"), (float("nan") if with_emd else None)
    pred, gt = prepare_view(pred, gt, protocol=proto, seed=seed)
    if proto.icp if icp is None else icp:
        pred = align_prediction(pred, gt, tolerance=proto.icp_tolerance,
                                max_iterations=proto.icp_max_iterations)
    cd = SCALE * chamfer(pred, gt)
    return cd, (SCALE * exact_emd(pred, gt) if with_emd else None)


def score_views(
    preds: np.ndarray | Sequence[np.ndarray],
    gts: np.ndarray | Sequence[np.ndarray],
    *,
    protocol: str | Protocol = DEFAULT_PROTOCOL,
    icp: bool | None = None,
    seeds: Sequence[SeedLike] | None = None,
    with_emd: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`score_view` over V views: ``(cd [V], emd [V] or None)``, float64, x100, NaN for
    failed views. ``seeds`` (one per view) defaults to ``range(V)``."""
    seeds = range(len(preds)) if seeds is None else seeds
    scores = [score_view(p, g, protocol=protocol, icp=icp, seed=s, with_emd=with_emd)
              for p, g, s in zip(preds, gts, seeds, strict=True)]
    cd = np.array([c for c, _ in scores], dtype=np.float64).reshape(-1)
    emd = np.array([e for _, e in scores], dtype=np.float64).reshape(-1) if with_emd else None
    return cd, emd


def _check_cloud(name: str, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {points.shape}")
    return points
