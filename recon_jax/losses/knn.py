"""K nearest neighbours between batches of padded point clouds, in bounded memory.

``knn_points(x, y, k)`` returns, for every valid point of ``x[b]``, its ``k`` nearest valid
points of ``y[b]``: distances ``[B, N, k]`` (differentiable; squared L2 by default, as
PyTorch3D) and int32 indices ``[B, N, k]``, ``-1`` (distance 0) where there is no such point.
The search walks ``[query_chunk, ref_chunk]`` tiles (memory ``O(B (N + M))`` plus one tile per
pair, never ``[B, N, M]``) under ``stop_gradient``; the distances are then recomputed by
difference from the found neighbours, exact to float32 rounding, and only they carry gradients.
For ``k = 1`` a tile's arg-min is one float min-reduction of keys whose low mantissa bits hold
the column, so the neighbour found is the nearest up to a relative ``2^-(23 - log2 ref_chunk)``
of its search distance (the expansion ``|q|^2 + |r|^2 - 2 q.r`` already rounds at ~1e-7 of the
cloud's squared extent); exact ties go to the lowest index. ``chamfer_distance`` and ``f_score``
use this search. Padding follows PyTorch3D (``lengths``). Design notes: docs/design.md.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from recon_jax.losses._checks import (
    PreparedPair,
    check_inputs,
    map_pairs,
    mask_pair,
    resolve_batch_mode,
)

__all__ = ["knn_points", "KNN", "DEFAULT_TILE_SIZE", "NORMS"]

#: ``(query chunk, reference chunk)`` in points. 512 x 64 float32 is 128 KiB, in L2 cache; the
#: 64-point chunk leaves 17 mantissa bits for the distance in the packed arg-min.
DEFAULT_TILE_SIZE = (512, 64)
NORMS = (1, 2)
# Search distances are clipped to [_TINY, _HUGE]: finite and normal, so a key with the column in
# its low bits is still an ordinary float (no NaN pattern, no denormal that could be flushed).
_TINY = 2.0**-100
_HUGE = 2.0**126


class KNN(NamedTuple):
    """Result of :func:`knn_points`."""

    dists: jax.Array  #: ``[B, N, k]`` distances, ascending; 0 where ``idx == -1``
    idx: jax.Array  #: ``[B, N, k]`` int32 indices into ``y[b]``; -1 where no neighbour
    knn: jax.Array | None  #: ``[B, N, k, D]`` the neighbours (0 where none), if ``return_nn``


def check_tile_size(tile_size) -> tuple[int, int]:
    """A positive int or a pair of positive ints -> ``(query_chunk, ref_chunk)``."""
    pair = tile_size if isinstance(tile_size, tuple) else (tile_size, tile_size)
    if len(pair) != 2 or not all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in pair
    ):
        raise ValueError(
            "tile_size must be a positive int or a pair (query_chunk, ref_chunk) of positive "
            f"ints, got {tile_size!r}"
        )
    return pair


def _split(n: int, tile: int) -> tuple[int, int]:
    """Chunk count and balanced chunk size (``ceil(n / count)``) covering ``n`` points."""
    count = max(1, math.ceil(n / tile))
    return count, max(1, math.ceil(n / count))


def _pad_points(a: jax.Array, total: int) -> jax.Array:
    """Pad ``a`` ``[n, ...]`` with zeros along axis 0 to ``total`` rows."""
    extra = total - a.shape[0]
    if extra == 0:
        return a
    return jnp.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1))


def _tile_distances(q: jax.Array, q_sq: jax.Array, r: jax.Array, r_sq: jax.Array, norm: int):
    """``[qs, rs]`` search distances, clipped to ``[_TINY, _HUGE]`` (``_HUGE``: invalid ref).

    ``norm=2``: squared L2 by the expansion ``|q|^2 + |r|^2 - 2 q.r`` (one matrix product at
    ``HIGHEST`` precision; ``r_sq`` is ``inf`` for invalid refs). ``norm=1``: the L1 distance,
    coordinate by coordinate (``r_sq`` is then only the ``0``/``inf`` validity offset).
    """
    if norm == 2:
        d = q_sq[:, None] + r_sq[None, :] + jnp.matmul(q, r.T, precision=lax.Precision.HIGHEST)
    else:
        d = r_sq[None, :] + sum(jnp.abs(q[:, k, None] - r[None, :, k]) for k in range(q.shape[1]))
    return jnp.clip(d, _TINY, _HUGE)


def _nearest_in_pair(
    query: jax.Array, ref: jax.Array, ref_ok: jax.Array, k: int, tile: tuple[int, int], norm: int
) -> jax.Array:
    """Indices ``[Nq, k]`` of the ``k`` nearest ``ref_ok`` points of ``ref`` for each query.

    ``query`` ``[Nq, D]`` and ``ref`` ``[Nr, D]`` (``Nr >= 1``) are centred and scaled. Where
    fewer than ``k`` refs are usable the extra indices are unspecified (in range).
    """
    nq, dim = query.shape
    nr = ref.shape[0]
    q_count, q_size = _split(nq, tile[0])
    r_count, r_size = _split(nr, tile[1])
    q_chunks = _pad_points(query, q_count * q_size).reshape(q_count, q_size, dim)
    r_chunks = _pad_points(ref, r_count * r_size).reshape(r_count, r_size, dim)
    r_ok = _pad_points(ref_ok, r_count * r_size).reshape(r_count, r_size)
    if norm == 2:
        r_sq = jnp.where(r_ok, jnp.sum(r_chunks * r_chunks, axis=-1), jnp.inf)
    else:
        r_sq = jnp.where(r_ok, 0.0, jnp.inf).astype(query.dtype)
    offsets = jnp.arange(r_count, dtype=jnp.int32) * r_size
    # The integer type of the float's bits (int64 for float64 under jax_enable_x64).
    int_type = jnp.dtype(f"int{8 * jnp.dtype(query.dtype).itemsize}")
    bits = max(1, (r_size - 1).bit_length())  # low mantissa bits that hold the column
    low = (1 << bits) - 1

    def chunk_nearest_one(q: jax.Array) -> jax.Array:
        q_sq = jnp.sum(q * q, axis=-1)
        q = -2.0 * q if norm == 2 else q  # folds the expansion's factor -2 into the small operand

        def step(carry, block):
            best, best_i = carry
            r, r_n, offset = block
            d = _tile_distances(q, q_sq, r, r_n, norm)
            column = lax.broadcasted_iota(int_type, d.shape, 1)
            key = lax.bitcast_convert_type(
                (lax.bitcast_convert_type(d, int_type) & ~low) | column, d.dtype
            )
            key = lax.bitcast_convert_type(jnp.min(key, axis=1), int_type)
            value = lax.bitcast_convert_type(key & ~low, d.dtype)
            local = (key & low).astype(jnp.int32)
            better = value < best  # strict: earlier chunks win ties
            return (jnp.where(better, value, best), jnp.where(better, local + offset, best_i)), None

        init = (jnp.full((q_size,), jnp.inf, query.dtype), jnp.zeros((q_size,), jnp.int32))
        (_, best_i), _ = lax.scan(step, init, (r_chunks, r_sq, offsets))
        return jnp.minimum(best_i, nr - 1)[:, None]

    def chunk_nearest_k(q: jax.Array) -> jax.Array:
        q_sq = jnp.sum(q * q, axis=-1)
        q = -2.0 * q if norm == 2 else q
        k_tile = min(k, r_size)

        def step(carry, block):
            best, best_i = carry
            r, r_n, offset = block
            neg, local = lax.top_k(-_tile_distances(q, q_sq, r, r_n, norm), k_tile)
            # Earlier candidates first: top_k keeps the lower position on ties.
            neg, pos = lax.top_k(jnp.concatenate([best, neg], axis=1), k)
            cand = jnp.concatenate([best_i, local + offset], axis=1)
            return (neg, jnp.take_along_axis(cand, pos, axis=1)), None

        init = (jnp.full((q_size, k), -jnp.inf, query.dtype), jnp.zeros((q_size, k), jnp.int32))
        (_, best_i), _ = lax.scan(step, init, (r_chunks, r_sq, offsets))
        return jnp.minimum(best_i, nr - 1)

    idx = lax.map(chunk_nearest_one if k == 1 else chunk_nearest_k, q_chunks)
    return idx.reshape(q_count * q_size, k)[:nq]


def search(
    pair: PreparedPair,
    *,
    k: int,
    norm: int,
    both_directions: bool,
    tile_size: tuple[int, int],
    batch_mode: str,
) -> tuple[jax.Array, jax.Array | None]:
    """Nearest-neighbour indices between the finite valid points of a prepared pair.

    Returns:
      ``(idx_xy, idx_yx)``: ``[B, N, k]`` int32 indices into ``y`` of each ``x`` point's ``k``
      nearest finite valid ``y`` points, ascending, and ``[B, M, k]`` the converse (``None``
      unless ``both_directions``). Entries without such a neighbour are unspecified (in range);
      callers mask them. No gradient flows through the indices.
    """
    n, m = pair.x.shape[1], pair.y.shape[1]

    def one_pair(xb, yb, x_ok, y_ok):
        # Centre and scale by a power of two on the usable points of both clouds: distances keep
        # their order, the expansion's cancellation error shrinks (it scales with |p|^2), and the
        # search distances stay far from the clipping range whatever the clouds' units.
        count = jnp.maximum(jnp.sum(x_ok) + jnp.sum(y_ok), 1).astype(xb.dtype)
        centre = (jnp.sum(xb, axis=0) + jnp.sum(yb, axis=0)) / count  # not-ok points are 0
        extent = jnp.maximum(
            jnp.max(jnp.where(x_ok[:, None], jnp.abs(xb - centre), 0), initial=0),
            jnp.max(jnp.where(y_ok[:, None], jnp.abs(yb - centre), 0), initial=0),
        )
        scale = jnp.where(extent > 0, jnp.exp2(-jnp.round(jnp.log2(extent))), 1.0)
        xc = jnp.where(x_ok[:, None], (xb - centre) * scale, 0)
        yc = jnp.where(y_ok[:, None], (yb - centre) * scale, 0)
        nearest = functools.partial(_nearest_in_pair, k=k, tile=tile_size, norm=norm)
        i_xy = nearest(xc, yc, y_ok) if m else jnp.zeros((n, k), jnp.int32)
        if not both_directions:
            return i_xy, jnp.zeros((0, k), jnp.int32)
        i_yx = nearest(yc, xc, x_ok) if n else jnp.zeros((m, k), jnp.int32)
        return i_xy, i_yx

    args = (lax.stop_gradient(pair.x), lax.stop_gradient(pair.y), pair.x_finite, pair.y_finite)
    if pair.x.shape[0] == 0:
        idx_xy, idx_yx = jnp.zeros((0, n, k), jnp.int32), jnp.zeros((0, m, k), jnp.int32)
    else:
        idx_xy, idx_yx = map_pairs(one_pair, args, batch_mode)
    return idx_xy, (idx_yx if both_directions else None)


def gathered_distances(
    query: jax.Array,
    ref: jax.Array,
    idx: jax.Array,
    active: jax.Array,
    *,
    norm: int,
    squared: bool,
) -> jax.Array:
    """Distances ``[B, Nq, k]`` from each query to its neighbours ``idx``, by difference.

    Shapes: ``query [B, Nq, D]``, ``ref [B, Nr, D]``, ``idx``/``active`` ``[B, Nq, k]``.
    ``norm=2``: ``||d||^2`` (``squared``) or ``||d||`` with gradient 0 (not NaN) at 0;
    ``norm=1``: ``sum |d_i|``, squared if ``squared``. 0 (and zero gradient) where not ``active``.
    """
    batch, nq, k = idx.shape
    if ref.shape[1] == 0 or nq == 0:
        return jnp.zeros((batch, nq, k), query.dtype)
    flat = idx.reshape(batch, nq * k, 1)
    neighbour = jnp.take_along_axis(ref, flat, axis=1, mode="clip")
    neighbour = neighbour.reshape(batch, nq, k, ref.shape[2])
    diff = query[:, :, None, :] - neighbour
    if norm == 1:
        l1 = jnp.sum(jnp.abs(diff), axis=-1)
        return jnp.where(active, l1 * l1 if squared else l1, 0)
    sq = jnp.sum(diff * diff, axis=-1)
    if squared:
        return jnp.where(active, sq, 0)
    positive = active & (sq > 0)
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0)


def check_norm(norm, squared) -> bool:
    """``norm`` in (1, 2); returns ``squared`` with ``None`` -> ``norm == 2`` (PyTorch3D)."""
    if norm not in NORMS or isinstance(norm, bool):
        raise ValueError(f"norm must be 1 (L1) or 2 (L2), got {norm!r}")
    if squared is None:
        return norm == 2
    if not isinstance(squared, bool):
        raise ValueError(f"squared must be a bool or None, got {squared!r}")
    return squared


def knn_points(
    x: ArrayLike,
    y: ArrayLike,
    k: int = 1,
    *,
    x_lengths: ArrayLike | None = None,
    y_lengths: ArrayLike | None = None,
    norm: int = 2,
    squared: bool | None = None,
    return_nn: bool = False,
    tile_size: int | tuple[int, int] = DEFAULT_TILE_SIZE,
    batch_mode: str = "auto",
) -> KNN:
    """The ``k`` nearest valid points of ``y[b]`` for every valid point of ``x[b]``.

    Like PyTorch3D's ``knn_points(p1, p2, lengths1, lengths2, norm, K, return_nn=...)``, with
    ``-1`` (not 0) as the index where there is no neighbour.

    Args:
      x: ``[B, N, D]`` floating query clouds; computed in at least float32.
      y: ``[B, M, D]`` floating reference clouds (same ``B`` and ``D``).
      k: number of neighbours, ``>= 1`` (may exceed ``M``: the extra entries are ``-1``).
      x_lengths: ``[B]`` integers in ``[0, N]``; points ``i >= x_lengths[b]`` are padding
        (no neighbours, ``-1``). ``None``: all valid.
      y_lengths: ``[B]`` integers in ``[0, M]``; padding of ``y`` is never a neighbour.
      norm: 2 (Euclidean) or 1 (L1, the neighbours under the L1 distance).
      squared: distances squared; ``None`` (default): ``True`` for ``norm=2`` (PyTorch3D's
        squared L2), ``False`` for ``norm=1`` (plain L1).
      return_nn: also return the neighbours' coordinates.
      tile_size: ``(query_chunk, ref_chunk)`` or one int: the largest tile of distances that
        exists at a time. Affects speed and memory, not the result (up to near-ties).
      batch_mode: ``"map"`` (pairs one after the other), ``"vmap"`` or ``"auto"`` (``"map"`` on
        the CPU backend, else ``"vmap"``).

    Returns:
      :class:`KNN` ``(dists, idx, knn)``. ``dists`` are differentiable in ``x`` and ``y``
      (gradient of the selected neighbours, as PyTorch3D). A pair with a NaN or Inf valid point
      gets NaN distances at its valid queries; its indices are those among its finite points.

    Raises:
      ValueError: bad shapes, dtypes, lengths, ``k``, ``norm``, ``tile_size`` or ``batch_mode``.
    """
    x, y, x_lengths, y_lengths = check_inputs(x, y, x_lengths, y_lengths)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return _knn(x, y, x_lengths, y_lengths, k=k, norm=norm, squared=check_norm(norm, squared),
                return_nn=return_nn, tile_size=check_tile_size(tile_size),
                batch_mode=resolve_batch_mode(batch_mode))


@functools.partial(jax.jit, static_argnames=(
    "k", "norm", "squared", "return_nn", "tile_size", "batch_mode"))
def _knn(x, y, x_lengths, y_lengths, *, k, norm, squared, return_nn, tile_size, batch_mode) -> KNN:
    """:func:`knn_points` on checked arguments, jitted with its options static."""
    pair = mask_pair(x, y, x_lengths, y_lengths)
    idx, _ = search(
        pair, k=k, norm=norm, both_directions=False, tile_size=tile_size, batch_mode=batch_mode
    )
    usable = jnp.sum(pair.y_finite, axis=1)  # [B] refs that can be neighbours
    rank = jnp.arange(k)[None, None, :]
    active = pair.x_finite[..., None] & (rank < usable[:, None, None])
    dists = gathered_distances(pair.x, pair.y, idx, active, norm=norm, squared=squared)
    bad = pair.nonfinite[:, None, None] & pair.x_valid[..., None] & (
        rank < pair.y_lengths[:, None, None]
    )
    dists = jnp.where(bad, jnp.nan, dists)
    idx = jnp.where(active, idx, -1)
    knn = None
    if return_nn:
        batch, n, dim = pair.x.shape
        if n == 0 or pair.y.shape[1] == 0:
            knn = jnp.zeros((batch, n, k, dim), pair.dtype)
        else:
            flat = jnp.maximum(idx, 0).reshape(batch, n * k, 1)
            knn = jnp.take_along_axis(pair.y, flat, axis=1, mode="clip")
            knn = jnp.where(active[..., None], knn.reshape(batch, n, k, dim), 0)
    return KNN(dists, idx, knn)
