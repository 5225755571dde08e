"""The annealed, stabilised Sinkhorn solver behind ``emd``, and its schedule.

:func:`solve` finds entropic dual potentials ``f, g`` for one pair (a dense ``[n, m]`` cost
matrix and weights ``a``, ``b``): eps annealing scaled by the data, absorption into log-domain
potentials (Schmitzer 2019), kernel-mode ott-jax iterations with safeguarded over-relaxation
(Thibault et al. 2021), linear extrapolation of the potentials between stages, and a fixed
iteration budget. The plan is ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``;
:func:`corrected_cost` is its marginal-corrected transport cost ``<P, C>``.
:class:`SinkhornSchedule` holds every static setting (stages, relaxation, floors).

References: Cuturi, NeurIPS 2013; Schmitzer, SIAM J. Sci. Comput. 2019; Thibault, Chizat, Dossal,
Papadakis, Algorithms 2021. Design notes and measurements: docs/design.md.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from recon_jax.losses._ott import kernel_stage

__all__ = [
    "SinkhornSchedule",
    "SinkhornSolution",
    "DEFAULT_SCHEDULES",
    "default_schedule",
    "axis_lower_bound",
    "solve",
    "plan",
    "corrected_cost",
]

Stages = tuple[tuple[float, int], ...]


def _check_stages(name: str, stages, allow_empty: bool) -> Stages:
    """A sequence of ``(positive multiplier, positive int iterations)`` pairs, as a tuple."""
    try:
        result = tuple((float(mult), iters) for mult, iters in stages)
    except (TypeError, ValueError):
        result = None
    if (
        result is None
        or (not result and not allow_empty)
        or not all(
            np.isfinite(mult)
            and mult > 0
            and isinstance(iters, (int, np.integer))
            and not isinstance(iters, bool)
            and iters >= 1
            for mult, iters in result
        )
    ):
        need = "a" if allow_empty else "a non-empty"
        raise ValueError(
            f"{name} must be {need} sequence of (multiplier > 0, iterations >= 1 int) pairs, "
            f"got {stages!r}"
        )
    return tuple((mult, int(iters)) for mult, iters in result)


def _check_fraction(name: str, value, low: float, high: float, *, closed_high: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= value
    ok = ok and (value <= high if closed_high else value < high)
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class SinkhornSchedule:
    """Every static setting of the Sinkhorn solver (hashable: a ``jit`` static argument).

    Attributes:
      coarse_stages: ``(multiplier, iterations)`` per coarse stage, ``eps = multiplier * s``,
        with ``s`` a lower bound of the transport cost: the larger of the nearest-neighbour
        bound ``max(mean_i min_j C_ij, mean_j min_i C_ij)`` and the caller's (``emd`` passes
        :func:`axis_lower_bound`). Non-empty.
      fine_stages: ``(multiplier, iterations)`` per fine stage, ``eps = multiplier * V``, with
        ``V`` the transport cost of the plan after the coarse stages (~ the EMD). May be empty.
      relaxation: target over-relaxation weight in ``[1, 2)`` (1: plain Sinkhorn); ``None``: the
        default of the cost (1.9 Euclidean, 1.95 squared).
      eps_floor: ``eps`` never goes below this fraction of the mean cost (float32 resolves the
        reduced cost to ~1e-7 of the cost scale).
    """

    coarse_stages: Stages
    fine_stages: Stages = ()
    relaxation: float | None = None
    eps_floor: float = 1e-5

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "coarse_stages", _check_stages("coarse_stages", self.coarse_stages, False))
        set_(self, "fine_stages", _check_stages("fine_stages", self.fine_stages, True))
        if self.relaxation is not None:
            set_(self, "relaxation", _check_fraction("relaxation", self.relaxation, 1.0, 2.0,
                                                     closed_high=False))
        eps_floor = _check_fraction("eps_floor", self.eps_floor, 0.0, 1.0, closed_high=True)
        if eps_floor <= 0:
            raise ValueError(f"eps_floor must be > 0, got {self.eps_floor!r}")
        set_(self, "eps_floor", eps_floor)

    @property
    def iterations(self) -> int:
        """Total kernel iterations of one solve."""
        return sum(iters for _, iters in self.coarse_stages + self.fine_stages)

    def for_cost(self, cost: str) -> SinkhornSchedule:
        """This schedule with ``relaxation`` filled in with ``cost``'s default if ``None``."""
        if self.relaxation is not None:
            return self
        return dataclasses.replace(self, relaxation=_DEFAULT_RELAXATION[cost])


_DEFAULT_RELAXATION = {"euclidean": 1.9, "sqeuclidean": 1.95}

#: The default schedule per cost (``emd(..., schedule=None)``). Tuned on 2048-point clouds.
DEFAULT_SCHEDULES: dict[str, SinkhornSchedule] = {
    "euclidean": SinkhornSchedule(
        coarse_stages=((3.0, 10), (1.0, 40), (0.3, 50)),
        fine_stages=((0.02, 20), (0.004, 20), (0.001, 30)),
        relaxation=1.9,
    ),
    # The squared cost spans a much wider range (s is ~0.2-0.3 of the EMD against ~0.5 for the
    # Euclidean cost, and the diameter^2 is ~10^3 s): the annealing starts much higher.
    "sqeuclidean": SinkhornSchedule(
        coarse_stages=(
            (300.0, 5), (100.0, 5), (30.0, 5), (10.0, 10), (3.0, 20), (1.0, 40), (0.3, 50),
        ),
        fine_stages=((0.02, 20), (0.004, 20), (0.001, 30)),
        relaxation=1.95,
    ),
}


def default_schedule(cost: str) -> SinkhornSchedule:
    """The default schedule of ``cost`` (``"euclidean"`` or ``"sqeuclidean"``)."""
    if cost not in DEFAULT_SCHEDULES:
        raise ValueError(f"cost must be one of {tuple(DEFAULT_SCHEDULES)}, got {cost!r}")
    return DEFAULT_SCHEDULES[cost]


class SinkhornSolution(NamedTuple):
    """Output of :func:`solve` for one pair."""

    f: jax.Array  #: ``[n]`` potential, 0 where ``a == 0``
    g: jax.Array  #: ``[m]`` potential, 0 where ``b == 0``
    eps: jax.Array  #: final regularisation (scalar)
    lower_bound: jax.Array  #: the lower bound of the transport cost that scaled the coarse stages


def plan(
    cost_matrix: jax.Array,
    f: jax.Array,
    g: jax.Array,
    eps: jax.Array,
    a: jax.Array,
    b: jax.Array,
    valid: jax.Array,
) -> jax.Array:
    """``[n, m]`` plan ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, 0 outside ``valid``."""
    exponent = jnp.where(valid, (f[:, None] + g[None, :] - cost_matrix) / eps, -jnp.inf)
    return a[:, None] * b[None, :] * jnp.exp(exponent)


def corrected_cost(
    plan_matrix: jax.Array,
    cost_matrix: jax.Array,
    f: jax.Array,
    g: jax.Array,
    a: jax.Array,
    b: jax.Array,
) -> jax.Array:
    """``<P, C> + <f, a - P 1> + <g, b - P^T 1>``: the transport cost, marginal-corrected.

    The Lagrangian of the transport LP at ``(P, f, g)``: equal to ``<P, C>`` for exact marginals
    and correct to first order otherwise (the potentials are the sensitivity of the optimal cost
    to the marginals). Its derivative in ``C`` with ``P, f, g`` fixed is still ``P``.
    """
    rows = jnp.sum(plan_matrix, axis=1)
    cols = jnp.sum(plan_matrix, axis=0)
    return (
        jnp.sum(plan_matrix * cost_matrix) + jnp.sum(f * (a - rows)) + jnp.sum(g * (b - cols))
    )


def _c_transform(
    cost_matrix: jax.Array, potential: jax.Array, support: jax.Array, valid: jax.Array, axis: int
) -> jax.Array:
    """Hard c-transform: ``axis=0``: ``g_j = min_i (C_ij - f_i)``; ``axis=1``: ``f_i = min_j
    (C_ij - g_j)``, over ``valid`` entries; ``0`` outside ``support`` (points without mass)."""
    other = potential[:, None] if axis == 0 else potential[None, :]
    result = jnp.min(jnp.where(valid, cost_matrix - other, jnp.inf), axis=axis)
    return jnp.where(support, result, 0.0)


def _stage(
    cost_matrix: jax.Array,
    f: jax.Array,
    g: jax.Array,
    eps: jax.Array,
    a: jax.Array,
    b: jax.Array,
    valid: jax.Array,
    iterations: int,
    relaxation: float,
) -> tuple[jax.Array, jax.Array]:
    """One eps stage, potentials in, potentials out (0 at points without mass).

    1. Double c-transform (``g`` then ``f``): the reduced cost ``C - f - g`` is >= 0 with a 0 in
       every row and column, so the kernel ``exp((f + g - C) / eps)`` lies in ``[0, 1]`` with a
       1 in every row and column: kernel mode can neither overflow nor lose a row to underflow.
    2. ``iterations`` kernel-mode iterations on that kernel (ott-jax, ``_ott.kernel_stage``).
    3. Absorption: ``f += eps log(u / a)``, ``g += eps log(v / b)``.
    """
    g = _c_transform(cost_matrix, f, b > 0, valid, axis=0)
    f = _c_transform(cost_matrix, g, a > 0, valid, axis=1)
    kernel = jnp.exp(jnp.where(valid, (f[:, None] + g[None, :] - cost_matrix) / eps, -jnp.inf))
    log_u, log_v = kernel_stage(kernel, a, b, eps, iterations, relaxation)  # eps log u, eps log v
    f = jnp.where(a > 0, f + log_u - eps * jnp.log(jnp.where(a > 0, a, 1.0)), 0.0)
    g = jnp.where(b > 0, g + log_v - eps * jnp.log(jnp.where(b > 0, b, 1.0)), 0.0)
    return f, g


def axis_lower_bound(
    x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array, cost: str
) -> jax.Array:
    """A lower bound of the transport cost from 1-D transport along each coordinate axis.

    Projecting onto a unit axis shortens every distance, so the exact 1-D transport cost of the
    projections (sorted quantile matching) is below the full one: the maximum over the axes for
    the Euclidean cost, and their sum for the squared cost (which is a sum over coordinates).
    Unlike the nearest-neighbour bound it sees multiplicities: for ``x = [p, p, q]`` and
    ``y = [p, q, q]`` it is exact (on the axis of ``q - p``) where the other bound is 0.

    Args:
      x: ``[n, D]`` points with weights ``a`` ``[n]`` (sum 1; 0: ignored); ``y``: ``[m, D]``, ``b``.
      cost: ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
      The bound (scalar, >= 0).
    """
    per_axis = []
    for k in range(x.shape[1]):
        # Points without mass sort last (their cumulative weight never grows).
        xs_key = jnp.where(a > 0, x[:, k], jnp.inf)
        ys_key = jnp.where(b > 0, y[:, k], jnp.inf)
        x_order, y_order = jnp.argsort(xs_key), jnp.argsort(ys_key)
        xs, ys = x[x_order, k], y[y_order, k]
        fx, fy = jnp.cumsum(a[x_order]), jnp.cumsum(b[y_order])
        # The quantile functions are constant between consecutive cumulative weights.
        breaks = jnp.sort(jnp.concatenate([jnp.zeros((1,), x.dtype), fx, fy]))
        width = jnp.maximum(jnp.diff(breaks), 0.0)
        middle = 0.5 * (breaks[1:] + breaks[:-1])
        last_x = jnp.maximum(jnp.sum(a > 0) - 1, 0)
        last_y = jnp.maximum(jnp.sum(b > 0) - 1, 0)
        i = jnp.minimum(jnp.searchsorted(fx, middle), last_x)
        j = jnp.minimum(jnp.searchsorted(fy, middle), last_y)
        gap = jnp.abs(xs[i] - ys[j])
        per_axis.append(jnp.sum(width * (gap if cost == "euclidean" else gap * gap)))
    per_axis = jnp.stack(per_axis)
    return jnp.max(per_axis) if cost == "euclidean" else jnp.sum(per_axis)


def solve(
    cost_matrix: jax.Array,
    a: jax.Array,
    b: jax.Array,
    valid: jax.Array,
    schedule: SinkhornSchedule,
    *,
    lower_bound: jax.Array | float = 0.0,
) -> SinkhornSolution:
    """Annealed, absorbed, extrapolated Sinkhorn for one pair.

    Args:
      cost_matrix: ``[n, m]`` finite cost (no gradient flows through the solver).
      a: ``[n]`` weights of the rows (sum 1; 0 for points without mass).
      b: ``[m]`` weights of the columns (sum 1).
      valid: ``[n, m]`` bool, ``a_i > 0 and b_j > 0``.
      schedule: the stages; its ``relaxation`` must be set (:meth:`SinkhornSchedule.for_cost`).
      lower_bound: a lower bound of the transport cost known to the caller (e.g.
        :func:`axis_lower_bound`); the coarse scale is the larger of it and the
        nearest-neighbour bound.

    Returns:
      The final potentials, ``eps`` and the lower bound used as the coarse scale.
    """
    if schedule.relaxation is None:
        raise ValueError("schedule.relaxation is None: call schedule.for_cost(cost) first")
    masked = jnp.where(valid, cost_matrix, jnp.inf)
    row_min = jnp.where(a > 0, jnp.min(masked, axis=1), 0.0)
    col_min = jnp.where(b > 0, jnp.min(masked, axis=0), 0.0)
    lower_bound = jnp.maximum(
        jnp.maximum(jnp.sum(a * row_min), jnp.sum(b * col_min)), lower_bound
    )
    mean_cost = jnp.sum(a * jnp.sum(jnp.where(valid, cost_matrix, 0.0) * b[None, :], axis=1))
    eps_floor = jnp.maximum(schedule.eps_floor * mean_cost, jnp.finfo(cost_matrix.dtype).tiny)

    f = jnp.zeros_like(a)
    g = jnp.zeros_like(b)
    history: list[tuple[jax.Array, jax.Array, jax.Array]] = []
    scale = lower_bound
    eps = eps_floor
    coarse = schedule.coarse_stages
    for k, (multiplier, iterations) in enumerate(coarse + schedule.fine_stages):
        if k == len(coarse):
            # Fine stages are scaled by the transport cost of the coarse plan (~ the EMD).
            scale = jnp.sum(plan(cost_matrix, f, g, eps, a, b, valid) * cost_matrix)
        eps = jnp.maximum(multiplier * scale, eps_floor)
        if len(history) >= 2:
            # Predictor: extrapolate the potentials linearly in eps from the last two stages.
            (eps1, f1, g1), (eps2, f2, g2) = history[-2], history[-1]
            distinct = eps2 != eps1
            step = jnp.where(distinct, (eps - eps2) / jnp.where(distinct, eps2 - eps1, 1.0), 0.0)
            f = f2 + step * (f2 - f1)
            g = g2 + step * (g2 - g1)
        f, g = _stage(cost_matrix, f, g, eps, a, b, valid, iterations, schedule.relaxation)
        history.append((eps, f, g))
    return SinkhornSolution(f, g, eps, lower_bound)
