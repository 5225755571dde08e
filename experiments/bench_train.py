"""Training-step throughput: recon_jax (JAX) against its PyTorch twin, on this machine's CPU.

Run (about 5 minutes on a quiet 2-core CPU):
    python experiments/bench_train.py [--models efficient resnet18] [--rounds 7]

What is timed: one whole training step at batch 32 -- forward with batch-statistics BatchNorm
and the reparameterised latent, the squared Chamfer loss against 2048-point targets (mean over
points, both directions added, mean over the batch), backward, and an Adam update (lr 1e-3) --
for each extractor:

* **JAX**: :func:`recon_jax.models.flops.compile_train_step` (jitted, state donated), timed by
  :func:`~recon_jax.models.flops.time_train_step` on random normal images and clouds.
* **PyTorch twin** (``experiments/torch_twin.py``, eager, CPU, ``torch.set_num_threads(
  os.cpu_count())``): the same network layer for layer, started from the same weights (copied
  from the Flax initialisation), ``torch.optim.Adam`` (same defaults as ``optax.adam``), the
  same input arrays (NCHW). The Chamfer loss in two forms a PyTorch user would write:
  ``cdist`` (``torch.cdist(x, y) ** 2`` then ``min``) and ``mm`` (``|x|^2 + |y|^2 - 2 x.y`` with
  ``baddbmm``, then ``min``); the ratios are given against both.

Before timing, the twin is checked to be the same network: equal trainable parameter counts
and, with the Flax weights (and randomised BatchNorm statistics) copied over, equal outputs in
evaluation mode and in training mode (batch statistics, ``z = mu``), equal Chamfer loss and
equal gradients of every parameter (in float64: in float32, rounding alone makes two correct
implementations of these BatchNorm networks differ by up to ~10% in some gradients). The script
stops if any check fails.

Measurement: every configuration is warmed up (compilation excluded), then ``--rounds`` rounds
each time one step of every configuration, in an order reversed every other round, so that a
change of load on this shared machine hits all of them alike. Reported: the median step time
(and its range), images/s = batch / median. FLOPs per step: XLA's cost analysis of the compiled
JAX step (a multiply-add counts as 2; element-wise work included). XLA counts the body of a loop
once, so the Chamfer nearest-neighbour search (``lax.map``/``lax.scan`` over tiles) is under-
counted; the table adds it back, measured by XLA on one pair compiled as a single tile, times
the batch. Fraction of peak: (FLOPs per step / median step time) / the machine's measured
float32 matmul rate (median of ``--peak-repeats`` jitted ``n x n @ n x n`` products, FLOP/s =
``2 n^3 / t``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from recon_jax.bench_report import machine_info, markdown_table, write_section
from recon_jax.losses import chamfer_distance
from recon_jax.models import init_variables, make_model
from recon_jax.models.flops import compile_train_step, param_count, time_train_step

__all__ = [
    "TorchStep",
    "chamfer_search_flops",
    "check_twin",
    "BusyMeter",
    "matmul_peak",
    "step_inputs",
    "xla_flops",
    "main",
]

MODELS = ("efficient", "resnet18", "resnet34")


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
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        raise RuntimeError(f"the {jax.default_backend()} backend gave no FLOP count")
    return float(cost["flops"])


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
# The PyTorch side
# ------------------------------------------------------------------------------------------
def step_inputs(image_size: int, batch_size: int, num_points: int, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[B, H, W, 3]`` and target clouds ``[B, N, 3]`` (float32) that
    :func:`~recon_jax.models.flops.time_train_step` draws for ``seed``, as NumPy arrays."""
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
        model = make_model(encoder, num_points=weights.shape[1], dtype=jnp.float64)
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

    model = make_model(encoder, num_points=num_points)
    variables = init_variables(model, jax.random.key(seed), image_size)
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


def _command(args: argparse.Namespace) -> str:
    parts = ["python experiments/bench_train.py"]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args(argv)
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
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    print(f"matmul peak ({args.peak_size}^3, float32) ...", file=sys.stderr, flush=True)
    peak = matmul_peak(args.peak_size, args.peak_repeats)
    counted, actual = chamfer_search_flops(b, npts, npts)

    checks, timers, flops = {}, {}, {}
    images, points = step_inputs(size, b, npts, args.seed)
    for name in args.models:
        model = make_model(name, num_points=npts)
        if torch is not None:
            print(f"{name}: checking the PyTorch twin ...", file=sys.stderr, flush=True)
            checks[name] = check_twin(name, size, npts, seed=args.seed)
        print(f"{name}: compiling the JAX step ...", file=sys.stderr, flush=True)
        compiled = compile_train_step(model, size, b)
        flops[name] = xla_flops(compiled) - counted + actual
        variables = init_variables(model, jax.random.key(args.seed), size)
        time_train_step(compiled, model, size, b, steps=1, warmup=args.warmup, seed=args.seed,
                        variables=variables)
        # Each call copies the initial state and draws the inputs (asynchronously), then runs
        # one untimed step, which waits for them, and the timed one.
        timers[f"{name}/jax"] = (
            lambda c=compiled, m=model, v=variables: time_train_step(
                c, m, size, b, steps=1, warmup=1, seed=args.seed, variables=v)[0])
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
        f"Command: `{_command(args)}`. One training step at batch {b}, {size}x{size} input, "
        f"{npts} output points: forward (batch-statistics BatchNorm, sampled latent), squared "
        "Chamfer loss (mean over points, both directions added, mean over the batch), "
        "backward, Adam (lr 1e-3). JAX: the jitted step of `recon_jax.models.flops` with the "
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


if __name__ == "__main__":
    sys.exit(main())
