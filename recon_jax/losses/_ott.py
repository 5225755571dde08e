"""Every use of an ott-jax internal, in one place: a kernel-mode Sinkhorn stage for ``sinkhorn``.

ott-jax stays the OT engine (its ``Sinkhorn`` loop, ``LinearProblem`` and output), but the stage
needs three of its internals: ``Geometry.apply_kernel`` and ``Geometry._kernel_matrix``
(overridden to apply the kernel without a transpose) and the ``Sinkhorn.kernel_step`` hook with
``SinkhornState.fu``/``.gv``/``.set(potentials=...)`` (overridden for safeguarded
over-relaxation). :func:`check_internals` verifies that they still exist with the expected
signatures and raises naming the one that changed; ``tests/losses/test_ott_internals.py`` calls
it, so an ott-jax upgrade that breaks them fails loudly. Design notes: docs/design.md.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import ott
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

__all__ = ["kernel_stage", "check_internals", "OttInternalsChanged"]

# Full float32 products on every backend (GPUs would otherwise use TF32 for float32 dots).
_HIGHEST = jax.lax.Precision.HIGHEST


class OttInternalsChanged(RuntimeError):
    """An ott-jax internal that ``recon_jax.losses`` relies on is gone or has changed."""


@jax.tree_util.register_pytree_node_class
class _KernelGeometry(geometry.Geometry):
    """A ``Geometry`` given by its kernel matrix, applied without transposing it.

    ott-jax's ``apply_kernel`` computes ``K.T @ v`` for the column update, and XLA:CPU then
    materialises the transpose at every iteration; ``v @ K`` is the same product without the
    copy. A stage's ``eps`` is constant, so the per-iteration ``eps`` argument is ignored.
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
    ``scaling * x**-theta`` changes the dual by
    ``eps * sum_i marginal_i * (x_i - x_i**(1 - theta) - theta * log x_i)``: always >= 0 for
    ``theta = 1``, possibly negative for ``theta > 1``. ``expm1`` keeps the sign near ``x ~ 1``.
    """
    terms = jnp.expm1(log_ratio) - jnp.expm1((1.0 - theta) * log_ratio) - theta * log_ratio
    return jnp.sum(marginal * terms)


@jax.tree_util.register_pytree_node_class
class _RelaxedSinkhorn(sinkhorn.Sinkhorn):
    """Kernel-mode ott-jax ``Sinkhorn`` with safeguarded over-relaxation (Thibault et al. 2021).

    Every half-step takes the largest weight among ``relaxation``, ``(1 + relaxation) / 2`` and
    ``1`` that increases the dual objective; the last iteration is a plain one, so the returned
    plan has exact row marginals. (ott-jax's ``Momentum`` uses one fixed weight per solve, which
    diverged on a density-mismatch pair.)
    """

    def __init__(self, relaxation: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.relaxation = relaxation

    def _update(
        self, scaling: jax.Array, applied: jax.Array, marginal: jax.Array, plain: jax.Array
    ) -> jax.Array:
        """New ``scaling`` from ``applied = K @ other`` (or ``other @ K``), relaxed if safe."""
        usable = (marginal > 0) & (applied > 0)
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


def kernel_stage(
    kernel: jax.Array,
    a: jax.Array,
    b: jax.Array,
    eps: jax.Array,
    iterations: int,
    relaxation: float,
) -> tuple[jax.Array, jax.Array]:
    """``iterations`` kernel-mode Sinkhorn iterations on ``kernel``, from scalings ``(a, b)``.

    Args:
      kernel: ``[n, m]`` non-negative kernel ``K``; the plan is ``u_i K_ij v_j``.
      a: ``[n]`` row marginal (zeros allowed); ``b``: ``[m]`` column marginal.
      eps: the stage's regularisation (scalar).
      iterations: exact number of iterations (one ``lax.scan``, no convergence test).
      relaxation: target over-relaxation weight in ``[1, 2)``.

    Returns:
      ``(eps log u, eps log v)``, ``[n]`` and ``[m]`` (``-inf`` where the marginal is 0).
    """
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
    return out.f, out.g


def _parameters(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def check_internals() -> None:
    """Raise :class:`OttInternalsChanged` naming the first ott-jax internal that changed.

    Checks the hooks and attributes that :func:`kernel_stage` relies on: the names and
    parameters of ``Geometry.apply_kernel`` and ``Sinkhorn.kernel_step``, that kernel mode still
    calls ``kernel_step``, the ``_kernel_matrix`` attribute of a ``Geometry`` built from a
    kernel, ``SinkhornState.fu``/``.gv``/``.set``, ``Sinkhorn.max_iterations`` and that extra
    solver attributes survive ott-jax's pytree round trip.
    """
    def fail(internal: str, detail: str) -> None:
        raise OttInternalsChanged(
            f"ott-jax {ott.__version__}: internal `{internal}` changed ({detail}); "
            "recon_jax/losses/_ott.py must be adapted"
        )

    expected = {
        "Geometry.apply_kernel": (
            geometry.Geometry, "apply_kernel", ["self", "vec", "eps", "axis"]
        ),
        "Sinkhorn.kernel_step": (
            sinkhorn.Sinkhorn, "kernel_step", ["self", "ot_prob", "state", "iteration"]
        ),
    }
    for internal, (cls, name, params) in expected.items():
        fn = getattr(cls, name, None)
        if fn is None:
            fail(internal, "no such method")
        if _parameters(fn) != params:
            fail(internal, f"parameters {_parameters(fn)}, expected {params}")
    try:
        one_iteration = inspect.getsource(sinkhorn.Sinkhorn.one_iteration)
    except (AttributeError, OSError, TypeError) as err:
        fail("Sinkhorn.one_iteration", f"source not readable: {err}")
    if "self.kernel_step(" not in one_iteration:
        fail("Sinkhorn.one_iteration", "no longer calls self.kernel_step in kernel mode")
    geom = geometry.Geometry(kernel_matrix=jnp.ones((2, 2)), epsilon=1.0)
    if not isinstance(getattr(geom, "_kernel_matrix", None), jax.Array):
        fail("Geometry._kernel_matrix", "attribute missing on a Geometry built from a kernel")
    state_fields = getattr(sinkhorn.SinkhornState, "_fields", ())
    if "potentials" not in state_fields:
        fail("SinkhornState.potentials", f"fields are {state_fields}")
    for attr in ("fu", "gv", "set"):
        if not hasattr(sinkhorn.SinkhornState, attr):
            fail(f"SinkhornState.{attr}", "attribute missing")
    solver = _RelaxedSinkhorn(relaxation=1.5, max_iterations=7)
    if getattr(solver, "max_iterations", None) != 7:
        fail("Sinkhorn.max_iterations", "attribute missing or renamed")
    leaves, treedef = jax.tree_util.tree_flatten(solver)
    try:
        rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    except TypeError as err:
        fail("Sinkhorn.tree_flatten/tree_unflatten", f"subclass attributes lost: {err}")
    if getattr(rebuilt, "relaxation", None) != 1.5:
        fail("Sinkhorn.tree_flatten/tree_unflatten", "subclass attribute not preserved")
