"""Training-step time and memory per extractor, and recon_jax against a PyTorch twin.

    python experiments/bench_train.py steps [--config FILE] [--config.SECTION.FIELD=VALUE ...]
        [--encoders efficient,resnet18] [--dtype float32] [--rounds 3] [--no-write]
    python experiments/bench_train.py twin [--models efficient resnet18] [--rounds 7] [--no-write]

``steps``: the real training step of :mod:`recon_jax.train` (the config's loss, optimizer and
model, each extractor and dtype swapped in): XLA's peak memory (:func:`recon_jax.measure.
step_memory`) and the median wall-clock time over interleaved rounds (section ``train_steps``).
``twin``: one squared-Chamfer + Adam step of recon_jax against the same network in PyTorch
(``torch_twin.py``, checked to be the same network first; section ``train``). Each prints
Markdown and replaces its section of ``--output`` (docs/benchmarks.md) unless ``--no-write``.
Method and figures: docs/design.md, "recon_jax.models".
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from bench_report import machine_info, markdown_table, write_section  # sibling script
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from recon_jax import configs, state, train
from recon_jax.cli.flops import compile_train_step
from recon_jax.data import layout
from recon_jax.losses import chamfer_distance
from recon_jax.measure import param_count, step_memory, xla_cost
from recon_jax.models import DTYPES, EXTRACTORS, LATENT_RNG, build_model, init_variables

__all__ = [
    "BusyMeter",
    "RealStep",
    "TorchStep",
    "chamfer_search_flops",
    "check_twin",
    "compile_chamfer_step",
    "main",
    "make_chamfer_step",
    "matmul_peak",
    "step_inputs",
    "time_chamfer_step",
    "xla_flops",
]

MODELS = tuple(EXTRACTORS)


# ------------------------------------------------------------------------------------------
# Machine peak and FLOPs
# ------------------------------------------------------------------------------------------
def matmul_peak(n: int = 2048, repeats: int = 7) -> float:
    """Float32 FLOP/s of a jitted ``[n, n] @ [n, n]`` on the default device: ``2 n^3`` / the
    median of ``repeats`` timed products (after one warm-up)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def xla_flops(compiled: Any) -> float:
    """FLOPs of a compiled executable by XLA's cost analysis (loop bodies counted once)."""
    return float(xla_cost(compiled)["flops"])


def chamfer_search_flops(batch: int, n: int, m: int) -> tuple[float, float]:
    """``(counted, actual)`` FLOPs of the forward Chamfer loss on ``[batch, n, 3]`` vs
    ``[batch, m, 3]`` clouds.

    ``counted``: XLA's figure for the default tiled kernel (each loop body once). ``actual``:
    ``batch`` times XLA's figure for one pair compiled as a single ``n x m`` tile, where every
    loop runs once, so nothing is missed. Nothing is run.
    """
    x = jax.ShapeDtypeStruct((batch, n, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((batch, m, 3), jnp.float32)
    counted = xla_flops(jax.jit(chamfer_distance).lower(x, y).compile())
    one = jax.jit(lambda a, b: chamfer_distance(a, b, tile_size=(n, m)))
    per_pair = xla_flops(one.lower(x.update(shape=(1, n, 3)), y.update(shape=(1, m, 3)))
                         .compile())
    return counted, batch * per_pair


# ------------------------------------------------------------------------------------------
# The JAX side of the twin comparison: a squared-Chamfer + Adam step
# ------------------------------------------------------------------------------------------
ChamferState = tuple[Any, Any, Any]  # (params, batch_stats, opt_state)


def make_chamfer_step(model: Any, tx: optax.GradientTransformation) -> Callable[..., Any]:
    """A training step ``(state, images, points, key) -> (state, loss)`` (not jitted).

    ``state`` is ``(params, batch_stats, opt_state)``, ``images`` ``[B, H, W, 3]``, ``points``
    ``[B, N, 3]`` targets, ``key`` the latent noise key. The loss is the squared Chamfer
    distance (mean over points, both directions added, mean over the batch); BatchNorm
    statistics are updated from the batch. What the PyTorch twin computes, nothing more.
    """
    def step(state: ChamferState, images: jax.Array, points: jax.Array, key: jax.Array):
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


def compile_chamfer_step(model: Any, batch_size: int,
                         tx: optax.GradientTransformation | None = None) -> Any:
    """:func:`make_chamfer_step` (default ``tx``: Adam 1e-3), jitted with the state donated and
    compiled from shapes for ``[batch_size, image_size, image_size, 3]`` images. Call it as
    ``(state, images, points, key)`` with a threefry ``key``."""
    tx = optax.adam(1e-3) if tx is None else tx
    variables = jax.eval_shape(lambda k: init_variables(model, k), jax.random.key(0))
    shapes = (variables["params"], variables["batch_stats"],
              jax.eval_shape(tx.init, variables["params"]))
    s = model.image_size
    images = jax.ShapeDtypeStruct((batch_size, s, s, 3), jnp.float32)
    points = jax.ShapeDtypeStruct((batch_size, model.num_points, 3), jnp.float32)
    step = jax.jit(make_chamfer_step(model, tx), donate_argnums=0)
    return step.lower(shapes, images, points, jax.random.key(0)).compile()


def time_chamfer_step(
    compiled: Any, model: Any, batch_size: int, *, steps: int = 5, warmup: int = 2,
    seed: int = 0, tx: optax.GradientTransformation | None = None, variables: Any = None,
) -> list[float]:
    """Wall-clock seconds of ``steps`` runs of ``compiled`` after ``warmup`` untimed ones.

    ``compiled`` comes from :func:`compile_chamfer_step` with the same model, batch and ``tx``.
    The state starts from a copy of ``variables`` (default: :func:`init_variables` with
    ``seed``); the inputs are :func:`step_inputs`' random images and clouds.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    tx = optax.adam(1e-3) if tx is None else tx
    if variables is None:
        variables = init_variables(model, jax.random.key(seed))
    # The step donates its state: copy, so that the caller's variables stay valid.
    state_ = jax.tree.map(
        jnp.copy, (variables["params"], variables["batch_stats"], tx.init(variables["params"])))
    images, points = step_inputs(model.image_size, batch_size, model.num_points, seed)
    images, points = jnp.asarray(images), jnp.asarray(points)
    k_lat = jax.random.key(seed + 2)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state_, loss = compiled(state_, images, points, jax.random.fold_in(k_lat, i))
        loss.block_until_ready()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------------------
# The PyTorch side
# ------------------------------------------------------------------------------------------
def step_inputs(image_size: int, batch_size: int, num_points: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[B, H, W, 3]`` and target clouds ``[B, N, 3]`` (float32) that
    :func:`time_chamfer_step` uses for ``seed``, as NumPy arrays."""
    k_img, k_pts, _ = jax.random.split(jax.random.key(seed + 1), 3)
    images = jax.random.normal(k_img, (batch_size, image_size, image_size, 3), jnp.float32)
    points = jax.random.normal(k_pts, (batch_size, num_points, 3), jnp.float32)
    return np.array(images), np.array(points)  # writable copies (torch.from_numpy)


class TorchStep:
    """One PyTorch twin in training: ``step()`` runs a training step and returns its seconds.

    Args:
      encoder: extractor name (``efficient``, ``resnet18``, ``resnet34``).
      variables: the Flax ``{"params", "batch_stats"}`` the twin starts from.
      images: ``[B, H, W, 3]`` float32 (NHWC; transposed to NCHW here).
      points: ``[B, N, 3]`` float32 targets.
      chamfer: key of ``torch_twin.CHAMFER`` (``cdist`` or ``mm``).
    """

    def __init__(self, encoder: str, variables: Any, images: np.ndarray, points: np.ndarray,
                 chamfer: str) -> None:
        import torch
        import torch_twin

        self.torch = torch
        self.model = torch_twin.make_twin(encoder, num_points=points.shape[1])
        torch_twin.load_flax_variables(self.model, variables)
        self.model.train()
        self.loss_fn = torch_twin.CHAMFER[chamfer]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.points = torch.from_numpy(np.ascontiguousarray(points))

    def step(self) -> float:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        pred, _, _ = self.model(self.images)
        loss = self.loss_fn(pred, self.points)
        loss.backward()
        self.optimizer.step()
        loss.item()  # eager CPU is synchronous; this only reads the value
        return time.perf_counter() - start


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` (``b`` the JAX reference)."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _twin_gradients(encoder: str, variables: Any, images: np.ndarray, weights: np.ndarray
                    ) -> float:
    """Largest relative error, over all parameters, between the Flax and the twin's gradients
    of ``sum(points * weights)`` in training mode (batch statistics, ``z = mu``), both computed
    in float64 (float32 gradients of deep BatchNorm networks differ by up to ~10% between two
    correct implementations: rounding flips ReLUs near zero; in float64 they agree to ~1e-7).
    The latent head and decoder still round their outputs to float32 on the Flax side."""
    import torch
    import torch_twin

    with jax.enable_x64(True):
        model = build_model({"encoder": encoder, "num_points": weights.shape[1],
                             "image_size": images.shape[1]}).clone(dtype=jnp.float64)
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["params"])

        def forward(p):
            out, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]},
                                 jnp.asarray(images, jnp.float64), train=True,
                                 deterministic=True, mutable=["batch_stats"])
            return jnp.sum(out.points * weights)

        grads = jax.device_get(jax.grad(forward)(params))
    twin = torch_twin.make_twin(encoder, num_points=weights.shape[1]).double()
    torch_twin.load_flax_variables(twin, variables)
    twin.train()
    images_t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).double()
    points = twin(images_t, deterministic=True)[0]
    (points * torch.from_numpy(weights).double()).sum().backward()
    reference = torch_twin.flax_tensors(twin, {"params": grads})
    # With z = mu the logvar head gets no gradient: None in torch, zeros in JAX.
    return max(
        _rel_err(np.zeros(p.shape) if p.grad is None else p.grad.numpy(), reference[n])
        for n, p in twin.named_parameters() if np.any(reference[n]) or p.grad is not None
    )


def check_twin(encoder: str, image_size: int, num_points: int, *, batch: int = 4,
               seed: int = 0) -> dict[str, float]:
    """Checks that the PyTorch twin of ``encoder`` is the Flax network; returns the errors.

    With the Flax initial parameters (BatchNorm scale/bias and running statistics replaced by
    random values, so that normalisation is not the identity) copied into the twin, on random
    images ``[batch, H, W, 3]`` and target clouds:

    * ``params``: both trainable parameter counts (must be equal);
    * ``eval``: relative error (``max |torch - jax| / max |jax|``) of the evaluation-mode output
      points (running statistics, z = mu), float32;
    * ``train``: the same in training mode (batch statistics), z = mu, float32;
    * ``loss_cdist``, ``loss_mm``: relative error of each torch Chamfer against
      :func:`recon_jax.losses.chamfer_distance` on that training-mode output, float32;
    * ``grad``: the largest, over all parameters, relative error of the training-mode
      gradient of a fixed random linear function of the output points, float64.

    Raises:
      RuntimeError: counts differ, or an error exceeds 1e-4 (float32 checks) or 1e-6 (grad).
    """
    import torch
    import torch_twin

    model = build_model({"encoder": encoder, "num_points": num_points, "image_size": image_size})
    variables = init_variables(model, jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def randomise(path, leaf):
        name = getattr(path[-1], "key", "")
        if name in ("scale", "var"):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        if name in ("bias", "mean") and any(getattr(p, "key", "") == "bn" for p in path):
            return jnp.asarray(rng.normal(0.0, 0.2, leaf.shape), jnp.float32)
        return leaf

    variables = jax.tree_util.tree_map_with_path(randomise, variables)
    twin = torch_twin.make_twin(encoder, num_points=num_points)
    torch_twin.load_flax_variables(twin, variables)
    images = rng.normal(size=(batch, image_size, image_size, 3)).astype(np.float32)
    target = rng.normal(0.0, 0.2, size=(batch, num_points, 3)).astype(np.float32)
    images_t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    target_t = torch.from_numpy(target)

    errors = {"params": param_count(variables["params"]),
              "params_torch": torch_twin.param_count(twin)}
    with torch.no_grad():
        twin.eval()
        errors["eval"] = _rel_err(twin(images_t)[0].numpy(),
                                  np.asarray(model.apply(variables, images).points))
        twin.train()
        pred_t = twin(images_t, deterministic=True)[0]
    out, _ = model.apply(variables, images, train=True, deterministic=True,
                         mutable=["batch_stats"])
    errors["train"] = _rel_err(pred_t.numpy(), np.asarray(out.points))
    loss_j = np.asarray(chamfer_distance(out.points, target))
    with torch.no_grad():
        for name, fn in torch_twin.CHAMFER.items():
            errors[f"loss_{name}"] = _rel_err(np.asarray(fn(pred_t, target_t).item()), loss_j)
    weights = rng.normal(size=(batch, num_points, 3))
    errors["grad"] = _twin_gradients(encoder, variables, images, weights)

    failures = []
    if errors["params"] != errors["params_torch"]:
        failures.append(f"parameter counts differ: Flax {errors['params']:,}, torch "
                        f"{errors['params_torch']:,}")
    for key, tol in (("eval", 1e-4), ("train", 1e-4), ("loss_cdist", 1e-4), ("loss_mm", 1e-4),
                     ("grad", 1e-6)):
        if not errors[key] <= tol:
            failures.append(f"{key}: relative error {errors[key]:.2e} > {tol:g}")
    if failures:
        raise RuntimeError(f"the PyTorch twin of {encoder!r} is not the Flax network: "
                           + "; ".join(failures))
    return errors


# ------------------------------------------------------------------------------------------
# Interleaved timing
# ------------------------------------------------------------------------------------------
class BusyMeter:
    """Context manager: how many cores *other* processes kept busy while the block ran.

    Linux only (``/proc/stat``): the machine's busy CPU time over the block minus this
    process's own (and its reaped children's) CPU time, divided by the wall time. ``None``
    elsewhere.
    """

    def __enter__(self) -> BusyMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return time.perf_counter(), busy, cpu

    @property
    def other_cores(self) -> float | None:
        if self._start is None or self._stop is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._start, self._stop
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))

    def note(self, what: str) -> str:
        """A sentence for the report; flags a busy machine (others above 20% of the cores)."""
        cores = os.cpu_count() or 1
        other = self.other_cores
        if other is None:
            return f"Load from other processes during {what}: not measured (no /proc/stat)."
        text = (f"Other processes kept {other:.2f} of the {cores} cores busy on average during "
                f"{what}.")
        if other > 0.2 * cores:
            text += (" **The machine was busy**: the figures are not representative; in "
                     "particular PyTorch's OpenMP threads slow down far more than XLA's thread "
                     "pool when the cores are shared (each parallel region waits for all its "
                     "threads to be scheduled). Re-run on a quiet machine.")
        return text


def _interleaved(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """``rounds`` rounds of one call of every timer, order reversed every other round."""
    names = list(timers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timers[name]())
        summary = ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names)
        print(f"  round {r + 1}/{rounds}: {summary}", file=sys.stderr, flush=True)
    return times


def _twin_command(args: argparse.Namespace) -> str:
    parts = ["python experiments/bench_train.py twin"]
    defaults = {"batch_size": 32, "image_size": 128, "num_points": 2048, "rounds": 7,
                "torch_threads": os.cpu_count() or 1,
                "warmup": 2, "peak_size": 2048, "peak_repeats": 7, "seed": 0,
                "output": "docs/benchmarks.md"}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            parts.append(f"--{key.replace('_', '-')} {getattr(args, key)}")
    if list(args.models) != ["efficient", "resnet18"]:
        parts.append("--models " + " ".join(args.models))
    if list(args.torch_chamfer) != ["cdist", "mm"]:
        parts.append("--torch-chamfer " + " ".join(args.torch_chamfer))
    return " ".join(parts)


def _configure_twin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["efficient", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration")
    parser.add_argument("--torch-chamfer", nargs="+", choices=("cdist", "mm"),
                        default=["cdist", "mm"], help="Chamfer forms of the PyTorch twin")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                        help="torch.set_num_threads (default: all CPUs)")
    parser.add_argument("--peak-size", type=int, default=2048, help="n of the peak matmul")
    parser.add_argument("--peak-repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")


def twin_main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """JAX against the PyTorch twin (the ``twin`` bench)."""
    for name in ("batch_size", "image_size", "num_points", "rounds", "peak_size",
                 "peak_repeats", "torch_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    b, size, npts = args.batch_size, args.image_size, args.num_points

    try:
        import torch
    except ImportError:
        torch = None
        print("torch not installed: the PyTorch twin is skipped", file=sys.stderr)
    if torch is not None:
        torch.set_num_threads(args.torch_threads)

    print(f"matmul peak ({args.peak_size}^3, float32) ...", file=sys.stderr, flush=True)
    peak = matmul_peak(args.peak_size, args.peak_repeats)
    counted, actual = chamfer_search_flops(b, npts, npts)

    checks, timers, flops = {}, {}, {}
    images, points = step_inputs(size, b, npts, args.seed)
    for name in args.models:
        model = build_model({"encoder": name, "num_points": npts, "image_size": size})
        if torch is not None:
            print(f"{name}: checking the PyTorch twin ...", file=sys.stderr, flush=True)
            checks[name] = check_twin(name, size, npts, seed=args.seed)
        print(f"{name}: compiling the JAX step ...", file=sys.stderr, flush=True)
        compiled = compile_chamfer_step(model, b)
        flops[name] = xla_flops(compiled) - counted + actual
        variables = init_variables(model, jax.random.key(args.seed))
        time_chamfer_step(compiled, model, b, steps=1, warmup=args.warmup, seed=args.seed,
                          variables=variables)
        # Each call copies the initial state and puts the inputs on the device
        # (asynchronously), then runs one untimed step, which waits for them, and the timed one.
        timers[f"{name}/jax"] = (
            lambda c=compiled, m=model, v=variables: time_chamfer_step(
                c, m, b, steps=1, warmup=1, seed=args.seed, variables=v)[0])
        if torch is not None:
            for form in args.torch_chamfer:
                twin = TorchStep(name, variables, images, points, form)
                for _ in range(args.warmup):
                    twin.step()
                timers[f"{name}/torch-{form}"] = twin.step
    print(f"timing {len(timers)} configurations, {args.rounds} rounds ...", file=sys.stderr,
          flush=True)
    with BusyMeter() as meter:
        times = _interleaved(timers, args.rounds)
    median = {k: statistics.median(v) for k, v in times.items()}
    load_line = meter.note("the timed rounds")

    rows = []
    for key, values in times.items():
        name, side = key.split("/")
        framework = "JAX (jit)" if side == "jax" else f"PyTorch {torch.__version__} eager"
        loss = "recon_jax chamfer_distance" if side == "jax" else (
            "torch.cdist ** 2 + min" if side == "torch-cdist" else "baddbmm expansion + min")
        row = [name, framework, loss, f"{median[key]:.3f}",
               f"{min(values):.3f}-{max(values):.3f}", f"{b / median[key]:.1f}"]
        if side == "jax":
            achieved = flops[name] / median[key]
            row += [f"{flops[name] / 1e9:.1f}", f"{achieved / 1e9:.1f}",
                    f"{100 * achieved / peak:.1f}%"]
        else:
            row += ["-", "-", "-"]
        rows.append(row)
    header = ["model", "framework", "Chamfer", "step s (median)", "range", "images/s",
              "GFLOPs/step (XLA)", "GFLOP/s", "of matmul peak"]
    table = markdown_table(header, rows)

    ratio_rows, bars = [], []
    for name in args.models:
        if torch is None:
            continue
        ratios = [median[f"{name}/torch-{form}"] / median[f"{name}/jax"]
                  for form in args.torch_chamfer]
        ratio_rows.append([name] + [f"{r:.2f}" for r in ratios])
        if name == "efficient":
            worst = min(ratios)
            bars.append(f"- Bar (issue 5): JAX / PyTorch twin images/s >= 1.0 for the efficient "
                        f"model: **{worst:.2f}** against the faster twin -> "
                        f"{'met' if worst >= 1.0 else 'NOT met'}.")
    ratio_table = markdown_table(
        ["model"] + [f"JAX / PyTorch ({form}) images/s" for form in args.torch_chamfer],
        ratio_rows) if ratio_rows else "PyTorch not installed: no twin measured."
    check_lines = [
        f"- {name}: {c['params']:,} trainable parameters in both; relative error of the "
        f"output {c['eval']:.1e} (evaluation mode), {c['train']:.1e} (training mode); Chamfer "
        f"{c['loss_cdist']:.1e} (cdist), {c['loss_mm']:.1e} (mm); training-mode gradients "
        f"(float64) {c['grad']:.1e} (largest over all parameters)."
        for name, c in checks.items()
    ]
    peak_line = (f"Matmul peak: {peak / 1e9:.1f} GFLOP/s (float32 {args.peak_size}^3 jnp.matmul, "
                 f"median of {args.peak_repeats}). FLOPs per step include the Chamfer search: "
                 f"XLA counts {counted / 1e9:.3f} GFLOPs for it (loop bodies once), "
                 f"{actual / 1e9:.2f} GFLOPs actually run ({b} pairs as single tiles).")
    print(table)
    print()
    print(ratio_table)
    print("\n".join(bars + check_lines))
    print(peak_line)
    print(load_line)
    if args.no_write:
        return 0
    body = "\n\n".join([
        "## Training step: JAX against a PyTorch twin (`experiments/bench_train.py`)",
        machine_info(),
        f"Command: `{_twin_command(args)}`. One training step at batch {b}, {size}x{size} input, "
        f"{npts} output points: forward (batch-statistics BatchNorm, sampled latent), squared "
        "Chamfer loss (mean over points, both directions added, mean over the batch), "
        "backward, Adam (lr 1e-3). JAX: `make_chamfer_step` of this script, jitted with the "
        "state donated. PyTorch: the same network in `experiments/torch_twin.py`, eager, "
        f"{torch.get_num_threads() if torch else '-'} threads, same initial weights and "
        "inputs, two common forms of the Chamfer loss. Interleaved rounds (one step of each "
        f"configuration per round, {args.rounds} rounds after {args.warmup} warm-up steps); "
        "median step time. FLOPs: XLA cost analysis of the compiled JAX step (multiply-add = "
        "2, element-wise work included), corrected for loops as below.",
        table,
        ratio_table,
        "\n".join(bars) if bars else "",
        "The twin is the same network (checked before timing, with the Flax weights and "
        "random BatchNorm statistics copied over; batch 4):\n" + "\n".join(check_lines)
        if check_lines else "",
        peak_line,
        load_line,
    ])
    write_section(args.output, "train", body)
    print(f"wrote the 'train' section of {args.output}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------
# The real training step of recon_jax.train, per extractor and dtype
# ------------------------------------------------------------------------------------------
class RealStep:
    """One compiled real training step (:func:`recon_jax.cli.flops.compile_train_step`) with its
    own state and a fixed random batch; ``step()`` runs it once and returns its seconds.

    Args:
      config: the nested config (its ``model`` and ``data.batch_size`` decide the step).
      mesh: from :func:`recon_jax.train.make_mesh`.
      seed: of the random batch (images uniform in [0, 1], target clouds normal).
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: Any, seed: int = 0) -> None:
        self.compiled, model = compile_train_step(config, mesh)
        self.memory = step_memory(self.compiled)
        tx = state.create_optimizer(config)
        self.state = jax.device_put(state.create_train_state(config, model, tx),
                                    NamedSharding(mesh, P()))
        rng = np.random.default_rng(seed)
        b, side = config.data.batch_size, layout.IMAGE_SIZE
        self.batch = train.shard_batch({
            "image": rng.uniform(0, 1, (b, side, side, 3)).astype(np.float32),
            "points": rng.normal(0, 0.3, (b, config.data.target_points, 3)).astype(np.float32),
        }, mesh)

    def step(self) -> float:
        start = time.perf_counter()
        self.state, metrics = self.compiled(self.state, self.batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start


def _configure_steps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="experiments/configs/default.py",
                        help="config file FILE.py[:ARG]; --config.SECTION.FIELD=VALUE overrides")
    parser.add_argument("--encoders", default="efficient,efficient_small,resnet18,resnet34",
                        help="comma-separated extractors")
    parser.add_argument("--dtype", default="float32", help="comma-separated compute dtypes")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration")
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")


def steps_main(args: argparse.Namespace, overrides: list[str],
               parser: argparse.ArgumentParser) -> int:
    """Memory and time of the real training step per extractor and dtype (``steps`` bench)."""
    config = configs.load_config_file(args.config)
    configs.apply_overrides(config, overrides)
    encoders = [e for e in args.encoders.split(",") if e]
    dtypes = [d for d in args.dtype.split(",") if d]
    for value, choices, option in ((encoders, EXTRACTORS, "--encoders"),
                                   (dtypes, DTYPES, "--dtype")):
        if not value or any(v not in choices for v in value):
            parser.error(f"{option}: expected a comma-separated list of {tuple(choices)}")
    if args.rounds < 1 or args.warmup < 0:
        parser.error(f"--rounds must be >= 1 and --warmup >= 0, got {args.rounds}, "
                     f"{args.warmup}")
    mesh = train.make_mesh()
    steps: dict[str, RealStep] = {}
    for name in encoders:
        for dtype in dtypes:
            cfg = copy.deepcopy(config)
            if name != config.model.encoder:  # extractor fields belong to the config's encoder
                cfg.model.extractor = ml_collections.ConfigDict()
            cfg.model.encoder, cfg.model.dtype = name, dtype
            print(f"{name}/{dtype}: compiling ...", file=sys.stderr, flush=True)
            steps[f"{name}/{dtype}"] = real = RealStep(cfg, mesh)
            for _ in range(args.warmup):
                real.step()
    print(f"timing {len(steps)} configurations, {args.rounds} rounds ...", file=sys.stderr,
          flush=True)
    with BusyMeter() as meter:
        times = _interleaved({k: v.step for k, v in steps.items()}, args.rounds)
    b = config.data.batch_size
    rows, figures = [], {}
    for key, values in times.items():
        peak, temp = steps[key].memory
        median = statistics.median(values)
        rows.append(key.split("/") + [f"{peak / 2**20:.1f}", f"{temp / 2**20:.1f}",
                                      f"{median:.3f}", f"{min(values):.3f}-{max(values):.3f}",
                                      f"{b / median:.1f}"])
        figures[key] = (peak, median)
    for dtype in dtypes:
        for base in ("resnet18", "resnet34"):
            e, r = figures.get(f"efficient/{dtype}"), figures.get(f"{base}/{dtype}")
            if e and r:
                rows.append([f"efficient / {base}", dtype, f"{e[0] / r[0]:.2f}", "",
                             f"{e[1] / r[1]:.2f}", "", ""])
    m = config.model
    command = " ".join(["python experiments/bench_train.py steps", f"--config {args.config}",
                        *[f"--config.{o}" for o in overrides], f"--encoders {args.encoders}",
                        f"--dtype {args.dtype}", f"--rounds {args.rounds}",
                        f"--warmup {args.warmup}"])
    table = markdown_table(["extractor", "dtype", "peak MiB", "temp MiB", "step s (median)",
                            "range", "images/s"], rows)
    body = "\n\n".join([
        "## Real training step per extractor (`experiments/bench_train.py steps`)",
        machine_info(),
        f"Command: `{command}`. The jitted step of `recon_jax.train` (loss {config.loss.kl_weight} "
        f"KL + {config.loss.cd_weight} CD + {config.loss.emd_weight} EMD, optimizer "
        f"{config.optim.optimizer}), batch {b}, {m.image_size}x{m.image_size} network input "
        f"from {layout.IMAGE_SIZE}x{layout.IMAGE_SIZE} images, {m.num_points} points against "
        f"{config.data.target_points}. Peak: XLA's memory analysis of the compiled step "
        "(arguments + outputs - donated + temporaries). Time: interleaved rounds (one step of "
        f"each configuration per round, {args.rounds} rounds after {args.warmup} warm-up "
        "steps), median. Ratio rows: peak memory and median time.",
        table,
        meter.note("the timed rounds"),
    ])
    print(body)
    if not args.no_write:
        write_section(args.output, "train_steps", body)
        print(f"wrote the 'train_steps' section of {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    _configure_steps(sub.add_parser("steps", help="the real training step per extractor"))
    _configure_twin(sub.add_parser("twin", help="JAX against the PyTorch twin"))
    args, extra = parser.parse_known_args(argv)
    overrides = [a[len("--config."):] for a in extra if a.startswith("--config.")]
    unknown = [a for a in extra if not a.startswith("--config.")]
    if unknown or (overrides and args.bench != "steps"):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if args.bench == "steps":
        return steps_main(args, overrides, parser)
    return twin_main(args, parser)


if __name__ == "__main__":
    sys.exit(main())
