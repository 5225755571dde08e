"""What a model costs: parameters, forward multiply-adds and FLOPs, a per-layer table, step memory.

Conventions (every count is per image, from shapes alone: nothing is initialised or run):

* **parameters**: trainable ones (``"params"``; BatchNorm running statistics excluded);
* **multiply-adds** (MACs): every multiply-add of the convolutions and matrix products of the
  traced program, from their shapes, taps on padding included: the convention of the usual
  tables (torchvision, fvcore), in which ResNet-34 costs 3.66 G at 224x224;
* **FLOPs**: XLA's cost analysis of the compiled program (``cost_analysis()["flops"]``): a
  multiply-add counts 2, element-wise work (BatchNorm, ReLU, pooling) is included, taps that
  read padding are not;
* **step memory**: XLA's buffer assignment of a compiled step (:func:`step_memory`).

``recon-jax flops`` (:mod:`recon_jax.cli.flops`) reports them for the real training step.
Design notes: docs/design.md, "recon_jax.measure".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.extend.core as jex
import jax.numpy as jnp

from recon_jax.models import Reconstructor, init_variables

__all__ = [
    "LayerRow",
    "compiled_flops",
    "forward_counts",
    "layer_table",
    "multiply_adds",
    "param_count",
    "step_memory",
    "xla_cost",
]


def param_count(tree: Any) -> int:
    """Total number of elements in a pytree of arrays or ``jax.ShapeDtypeStruct`` shapes."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def xla_cost(compiled: Any) -> dict[str, float]:
    """XLA's cost analysis of a compiled executable (``"flops"``, ``"bytes accessed"``, ...).

    XLA counts the body of a loop once, whatever its trip count.
    """
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        raise RuntimeError(
            f"the {jax.default_backend()} backend did not report FLOPs in its cost analysis"
        )
    return cost


def compiled_flops(fn: Callable[..., Any], *args: Any) -> float:
    """FLOPs of ``jax.jit(fn)(*args)`` by XLA's cost analysis (a multiply-add counts 2).

    ``args`` may be arrays or ``jax.ShapeDtypeStruct`` shapes; nothing runs.
    """
    return float(xla_cost(jax.jit(fn).lower(*args).compile())["flops"])


def _jaxpr_macs(jaxpr: jex.Jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval, eqn.outvars[0].aval
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial) axes
            taps = rhs.shape[spec[1]] * math.prod(rhs.shape[d] for d in spec[2:])
            total += math.prod(out.shape) * taps
        elif name == "dot_general":
            lhs, out = eqn.invars[0].aval, eqn.outvars[0].aval
            (contracting, _), _ = eqn.params["dimension_numbers"]
            total += math.prod(out.shape) * math.prod(lhs.shape[d] for d in contracting)
        repeats = eqn.params.get("length", 1) if name == "scan" else 1
        total += repeats * sum(_jaxpr_macs(sub) for sub in jex.jaxprs_in_params(eqn.params))
    return total


def multiply_adds(fn: Callable[..., Any], *args: Any) -> int:
    """Multiply-adds of the convolutions and matrix products of ``fn(*args)``, from shapes.

    Every tap of a convolution counts, padding included (``Ho * Wo * Cout * Cin / groups * kh *
    kw`` per image); a matrix product counts ``output size * contracted size``. Scanned bodies
    count once per iteration; a ``while`` body or ``cond`` branch once each. Nothing runs.
    """
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One direct child of a module, as called in its forward pass on one image.

    Attributes:
      name: the child's name (``stem``, ``layer1_block0``, ...).
      kind: the child's class name.
      input_shape: shape of its first input, batch of 1.
      output_shape: shape of its output, batch of 1.
      params: its trainable parameters.
      flops: XLA FLOPs of its evaluation forward pass on that input.
      macs: its multiply-adds (:func:`multiply_adds`).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    flops: float
    macs: int


def layer_table(module: nn.Module, image_size: int) -> tuple[list[LayerRow], float]:
    """Per-layer parameters, FLOPs and multiply-adds of a module's direct children, one image.

    Args:
      module: an extractor (or any module called as ``module(images, train=False)``).
      image_size: side of the square ``[1, H, W, 3]`` input.

    Returns:
      ``(rows, total_flops)``: one :class:`LayerRow` per direct child in call order, and the
      FLOPs of the whole forward pass; ``total_flops - sum(row.flops)`` is the work done between
      children (pooling, concatenation, the input cast).
    """
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    variables = jax.eval_shape(lambda k, x: module.init(k, x, train=False), jax.random.key(0),
                               images)
    calls: list[tuple[str, nn.Module, tuple, dict, tuple[int, ...]]] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name == "__call__" and mod.scope is not None and len(mod.scope.path) == 1:
            shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args)
            calls.append((mod.name, mod, shapes, kwargs, tuple(out.shape)))
        return out

    def forward(v, x):
        with nn.intercept_methods(record):
            return module.apply(v, x, train=False)

    jax.eval_shape(forward, variables, images)
    rows = []
    for name, mod, args, kwargs, out_shape in calls:
        sub = {col: tree[name] for col, tree in variables.items() if name in tree}
        unbound = mod.clone(parent=None, name=None)

        def apply(v, *a, m=unbound, kw=kwargs):
            return m.apply(v, *a, **kw)

        rows.append(LayerRow(
            name=name, kind=type(mod).__name__, input_shape=tuple(args[0].shape),
            output_shape=out_shape, params=param_count(sub.get("params", {})),
            flops=compiled_flops(apply, sub, *args), macs=multiply_adds(apply, sub, *args),
        ))
    total = compiled_flops(lambda v, x: module.apply(v, x, train=False), variables, images)
    return rows, total


def forward_counts(model: Reconstructor, image_size: int | None = None) -> dict[str, float]:
    """Trainable parameters, GFLOPs and G multiply-adds per image of ``model`` and its extractor.

    Evaluation forward pass on one ``[1, S, S, 3]`` image with ``S = image_size`` (default
    ``model.image_size``; the model is measured with its input size set to ``S``, so no resize
    is counted). Keys: ``extractor_params``, ``model_params`` (int), ``extractor_gflops``,
    ``model_gflops`` (XLA, a multiply-add = 2), ``extractor_gmacs``, ``model_gmacs``
    (:func:`multiply_adds` / 1e9).
    """
    if image_size is not None and image_size != model.image_size:
        model = model.clone(image_size=image_size)
    variables = jax.eval_shape(lambda k: init_variables(model, k), jax.random.key(0))
    one = jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), jnp.float32)
    extractor = model.make_extractor()
    ext_vars = {col: tree["extractor"] for col, tree in variables.items()}

    def model_fn(v, x):
        return model.apply(v, x).points

    def extractor_fn(v, x):
        return extractor.apply(v, x)

    return {
        "extractor_params": param_count(ext_vars["params"]),
        "model_params": param_count(variables["params"]),
        "extractor_gflops": compiled_flops(extractor_fn, ext_vars, one) / 1e9,
        "model_gflops": compiled_flops(model_fn, variables, one) / 1e9,
        "extractor_gmacs": multiply_adds(extractor_fn, ext_vars, one) / 1e9,
        "model_gmacs": multiply_adds(model_fn, variables, one) / 1e9,
    }


def step_memory(compiled: Any) -> tuple[int, int]:
    """``(peak_bytes, temp_bytes)`` of a compiled step, per device, from XLA's memory analysis.

    ``peak = arguments + outputs - aliased (donated) + temporaries``: what the step holds at once
    (parameters, optimizer state, the batch, gradients, saved activations, workspace);
    ``temp`` is the temporaries alone. ``compiled`` is e.g.
    ``jax.jit(step).lower(*args).compile()``.
    """
    mem = compiled.memory_analysis()
    if mem is None:
        raise RuntimeError(f"the {jax.default_backend()} backend gave no memory analysis")
    peak = (
        mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )
    return int(peak), int(mem.temp_size_in_bytes)
