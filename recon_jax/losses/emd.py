"""Earth mover's distance: entropic OT (Sinkhorn through ott-jax) and the exact bijection.

Paper eq. 5 (Kim & Lee 2023) is the bijection cost between two equal-size clouds::

    EMD(S1, S2) = min_{phi: S1 -> S2 bijective} sum_{x in S1} ||x - phi(x)||_2

Both functions here return it **per point** (divided by the number of points), so that for equal
sizes and the Euclidean cost the value is the mean distance between matched points. Both also
offer the squared Euclidean cost (``cost="sqeuclidean"``).

``exact_emd``: the exact bijection
----------------------------------
The optimal permutation is found on the host by SciPy's ``linear_sum_assignment`` (float64 cost
matrix) through ``jax.pure_callback``, so it works under ``jit`` and ``vmap``. The value is then
recomputed in JAX by gathering the matched points, which also gives the envelope-theorem gradient
(the permutation held fixed), like the nearest-neighbour gather of Chamfer. It is meant for
evaluation: one pair of 2048 points takes 0.3-1.4 s of host time.

``emd``: entropic optimal transport
-----------------------------------
The bijection problem is the linear program ``min_P <P, C>`` over couplings ``P`` of the uniform
weights ``a = 1/n``, ``b = 1/m`` (Birkhoff: for ``n == m`` its optimum is a permutation divided
by ``n``). ``emd`` solves the entropy-regularised problem (Cuturi 2013) with Sinkhorn iterations
and returns the **transport cost** of the plan ``P`` it finds (``<P, C>``, marginal-corrected,
see 6.), *not* ott-jax's ``reg_ot_cost``, which adds ``eps * KL(P | a b^T)`` and is 2-140% off
the transport cost at practical ``eps`` (SPEC section 4). The entropic bias of ``<P, C>`` is
roughly ``0.2-0.8 * eps / EMD`` (relative), so ``eps`` has to be a small fraction of the EMD of
the pair itself, not of the spread of the cost matrix, and plain Sinkhorn needs hundreds of
log-domain iterations there (ott-jax's best settings under 1%: 2.4-4 s a pair on a 2-core CPU).
The solver below reaches ~0.03% (mean) in 170 kernel-mode iterations:

1. **Scales from the data.** ``s = max(mean_i min_j C_ij, mean_j min_i C_ij)`` is a lower bound
   of the EMD (every point pays at least its nearest-neighbour cost). The coarse stages use
   ``eps = c * s``; after them the transport cost ``V`` of the coarse plan (2-20% above the EMD
   on surface clouds) scales the fine stages, ``eps = c * V``. The result is invariant to the
   scale and position of the clouds, and the final ``eps`` (``0.001 V`` by default) tracks the
   EMD of each pair.
2. **Absorption** (Schmitzer 2019, stabilised scaling). Potentials ``f, g`` live in the log
   domain, the plan being ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``. A stage first takes
   the double c-transform (``g_j = min_i (C_ij - f_i)``, then ``f_i = min_j (C_ij - g_j)``), so
   that the reduced cost ``C - f - g`` is >= 0 with a zero in every row and every column; its
   kernel ``K = exp(-(C - f - g) / eps)`` lies in ``[0, 1]`` with a 1 in every row and column,
   and cannot overflow nor lose a row to underflow at any ``eps``. The stage then runs ott-jax
   ``Sinkhorn(lse_mode=False)`` on ``K`` (kernel mode: two dense matrix-vector products per
   iteration, several times cheaper than a log-sum-exp over ``n * m`` entries), and absorbs its
   scalings: ``f += eps log(u / a)``, ``g += eps log(v / b)``.
3. **Predictor** (continuation in ``eps``). The optimal potentials move smoothly with ``eps``;
   each stage starts from the linear extrapolation (in ``eps``) of the two previous stages'
   potentials, which removes most of the slow, global error that a change of ``eps`` creates.
4. **Safeguarded over-relaxation** (Thibault et al. 2021). Each half-step uses the largest
   weight among ``relaxation`` (1.9; 1.95 for the squared cost), ``(1 + relaxation) / 2`` and 1
   that increases the dual objective. A fixed weight of 1.9 speeds up the slow modes several
   times but diverged on a density-mismatch pair; the safeguard costs a few ``O(n)`` operations
   per iteration. The last iteration of a stage is plain, so the rows of the final plan are
   exact.
5. **Fixed budget.** Every stage runs exactly its number of iterations (``min_iterations ==
   max_iterations == inner_iterations``: ott-jax runs one ``lax.scan``, with no convergence
   test), so the cost is deterministic and a batch never waits on its slowest pair.
6. **Marginal correction.** After a fixed budget the column marginals are ~1e-3 off (L1), which
   biases ``<P, C>`` (mostly low: an infeasible plan can beat every feasible one). The value
   returned is ``<P, C> + <f, a - P 1> + <g, b - P^T 1>``, the Lagrangian of the transport LP at
   ``(P, f, g)``: equal to ``<P, C>`` for exact marginals, and correct to first order otherwise
   (the potentials are the sensitivity of the optimal cost to the marginals). Rounding ``P``
   onto the exact marginals instead (Altschuler et al. 2017) spreads the missing mass at the
   average cost: measured on 30 surface pairs, +2.5-2.8% mean error against 0.02% for this
   correction.

Measured accuracy (defaults, 2048 points, float32, error against the exact assignment): 88 pairs
of clouds with bounding-box diagonal 1 -- 52 pairs of ShapeNet-like multi-part objects from
``recon_jax.data.synthetic`` (the pairs of ``experiments/bench_losses.py``: another object of the
category, or an independent resample of the same object), and 36 pairs of sphere, ellipsoid, box,
cylinder and torus surfaces (independent resamples, noisy copies, smooth deformations, different
shapes, translated copies, a density mismatch, a near-identical copy): mean 0.03%, worst 0.40%
(uncorrected ``<P, C>``: mean 0.40%, worst 4.9%). Squared cost, 73 pairs: mean 0.03%, worst
0.24%. The hardest pairs are resamples of long thin objects, where mass has to travel along the
object and Sinkhorn converges slowly (that is what the iterations of the coarse stages are for).
Time (2-core CPU shared with other jobs, so noisy; one pair, jitted): forward + backward
190-360 ms Euclidean, ~215 ms squared, against 370-400 ms for POT's exact ``ot.emd2`` timed
alongside (forward alone: from ~175 ms). On the CPU, ``lax.map`` over pairs was ~5% faster than
``vmap`` (4 pairs).

Gradient: envelope theorem (Danskin). The value is differentiated with the plan and the
potentials held fixed: ``d/dx_i = sum_j P_ij dC_ij/dx_i``, i.e. ``sum_j P_ij (x_i - y_j) /
||x_i - y_j||`` for the Euclidean cost, with ``0`` (not NaN) for coincident points, and
``2 sum_j P_ij (x_i - y_j)`` for the squared cost. It is a ``custom_jvp`` evaluated once from the
final potentials: the solver runs under ``stop_gradient`` and is never differentiated or
unrolled, and reverse mode keeps only ``[n, D] + [m, D]`` residuals per pair. ``jax.grad`` and
``jax.jvp`` both work; higher derivatives are not supported.

Padding follows PyTorch3D: point ``i`` of cloud ``b`` is valid when ``i < lengths[b]``. Padded
points are zeroed before anything else (their content, even NaN, never matters), get weight 0 and
exactly zero gradient. A pair where either cloud is empty contributes exactly 0.

References: M. Cuturi, "Sinkhorn distances: lightspeed computation of optimal transport",
NeurIPS 2013. B. Schmitzer, "Stabilized sparse scaling algorithms for entropy regularized
transport problems", SIAM J. Sci. Comput. 2019. J. Altschuler, J. Weed, P. Rigollet, "Near-linear
time approximation algorithms for optimal transport via Sinkhorn iteration", NeurIPS 2017.
A. Thibault, L. Chizat, C. Dossal, N. Papadakis, "Overrelaxed Sinkhorn-Knopp algorithm for
regularized optimal transport", Algorithms 2021.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from recon_jax.losses._checks import check_choice, check_lengths, check_pair

__all__ = ["emd", "exact_emd", "DEFAULT_SCHEDULES", "DEFAULT_RELAXATION"]

_COSTS = ("euclidean", "sqeuclidean")
_BATCH_REDUCTIONS = ("mean", "sum", None)
_BATCH_MODES = ("auto", "map", "vmap")

Stages = tuple[tuple[float, int], ...]

#: Default ``(coarse_stages, fine_stages)`` per cost. A stage is ``(multiplier, iterations)``:
#: coarse stages use ``eps = multiplier * s`` (``s``: nearest-neighbour lower bound of the EMD),
#: fine stages ``eps = multiplier * V`` (``V``: transport cost of the plan after the coarse
#: stages, within ~2-20% above the EMD). Tuned on 2048-point clouds (module docstring).
DEFAULT_SCHEDULES: dict[str, tuple[Stages, Stages]] = {
    "euclidean": (
        ((3.0, 10), (1.0, 40), (0.3, 50)),
        ((0.02, 20), (0.004, 20), (0.001, 30)),
    ),
    # The squared cost spans a much wider range (s is ~0.2-0.3 of the EMD against ~0.5 for the
    # Euclidean cost, and the diameter^2 is ~10^3 s): the annealing starts much higher.
    "sqeuclidean": (
        ((300.0, 5), (100.0, 5), (30.0, 5), (10.0, 10), (3.0, 20), (1.0, 40), (0.3, 50)),
        ((0.02, 20), (0.004, 20), (0.001, 30)),
    ),
}
#: Default target over-relaxation weight per cost (1 = plain Sinkhorn).
DEFAULT_RELAXATION: dict[str, float] = {"euclidean": 1.9, "sqeuclidean": 1.95}

# eps never goes below this fraction of the mean cost: float32 resolves the reduced cost
# C - f - g to ~1e-7 of the cost scale, and x == y would otherwise drive eps to 0.
_EPS_FLOOR = 1e-5
# Full float32 products on every backend (GPUs would otherwise use TF32 for float32 dots).
_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------------
# ott-jax pieces: a kernel geometry without transposes, a safeguarded over-relaxed Sinkhorn
# --------------------------------------------------------------------------------------------


@jax.tree_util.register_pytree_node_class
class _KernelGeometry(geometry.Geometry):
    """A ``Geometry`` given by its kernel matrix, applied without transposing it.

    ott-jax's ``apply_kernel`` computes ``K.T @ v`` for the column update; inside Sinkhorn's loop
    XLA:CPU materialises that transpose at every iteration (24 ms for 2048 x 2048, against
    0.3 ms for the product itself). ``v @ K`` is the same product without the copy. A stage's
    ``eps`` is constant, so the per-iteration ``eps`` argument is ignored (ott-jax would
    otherwise raise the whole kernel to the power ``eps / eps_it`` at every iteration).
    """

    def apply_kernel(self, vec: jax.Array, eps: float | None = None, axis: int = 0) -> jax.Array:
        del eps
        kernel = self._kernel_matrix
        if axis == 1:
            return jnp.dot(kernel, vec, precision=_HIGHEST)
        return jnp.dot(vec, kernel, precision=_HIGHEST)


def _dual_gain(log_ratio: jax.Array, marginal: jax.Array, theta: float) -> jax.Array:
    """Increase of the entropic dual (over ``eps``) of a ``theta``-relaxed half-step.

    With ``x = current marginal / target`` (``log_ratio = log x``) the update
    ``scaling * x**-theta`` changes the dual objective by
    ``eps * sum_i marginal_i * (x_i - x_i**(1 - theta) - theta * log x_i)``: always >= 0 for
    ``theta = 1`` (plain Sinkhorn), but negative for ``theta > 1`` when some ``x_i`` is small.
    Written with ``expm1`` so the sum keeps its sign near convergence (``x ~ 1``).
    """
    terms = jnp.expm1(log_ratio) - jnp.expm1((1.0 - theta) * log_ratio) - theta * log_ratio
    return jnp.sum(marginal * terms)


@jax.tree_util.register_pytree_node_class
class _RelaxedSinkhorn(sinkhorn.Sinkhorn):
    """Kernel-mode ott-jax ``Sinkhorn`` with safeguarded over-relaxation.

    ott-jax's ``Momentum`` uses one fixed weight per solve (or Lehmann's estimate, which needs a
    convergence test every few iterations). A fixed weight of 1.9 is several times faster than
    plain Sinkhorn at small ``eps`` on most point-cloud pairs but diverges on some (measured: a
    density mismatch, stage ``eps ~ 0.05 EMD``). Here every half-step takes the largest weight
    among ``relaxation``, ``(1 + relaxation) / 2`` and ``1`` that increases the dual objective
    (the Lyapunov function that Thibault et al. 2021 use to make over-relaxation globally
    convergent; ``_dual_gain``), at the price of a few ``O(n)`` operations; the last iteration
    is a plain one, so that the returned plan has exact row marginals.
    """

    def __init__(self, relaxation: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.relaxation = relaxation

    def _update(
        self, scaling: jax.Array, applied: jax.Array, marginal: jax.Array, plain: jax.Array
    ) -> jax.Array:
        """New ``scaling`` from ``applied = K @ other`` (or ``other @ K``), relaxed if safe."""
        support = marginal > 0
        usable = support & (applied > 0)
        sinkhorn_step = jnp.where(usable, marginal / jnp.where(usable, applied, 1.0), 0.0)
        if self.relaxation == 1.0:
            return sinkhorn_step
        # x = current marginal / target, computed where it is defined (1 elsewhere: no-op).
        ratio = jnp.where(
            usable & (scaling > 0), scaling * applied / jnp.where(usable, marginal, 1.0), 1.0
        )
        log_ratio = jnp.log(ratio)
        full, half = self.relaxation, 0.5 * (1.0 + self.relaxation)
        theta = jnp.where(
            _dual_gain(log_ratio, marginal, full) >= 0,
            full,
            jnp.where(_dual_gain(log_ratio, marginal, half) >= 0, half, 1.0),
        )
        theta = jnp.where(plain, 1.0, theta)
        relaxed = scaling * jnp.exp(-theta * log_ratio)  # = scaling**(1-theta) * step**theta
        return jnp.where(usable & (scaling > 0), relaxed, sinkhorn_step)

    def kernel_step(self, ot_prob, state, iteration):  # noqa: D102 (ott-jax hook)
        geom = ot_prob.geom
        plain = iteration == self.max_iterations - 1
        u, v = state.fu, state.gv
        v = self._update(v, geom.apply_kernel(u, axis=0), ot_prob.b, plain)
        u = self._update(u, geom.apply_kernel(v, axis=1), ot_prob.a, plain)
        return state.set(potentials=(u, v))


# --------------------------------------------------------------------------------------------
# Cost, plan and the envelope gradient
# --------------------------------------------------------------------------------------------


def _squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """``[n, m]`` squared distances by difference, one fused pass per coordinate.

    Differences (not the ``|x|^2 + |y|^2 - 2 x.y`` expansion) keep full float32 accuracy for
    near-coincident points; adding coordinate by coordinate is ~5x faster on CPU than reducing
    a broadcast ``[n, m, D]`` array.
    """
    total = jnp.zeros((x.shape[0], y.shape[0]), x.dtype)
    for k in range(x.shape[1]):
        total = total + (x[:, k, None] - y[None, :, k]) ** 2
    return total


def _cost_matrix(x: jax.Array, y: jax.Array, cost: str) -> jax.Array:
    """``[n, m]`` cost: Euclidean distance or squared Euclidean distance."""
    squared = _squared_distances(x, y)
    return jnp.sqrt(squared) if cost == "euclidean" else squared


def _plan(
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


def _corrected_cost(
    plan: jax.Array, cost_matrix: jax.Array, f: jax.Array, g: jax.Array, a: jax.Array, b: jax.Array
) -> jax.Array:
    """``<P, C> + <f, a - P 1> + <g, b - P^T 1>``: the transport cost, marginal-corrected.

    A fixed iteration budget leaves the marginals of ``P`` slightly off (L1 ~1e-3), which
    biases ``<P, C>`` (typically low: an infeasible plan can be cheaper than any feasible one).
    The dual potentials are the sensitivity of the optimal cost to the marginals, so adding
    ``<f, a - r> + <g, b - c>`` (``r, c``: marginals of ``P``) corrects the value to first
    order; it is the Lagrangian of the transport LP at ``(P, f, g)``, equal to ``<P, C>`` when
    the marginals are exact. Its derivative in ``C`` with ``P, f, g`` fixed is still ``P``.
    Measured (88 pairs of 2048 points, default schedule): mean error 0.40% -> 0.03%, worst
    4.9% -> 0.40%.
    """
    rows = jnp.sum(plan, axis=1)
    cols = jnp.sum(plan, axis=0)
    return jnp.sum(plan * cost_matrix) + jnp.sum(f * (a - rows)) + jnp.sum(g * (b - cols))


def _make_fixed_plan_cost(cost: str):
    """``custom_jvp`` ``(x, y, C, f, g, eps, a, b, valid) -> corrected <P, C>``, one cost kind.

    ``C`` is ``C(x, y)`` computed from stopped ``x, y`` (the solver's matrix, reused);
    ``x``/``y`` carry the derivative. The tangent is linear in ``(dx, dy)`` with coefficients
    computed once, so reverse mode keeps only ``[n, D] + [m, D]`` residuals.
    """

    @jax.custom_jvp
    def fixed_plan_cost(x, y, cost_matrix, f, g, eps, a, b, valid):
        return _corrected_cost(_plan(cost_matrix, f, g, eps, a, b, valid), cost_matrix, f, g, a, b)

    @fixed_plan_cost.defjvp
    def fixed_plan_cost_jvp(primals, tangents):
        # Envelope theorem: the plan is optimal, so to first order only C moves; the tangents
        # of the (stopped) C, f, g, eps, a, b and of the mask are ignored.
        x, y, cost_matrix, f, g, eps, a, b, valid = primals
        dx, dy = tangents[0], tangents[1]
        plan = _plan(cost_matrix, f, g, eps, a, b, valid)
        value = _corrected_cost(plan, cost_matrix, f, g, a, b)
        if cost == "euclidean":
            # dC_ij/dx_i = (x_i - y_j) / |x_i - y_j|, taken as 0 where x_i == y_j (a subgradient),
            # summed coordinate by coordinate on exact differences (no cancellation).
            positive = cost_matrix > 0
            weight = jnp.where(positive, plan / jnp.where(positive, cost_matrix, 1.0), 0.0)
            diffs = [x[:, k, None] - y[None, :, k] for k in range(x.shape[1])]
            grad_x = jnp.stack([jnp.sum(weight * d, axis=1) for d in diffs], axis=1)
            grad_y = -jnp.stack([jnp.sum(weight * d, axis=0) for d in diffs], axis=1)
        else:
            # dC_ij/dx_i = 2 (x_i - y_j): two matrix products.
            grad_x = 2.0 * (
                jnp.sum(plan, axis=1)[:, None] * x - jnp.dot(plan, y, precision=_HIGHEST)
            )
            grad_y = 2.0 * (
                jnp.sum(plan, axis=0)[:, None] * y - jnp.dot(plan.T, x, precision=_HIGHEST)
            )
        return value, jnp.sum(grad_x * dx) + jnp.sum(grad_y * dy)

    return fixed_plan_cost


_FIXED_PLAN_COST = {cost: _make_fixed_plan_cost(cost) for cost in _COSTS}


# --------------------------------------------------------------------------------------------
# Solver (one pair)
# --------------------------------------------------------------------------------------------


def _c_transform(
    cost_matrix: jax.Array,
    potential: jax.Array,
    support: jax.Array,
    valid: jax.Array,
    axis: int,
) -> jax.Array:
    """Hard c-transform: ``axis=0``: ``g_j = min_i (C_ij - f_i)``; ``axis=1``: ``f_i = min_j (C_ij
    - g_j)``, over ``valid`` entries; ``0`` outside ``support`` (points without mass)."""
    other = potential[:, None] if axis == 0 else potential[None, :]
    result = jnp.min(jnp.where(valid, cost_matrix - other, jnp.inf), axis=axis)
    return jnp.where(support, result, 0.0)


def _sinkhorn_stage(
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

    1. Double c-transform (``g`` then ``f``): the reduced cost ``C - f - g`` is then >= 0 with a
       0 in every row and every column, so the reduced kernel ``K = exp((f + g - C) / eps)``
       lies in ``[0, 1]`` with a 1 in every row and column: kernel mode can neither overflow
       nor lose a row or column to underflow, whatever the previous ``eps`` or the
       extrapolation did. (The exact log-domain half-steps would do the same at 3x the cost
       of two min-reductions; measured on 21 pairs, the accuracy is the same.)
    2. ``iterations`` kernel-mode iterations (ott-jax, ``_RelaxedSinkhorn``) on ``K`` with
       marginals ``a, b``, from scalings ``(a, b)``: the plan is ``u_i K_ij v_j``.
    3. Absorption: ``f += eps log(u / a)``, ``g += eps log(v / b)``.
    """
    g = _c_transform(cost_matrix, f, b > 0, valid, axis=0)
    f = _c_transform(cost_matrix, g, a > 0, valid, axis=1)
    kernel = jnp.exp(jnp.where(valid, (f[:, None] + g[None, :] - cost_matrix) / eps, -jnp.inf))
    geom = _KernelGeometry(kernel_matrix=kernel, epsilon=eps)
    solver = _RelaxedSinkhorn(
        relaxation=relaxation,
        lse_mode=False,
        # min == max == inner: one lax.scan of exactly `iterations` steps, no early exit and no
        # convergence test (ott-jax then computes the marginal error once, at the end).
        min_iterations=iterations,
        max_iterations=iterations,
        inner_iterations=iterations,
    )
    out = solver(linear_problem.LinearProblem(geom, a, b), init=(a, b))
    # out.f = eps log u (-inf where a == 0).
    f = jnp.where(a > 0, f + out.f - eps * jnp.log(jnp.where(a > 0, a, 1.0)), 0.0)
    g = jnp.where(b > 0, g + out.g - eps * jnp.log(jnp.where(b > 0, b, 1.0)), 0.0)
    return f, g


def _solve_pair(
    cost_matrix: jax.Array,
    a: jax.Array,
    b: jax.Array,
    valid: jax.Array,
    coarse: Stages,
    fine: Stages,
    relaxation: float,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Annealed, absorbed, extrapolated Sinkhorn for one pair (see the module docstring).

    Args:
      cost_matrix: ``[n, m]`` cost (no gradient flows here).
      a: ``[n]`` weights of ``x`` (uniform over active points, 0 elsewhere).
      b: ``[m]`` weights of ``y``.
      valid: ``[n, m]`` bool, ``a_i > 0 and b_j > 0``.

    Returns:
      ``(f, g, eps, lower_bound)``: final potentials ``[n]``, ``[m]`` (0 where the weight is
      0), the final ``eps`` and the nearest-neighbour lower bound ``s`` of the EMD (scalars).
    """
    masked = jnp.where(valid, cost_matrix, jnp.inf)
    row_min = jnp.where(a > 0, jnp.min(masked, axis=1), 0.0)
    col_min = jnp.where(b > 0, jnp.min(masked, axis=0), 0.0)
    lower_bound = jnp.maximum(jnp.sum(a * row_min), jnp.sum(b * col_min))
    mean_cost = jnp.sum(a * jnp.sum(jnp.where(valid, cost_matrix, 0.0) * b[None, :], axis=1))
    eps_floor = jnp.maximum(_EPS_FLOOR * mean_cost, jnp.finfo(cost_matrix.dtype).tiny)

    f = jnp.zeros_like(a)
    g = jnp.zeros_like(b)
    history: list[tuple[jax.Array, jax.Array, jax.Array]] = []
    scale = lower_bound
    eps = eps_floor
    for k, (multiplier, iterations) in enumerate([*coarse, *fine]):
        if k == len(coarse):
            # Fine stages are scaled by the transport cost of the coarse plan (~ the EMD).
            scale = jnp.sum(_plan(cost_matrix, f, g, eps, a, b, valid) * cost_matrix)
        eps = jnp.maximum(multiplier * scale, eps_floor)
        if len(history) >= 2:
            # Predictor: extrapolate the potentials linearly in eps from the last two stages.
            (eps1, f1, g1), (eps2, f2, g2) = history[-2], history[-1]
            distinct = eps2 != eps1
            step = jnp.where(distinct, (eps - eps2) / jnp.where(distinct, eps2 - eps1, 1.0), 0.0)
            f = f2 + step * (f2 - f1)
            g = g2 + step * (g2 - g1)
        f, g = _sinkhorn_stage(cost_matrix, f, g, eps, a, b, valid, iterations, relaxation)
        history.append((eps, f, g))
    return f, g, eps, lower_bound


def _emd_pair(
    x: jax.Array,
    y: jax.Array,
    x_active: jax.Array,
    y_active: jax.Array,
    *,
    cost: str,
    coarse: Stages,
    fine: Stages,
    relaxation: float,
    diagnostics: bool,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Marginal-corrected ``<P, C>`` of one pair (differentiable in ``x``, ``y``), diagnostics."""
    cost_matrix = _cost_matrix(jax.lax.stop_gradient(x), jax.lax.stop_gradient(y), cost)
    dtype = cost_matrix.dtype
    a = x_active.astype(dtype) / jnp.maximum(jnp.sum(x_active), 1).astype(dtype)
    b = y_active.astype(dtype) / jnp.maximum(jnp.sum(y_active), 1).astype(dtype)
    valid = x_active[:, None] & y_active[None, :]
    f, g, eps, lower_bound = _solve_pair(cost_matrix, a, b, valid, coarse, fine, relaxation)
    f, g, eps = jax.lax.stop_gradient((f, g, eps))
    value = _FIXED_PLAN_COST[cost](x, y, cost_matrix, f, g, eps, a, b, valid)
    info: dict[str, jax.Array] = {}
    if diagnostics:
        plan = _plan(cost_matrix, f, g, eps, a, b, valid)
        info = {
            "plan_cost": jnp.sum(plan * cost_matrix),
            "marginal_error": jnp.sum(jnp.abs(jnp.sum(plan, axis=1) - a))
            + jnp.sum(jnp.abs(jnp.sum(plan, axis=0) - b)),
            "epsilon": eps,
            "lower_bound": lower_bound,
        }
    return value, info


_DIAGNOSTICS = ("plan_cost", "marginal_error", "epsilon", "lower_bound")


@functools.partial(
    jax.jit,
    static_argnames=("cost", "coarse", "fine", "relaxation", "diagnostics", "batch_mode"),
)
def _emd_batch(
    x: jax.Array,
    y: jax.Array,
    x_active: jax.Array,
    y_active: jax.Array,
    *,
    cost: str,
    coarse: Stages,
    fine: Stages,
    relaxation: float,
    diagnostics: bool,
    batch_mode: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``[B]`` values (and diagnostics) of all pairs, one after the other or vectorised.

    Jitted with the configuration static, so that eager calls of ``emd`` with the same shapes
    and settings reuse one compilation (under an outer ``jit`` it is simply inlined).
    """

    def pair(x1, y1, x1_active, y1_active):
        return _emd_pair(
            x1,
            y1,
            x1_active,
            y1_active,
            cost=cost,
            coarse=coarse,
            fine=fine,
            relaxation=relaxation,
            diagnostics=diagnostics,
        )

    if batch_mode == "map":
        return jax.lax.map(lambda args: pair(*args), (x, y, x_active, y_active))
    return jax.vmap(pair)(x, y, x_active, y_active)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_stages(name: str, stages, allow_empty: bool) -> tuple[tuple[float, int], ...]:
    """A sequence of ``(positive multiplier, positive int iterations)`` pairs."""
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


def emd(
    x: ArrayLike,
    y: ArrayLike,
    *,
    cost: str = "euclidean",
    x_lengths: ArrayLike | None = None,
    y_lengths: ArrayLike | None = None,
    coarse_stages: Sequence[tuple[float, int]] | None = None,
    fine_stages: Sequence[tuple[float, int]] | None = None,
    relaxation: float | None = None,
    batch_reduction: str | None = "mean",
    batch_mode: str = "auto",
    return_diagnostics: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Earth mover's distance by entropic optimal transport (paper eq. 5, per point).

    Per pair ``b``, with ``X`` the first ``x_lengths[b]`` points of ``x[b]`` (``n`` of them) and
    ``Y`` the first ``y_lengths[b]`` of ``y[b]`` (``m``), uniform weights ``a = 1/n``, ``b = 1/m``::

        C_ij   = ||x_i - y_j||        (cost="euclidean", the default: paper eq. 5)
               = ||x_i - y_j||^2      (cost="sqeuclidean")
        emd[b] = <P, C> + <f, a - P 1> + <g, b - P^T 1>     ~ <P, C> = sum_ij P_ij C_ij

    where ``P`` (total mass 1) is the entropic plan found by the annealed Sinkhorn solver of the
    module docstring, ``f, g`` its dual potentials, and the last two terms a first-order
    correction of its marginal error (0 for exact marginals). For ``n == m`` this estimates eq. 5
    divided by ``n``: the mean distance between matched points (``exact_emd`` computes it
    exactly). For ``n != m`` it is the optimal transport cost between the two uniform measures.
    It is the transport cost of the plan, without ott-jax's entropy term (``reg_ot_cost``).
    ``batch_reduction`` "mean" then averages over all ``B`` pairs (empty ones included), "sum"
    adds, ``None`` returns ``[B]``. Nothing is multiplied by 100.

    Accuracy with the defaults (2048-point clouds, 88 pairs, module docstring): mean error
    against the exact assignment 0.03%, worst 0.40% (squared cost: 0.03%, worst 0.24%). It is
    neither an upper nor a lower bound: the entropic bias is positive, the marginal correction
    can land slightly below; ``emd(x, x)`` is 0 up to float rounding (~1e-11, either sign).

    Gradient (envelope theorem): ``sum_j P_ij dC_ij/dx_i`` with ``P, f, g`` fixed; the solver is
    not differentiated. Euclidean: ``sum_j P_ij (x_i - y_j) / ||x_i - y_j||``, ``0`` for
    coincident points (never NaN). Padded points get exactly ``0``; a pair with an empty cloud
    is ``0`` with zero gradient.

    Cost: every pair builds dense ``[n, m]`` matrices (16 MB each for 2048 x 2048 in float32)
    and runs ``sum(iterations)`` kernel iterations of two matrix-vector products each (170 for
    the Euclidean default, 205 for the squared one) plus ``O(n m)`` work per stage.

    Args:
      x: ``[B, N, D]`` floating point clouds; computed in at least float32.
      y: ``[B, M, D]`` floating point clouds, same ``B`` and ``D`` (``M`` may differ from ``N``).
      cost: ``"euclidean"`` (paper eq. 5) or ``"sqeuclidean"``.
      x_lengths: ``[B]`` integers in ``[0, N]``: points ``i >= x_lengths[b]`` of ``x[b]`` are
        padding (PyTorch3D semantics). ``None``: all ``N`` points are valid.
      y_lengths: ``[B]`` integers in ``[0, M]``, the same for ``y``.
      coarse_stages: ``(multiplier, iterations)`` per coarse stage, ``eps = multiplier * s``
        with ``s`` the nearest-neighbour lower bound of the pair's EMD. Non-empty. ``None``: the
        default for ``cost`` (``DEFAULT_SCHEDULES``).
      fine_stages: ``(multiplier, iterations)`` per fine stage, ``eps = multiplier * V`` with
        ``V`` the transport cost of the plan after the coarse stages. May be empty. ``None``:
        the default for ``cost``.
      relaxation: target over-relaxation weight in ``[1, 2)`` (``1``: plain Sinkhorn); each
        half-step falls back to ``(1 + relaxation) / 2`` or ``1`` when the larger weight would
        decrease the dual objective. ``None``: the default for ``cost``
        (``DEFAULT_RELAXATION``).
      batch_reduction: ``"mean"``, ``"sum"`` or ``None`` (see above).
      batch_mode: how pairs are batched: ``"map"`` (``lax.map``, one pair after the other:
        measured 7% faster than ``vmap`` on a 2-core CPU, and memory for one pair only),
        ``"vmap"`` (all pairs at once: for accelerators; memory ``B`` times larger) or
        ``"auto"`` (``"map"`` when JAX's default backend is the CPU, else ``"vmap"``).
      return_diagnostics: also return a dict of ``[B]`` arrays: ``"plan_cost"`` (``<P, C>``
        without the marginal correction), ``"marginal_error"`` (L1 error of both marginals of
        the final plan, out of a total mass of 2), ``"epsilon"`` (final ``eps``) and
        ``"lower_bound"`` (``s``, the nearest-neighbour lower bound of the EMD).

    Returns:
      The loss (scalar, or ``[B]`` for ``batch_reduction=None``); with ``return_diagnostics``,
      ``(loss, diagnostics)``.

    Raises:
      ValueError: bad shapes, dtypes, lengths, cost, reductions, stages or relaxation.
    """
    x, y = check_pair(x, y)
    batch, n, _ = x.shape
    m = y.shape[1]
    x_lengths = check_lengths("x_lengths", x_lengths, batch, n)
    y_lengths = check_lengths("y_lengths", y_lengths, batch, m)
    check_choice("cost", cost, _COSTS)
    check_choice("batch_reduction", batch_reduction, _BATCH_REDUCTIONS)
    check_choice("batch_mode", batch_mode, _BATCH_MODES)
    default_coarse, default_fine = DEFAULT_SCHEDULES[cost]
    coarse = _check_stages(
        "coarse_stages", default_coarse if coarse_stages is None else coarse_stages, False
    )
    fine = _check_stages("fine_stages", default_fine if fine_stages is None else fine_stages, True)
    relaxation = DEFAULT_RELAXATION[cost] if relaxation is None else relaxation
    if not (
        isinstance(relaxation, numbers.Real)
        and not isinstance(relaxation, bool)
        and 1.0 <= relaxation < 2.0
    ):
        raise ValueError(f"relaxation must be a number in [1, 2), got {relaxation!r}")

    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    x_valid = jnp.arange(n)[None, :] < x_lengths[:, None]  # [B, N]
    y_valid = jnp.arange(m)[None, :] < y_lengths[:, None]  # [B, M]
    # Zero the padding first: its content then never matters and its gradient is exactly 0.
    x = jnp.where(x_valid[..., None], x.astype(dtype), 0)
    y = jnp.where(y_valid[..., None], y.astype(dtype), 0)
    # A point carries mass when it is valid and the other cloud is not empty.
    x_active = x_valid & (y_lengths > 0)[:, None]
    y_active = y_valid & (x_lengths > 0)[:, None]

    if n == 0 or m == 0:
        values = jnp.zeros((batch,), dtype)
        info = {key: jnp.zeros((batch,), dtype) for key in _DIAGNOSTICS}
    else:
        if batch_mode == "auto":
            batch_mode = "map" if jax.default_backend() == "cpu" else "vmap"
        values, info = _emd_batch(
            x,
            y,
            x_active,
            y_active,
            cost=cost,
            coarse=coarse,
            fine=fine,
            relaxation=float(relaxation),
            diagnostics=return_diagnostics,
            batch_mode=batch_mode,
        )

    if batch_reduction == "mean":
        values = jnp.mean(values)
    elif batch_reduction == "sum":
        values = jnp.sum(values)
    return (values, info) if return_diagnostics else values


def _host_permutation(x: np.ndarray, y: np.ndarray, cost: str) -> np.ndarray:
    """Optimal assignment ``[..., N]`` (int32) of ``x`` ``[..., N, D]`` to ``y``, on the host."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    lead = x.shape[:-2]
    perm = np.empty(lead + (x.shape[-2],), np.int32)
    metric = "euclidean" if cost == "euclidean" else "sqeuclidean"
    for idx in np.ndindex(*lead):
        rows, cols = linear_sum_assignment(cdist(x[idx], y[idx], metric))
        perm[idx][rows] = cols
    return perm


def exact_emd(x: ArrayLike, y: ArrayLike, *, cost: str = "euclidean") -> jax.Array:
    """Exact bijection cost (paper eq. 5) divided by the number of points, per pair.

    ``exact[b] = min_sigma (1/N) sum_i C(x[b, i], y[b, sigma(i)])`` over permutations ``sigma``,
    with ``C`` the Euclidean distance (``cost="euclidean"``, eq. 5: the mean distance between
    matched points) or its square (``"sqeuclidean"``; the assignment is then optimal for the
    squared cost, which is a different matching).

    The assignment is solved on the host with SciPy's ``linear_sum_assignment`` on a float64 cost
    matrix (``jax.pure_callback``: works under ``jit``; under ``vmap`` all pairs go to one host
    call). The value is recomputed in JAX from the matched points, so gradients are those of the
    fixed optimal matching (envelope theorem): ``(x_i - y_sigma(i)) / ||x_i - y_sigma(i)|| / N``
    for ``x_i``, ``0`` for coincident points, and the opposite for ``y_sigma(i)``. Equal-size,
    unpadded clouds only. Meant for evaluation: 0.3-1.4 s of host time for 2048 points.

    Args:
      x: ``[B, N, D]`` floating point clouds.
      y: ``[B, N, D]`` floating point clouds (same ``B``, ``N`` and ``D``).
      cost: ``"euclidean"`` or ``"sqeuclidean"``.

    Returns:
      ``[B]`` mean matched cost per point, in ``x``/``y``'s promoted dtype (at least float32);
      ``0`` when ``N == 0``.

    Raises:
      ValueError: bad shapes or dtypes, ``N != M``, unknown ``cost``.
    """
    x, y = check_pair(x, y)
    check_choice("cost", cost, _COSTS)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            "exact_emd needs clouds of equal size (a bijection): x and y must have the same "
            f"number of points N, got x shape {tuple(x.shape)} and y shape {tuple(y.shape)}"
        )
    batch, n, _ = x.shape
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    if n == 0:
        return jnp.zeros((batch,), dtype)
    perm = jax.pure_callback(
        lambda xs, ys: _host_permutation(xs, ys, cost),
        jax.ShapeDtypeStruct((batch, n), jnp.int32),
        jax.lax.stop_gradient(x),
        jax.lax.stop_gradient(y),
        vmap_method="broadcast_all",
    )
    matched = jnp.take_along_axis(y, perm[..., None], axis=1)  # [B, N, D]
    matched_cost = jnp.sum((x - matched) ** 2, axis=-1)  # [B, N] squared distances
    if cost == "euclidean":
        # sqrt with a zero (not NaN) gradient at coincident points.
        positive = matched_cost > 0
        matched_cost = jnp.where(positive, jnp.sqrt(jnp.where(positive, matched_cost, 1.0)), 0.0)
    return jnp.mean(matched_cost, axis=1)
