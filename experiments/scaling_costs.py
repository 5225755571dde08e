"""Part-by-part XLA costs of the paper-config training step; roofline predictions; this CPU.

    python experiments/scaling_costs.py [--no-time] [--json FILE]

Compiles each part of the step of ``experiments/configs/paper.py`` (batch 32) as its own jitted
function: extractor forward+backward, latent head + decoder forward+backward (with the KL term),
Chamfer and Sinkhorn EMD forward+backward, the optimizer update; reads FLOPs and bytes accessed
from XLA's cost analysis (loop bodies are counted once: the Chamfer search and the Sinkhorn
iterations are corrected); predicts each part on one H100 / H200 SXM by a roofline, and the step
on 8 GPUs with data parallelism (the gradient all-reduce counted from the 8-device step's HLO).
Without ``--no-time`` it also measures this CPU (matmul and copy peaks, each part, the whole
step) and sets its own roofline beside. Prints Markdown: the figures of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_report import machine_info, markdown_table, median_seconds  # sibling script
from bench_train import BusyMeter, matmul_peak  # sibling script
from gpu_check import object_pairs  # sibling script

from recon_jax import configs, evaluate, protocol, state, train
from recon_jax.cli.flops import compile_train_step
from recon_jax.data import layout
from recon_jax.losses import chamfer_distance, emd, kl_divergence
from recon_jax.losses.assignment import auction_assignment
from recon_jax.losses.sinkhorn import default_schedule
from recon_jax.measure import multiply_adds, param_count, xla_cost
from recon_jax.models import LATENT_RNG, init_variables

__all__ = [
    "GPUS", "Cost", "copy_bandwidth", "gpu_cost", "gpu_time", "main", "part_costs", "roofline",
]

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER = os.path.join(HERE, "configs", "paper.py")
#: Vendor peaks (dense: the datasheets' tensor figures are "with sparsity", twice the dense
#: ones). FLOP/s and bytes/s. NVLink: per direction (the datasheets' 900 GB/s is both).
GPUS = {
    "H100 SXM": {"tf32": 494.7e12, "bf16": 989.4e12, "fp32": 66.9e12, "hbm": 3.35e12,
                 "nvlink": 450e9},
    "H200 SXM": {"tf32": 494.7e12, "bf16": 989.4e12, "fp32": 66.9e12, "hbm": 4.8e12,
                 "nvlink": 450e9},
}
#: Assumed latency of one small all-reduce over NVLink (not a vendor figure).
ALLREDUCE_LATENCY_S = 15e-6
TRAIN_IMAGES = 35_000 * 24  # real ShapeNet training views (3D-R2N2 split, approximately)
TEST_VIEWS = 210_000  # real ShapeNet test views (~8.8k models x 24)
EVAL_BATCH = 256  # views per device batch in the evaluation estimate
#: ICP iterations of a batch: the most over the 40 pairs of docs/design.md, "recon_jax.protocol"
#: (median 27); a batched ``while_loop`` runs until its slowest view stops.
ICP_ITERATIONS = 49
#: Assumed GPU time of one bidding round of the auction for a whole batch: a ``while_loop``
#: iteration of about ten small kernels (launch-bound; not a vendor figure).
AUCTION_ROUND_S = 20e-6
PART_NAMES = ("extractor", "head", "chamfer", "emd", "optimizer")
PART_LABELS = {
    "extractor": "extractor forward + backward",
    "head": "latent head + decoder + KL, forward + backward",
    "chamfer": "Chamfer (squared, sum over points), forward + backward",
    "emd": "Sinkhorn EMD (170 iterations), forward + backward",
    "optimizer": "optimizer update (AdamW, grad norm, finiteness)",
}

Cost = dict[str, float]  # flops, bytes, tensor_flops


def _cost(fn: Callable[..., Any], *args: Any, tensor: bool = False) -> Cost:
    """XLA's FLOPs and bytes of ``jax.jit(fn)`` at ``args`` (shapes), and the FLOPs of its
    convolutions and matrix products (2 x multiply-adds) when ``tensor``."""
    cost = xla_cost(jax.jit(fn).lower(*args).compile())
    out = {"flops": float(cost["flops"]), "bytes": float(cost["bytes accessed"]),
           "tensor_flops": 0.0}
    if tensor:
        out["tensor_flops"] = 2.0 * multiply_adds(fn, *args)
    return out


def _scale(cost: Cost, factor: float) -> Cost:
    return {k: v * factor for k, v in cost.items()}


def _add(a: Cost, b: Cost) -> Cost:
    return {k: a[k] + b[k] for k in a}


def _sds(shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def part_functions(config: Any) -> tuple[dict[str, tuple[Callable[..., Any], tuple]], Any]:
    """``name -> (fn, argument shapes)`` for the network parts and the optimizer, and the model.

    ``fn`` computes the part's forward and backward as the training step does (BatchNorm in
    training mode, the latent sampled, the KL term added in ``head``).
    """
    model = state.create_model(config)
    tx = state.create_optimizer(config)
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    params, stats = variables["params"], variables["batch_stats"]
    b, n = config.data.batch_size, config.model.num_points
    images = _sds((b, model.image_size, model.image_size, 3))

    def extractor_out(p, s, x):
        return model.apply({"params": {"extractor": p}, "batch_stats": {"extractor": s}}, x,
                           method=lambda m, im: m.extractor(im, train=True),
                           mutable=["batch_stats"])

    features = jax.eval_shape(extractor_out, params["extractor"], stats["extractor"], images)[0]

    def extractor(p, s, x, ct):
        (_, vjp, updates) = jax.vjp(lambda q: extractor_out(q, s, x), p, has_aux=True)
        return vjp(ct)[0], updates

    def head_loss(p_latent, p_decoder, feats, key, ct):
        def head(m, f):
            mu, logvar, z = m.latent(f, deterministic=False)
            return m.decoder(z), mu, logvar

        points, mu, logvar = model.apply({"params": {"latent": p_latent, "decoder": p_decoder}},
                                         feats, method=head, rngs={LATENT_RNG: key})
        kl = kl_divergence(mu, logvar, weight=1.0)
        return jnp.sum(points.astype(jnp.float32) * ct) + config.loss.kl_weight * kl

    def optimizer(grads, opt_state, p):
        updates, opt_state = tx.update(grads, opt_state, p)
        p = optax.apply_updates(p, updates)
        return p, opt_state, optax.tree.norm(grads), state.is_finite((p, opt_state))

    parts = {
        "extractor": (extractor, (params["extractor"], stats["extractor"], images, features)),
        "head": (jax.grad(head_loss, argnums=(0, 1, 2)),
                 (params["latent"], params["decoder"], features,
                  jax.eval_shape(lambda: jax.random.key(0)), _sds((b, n, 3)))),
        "optimizer": (optimizer, (params, jax.eval_shape(tx.init, params), params)),
    }
    return parts, model


def _chamfer_pair(x, y, tile_size=None):
    kwargs = {} if tile_size is None else {"tile_size": tile_size}
    return jax.value_and_grad(lambda a: chamfer_distance(
        a, y, point_reduction="sum", batch_reduction="sum", **kwargs))(x)


def _chamfer_metric(x, y, tile_size=None):
    kwargs = {} if tile_size is None else {"tile_size": tile_size}
    return chamfer_distance(x, y, squared=False, **kwargs)


def chamfer_cost(fn: Callable[..., Any], n: int, m: int) -> tuple[Cost, Cost, Cost]:
    """Cost of ``fn(x [1, n, 3], y [1, m, 3], tile_size)`` for one pair: FLOPs of the pair
    compiled as a single ``n x m`` tile (no loop: everything counted), bytes of the default
    tiles (the tile lives in registers and caches; a loop body moves a few KiB, counted once).
    Also returns the two raw costs."""
    x, y = _sds((1, n, 3)), _sds((1, m, 3))
    single = _cost(lambda a, b: fn(a, b, (n, m)), x, y)
    tiled = _cost(fn, x, y)
    return {"flops": single["flops"], "bytes": tiled["bytes"], "tensor_flops": 0.0}, single, tiled


def _emd_pair(x, y):
    return jax.value_and_grad(lambda a: emd(a, y, batch_reduction="sum"))(x)


def _sinkhorn_iteration(kernel, u, v, a, b):
    """One kernel-mode Sinkhorn iteration: ``u = a / (K v)``, ``v = b / (K^T u)``."""
    u = a / (kernel @ v)
    return u, b / (u @ kernel)


def point_loss_costs(batch: int, n: int, m: int) -> tuple[dict[str, Cost], dict[str, Any]]:
    """Per-batch costs of the Chamfer and Sinkhorn EMD parts, loops corrected, and the raw
    figures the corrections came from."""
    one_x, one_y = _sds((1, n, 3)), _sds((1, m, 3))
    pair, single, tiled = chamfer_cost(_chamfer_pair, n, m)
    chamfer = _scale(pair, batch)
    counted = _cost(_emd_pair, one_x, one_y)  # each stage's iteration body once
    iteration = _cost(_sinkhorn_iteration, _sds((n, m)), _sds((n,)), _sds((m,)), _sds((n,)),
                      _sds((m,)))
    schedule = default_schedule("euclidean")
    stages = len(schedule.coarse_stages) + len(schedule.fine_stages)
    extra = schedule.iterations - stages
    emd_cost = _scale(_add(counted, _scale(iteration, extra)), batch)
    raw = {"chamfer_single_tile": single, "chamfer_tiled_counted": tiled,
           "emd_counted": counted, "sinkhorn_iteration": iteration,
           "sinkhorn_iterations": schedule.iterations, "sinkhorn_stages": stages}
    return {"chamfer": chamfer, "emd": emd_cost}, raw


def part_costs(config: Any) -> tuple[dict[str, dict[str, Cost]], dict[str, Any]]:
    """``dtype -> part -> cost`` for one step of ``config`` on one device (its whole batch), for
    both compute dtypes (the losses and the optimizer are float32 in both)."""
    losses, raw = point_loss_costs(config.data.batch_size, config.model.num_points,
                                   config.data.target_points)
    costs = {}
    for dtype in ("float32", "bfloat16"):
        cfg = copy.deepcopy(config)
        cfg.model.dtype = dtype
        print(f"costs ({dtype}) ...", file=sys.stderr, flush=True)
        parts, _ = part_functions(cfg)
        by_name = {name: _cost(fn, *args, tensor=name != "optimizer")
                   for name, (fn, args) in parts.items()}
        by_name.update(losses)
        costs[dtype] = {name: by_name[name] for name in PART_NAMES}
    return costs, raw


def gpu_time(name: str, cost: Cost, peaks: dict[str, float], dtype: str) -> tuple[float, str]:
    """Roofline seconds of one part and which bound set it (``compute`` or ``memory``).

    Convolutions and matrix products of the network run on tensor cores (TF32 for float32, the
    default precision of JAX on these GPUs; BF16 for bfloat16); everything else, and every FLOP of
    the loss and optimizer parts (the Chamfer search runs at ``Precision.HIGHEST``), at the
    FP32 rate of the CUDA cores."""
    tensor_peak = peaks["bf16" if dtype == "bfloat16" else "tf32"]
    other = max(cost["flops"] - cost["tensor_flops"], 0.0)
    compute = cost["tensor_flops"] / tensor_peak + other / peaks["fp32"]
    memory = cost["bytes"] / peaks["hbm"]
    return max(compute, memory), ("compute" if compute >= memory else "memory")


def gpu_cost(costs: dict[str, dict[str, Cost]], dtype: str, name: str) -> Cost:
    """The cost used for a GPU: XLA:CPU's, except the bytes of the bfloat16 network parts,
    taken as half the float32 ones (XLA:CPU converts bfloat16 convolutions to float32 and back,
    which adds traffic a GPU does not have; its activations are bfloat16)."""
    cost = dict(costs[dtype][name])
    if dtype == "bfloat16" and name in ("extractor", "head"):
        cost["bytes"] = costs["float32"][name]["bytes"] / 2
    return cost


def roofline(cost: Cost, flops_per_s: float, bytes_per_s: float) -> float:
    """``max(FLOPs / peak FLOP/s, bytes / peak bandwidth)`` in seconds."""
    return max(cost["flops"] / flops_per_s, cost["bytes"] / bytes_per_s)


def copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes/s of a jitted ``x * 2`` on ``megabytes`` of float32 (read + write), in place
    (donated: a fresh output buffer would time the page faults of its first touch), median of
    ``repeats`` after a warm-up."""
    fn = jax.jit(lambda a: a * 2.0, donate_argnums=0)
    x = fn(jnp.ones((megabytes * 2**20 // 4,), jnp.float32)).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        x = fn(x).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * x.nbytes / statistics.median(times)


def time_parts(config: Any, repeats: int) -> dict[str, float]:
    """Median seconds of each part on this machine (random inputs), and of the whole step."""
    parts, model = part_functions(config)
    rng = np.random.default_rng(0)

    def concrete(tree):
        return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype)
                            if jnp.issubdtype(s.dtype, jnp.floating) else s, tree)

    variables = jax.jit(lambda k: init_variables(model, k))(jax.random.key(0))
    params, stats = variables["params"], variables["batch_stats"]
    tx = state.create_optimizer(config)
    b, n, m = config.data.batch_size, config.model.num_points, config.data.target_points
    images = jnp.asarray(rng.uniform(0, 1, (b, model.image_size, model.image_size, 3)),
                         jnp.float32)
    inputs = {"extractor": (params["extractor"], stats["extractor"], images,
                            concrete(parts["extractor"][1][3])),
              "head": (params["latent"], params["decoder"], concrete(parts["head"][1][2]),
                       jax.random.key(1), concrete(parts["head"][1][4])),
              "optimizer": (concrete(params), tx.init(params), params)}
    x = jnp.asarray(rng.normal(0, 0.3, (b, n, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(0, 0.3, (b, m, 3)) + 0.05, jnp.float32)
    seconds = {}
    for name in ("extractor", "head", "optimizer"):
        fn = jax.jit(parts[name][0])
        seconds[name] = median_seconds(lambda f=fn, a=inputs[name]: f(*a), repeats)
        print(f"  {name}: {seconds[name]:.3f} s", file=sys.stderr, flush=True)
    for name, fn in (("chamfer", jax.jit(_chamfer_pair)), ("emd", jax.jit(_emd_pair))):
        seconds[name] = median_seconds(lambda f=fn: f(x, y), repeats)
        print(f"  {name}: {seconds[name]:.3f} s", file=sys.stderr, flush=True)
    compiled, _ = compile_train_step(config)
    mesh = train.make_mesh()
    st = jax.device_put(state.create_train_state(config, model, tx),
                        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    batch = train.shard_batch({
        "image": rng.uniform(0, 1, (b, layout.IMAGE_SIZE, layout.IMAGE_SIZE, 3)).astype(
            np.float32),
        "points": rng.normal(0, 0.3, (b, m, 3)).astype(np.float32)}, mesh)
    holder = {"state": st}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch)
        return metrics

    seconds["step"] = median_seconds(step, repeats)
    print(f"  step: {seconds['step']:.3f} s", file=sys.stderr, flush=True)
    return seconds


def eval_costs(config: Any, views: int, points: int = 1024) -> dict[str, Cost]:
    """Per-view costs of scoring on a device, batch ``views``: the prediction (forward pass,
    running statistics), one ICP iteration (XLA counts the body of ``icp_batch_jax``'s loop once:
    its figure is the set-up plus one iteration) and the unsquared Chamfer distance
    (:func:`chamfer_cost`), for ``points``-point clouds."""
    model = state.create_model(config)
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    predict = evaluate.make_predict_fn(model)
    images = _sds((views, layout.IMAGE_SIZE, layout.IMAGE_SIZE, 3))
    clouds = _sds((views, points, 3))
    return {
        "predict": _scale(_cost(predict, variables, images, tensor=True), 1 / views),
        "icp_iteration": _scale(_cost(evaluate.icp_batch_jax, clouds, clouds), 1 / views),
        "chamfer": chamfer_cost(_chamfer_metric, points, points)[0],
    }


def auction_rounds(views: int = 8, seed: int = 4) -> dict[str, Any]:
    """Bidding rounds of the JAX exact-EMD solver on ``views`` evaluation-like 1024-point views
    (``gpu_check.object_pairs``, scaled and subsampled by the protocol), solved as one batch, and
    the CPU seconds of that batch (after a compiling run)."""
    preds, gts = object_pairs(views, 2048, 1024, seed=seed)
    pairs = [protocol.prepare_view(p, g, seed=(0, i))
             for i, (p, g) in enumerate(zip(preds, gts, strict=True))]
    cost = jnp.asarray(np.stack([np.linalg.norm(p[:, None] - g[None], axis=-1)
                                 for p, g in pairs]), jnp.float32)
    solve = jax.jit(lambda c: auction_assignment(c, return_info=True))
    jax.block_until_ready(solve(cost))
    start = time.perf_counter()
    _, converged, info = jax.block_until_ready(solve(cost))
    seconds = time.perf_counter() - start
    rounds = np.asarray(info["iterations"])
    return {"views": views, "rounds": rounds.tolist(), "phases": np.asarray(
        info["phases"]).tolist(), "converged": bool(np.all(converged)), "cpu_s": seconds}


def collectives(config_path: str, devices: int) -> dict[str, Any]:
    """All-reduces of the compiled step on ``devices`` fake CPU devices (run in a subprocess:
    the device count is fixed at start-up): their number and total bytes."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--collectives-of",
                          config_path], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "f64": 8}


def _all_reduces_of(config_path: str) -> dict[str, Any]:
    config = configs.load_config_file(config_path)
    compiled, _ = compile_train_step(config)
    sizes = []
    for line in compiled.as_text().splitlines():
        match = re.search(r"=\s*(.*?)\s+all-reduce(?:-start)?\(", line)
        if match:
            shapes = re.findall(r"\b(f32|bf16|f16|s32|u32|pred|f64)\[([\d,]*)\]", match.group(1))
            sizes.append(sum(_DTYPE_BYTES[t] * int(np.prod([int(d) for d in dims.split(",") if d]))
                             for t, dims in shapes))
    return {"devices": jax.device_count(), "count": len(sizes), "bytes": int(sum(sizes)),
            "largest": int(max(sizes, default=0))}


def _fmt_ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-time", action="store_true", help="costs and predictions only")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per CPU measurement")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    parser.add_argument("--collectives-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.collectives_of:
        print(json.dumps(_all_reduces_of(args.collectives_of)))
        return 0
    started = time.perf_counter()
    config = configs.load_config_file(PAPER)
    b = config.data.batch_size
    report: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(),
                              "batch": b}
    costs, raw = part_costs(config)
    whole, _ = compile_train_step(config)
    whole_cost = xla_cost(whole)
    params = param_count(jax.eval_shape(lambda: init_variables(
        state.create_model(config), jax.random.key(0)))["params"])
    print("collectives (8 fake devices) ...", file=sys.stderr, flush=True)
    coll = collectives(PAPER, 8)
    report.update(costs=costs, raw=raw, params=params, collectives=coll,
                  whole_step_counted={"flops": float(whole_cost["flops"]),
                                      "bytes": float(whole_cost["bytes accessed"])})

    lines = ["## Part costs (XLA cost analysis, paper config, batch 32, one device)", "",
             machine_info(), ""]
    rows = []
    for name in PART_NAMES:
        f32, bf = costs["float32"][name], costs["bfloat16"][name]
        rows.append([PART_LABELS[name], f"{f32['flops'] / 1e9:.1f}",
                     f"{f32['tensor_flops'] / 1e9:.1f}", f"{f32['bytes'] / 1e9:.2f}",
                     f"{bf['flops'] / 1e9:.1f}", f"{bf['bytes'] / 1e9:.2f}"])
    total = {d: {k: sum(c[k] for c in costs[d].values()) for k in ("flops", "bytes")}
             for d in costs}
    rows.append(["**sum**", f"{total['float32']['flops'] / 1e9:.1f}", "",
                 f"{total['float32']['bytes'] / 1e9:.2f}",
                 f"{total['bfloat16']['flops'] / 1e9:.1f}",
                 f"{total['bfloat16']['bytes'] / 1e9:.2f}"])
    lines += [markdown_table(["part", "GFLOP f32", "of which conv/matmul", "GB f32",
                              "GFLOP bf16", "GB bf16"], rows), ""]
    lines.append(f"Whole step as XLA counts it (float32, each loop body once): "
                 f"{whole_cost['flops'] / 1e9:.1f} GFLOP, "
                 f"{whole_cost['bytes accessed'] / 1e9:.2f} GB. Parameters: {params:,}. "
                 f"Loop corrections: Chamfer FLOPs from one pair compiled as a single tile "
                 f"({raw['chamfer_single_tile']['flops'] / 1e6:.1f} MFLOP a pair, against "
                 f"{raw['chamfer_tiled_counted']['flops'] / 1e6:.2f} counted with the default "
                 f"tiles); Sinkhorn: {raw['emd_counted']['flops'] / 1e6:.1f} MFLOP / "
                 f"{raw['emd_counted']['bytes'] / 1e6:.1f} MB counted a pair + "
                 f"{raw['sinkhorn_iterations'] - raw['sinkhorn_stages']} x one iteration "
                 f"({raw['sinkhorn_iteration']['flops'] / 1e6:.1f} MFLOP, "
                 f"{raw['sinkhorn_iteration']['bytes'] / 1e6:.1f} MB).")
    lines.append("")
    lines.append(f"8-device step (fake CPU devices): {coll['count']} all-reduces, "
                 f"{coll['bytes'] / 1e6:.1f} MB in all, the largest "
                 f"{coll['largest'] / 1e6:.1f} MB.")
    lines.append("")

    predictions: dict[str, Any] = {}
    for gpu, peaks in GPUS.items():
        rows = []
        for dtype in ("float32", "bfloat16"):
            per = {name: gpu_time(name, gpu_cost(costs, dtype, name), peaks, dtype)
                   for name in PART_NAMES}
            one = sum(t for t, _ in per.values())
            # 8 GPUs: the batch parts scale with the per-device batch, the optimizer does not.
            reduce_s = (2 * 7 / 8 * params * 4 / peaks["nvlink"]
                        + coll["count"] * ALLREDUCE_LATENCY_S)
            batch_s = one - per["optimizer"][0]
            eight_small = batch_s * 4 / b + per["optimizer"][0] + reduce_s  # global 32
            eight_large = one + reduce_s  # per-device 32, global 256
            predictions[f"{gpu}/{dtype}"] = {
                "parts": {k: v[0] for k, v in per.items()}, "step": one,
                "allreduce": reduce_s, "eight_global32": eight_small,
                "eight_global256": eight_large}
            epoch = {
                "1 GPU": TRAIN_IMAGES / b * one,
                "8 GPUs, global 32": TRAIN_IMAGES / b * eight_small,
                "8 GPUs, global 256": TRAIN_IMAGES / (8 * b) * eight_large}
            predictions[f"{gpu}/{dtype}"]["epoch_s"] = epoch
            rows.append([dtype] + [f"{_fmt_ms(per[k][0])} ({per[k][1][0]})" for k in PART_NAMES]
                        + [_fmt_ms(one), f"{b / one:,.0f}", _fmt_ms(eight_small),
                           _fmt_ms(eight_large), f"{epoch['1 GPU'] / 60:.1f}",
                           f"{epoch['8 GPUs, global 32'] / 60:.1f}",
                           f"{epoch['8 GPUs, global 256'] / 60:.1f}"])
        lines += [f"### Roofline, {gpu}", "",
                  markdown_table(["dtype"] + list(PART_NAMES) + [
                      "step ms", "images/s", "8 GPUs global 32: ms", "8 GPUs global 256: ms",
                      "epoch min (1 GPU)", "epoch min (8 GPUs, 32)", "epoch min (8 GPUs, 256)"],
                      rows), "",
                  f"All-reduce on 8 GPUs: 2 x 7/8 x {params * 4 / 1e6:.1f} MB of float32 "
                  f"gradients over {peaks['nvlink'] / 1e9:.0f} GB/s + {coll['count']} x "
                  f"{ALLREDUCE_LATENCY_S * 1e6:.0f} us = "
                  f"{_fmt_ms(predictions[f'{gpu}/float32']['allreduce'])} ms.", ""]
    report["predictions"] = predictions

    if not args.no_time:
        print("timing on this CPU ...", file=sys.stderr, flush=True)
        with BusyMeter() as meter:
            # The peaks before and after the parts (the machine is shared): their means are
            # this CPU's roofline.
            before = (matmul_peak(), copy_bandwidth())
            seconds = time_parts(config, args.repeats)
            after = (matmul_peak(), copy_bandwidth())
        peak, bandwidth = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        busy = ("an unmeasured share of the cores" if meter.other_cores is None
                else f"{meter.other_cores:.2f} of the {os.cpu_count()} cores")
        report["cpu"] = {"matmul_flops": [before[0], after[0]],
                         "copy_bytes_per_s": [before[1], after[1]], "seconds": seconds,
                         "other_cores": meter.other_cores}
        rows = []
        for name in PART_NAMES:
            predicted = roofline(costs["float32"][name], peak, bandwidth)
            rows.append([PART_LABELS[name], f"{predicted:.3f}", f"{seconds[name]:.3f}",
                         f"{seconds[name] / predicted:.1f}"])
        predicted_step = sum(roofline(c, peak, bandwidth) for c in costs["float32"].values())
        rows.append(["**whole step** (compiled as one)", f"{predicted_step:.3f}",
                     f"{seconds['step']:.3f}", f"{seconds['step'] / predicted_step:.1f}"])
        lines += ["### This CPU: roofline against measured (float32)", "",
                  f"Peaks measured here before and after the parts: {before[0] / 1e9:.1f} and "
                  f"{after[0] / 1e9:.1f} GFLOP/s (float32 2048^3 matmul), {before[1] / 1e9:.1f} "
                  f"and {after[1] / 1e9:.1f} GB/s (x * 2 in place on 256 MiB, read + write); "
                  f"the roofline uses their means. Each time: median of {args.repeats} runs "
                  f"after a warm-up. Other processes kept {busy} busy on average during the "
                  "timings (a shared machine).", "",
                  markdown_table(["part", "predicted s", "measured s", "measured / predicted"],
                                 rows), ""]
    print("evaluation costs ...", file=sys.stderr, flush=True)
    ev = eval_costs(config, EVAL_BATCH)
    report["eval_costs"] = ev
    rounds = None
    if not args.no_time:
        print("auction rounds ...", file=sys.stderr, flush=True)
        rounds = report["auction"] = auction_rounds()
    rows = []
    for gpu, peaks in GPUS.items():
        predict_s = gpu_time("predict", ev["predict"], peaks, "float32")[0]
        icp_s = ICP_ITERATIONS * gpu_time("icp", ev["icp_iteration"], peaks, "float32")[0]
        cd_s = gpu_time("chamfer", ev["chamfer"], peaks, "float32")[0]
        emd_s = (max(rounds["rounds"]) * AUCTION_ROUND_S / EVAL_BATCH) if rounds else float("nan")
        total = predict_s + icp_s + cd_s + emd_s
        report["predictions"][f"{gpu}/eval_view_s"] = total
        rows.append([gpu, f"{1e3 * predict_s:.3f}", f"{1e3 * icp_s:.3f}", f"{1e3 * cd_s:.4f}",
                     f"{1e3 * emd_s:.2f}", f"{1e3 * total:.2f}",
                     f"{total * TEST_VIEWS / 60:.1f}"])
    lines += [f"### Scoring on one GPU, batches of {EVAL_BATCH} views (float32)", "",
              markdown_table(["GPU", "predict ms/view", f"ICP ({ICP_ITERATIONS} iterations)",
                              "CD", "exact EMD (auction)", "total ms/view",
                              f"{TEST_VIEWS:,} views, min"], rows), "",
              f"Per view (XLA): prediction {ev['predict']['flops'] / 1e9:.2f} GFLOP, "
              f"{ev['predict']['bytes'] / 1e6:.1f} MB; ICP set-up + one iteration "
              f"{ev['icp_iteration']['flops'] / 1e6:.1f} MFLOP, "
              f"{ev['icp_iteration']['bytes'] / 1e6:.1f} MB; CD "
              f"{ev['chamfer']['flops'] / 1e6:.1f} MFLOP."]
    if rounds:
        lines.append(f"Auction on {rounds['views']} evaluation-like 1024-point views in one "
                     f"batch: {min(rounds['rounds'])}-{max(rounds['rounds'])} bidding rounds, "
                     f"{max(rounds['phases'])} epsilon phases, converged: {rounds['converged']}; "
                     f"{rounds['cpu_s']:.1f} s on this CPU. GPU estimate: the batch's largest "
                     f"round count x {AUCTION_ROUND_S * 1e6:.0f} us (assumed) / {EVAL_BATCH} "
                     "views.")
    lines.append("")
    lines.append(f"Run took {time.perf_counter() - started:.0f} s.")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
