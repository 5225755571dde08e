"""Chamfer distance (paper eq. 4) and the F-score between batches of padded point clouds.

``chamfer_distance`` follows PyTorch3D's options and names: ``x_lengths``/``y_lengths``
padding, ``x_normals``/``y_normals``/``abs_cosine``, per-pair ``weights``, ``norm`` (1 or 2),
``point_reduction`` "mean"/"sum"/"max"/None, ``batch_reduction`` "mean"/"sum"/None,
``single_directional``. Default: squared Euclidean, each direction averaged over its valid
points, the two directions added (no 1/2 factor), mean over the batch; nothing is x100.
``f_score`` is Tatarchenko et al. (CVPR 2019): precision, recall and F at a distance threshold.

Both use the tiled nearest-neighbour search of ``recon_jax.losses.knn`` (memory ``O(B (N + M))``)
and recompute each winning distance by difference, so values are exact to float32 rounding and
gradients flow only through the gathered neighbours. A pair with a NaN or Inf valid point gets
NaN (with zero gradient), never a finite score. Design notes: docs/design.md.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from recon_jax.losses._checks import (
    BATCH_REDUCTIONS,
    PreparedPair,
    check_choice,
    check_cloud,
    check_inputs,
    check_weights,
    mask_pair,
    reduce_batch,
    resolve_batch_mode,
)
from recon_jax.losses.knn import (
    DEFAULT_TILE_SIZE,
    check_norm,
    check_tile_size,
    gathered_distances,
    search,
)

__all__ = ["chamfer_distance", "f_score", "FScore", "DEFAULT_TILE_SIZE"]

_POINT_REDUCTIONS = ("mean", "sum", "max", None)
# torch.nn.functional.cosine_similarity's eps, which PyTorch3D uses for the normals term.
_COSINE_EPS = 1e-6


class _Nearest(NamedTuple):
    """Per-point nearest-neighbour results of both directions (``y`` fields ``None`` if single)."""

    dist_x: jax.Array  # [B, N] distance of each x point to Y; 0 where not active, NaN if bad pair
    dist_y: jax.Array | None  # [B, M]
    idx_x: jax.Array  # [B, N] index into y, -1 where not active
    idx_y: jax.Array | None  # [B, M]
    active_x: jax.Array  # [B, N] finite valid point of x, and y has a finite valid point
    active_y: jax.Array | None


def _nearest(
    pair: PreparedPair,
    *,
    norm: int,
    squared: bool,
    single_directional: bool,
    tile_size: tuple[int, int],
    batch_mode: str,
) -> _Nearest:
    """Nearest-neighbour distances (differentiable) and indices of both directions."""
    idx_xy, idx_yx = search(
        pair, k=1, norm=norm, both_directions=not single_directional, tile_size=tile_size,
        batch_mode=batch_mode,
    )

    def direction(query, ref, idx, query_ok, query_valid, ref_ok):
        active = query_ok & jnp.any(ref_ok, axis=1)[:, None]
        dist = gathered_distances(
            query, ref, idx, active[..., None], norm=norm, squared=squared
        )[..., 0]
        dist = jnp.where(pair.nonfinite[:, None] & query_valid, jnp.nan, dist)
        return dist, jnp.where(active, idx[..., 0], -1), active

    dist_x, idx_x, active_x = direction(
        pair.x, pair.y, idx_xy, pair.x_finite, pair.x_valid, pair.y_finite
    )
    if single_directional:
        return _Nearest(dist_x, None, idx_x, None, active_x, None)
    dist_y, idx_y, active_y = direction(
        pair.y, pair.x, idx_yx, pair.y_finite, pair.y_valid, pair.x_finite
    )
    return _Nearest(dist_x, dist_y, idx_x, idx_y, active_x, active_y)


def _normals_term(
    normals: jax.Array, other: jax.Array, idx: jax.Array, active: jax.Array, abs_cosine: bool
) -> jax.Array:
    """``1 - |cos|`` (or ``1 - cos``) between each normal and its neighbour's, 0 if inactive."""
    if other.shape[1] == 0:
        return jnp.zeros(idx.shape, normals.dtype)
    near = jnp.take_along_axis(other, jnp.maximum(idx, 0)[..., None], axis=1, mode="clip")

    def unit(v):  # torch's cosine_similarity clamps each norm at eps
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), _COSINE_EPS)

    cosine = jnp.sum(unit(normals) * unit(near), axis=-1)
    return jnp.where(active, 1.0 - (jnp.abs(cosine) if abs_cosine else cosine), 0.0)


def _point_reduce(values: jax.Array, valid: jax.Array, lengths: jax.Array, reduction: str):
    """``[B, P] -> [B]``: sum, mean over the valid points (0 if none), or max (0 if none)."""
    if reduction == "max":  # distances are >= 0: 0 is the neutral element
        return jnp.max(jnp.where(valid, values, 0), axis=1, initial=0)
    total = jnp.sum(values, axis=1)
    if reduction == "sum":
        return total
    return total / jnp.maximum(lengths, 1).astype(total.dtype)


def _check_normals(name: str, normals, points: jax.Array) -> jax.Array:
    normals = check_cloud(name, normals)
    if normals.shape[:2] != points.shape[:2]:
        raise ValueError(
            f"{name} must have shape [B, N, D] matching its points' [B, N] = "
            f"{tuple(points.shape[:2])}, got shape {tuple(normals.shape)}"
        )
    return normals


def chamfer_distance(
    x: ArrayLike,
    y: ArrayLike,
    *,
    x_lengths: ArrayLike | None = None,
    y_lengths: ArrayLike | None = None,
    x_normals: ArrayLike | None = None,
    y_normals: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    squared: bool | None = None,
    single_directional: bool = False,
    abs_cosine: bool = True,
    return_indices: bool = False,
    tile_size: int | tuple[int, int] = DEFAULT_TILE_SIZE,
    batch_mode: str = "auto",
) -> jax.Array | tuple:
    """Chamfer distance between ``x`` and ``y`` (paper eq. 4), with PyTorch3D's options.

    Per pair ``b``, with ``X`` the first ``x_lengths[b]`` points of ``x[b]`` and ``Y`` the first
    ``y_lengths[b]`` of ``y[b]``::

        d(p, S)  = min_{s in S} ||p - s||_2^2    (norm=2, squared: the default; paper eq. 4)
                 = min_{s in S} ||p - s||_2      (norm=2, squared=False: the evaluation metric)
                 = min_{s in S} ||p - s||_1      (norm=1; squared=True squares it)
        cd_x->y  = sum_{p in X} d(p, Y) / |X|   (point_reduction="mean")
                 = sum_{p in X} d(p, Y)         (point_reduction="sum": eq. 4 exactly)
                 = max_{p in X} d(p, Y)         (point_reduction="max": directed Hausdorff)
        cd[b]    = cd_x->y + cd_y->x            (max(cd_x->y, cd_y->x) for "max", as PyTorch3D;
                                                 cd_x->y alone with single_directional=True)

    then ``weights[b]`` multiply ``cd[b]`` and ``batch_reduction`` "mean" divides the sum by
    ``B`` (or by ``sum(weights)``; 0 when that is 0, e.g. ``B = 0``), "sum" adds, ``None``
    returns ``[B]``. A direction whose query or reference cloud is empty contributes 0.

    Normals (both ``x_normals`` and ``y_normals``): ``loss_normals`` is reduced the same way
    from ``1 - |cos(n_p, n_nn(p))|`` per point (``1 - cos`` with ``abs_cosine=False``), the
    neighbour being the one of the distance term.

    Gradients: those of the gathered nearest-neighbour distances (``2 (p - nn(p))`` per point
    when squared L2, times the reduction's weight), 0 (not NaN) for coincident points; padded
    points (whatever they hold, even NaN) get exactly 0.

    Args:
      x: ``[B, N, D]`` floating clouds; computed in at least float32.
      y: ``[B, M, D]`` floating clouds, same ``B`` and ``D``.
      x_lengths: ``[B]`` integers in ``[0, N]``: points ``i >= x_lengths[b]`` are padding.
        ``None``: all valid. ``y_lengths``: the same for ``y``.
      x_normals: ``[B, N, D']`` normals of ``x`` (``y_normals``: ``[B, M, D']``), or ``None``.
      weights: ``[B]`` non-negative floats, or ``None``.
      batch_reduction: ``"mean"``, ``"sum"`` or ``None``.
      point_reduction: ``"mean"``, ``"sum"``, ``"max"`` (not with normals) or ``None``: the
        per-point distances (``batch_reduction`` must then be ``None``).
      norm: 2 (Euclidean) or 1 (L1).
      squared: ``None`` (default): ``True`` for ``norm=2``, ``False`` for ``norm=1`` (PyTorch3D).
      single_directional: only the ``x -> y`` direction.
      abs_cosine: ``1 - |cos|`` (normal orientation ignored) or ``1 - cos``.
      return_indices: also return the nearest-neighbour indices.
      tile_size: ``(query_chunk, ref_chunk)`` or one int: the largest tile of distances that
        exists at a time (speed and memory; the result up to near-ties: the search resolves
        distances to a relative ``2^-(23 - log2 ref_chunk)``, ``recon_jax.losses.knn``).
      batch_mode: ``"map"`` (``lax.map``: pairs one after the other), ``"vmap"`` (all at once) or
        ``"auto"`` (``"map"`` on the CPU backend, else ``"vmap"``). Same values either way.

    Returns:
      ``loss``, or ``(loss, loss_normals)`` when normals are given: scalars (``[B]`` for
      ``batch_reduction=None``); for ``point_reduction=None`` each is ``(per_x [B, N], per_y
      [B, M])`` (``per_y`` ``None`` when ``single_directional``), 0 at padding. With
      ``return_indices``: ``(that, (idx_x, idx_y))``, ``idx_x`` ``[B, N]`` int32 into ``y[b]``,
      ``idx_y`` ``[B, M]`` into ``x[b]`` (``None`` if single), ``-1`` where there is no neighbour.
      A pair with a NaN or Inf valid point is NaN in every output but the indices.

    Raises:
      ValueError: bad shapes, dtypes, lengths, weights, normals, reductions, ``norm``,
        ``tile_size`` or ``batch_mode``.
    """
    x, y, x_lengths, y_lengths = check_inputs(x, y, x_lengths, y_lengths)
    check_choice("point_reduction", point_reduction, _POINT_REDUCTIONS)
    check_choice("batch_reduction", batch_reduction, BATCH_REDUCTIONS)
    if point_reduction is None and batch_reduction is not None:
        raise ValueError(
            "batch_reduction must be None when point_reduction is None (per-point distances "
            f"cannot be reduced over the batch), got batch_reduction={batch_reduction!r}"
        )
    weights = check_weights(weights, x.shape[0])
    if (x_normals is None) != (y_normals is None):
        raise ValueError("x_normals and y_normals must be given together (or neither)")
    if x_normals is not None:
        if point_reduction == "max":
            raise ValueError('normals cannot be used with point_reduction="max" (as PyTorch3D)')
        x_normals = _check_normals("x_normals", x_normals, x)
        y_normals = _check_normals("y_normals", y_normals, y)
        if x_normals.shape[2] != y_normals.shape[2]:
            raise ValueError(
                "x_normals and y_normals must have the same dimension, got shapes "
                f"{tuple(x_normals.shape)} and {tuple(y_normals.shape)}"
            )
    return _chamfer(
        x, y, x_lengths, y_lengths, x_normals, y_normals, weights,
        batch_reduction=batch_reduction, point_reduction=point_reduction, norm=norm,
        squared=check_norm(norm, squared), single_directional=single_directional,
        abs_cosine=abs_cosine, return_indices=return_indices,
        tile_size=check_tile_size(tile_size), batch_mode=resolve_batch_mode(batch_mode),
    )


@functools.partial(jax.jit, static_argnames=(
    "batch_reduction", "point_reduction", "norm", "squared", "single_directional", "abs_cosine",
    "return_indices", "tile_size", "batch_mode",
))
def _chamfer(
    x, y, x_lengths, y_lengths, x_normals, y_normals, weights, *, batch_reduction,
    point_reduction, norm, squared, single_directional, abs_cosine, return_indices, tile_size,
    batch_mode,
):
    """:func:`chamfer_distance` on checked arguments, jitted with its options static (eager
    calls then reuse one compilation; under an outer ``jit`` it is inlined)."""
    pair = mask_pair(x, y, x_lengths, y_lengths)
    near = _nearest(
        pair, norm=norm, squared=squared, single_directional=single_directional,
        tile_size=tile_size, batch_mode=batch_mode,
    )
    terms = [(near.dist_x, near.dist_y)]
    with_normals = x_normals is not None
    if with_normals:
        x_normals = jnp.where(pair.x_valid[..., None], x_normals.astype(pair.dtype), 0)
        y_normals = jnp.where(pair.y_valid[..., None], y_normals.astype(pair.dtype), 0)
        normals_x = jnp.where(
            pair.nonfinite[:, None] & pair.x_valid, jnp.nan,
            _normals_term(x_normals, y_normals, near.idx_x, near.active_x, abs_cosine),
        )
        normals_y = None
        if not single_directional:
            normals_y = jnp.where(
                pair.nonfinite[:, None] & pair.y_valid, jnp.nan,
                _normals_term(y_normals, x_normals, near.idx_y, near.active_y, abs_cosine),
            )
        terms.append((normals_x, normals_y))

    results = []
    for per_x, per_y in terms:
        if point_reduction is None:
            results.append(tuple(
                None if v is None else reduce_batch(v, None, weights) for v in (per_x, per_y)
            ))
            continue
        value = _point_reduce(per_x, pair.x_valid, pair.x_lengths, point_reduction)
        if per_y is not None:
            other = _point_reduce(per_y, pair.y_valid, pair.y_lengths, point_reduction)
            value = jnp.maximum(value, other) if point_reduction == "max" else value + other
        value = jnp.where(pair.nonfinite, jnp.nan, value)
        results.append(reduce_batch(value, batch_reduction, weights))
    result = tuple(results) if with_normals else results[0]
    if return_indices:
        return result, (near.idx_x, near.idx_y)
    return result


class FScore(NamedTuple):
    """Result of :func:`f_score`, each ``[B]`` in ``[0, 1]`` (NaN for a non-finite pair)."""

    precision: jax.Array  #: fraction of ``x`` points within the threshold of ``y``
    recall: jax.Array  #: fraction of ``y`` points within the threshold of ``x``
    f_score: jax.Array  #: ``2 P R / (P + R)``, 0 when ``P + R = 0``


def f_score(
    x: ArrayLike,
    y: ArrayLike,
    threshold: ArrayLike,
    *,
    x_lengths: ArrayLike | None = None,
    y_lengths: ArrayLike | None = None,
    tile_size: int | tuple[int, int] = DEFAULT_TILE_SIZE,
    batch_mode: str = "auto",
) -> FScore:
    """F-score at a distance threshold (Tatarchenko et al., "What do single-view 3D
    reconstruction networks learn?", CVPR 2019), per pair.

    ``precision[b]``: fraction of the valid points of ``x[b]`` (the reconstruction) whose
    Euclidean (unsquared) distance to the nearest valid point of ``y[b]`` (the ground truth) is
    ``< threshold``; ``recall[b]``: the same from ``y[b]`` to ``x[b]``; ``f_score[b] = 2 P R /
    (P + R)``. An empty cloud gives 0s. Not differentiable (a count).

    Args:
      x: ``[B, N, D]`` floating clouds (predictions).
      y: ``[B, M, D]`` floating clouds (ground truth), same ``B`` and ``D``.
      threshold: the distance threshold, a positive scalar (in the clouds' units).
      x_lengths, y_lengths: ``[B]`` padding lengths, as :func:`chamfer_distance`.
      tile_size, batch_mode: as :func:`chamfer_distance`.

    Returns:
      :class:`FScore` ``(precision, recall, f_score)``, each ``[B]`` float.

    Raises:
      ValueError: bad shapes, dtypes, lengths, a non-scalar or non-positive ``threshold``.
    """
    x, y, x_lengths, y_lengths = check_inputs(x, y, x_lengths, y_lengths)
    if jnp.ndim(threshold) != 0:
        raise ValueError(f"threshold must be a scalar, got shape {tuple(jnp.shape(threshold))}")
    if not isinstance(threshold, jax.core.Tracer) and not float(threshold) > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    return _f_score(x, y, x_lengths, y_lengths, threshold, tile_size=check_tile_size(tile_size),
                    batch_mode=resolve_batch_mode(batch_mode))


@functools.partial(jax.jit, static_argnames=("tile_size", "batch_mode"))
def _f_score(x, y, x_lengths, y_lengths, threshold, *, tile_size, batch_mode) -> FScore:
    """:func:`f_score` on checked arguments, jitted."""
    pair = mask_pair(x, y, x_lengths, y_lengths)
    near = _nearest(pair, norm=2, squared=False, single_directional=False, tile_size=tile_size,
                    batch_mode=batch_mode)
    threshold = jnp.asarray(threshold, pair.dtype)

    def fraction(dist, active, lengths):
        hits = jnp.sum(active & (dist < threshold), axis=1).astype(pair.dtype)
        return hits / jnp.maximum(lengths, 1).astype(pair.dtype)

    precision = fraction(near.dist_x, near.active_x, pair.x_lengths)
    recall = fraction(near.dist_y, near.active_y, pair.y_lengths)
    total = precision + recall
    score = jnp.where(total > 0, 2 * precision * recall / jnp.where(total > 0, total, 1), 0.0)
    nan = jnp.where(pair.nonfinite, jnp.nan, 0.0)
    return FScore(precision + nan, recall + nan, score + nan)
