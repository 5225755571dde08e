"""Exact optimal bijection between equal-size point clouds, solved in JAX (no host callback).

``auction_assignment_cost(x, y)`` is ``min_phi (1/N) sum_i C(x_i, y_phi(i))`` over permutations
``phi`` for clouds ``[B, N, D]``: the mean cost per matched point (not multiplied by 100), with
``C`` the Euclidean distance (paper eq. 5) or its square; SciPy's ``linear_sum_assignment``
optimum, divided by ``N``. Runs under ``jit`` and ``vmap`` on any backend. Solvers: Bertsekas'
forward auction with epsilon-scaling (the default; Jacobi bidding, stopped by a duality-gap
certificate: cost within ``rtol`` = 1e-6 of the optimum), or optax's Hungarian algorithm. Loops
are bounded; a pair that hits the bound, or has a non-finite point, gives NaN.
Design notes and measurements: docs/design.md.

References: D. P. Bertsekas, "The auction algorithm: a distributed relaxation method for the
assignment problem", Ann. Oper. Res. 14, 1988; D. P. Bertsekas, "Auction algorithms for network
flow problems: a tutorial introduction", Comput. Optim. Appl. 1, 1992 (epsilon-scaling).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from recon_jax.losses._checks import check_choice, check_pair

__all__ = [
    "auction_assignment",
    "auction_assignment_cost",
    "hungarian_assignment",
    "BATCH_MODES",
    "DEFAULT_SOLVER",
    "SOLVERS",
]

SOLVERS = ("auction", "hungarian")
BATCH_MODES = ("auto", "map", "vmap")
#: The solver of ``auction_assignment_cost`` by default: the faster one measured on the CPU
#: (1024 points: 0.33-0.51 s a pair against 0.65-0.82 s for optax's Hungarian; design notes).
DEFAULT_SOLVER = "auction"
_COSTS = ("euclidean", "sqeuclidean")

# Epsilon-scaling: the first epsilon is _EPS_START times the spread of the costs (mean minus
# minimum), each phase divides it by _EPS_FACTOR (tuned on 1024- and 2048-point clouds, see the
# design notes: starting from the nearest-neighbour distance instead caused endless price wars
# on clouds with many coincident points). Bidding blocks are powers of _BLOCK_BASE.
_EPS_START = 0.3
_EPS_FACTOR = 6.0
_BLOCK_BASE = 4


def _first_min(values: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Smallest value, its first index, and the second smallest value along the last axis.

    Two plain reductions (min, then the first index equal to it) vectorise on the CPU, where a
    fused (value, index) ``argmin`` does not. The second smallest is ``inf`` for one column.
    """
    n = values.shape[-1]
    cols = jnp.arange(n, dtype=jnp.int32)
    first = jnp.min(values, axis=-1)
    index = jnp.min(jnp.where(values == first[..., None], cols, n), axis=-1)
    second = jnp.min(jnp.where(cols == index[..., None], jnp.inf, values), axis=-1)
    return first, index, second


def _bid(cost, price, person, owner, eps, active, block: int):
    """One Jacobi bidding round: the first ``block`` unassigned persons of each pair bid.

    Min-cost form: person ``i`` wants ``j1 = argmin_j (C_ij + p_j)`` and bids the price
    ``p_j1 + (w2 - w1) + eps = w2 - C_ij1 + eps`` (``w1 <= w2`` the two smallest values), at
    least one float step above ``p_j1``. Each object goes to its highest bidder (the first one
    on ties), whose previous owner becomes unassigned.
    """
    batch, n, _ = cost.shape
    rows_b = jnp.arange(batch)[:, None]
    ids = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (batch, n))
    bidder = (person < 0) & active[:, None]
    if block >= n:
        rows, valid, sub = ids, bidder, cost
    else:
        slot = jnp.cumsum(bidder, axis=1, dtype=jnp.int32) - 1
        slot = jnp.where(bidder & (slot < block), slot, block)
        rows = jnp.full((batch, block), n, jnp.int32).at[rows_b, slot].set(ids, mode="drop")
        valid = rows < n
        rows = jnp.minimum(rows, n - 1)
        sub = cost[rows_b, rows]  # [batch, block, n]
    values = sub + price[:, None, :]
    _, j1, w2 = _first_min(values)
    c1 = jnp.take_along_axis(sub, j1[..., None], axis=-1)[..., 0]
    p1 = jnp.take_along_axis(price, j1, axis=1)
    bid = jnp.maximum(w2 - c1 + eps[:, None], jnp.nextafter(p1, jnp.inf))
    target = jnp.where(valid, j1, n)  # n: dropped by the scatters
    best = jnp.full((batch, n), -jnp.inf, price.dtype).at[rows_b, target].max(bid, mode="drop")
    top = valid & (bid == jnp.take_along_axis(best, j1, axis=1))
    winner = (
        jnp.full((batch, n), n, jnp.int32).at[rows_b, jnp.where(top, j1, n)].min(rows, mode="drop")
    )
    sold = winner < n
    previous = jnp.where(sold & (owner >= 0), owner, n)
    person = person.at[rows_b, previous].set(-1, mode="drop")
    person = person.at[rows_b, winner].set(ids, mode="drop")
    owner = jnp.where(sold, winner, owner)
    price = jnp.where(sold, best, price)
    return price, person, owner


def _end_phase(cost, lower_bound, rtol, price, person, owner, eps, done, phases):
    """For pairs whose assignment is complete: certify it, or start the next epsilon phase.

    Certificate (weak duality): ``u_i = min_j (C_ij + p_j)``, then the double c-transform
    ``v_j = min_i (C_ij - u_i)``, ``u_i = min_j (C_ij - v_j)`` gives a feasible dual
    (``u_i + v_j <= C_ij``), so ``OPT >= sum u + sum v`` and the assignment's cost ``P`` is within
    ``gap = sum_i (C_i,phi(i) - u_i - v_phi(i))`` of the optimum (``<= N eps`` under
    eps-complementary slackness, and much smaller than the plain ``sum_i (C_i,phi(i) + p_phi(i)
    - min_j (C_ij + p_j))`` once the c-transform has tightened it). A pair is done when
    ``P - max(P - gap, lower_bound) <= rtol |P|``. Otherwise ``eps`` is divided by
    ``_EPS_FACTOR`` and the persons that violate the new eps-complementary slackness are
    unassigned (the others keep their object).
    """
    batch, n, _ = cost.shape
    complete = ~done & jnp.all(person >= 0, axis=1)
    obj = jnp.maximum(person, 0)
    values = cost + price[:, None, :]
    best = jnp.min(values, axis=2)
    slack = jnp.take_along_axis(values, obj[..., None], axis=2)[..., 0] - best
    assigned = jnp.take_along_axis(cost, obj[..., None], axis=2)[..., 0]
    v = jnp.min(cost - best[:, :, None], axis=1)
    u = jnp.min(cost - v[:, None, :], axis=2)
    # Summed edge by edge (small terms) rather than as P - (sum u + sum v) (large ones).
    gap = jnp.sum(assigned - u - jnp.take_along_axis(v, obj, axis=1), axis=1)
    primal = jnp.sum(assigned, axis=1)
    excess = primal - jnp.maximum(primal - gap, lower_bound)
    certified = excess <= rtol * jnp.abs(primal)
    done = done | (complete & certified)
    rescale = complete & ~certified
    eps = jnp.where(rescale, eps / _EPS_FACTOR, eps)
    drop = rescale[:, None] & (slack > eps[:, None])
    owner = owner.at[jnp.arange(batch)[:, None], jnp.where(drop, person, n)].set(-1, mode="drop")
    person = jnp.where(drop, -1, person)
    # Prices matter up to a constant: keep them near 0, where float32 resolves eps best.
    price = jnp.where(rescale[:, None], price - jnp.min(price, axis=1, keepdims=True), price)
    return price, person, owner, eps, done, phases + rescale


def _auction(cost: jax.Array, rtol: jax.Array, max_iterations: jax.Array):
    """Batched auction on ``[B, n, n]`` finite costs, ``n >= 2``, ``rtol`` ``[B]``.

    All pairs bid in the same rounds (one ``while_loop``). Returns ``(person [B, n] (-1:
    unassigned), converged [B], info)``, ``info`` holding ``[B]`` arrays: bidding rounds until
    the pair was done, epsilon phases, final epsilon.
    """
    batch, n, _ = cost.shape
    row_min = jnp.min(cost, axis=2)
    lower_bound = jnp.maximum(jnp.sum(row_min, axis=1), jnp.sum(jnp.min(cost, axis=1), axis=1))
    spread = jnp.mean(cost, axis=(1, 2)) - jnp.min(row_min, axis=1)
    eps = jnp.where(spread > 0, _EPS_START * spread, 1.0)  # all costs equal: any perm is optimal
    zeros = jnp.zeros((batch,), jnp.int32)
    state = (
        jnp.zeros((batch, n), cost.dtype),  # price
        jnp.full((batch, n), -1, jnp.int32),  # person -> object
        jnp.full((batch, n), -1, jnp.int32),  # object -> person
        eps,
        jnp.zeros((batch,), bool),  # done
        jnp.int32(0),  # rounds so far (the loop bound)
        zeros,  # phases per pair
        zeros,  # rounds per pair
    )
    # A round gathers the rows of the first k unassigned persons, k the smallest of 1, 4, 16, ...
    # and n that holds every bidder of every pair: O(k n) work, not O(n^2), in the long tail of
    # auction chains where one or two persons bid at a time.
    blocks = tuple(_BLOCK_BASE**k for k in range(n.bit_length()) if _BLOCK_BASE**k < n) + (n,)
    branches = [functools.partial(_bid, block=b) for b in blocks]
    limits = jnp.array(blocks[:-1], jnp.int32)
    end_phase = functools.partial(_end_phase, cost, lower_bound, rtol)

    def cond(state):
        return (state[5] < max_iterations) & ~jnp.all(state[4])

    def body(state):
        price, person, owner, eps, done, it, phases, rounds = state
        complete = ~done & jnp.all(person >= 0, axis=1)
        price, person, owner, eps, done, phases = jax.lax.cond(
            jnp.any(complete),
            lambda args: end_phase(*args),
            lambda args: args,
            (price, person, owner, eps, done, phases),
        )
        bidders = jnp.max(jnp.sum((person < 0) & ~done[:, None], axis=1))
        price, person, owner = jax.lax.switch(
            jnp.sum(bidders > limits), branches, cost, price, person, owner, eps, ~done
        )
        return price, person, owner, eps, done, it + 1, phases, rounds + ~done

    price, person, owner, eps, done, it, phases, rounds = jax.lax.while_loop(cond, body, state)
    return person, done, {"iterations": rounds, "phases": phases, "epsilon": eps}


def _complete_permutation(person: jax.Array) -> jax.Array:
    """Give the unassigned rows (``-1``) of ``[B, n]`` the unused columns: a valid permutation."""
    batch, n = person.shape
    rows_b = jnp.arange(batch)[:, None]
    used = (
        jnp.zeros((batch, n), bool)
        .at[rows_b, jnp.where(person >= 0, person, n)]
        .set(True, mode="drop")
    )
    free = jnp.argsort(used, axis=1, stable=True).astype(jnp.int32)  # unused columns first
    rank = jnp.cumsum(person < 0, axis=1, dtype=jnp.int32) - 1
    return jnp.where(person < 0, jnp.take_along_axis(free, jnp.maximum(rank, 0), axis=1), person)


def _auction_batch(cost, rtol, max_iterations, sequential: bool):
    """``(perm, converged, info)`` for ``[B, n, n]``: pairs one by one (``lax.map``) or at once."""
    if not sequential:
        person, converged, info = _auction(cost, rtol, max_iterations)
    else:

        def one(args):
            out = _auction(args[0][None], args[1][None], max_iterations)
            return jax.tree.map(lambda a: a[0], out)

        person, converged, info = jax.lax.map(one, (cost, rtol))
    return _complete_permutation(person), converged, info


def _hungarian_batch(cost, rtol, max_iterations, sequential: bool):
    """optax's Hungarian algorithm per pair: ``(perm, converged, info)`` like the auction's."""
    del rtol, max_iterations  # exact; its loops are bounded by n steps per row
    batch, n, _ = cost.shape

    def one(matrix):
        rows, cols = optax.assignment.hungarian_algorithm(matrix)
        return jnp.zeros((n,), jnp.int32).at[rows].set(cols.astype(jnp.int32))

    perm = jax.lax.map(one, cost) if sequential else jax.vmap(one)(cost)
    zeros = jnp.zeros((batch,), jnp.int32)
    info = {"iterations": zeros, "phases": zeros, "epsilon": jnp.zeros((batch,), cost.dtype)}
    return perm, jnp.ones((batch,), bool), info


@functools.cache
def _solver(solver: str, sequential: bool):
    """Jitted ``(cost [B, n, n], rtol [B], max_iterations) -> (perm, converged, info)``.

    ``vmap`` of it folds the mapped axis into the batch axis (``custom_vmap``), so the solver
    keeps its batch mode and its branches stay branches (under plain ``vmap``, ``lax.cond`` and
    ``lax.switch`` would evaluate every branch at every bidding round).
    """
    impl = _auction_batch if solver == "auction" else _hungarian_batch
    impl = jax.jit(functools.partial(impl, sequential=sequential))

    @jax.custom_batching.custom_vmap
    def solve(cost, rtol, max_iterations):
        return impl(cost, rtol, max_iterations)

    @solve.def_vmap
    def solve_vmap(axis_size, in_batched, cost, rtol, max_iterations):
        cost = cost if in_batched[0] else jnp.broadcast_to(cost, (axis_size,) + cost.shape)
        rtol = rtol if in_batched[1] else jnp.broadcast_to(rtol, (axis_size,) + rtol.shape)
        max_iterations = jnp.max(max_iterations) if in_batched[2] else max_iterations
        lead = cost.shape[:2]
        out = solve(cost.reshape((-1,) + cost.shape[2:]), rtol.reshape(-1), max_iterations)
        out = jax.tree.map(lambda a: a.reshape(lead + a.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return solve


def _assign(cost_matrix, solver: str, rtol, max_iterations, batch_mode: str):
    """Shared body of the public solvers: checks, non-finite matrices, leading dimensions."""
    check_choice("batch_mode", batch_mode, BATCH_MODES)
    cost = jnp.asarray(cost_matrix)
    if cost.ndim < 2 or cost.shape[-1] != cost.shape[-2]:
        raise ValueError(f"cost_matrix must have shape [..., N, N], got shape {tuple(cost.shape)}")
    if not jnp.issubdtype(cost.dtype, jnp.floating):
        raise ValueError(f"cost_matrix must be a floating point array, got dtype {cost.dtype}")
    cost = cost.astype(jnp.promote_types(cost.dtype, jnp.float32))
    lead, n = cost.shape[:-2], cost.shape[-1]
    batch = math.prod(lead)
    cost = cost.reshape((batch, n, n))
    finite = jnp.all(jnp.isfinite(cost), axis=(1, 2))
    zeros = jnp.zeros((batch,), jnp.int32)
    if n <= 1 or batch == 0:
        perm, converged = jnp.zeros((batch, n), jnp.int32), finite
        info = {"iterations": zeros, "phases": zeros, "epsilon": jnp.zeros((batch,), cost.dtype)}
    else:
        if batch_mode == "auto":
            batch_mode = "map" if jax.default_backend() == "cpu" else "vmap"
        max_iterations = 100 * n + 10_000 if max_iterations is None else max_iterations
        perm, converged, info = _solver(solver, batch_mode == "map")(
            jnp.where(finite[:, None, None], cost, 0.0),  # solved as zeros, flagged below
            jnp.full((batch,), rtol, cost.dtype),
            jnp.asarray(max_iterations, jnp.int32),
        )
        converged = converged & finite
    info = {key: value.reshape(lead) for key, value in info.items()}
    return perm.reshape(lead + (n,)), converged.reshape(lead), info


def auction_assignment(
    cost_matrix: ArrayLike,
    *,
    rtol: float = 1e-6,
    max_iterations: int | None = None,
    batch_mode: str = "auto",
    return_info: bool = False,
):
    """Optimal assignment of rows to columns of square cost matrices by the auction algorithm.

    Minimises ``sum_i C[..., i, perm[..., i]]`` over permutations: forward auction with
    epsilon-scaling (module docstring), stopped when a duality gap certifies that the cost of
    the assignment exceeds the optimum by at most ``rtol * |cost|`` (or equals a simple lower
    bound, e.g. 0 for identical clouds), or after ``max_iterations`` bidding rounds.

    Args:
      cost_matrix: ``[..., N, N]`` floating costs (any sign; computed in at least float32).
      rtol: certified relative suboptimality at which a matrix is done. Float32 resolves the
        certificate to ~1e-7 of the cost; 1e-6 (the default) was always reached (design notes).
      max_iterations: bound on the bidding rounds of each matrix (``lax.while_loop``); ``None``:
        ``100 N + 10000``, >= 4x the most measured.
      batch_mode: ``"map"`` (``lax.map``: matrices one after the other, each with its own loop;
        fastest on the CPU), ``"vmap"`` (all matrices bid in the same rounds, for accelerators;
        the loop runs until the slowest is done) or ``"auto"`` (``"map"`` on the CPU backend).
      return_info: also return ``{"iterations", "phases", "epsilon"}``, ``[...]`` arrays: the
        bidding rounds, epsilon phases and final epsilon of each matrix.

    Returns:
      ``(perm, converged)``: ``perm`` ``[..., N]`` int32 (``perm[i]`` the column of row ``i``;
      always a permutation), ``converged`` ``[...]`` bool: False when the bound was hit before
      the certificate (``perm`` is then not known to be optimal) or the matrix has a non-finite
      entry. With ``return_info``, ``(perm, converged, info)``.

    Raises:
      ValueError: ``cost_matrix`` not ``[..., N, N]`` floating, unknown ``batch_mode``.
    """
    perm, converged, info = _assign(cost_matrix, "auction", rtol, max_iterations, batch_mode)
    return (perm, converged, info) if return_info else (perm, converged)


def hungarian_assignment(
    cost_matrix: ArrayLike, *, batch_mode: str = "auto"
) -> tuple[jax.Array, jax.Array]:
    """Optimal assignment by optax's Hungarian algorithm (exact, no tolerance), batched.

    Same arguments and ``(perm, converged)`` as :func:`auction_assignment`; its loops are bounded
    by ``N`` steps per row, so ``converged`` is False only for a matrix with a non-finite entry.
    """
    perm, converged, _ = _assign(cost_matrix, "hungarian", 0.0, None, batch_mode)
    return perm, converged


def _pair_cost(x: jax.Array, y: jax.Array, cost: str) -> jax.Array:
    """``[B, N, M]`` distances (``cost="euclidean"``) or squared distances, by differences."""
    squared = jnp.zeros(x.shape[:2] + (y.shape[1],), x.dtype)
    for k in range(x.shape[2]):
        squared = squared + (x[:, :, k, None] - y[:, None, :, k]) ** 2
    return jnp.sqrt(squared) if cost == "euclidean" else squared


def auction_assignment_cost(
    x: ArrayLike,
    y: ArrayLike,
    *,
    cost: str = "euclidean",
    solver: str = DEFAULT_SOLVER,
    rtol: float = 1e-6,
    max_iterations: int | None = None,
    batch_mode: str = "auto",
    return_permutation: bool = False,
):
    """Exact bijection cost per point, ``min_phi (1/N) sum_i C(x_i, y_phi(i))``, for each pair.

    ``C`` is ``||x_i - y_j||`` (``cost="euclidean"``, paper eq. 5: the mean distance between
    matched points) or ``||x_i - y_j||^2`` (``"sqeuclidean"``, a different matching). Not
    multiplied by 100. The matching is solved in JAX under ``stop_gradient`` and the value is
    recomputed from the matched points, so the gradient is that of the fixed optimal matching
    (envelope theorem), ``0`` for coincident points. Runs under ``jit`` and ``vmap`` (which
    folds into the batch), with no host callback.

    Args:
      x: ``[B, N, D]`` floating point clouds.
      y: ``[B, N, D]`` floating point clouds (same shape).
      cost: ``"euclidean"`` or ``"sqeuclidean"``.
      solver: ``"auction"`` (certified to ``rtol``) or ``"hungarian"`` (optax; exact).
      rtol: auction only: certified relative suboptimality (default 1e-6).
      max_iterations: auction only: bound on each pair's bidding rounds (``None``:
        ``100 N + 10000``).
      batch_mode: ``"auto"``, ``"map"`` or ``"vmap"``, as in :func:`auction_assignment`.
      return_permutation: also return ``perm`` ``[B, N]`` int32 (``x[b, i]`` is matched to
        ``y[b, perm[b, i]]``) and ``converged`` ``[B]`` bool.

    Returns:
      ``[B]`` costs in the promoted dtype (at least float32): NaN for a pair with a non-finite
      point or whose solver hit ``max_iterations`` (``converged`` False); ``0`` when ``N == 0``.
      With ``return_permutation``: ``(costs, perm, converged)``.

    Raises:
      ValueError: bad shapes or dtypes, ``x.shape != y.shape``, unknown ``cost``, ``solver`` or
        ``batch_mode``.
    """
    x, y = check_pair(x, y)
    check_choice("cost", cost, _COSTS)
    check_choice("solver", solver, SOLVERS)
    if x.shape != y.shape:
        raise ValueError(
            "auction_assignment_cost needs clouds of equal size (a bijection): x and y must have "
            f"the same shape [B, N, D], got x shape {tuple(x.shape)} and y shape {tuple(y.shape)}"
        )
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    finite = jnp.all(jnp.isfinite(x), axis=(1, 2)) & jnp.all(jnp.isfinite(y), axis=(1, 2))
    x = jnp.where(finite[:, None, None], x, 0.0)
    y = jnp.where(finite[:, None, None], y, 0.0)
    matrix = _pair_cost(jax.lax.stop_gradient(x), jax.lax.stop_gradient(y), cost)
    perm, converged, _ = _assign(matrix, solver, rtol, max_iterations, batch_mode)
    converged = converged & finite
    matched = jnp.take_along_axis(y, perm[..., None], axis=1)  # [B, N, D]
    matched_cost = jnp.sum((x - matched) ** 2, axis=-1)
    if cost == "euclidean":
        # sqrt with a zero (not NaN) gradient at coincident points.
        positive = matched_cost > 0
        matched_cost = jnp.where(positive, jnp.sqrt(jnp.where(positive, matched_cost, 1.0)), 0.0)
    if x.shape[1] == 0:
        values = jnp.zeros((x.shape[0],), dtype)
    else:
        values = jnp.where(converged, jnp.mean(matched_cost, axis=1), jnp.nan)
    return (values, perm, converged) if return_permutation else values
