"""``recon-jax flops``: parameters, FLOPs, training memory and step time of each extractor.

Everything is measured from the compiled XLA program, not estimated by hand:

* **Parameters**: trainable parameters (``"params"``; BatchNorm running statistics excluded),
  of the extractor alone and of the whole :class:`~recon_jax.models.reconstructor.Reconstructor`.
* **GFLOPs per image**: ``jax.jit(f).lower(...).compile().cost_analysis()["flops"]`` of the
  evaluation forward pass on one image, ``1 GFLOP = 1e9``. XLA counts a multiply-add as **2**
  FLOPs (so a ``k x k`` convolution is ``2 * Ho * Wo * Cin * Cout * k * k`` when no tap falls in
  the padding; taps that read padding are not counted) and also counts element-wise operations
  (BatchNorm, ReLU, pooling), which the usual "MACs" tables leave out.
* **Peak training memory**: XLA's buffer assignment for one compiled training step at the given
  batch (``compiled.memory_analysis()``): forward, backward, Adam update, the state donated.
  ``peak = arguments + outputs - aliased + temporaries``: what the step holds at once (parameters,
  Adam moments, gradients, saved activations, workspace). ``temp`` is the temporaries alone.
  The step is the full model (extractor, latent sampling, decoder) with the squared Chamfer loss
  (:func:`recon_jax.losses.chamfer.chamfer_distance`, bounded memory), so it is the memory of
  training the paper's network, less the EMD term, which is the same for every extractor.
* **Step time**: wall-clock seconds of that same jitted training step on the default JAX backend
  (the CPU here), median of ``--steps`` steps after ``--warmup`` steps, at the same batch.

The ratio rows divide the efficient extractor's figure by each ResNet's: the paper (Kim & Lee
2023, Table 2 and section 1) reports 2.9 GFLOPs against 4 G for the ResNet extractors of 3D-LMNet
and 3D-ReconstNet and about 27% less memory.

Run ``recon-jax flops --image-size 128 --batch-size 32`` to regenerate the ``flops`` section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from recon_jax.losses.chamfer import chamfer_distance
from recon_jax.models.latent import LATENT_RNG
from recon_jax.models.reconstructor import EXTRACTORS, init_variables, make_extractor, make_model

__all__ = [
    "ExtractorReport",
    "LayerRow",
    "compile_train_step",
    "compiled_flops",
    "configure_parser",
    "default_optimizer",
    "format_report",
    "forward_counts",
    "layer_table",
    "make_train_step",
    "measure_extractor",
    "param_count",
    "run",
    "step_memory",
    "time_train_step",
]

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One direct child of a module, as called in its forward pass on one image.

    Attributes:
      name: the child's name (``stem``, ``layer1_block0``, ...).
      kind: the child's class name.
      input_shape: shape of its first input, batch of 1.
      output_shape: shape of its output, batch of 1.
      params: its trainable parameters.
      flops: FLOPs of its evaluation forward pass on that input (XLA, multiply-add = 2).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    flops: float


@dataclasses.dataclass(frozen=True)
class ExtractorReport:
    """Measurements of one extractor (see the module docstring for each definition).

    Attributes:
      name: key of :data:`~recon_jax.models.reconstructor.EXTRACTORS`.
      image_size: side of the square input images.
      batch_size: batch of the training step that was analysed (and timed).
      extractor_params: trainable parameters of the extractor.
      model_params: trainable parameters of the whole reconstructor.
      extractor_gflops: GFLOPs of the extractor's forward pass, per image.
      model_gflops: GFLOPs of the whole reconstructor's forward pass, per image.
      step_peak_bytes: peak bytes of one compiled training step.
      step_temp_bytes: temporary bytes of that step.
      step_seconds: median seconds of one training step, ``None`` when not timed.
      backend: the JAX backend that compiled (and timed) the step.
    """

    name: str
    image_size: int
    batch_size: int
    extractor_params: int
    model_params: int
    extractor_gflops: float
    model_gflops: float
    step_peak_bytes: int
    step_temp_bytes: int
    step_seconds: float | None
    backend: str


def param_count(tree: Any) -> int:
    """Total number of elements in a pytree of arrays or ``jax.ShapeDtypeStruct`` shapes."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def _cost(compiled: Any) -> dict[str, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        raise RuntimeError(
            f"the {jax.default_backend()} backend did not report FLOPs in its cost analysis"
        )
    return cost


def compiled_flops(fn: Callable[..., Any], *args: Any) -> float:
    """FLOPs of ``jax.jit(fn)(*args)`` by XLA's cost analysis (a multiply-add counts as 2)."""
    return float(_cost(jax.jit(fn).lower(*args).compile())["flops"])


def layer_table(module: nn.Module, image_size: int) -> tuple[list[LayerRow], float]:
    """Per-layer parameters and FLOPs of an extractor's direct children on one image.

    Shapes only: nothing is initialised or run, every child is compiled on its own.

    Args:
      module: an extractor, called as ``module(images, train=False)``.
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
        flops = compiled_flops(lambda v, *a, m=unbound, kw=kwargs: m.apply(v, *a, **kw), sub, *args)
        rows.append(
            LayerRow(
                name=name,
                kind=type(mod).__name__,
                input_shape=tuple(args[0].shape),
                output_shape=out_shape,
                params=param_count(sub.get("params", {})),
                flops=flops,
            )
        )
    total = compiled_flops(lambda v, x: module.apply(v, x, train=False), variables, images)
    return rows, total


TrainState = tuple[Any, Any, Any]  # (params, batch_stats, opt_state)


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """A training step ``(state, images, points, key) -> (state, loss)`` (not jitted).

    ``images`` ``[B, H, W, 3]``, ``points`` ``[B, N, 3]`` targets, ``key`` the latent noise key.
    The loss is the squared Chamfer distance (mean over points, both directions added, mean over
    the batch); BatchNorm statistics are updated from the batch.
    """
    def step(state: TrainState, images: jax.Array, points: jax.Array, key: jax.Array):
        params, batch_stats, opt_state = state

        def loss_fn(p):
            out, updates = model.apply(
                {"params": p, "batch_stats": batch_stats}, images, train=True,
                rngs={LATENT_RNG: key}, mutable=["batch_stats"],
            )
            return chamfer_distance(out.points, points), updates["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, opt_state), loss

    return step


def default_optimizer() -> optax.GradientTransformation:
    """The optimizer of the analysed step: Adam, learning rate 1e-3 (two moments per parameter)."""
    return optax.adam(1e-3)


def _state_shapes(model: nn.Module, image_size: int, tx: optax.GradientTransformation):
    """Shapes (``jax.ShapeDtypeStruct``) of ``(params, batch_stats, opt_state)``, nothing run."""
    variables = jax.eval_shape(lambda k: init_variables(model, k, image_size), jax.random.key(0))
    opt_state = jax.eval_shape(tx.init, variables["params"])
    return variables["params"], variables["batch_stats"], opt_state


def compile_train_step(
    model: nn.Module, image_size: int, batch_size: int,
    tx: optax.GradientTransformation | None = None,
) -> Any:
    """The training step of :func:`make_train_step`, jitted with the state donated and compiled
    for ``[batch_size, image_size, image_size, 3]`` images (from shapes only: nothing runs).

    Returns the compiled executable: call it as ``(state, images, points, key)`` with a
    threefry ``key``; ``memory_analysis()`` and ``cost_analysis()`` describe it.
    """
    tx = default_optimizer() if tx is None else tx
    state = _state_shapes(model, image_size, tx)
    images = jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.float32)
    points = jax.ShapeDtypeStruct((batch_size, model.num_points, 3), jnp.float32)
    step = jax.jit(make_train_step(model, tx), donate_argnums=0)
    return step.lower(state, images, points, jax.random.key(0)).compile()


def step_memory(compiled: Any) -> tuple[int, int]:
    """``(peak_bytes, temp_bytes)`` of a compiled step (see the module docstring)."""
    mem = compiled.memory_analysis()
    if mem is None:
        raise RuntimeError(f"the {jax.default_backend()} backend gave no memory analysis")
    peak = (
        mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )
    return int(peak), int(mem.temp_size_in_bytes)


def time_train_step(
    compiled: Any, model: nn.Module, image_size: int, batch_size: int, *, steps: int = 5,
    warmup: int = 2, seed: int = 0, tx: optax.GradientTransformation | None = None,
    variables: Any = None,
) -> list[float]:
    """Wall-clock seconds of ``steps`` runs of ``compiled`` after ``warmup`` untimed ones.

    ``compiled`` comes from :func:`compile_train_step` with the same model, sizes and ``tx``.
    The state starts from a copy of ``variables`` (default: :func:`init_variables` with
    ``seed``); the inputs are random normal images ``[B, H, W, 3]`` and target clouds
    ``[B, num_points, 3]``.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    tx = default_optimizer() if tx is None else tx
    if variables is None:
        variables = init_variables(model, jax.random.key(seed), image_size)
    # The step donates its state: copy, so that the caller's variables stay valid.
    state = jax.tree.map(
        jnp.copy, (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    )
    k_img, k_pts, k_lat = jax.random.split(jax.random.key(seed + 1), 3)
    images = jax.random.normal(k_img, (batch_size, image_size, image_size, 3), jnp.float32)
    points = jax.random.normal(k_pts, (batch_size, model.num_points, 3), jnp.float32)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, loss = compiled(state, images, points, jax.random.fold_in(k_lat, i))
        loss.block_until_ready()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def forward_counts(model: nn.Module, image_size: int) -> dict[str, float]:
    """Trainable parameters and GFLOPs per image of ``model`` and of its extractor.

    From shapes alone (nothing runs): ``extractor_params``, ``model_params`` (whole
    reconstructor), ``extractor_gflops`` and ``model_gflops`` (evaluation forward pass on one
    ``image_size`` x ``image_size`` image, XLA's count: a multiply-add is 2 FLOPs).
    """
    variables = jax.eval_shape(lambda k: init_variables(model, k, image_size), jax.random.key(0))
    one = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    model_flops = compiled_flops(lambda v, x: model.apply(v, x).points, variables, one)
    ext_vars = {col: tree["extractor"] for col, tree in variables.items()}
    extractor = make_extractor(model.encoder, feature_dim=model.feature_dim, dtype=model.dtype)
    ext_flops = compiled_flops(lambda v, x: extractor.apply(v, x), ext_vars, one)
    return {
        "extractor_params": param_count(ext_vars["params"]),
        "model_params": param_count(variables["params"]),
        "extractor_gflops": ext_flops / 1e9,
        "model_gflops": model_flops / 1e9,
    }


def measure_extractor(
    name: str, image_size: int = 128, batch_size: int = 32, *, num_points: int = 2048,
    time_steps: int = 5, warmup: int = 2, seed: int = 0,
) -> ExtractorReport:
    """Every measurement of the module docstring for extractor ``name``.

    Counts, FLOPs and memory come from shapes alone; ``time_steps=0`` skips the timing (and the
    only real initialisation), leaving ``step_seconds`` ``None``.
    """
    model = make_model(name, num_points=num_points)
    extractor = make_extractor(name)
    if image_size < extractor.min_size:
        raise ValueError(
            f"image_size must be at least {extractor.min_size} for {name!r}, got {image_size}"
        )
    counts = forward_counts(model, image_size)
    compiled = compile_train_step(model, image_size, batch_size)
    peak, temp = step_memory(compiled)
    seconds = None
    if time_steps:
        seconds = statistics.median(
            time_train_step(compiled, model, image_size, batch_size, steps=time_steps,
                            warmup=warmup, seed=seed)
        )
    return ExtractorReport(
        name=name,
        image_size=image_size,
        batch_size=batch_size,
        **counts,
        step_peak_bytes=peak,
        step_temp_bytes=temp,
        step_seconds=seconds,
        backend=jax.default_backend(),
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f} ({(a / b - 1) * 100:+.0f}%)"


def format_report(reports: Sequence[ExtractorReport], command: str) -> str:
    """The markdown section: conventions, one row per extractor, and efficient / ResNet ratios."""
    from recon_jax.bench_report import machine_info, markdown_table

    first = reports[0]
    timed = any(r.step_seconds is not None for r in reports)
    header = ["extractor", "params (extractor)", "params (model)", "GFLOPs/image (extractor)",
              "GFLOPs/image (model)", f"train-step peak MiB (B={first.batch_size})",
              "of which temp MiB"]
    if timed:
        header.append(f"step s ({first.backend}, B={first.batch_size})")
    rows = []
    for r in reports:
        row: list[object] = [
            r.name, f"{r.extractor_params:,}", f"{r.model_params:,}", f"{r.extractor_gflops:.3f}",
            f"{r.model_gflops:.3f}", f"{r.step_peak_bytes / MIB:.1f}",
            f"{r.step_temp_bytes / MIB:.1f}",
        ]
        if timed:
            row.append("-" if r.step_seconds is None else f"{r.step_seconds:.3f}")
        rows.append(row)
    lines = [
        f"## Extractors at {first.image_size}x{first.image_size}: parameters, FLOPs, "
        "training memory, step time",
        "",
        f"Regenerate: `{command}`",
        "",
        machine_info(),
        "",
        "GFLOPs: XLA cost analysis of the compiled evaluation forward pass on one image "
        "(a multiply-add counts as 2 FLOPs; element-wise work such as BatchNorm is included). "
        "Peak memory: XLA buffer assignment of one compiled training step (full model, squared "
        "Chamfer loss, Adam, state donated): arguments + outputs - aliased + temporaries. Step "
        "time: median wall-clock of that jitted step after warm-up. Parameters are trainable "
        "ones (BatchNorm statistics excluded).",
        "",
        markdown_table(header, rows),
    ]
    efficient = [r for r in reports if r.name == "efficient"]
    baselines = [r for r in reports if r.name != "efficient"]
    if efficient and baselines:
        e = efficient[0]
        ratio_header = ["efficient / baseline", "params (extractor)", "GFLOPs (extractor)",
                        "train-step peak memory"]
        if timed:
            ratio_header.append("step time")
        ratio_rows = []
        for b in baselines:
            row = [
                f"efficient / {b.name}", _ratio(e.extractor_params, b.extractor_params),
                _ratio(e.extractor_gflops, b.extractor_gflops),
                _ratio(e.step_peak_bytes, b.step_peak_bytes),
            ]
            if timed:
                both = e.step_seconds is not None and b.step_seconds is not None
                row.append(_ratio(e.step_seconds, b.step_seconds) if both else "-")
            ratio_rows.append(row)
        lines += [
            "",
            "Paper (Kim & Lee 2023): 2.9 GFLOPs against 4 G for the ResNet extractors of "
            "3D-LMNet and 3D-ReconstNet (ratio 0.73), and about 27% less memory.",
            "",
            markdown_table(ratio_header, ratio_rows),
        ]
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``recon-jax flops``."""
    parser.add_argument("--image-size", type=int, default=128, help="square image side")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="batch of the analysed (and timed) training step")
    parser.add_argument("--num-points", type=int, default=2048, help="points per cloud")
    parser.add_argument("--extractors", nargs="+", choices=tuple(EXTRACTORS),
                        default=list(EXTRACTORS), help="extractors to measure")
    parser.add_argument("--steps", type=int, default=5,
                        help="timed training steps (median reported); 0 skips the timing")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    parser.add_argument("--output", default="docs/benchmarks.md",
                        help="markdown file whose 'flops' section is replaced")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")


def _command(args: argparse.Namespace) -> str:
    parts = ["recon-jax flops", f"--image-size {args.image_size}",
             f"--batch-size {args.batch_size}"]
    if args.num_points != 2048:
        parts.append(f"--num-points {args.num_points}")
    if list(args.extractors) != list(EXTRACTORS):
        parts.append("--extractors " + " ".join(args.extractors))
    parts += [f"--steps {args.steps}", f"--warmup {args.warmup}"]
    if args.seed:
        parts.append(f"--seed {args.seed}")
    if args.output != "docs/benchmarks.md":
        parts.append(f"--output {args.output}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Measures every requested extractor, prints the table and writes the ``flops`` section."""
    from recon_jax.bench_report import write_section

    for name, value, low in (("--batch-size", args.batch_size, 1), ("--num-points",
                             args.num_points, 1), ("--steps", args.steps, 0),
                             ("--warmup", args.warmup, 0)):
        if value < low:
            print(f"recon-jax flops: {name} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    min_size = max(make_extractor(name).min_size for name in args.extractors)
    if args.image_size < min_size:
        print(f"recon-jax flops: --image-size must be at least {min_size} for "
              f"{', '.join(args.extractors)}, got {args.image_size}", file=sys.stderr)
        return 2
    reports = []
    for name in args.extractors:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        reports.append(measure_extractor(
            name, args.image_size, args.batch_size, num_points=args.num_points,
            time_steps=args.steps, warmup=args.warmup, seed=args.seed,
        ))
    markdown = format_report(reports, _command(args))
    print(markdown)
    if not args.no_write:
        write_section(args.output, "flops", markdown)
        print(f"wrote the 'flops' section of {args.output}", file=sys.stderr)
    return 0
