"""One command that measures what matters on the accelerator JAX sees (about 8 minutes, one GPU).

    python experiments/gpu_check.py [--out docs/benchmarks.md] [--no-write]
    python experiments/gpu_check.py --quick --out /tmp/check.md   # tiny sizes, CPU, < 1 minute

Sections, on the first device: Chamfer and Sinkhorn EMD forward+backward on 32 pairs of 2048
points (``batch_mode`` "map" against "vmap"); the exact EMD of 32 pairs of 1024 points (the JAX
solver against SciPy: costs must agree to 1e-5 relative); the training step of
``experiments/configs/paper.py`` in float32 and bfloat16 (images/s, XLA peak memory); evaluation
views/s (prediction on the device; the protocol on the host, and batched on the device). Each
measurement is a warm-up (compilation) and a few timed repetitions; a section past its time
budget skips the rest with a note. Prints Markdown and replaces the "gpu_check" section of
``--out``. ``--quick``: the same code at tiny sizes (B = 2, 64 points, the tiny config). Exit
status 1 when a check fails. Design notes: docs/design.md, "experiments/gpu_check.py".
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.metadata
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import bench_report
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.spatial.transform import Rotation

from recon_jax import configs, evaluate, protocol, state, train
from recon_jax.cli.flops import compile_train_step
from recon_jax.data import layout
from recon_jax.data.primitives import sample_outer_surface
from recon_jax.data.shapes import make_object
from recon_jax.losses import chamfer_distance, emd, exact_emd
from recon_jax.measure import step_memory
from recon_jax.models import init_variables

__all__ = [
    "FULL", "PLACEHOLDER", "QUICK", "SECTION", "Budget", "Sizes", "device_info", "main",
    "object_pairs", "run_check",
]

SECTION = "gpu_check"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "docs", "benchmarks.md")
#: Relative agreement required between the JAX exact-EMD solver and SciPy.
EXACT_RTOL = 1e-5
#: Views of real ShapeNet's test split (about 8.8k models x 24 views).
SHAPENET_TEST_VIEWS = 210_000
TITLE = "## GPU check (`experiments/gpu_check.py`)"
PLACEHOLDER = f"""{TITLE}

Not run on a GPU yet: no accelerator has been available to the project so far. On a machine
with one GPU, `python experiments/gpu_check.py` (about 8 minutes) replaces this section with the
measured losses (`map` against `vmap`), exact EMD (JAX solver against SciPy), training step
(float32 and bfloat16: images/s, peak memory) and evaluation views/s. Until then the GPU figures
are predictions from XLA's cost analysis: docs/scaling.md.
"""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes, repetitions and time budgets (seconds) of a run."""

    pairs: int  # B of the loss section
    points: int  # points per cloud in the loss section
    exact_pairs: int
    exact_points: int
    config: str  # config file of the training step and the model of the evaluation
    batch: int  # training batch (global; one device)
    predict_views: int  # views per prediction call
    host_views: int  # views scored by the host protocol
    device_views: int  # views scored in one batch on the device
    gt_points: int  # ground-truth points of the evaluation (1024 in ShapeNet)
    repeats: int
    budgets: dict[str, float]
    time_limit: float  # whole run


FULL = Sizes(pairs=32, points=2048, exact_pairs=32, exact_points=1024,
             config=os.path.join(HERE, "configs", "paper.py"), batch=32, predict_views=256,
             host_views=32, device_views=64, gt_points=1024, repeats=5,
             budgets={"losses": 70, "exact": 70, "train": 160, "eval": 100}, time_limit=420)
QUICK = Sizes(pairs=2, points=64, exact_pairs=2, exact_points=64,
              config=os.path.join(HERE, "configs", "tiny.py"), batch=2, predict_views=4,
              host_views=4, device_views=4, gt_points=64, repeats=2,
              budgets={"losses": 60, "exact": 60, "train": 120, "eval": 60}, time_limit=300)


class Budget:
    """Time guard of one section: :meth:`measure` skips work once the section (or the whole
    run, ``deadline``) is out of time, and records why in :attr:`notes`."""

    def __init__(self, name: str, seconds: float, deadline: float, notes: list[str]) -> None:
        self.name, self.seconds, self.notes, self.deadline = name, seconds, notes, deadline
        self.end = min(time.perf_counter() + seconds, deadline)

    def left(self) -> float:
        return self.end - time.perf_counter()

    def measure(self, label: str, fn: Callable[[], Any], repeats: int
                ) -> tuple[float, list[float]] | None:
        """``(warm-up seconds, timed seconds)`` of ``fn`` (which must block until done), or
        ``None`` when skipped. After the warm-up, a repetition starts only if the previous one
        (the warm-up for the first) would still fit in the section's budget; the first always
        runs unless it would pass the run's time limit."""
        if self.left() <= 0:
            self.notes.append(f"{self.name}: {label} skipped (the section's {self.seconds:.0f} s "
                              "budget or the run's time limit was spent)")
            return None
        start = time.perf_counter()
        fn()
        warm = time.perf_counter() - start
        times: list[float] = []
        for _ in range(repeats):
            now = time.perf_counter()
            expected = times[-1] if times else warm
            if (times and self.end - now < expected) or self.deadline - now < expected:
                self.notes.append(f"{self.name}: {label} timed {len(times)} of {repeats} "
                                  f"repetitions (one takes about {expected:.1f} s; budget spent)")
                break
            fn()
            times.append(time.perf_counter() - now)
        if not times:
            return None
        return warm, times


def _ms(times: list[float]) -> tuple[str, str]:
    med = 1e3 * statistics.median(times)
    return f"{med:.2f}", f"{1e3 * min(times):.2f}-{1e3 * max(times):.2f}"


def _rel(a: Any, b: Any) -> float:
    """Largest element-wise relative difference of ``a`` from ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def _rel_max(a: Any, b: Any) -> float:
    """``max |a - b| / max |b|``: for arrays with entries near 0 (gradients)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def device_info() -> str:
    """One paragraph: the device kind and memory, the NVIDIA driver and CUDA versions
    (``nvidia-smi``, when present), the CUDA/cuDNN wheels JAX uses, JAX and jaxlib versions."""
    dev = jax.devices()[0]
    parts = [f"Device: **{dev.device_kind}** (backend {jax.default_backend()}, "
             f"{jax.device_count()} visible, measured on one)"]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        parts.append(f"{stats['bytes_limit'] / 2**30:.1f} GiB usable by XLA")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            query = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
            header = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
            cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
            parts.append(f"nvidia-smi: {query[0].strip() if query else '?'}; driver's CUDA "
                         f"{cuda.group(1) if cuda else '?'}")
        except (OSError, subprocess.SubprocessError) as e:
            parts.append(f"nvidia-smi failed: {e}")
    else:
        parts.append("no nvidia-smi")
    wheels = sorted(f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                    if re.match(r"(jax[-_]cuda|nvidia[-_](cuda[-_]runtime|cudnn|nccl))",
                                d.metadata["Name"] or "", re.I))
    parts.append("CUDA wheels: " + (", ".join(wheels) if wheels else "none"))
    parts.append(f"JAX {jax.__version__}, jaxlib {importlib.metadata.version('jaxlib')}")
    return "; ".join(parts) + "."


def object_pairs(count: int, pred_points: int, gt_points: int, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` evaluation-like pairs of synthetic objects (float32): ``pred [count, P, 3]``,
    an independent surface sample of the object rotated by N(0, 5 deg) per axis, scaled 1.1,
    shifted 0.05, noise 0.01, and ``gt [count, G, 3]``, a sample of the object."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(count):
        shape = make_object(layout.CATEGORIES[i % len(layout.CATEGORIES)][0], rng)
        rot = Rotation.from_euler("xyz", rng.normal(0, 5, 3), degrees=True).as_matrix()
        pred = sample_outer_surface(shape, pred_points, rng)[0]
        preds.append(1.1 * pred @ rot.T + 0.05 + rng.normal(0, 0.01, pred.shape))
        gts.append(sample_outer_surface(shape, gt_points, rng)[0])
    return np.asarray(preds, np.float32), np.asarray(gts, np.float32)


# ----------------------------------------------------------------------------------------------
# Sections: each returns Markdown and appends failed checks to `failures`.
# ----------------------------------------------------------------------------------------------
def losses_section(sizes: Sizes, budget: Budget, failures: list[str]) -> str:
    """Chamfer and Sinkhorn EMD, value and gradient, ``map`` against ``vmap``."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(0, 0.3, (sizes.pairs, sizes.points, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(0, 0.3, (sizes.pairs, sizes.points, 3)) + 0.05, jnp.float32)
    rows, agree = [], []
    for name, loss in (("Chamfer (squared, mean over points)", chamfer_distance),
                       ("Sinkhorn EMD (Euclidean, default schedule)", emd)):
        values = {}
        for mode in ("map", "vmap"):
            fn = jax.jit(jax.value_and_grad(lambda a, b, f=loss, m=mode: f(a, b, batch_mode=m)))
            result = budget.measure(f"{name} {mode}", lambda f=fn: jax.block_until_ready(f(x, y)),
                                    sizes.repeats)
            if result is None:
                continue
            warm, times = result
            value, grad = fn(x, y)
            values[mode] = (float(value), np.asarray(grad))
            if not np.isfinite(values[mode][0]) or not np.all(np.isfinite(values[mode][1])):
                failures.append(f"{name} {mode}: non-finite value or gradient")
            med, span = _ms(times)
            rows.append([name, mode, f"{sizes.pairs} x {sizes.points}", med, span,
                         f"{sizes.pairs / statistics.median(times):.1f}", f"{warm:.1f}",
                         f"{values[mode][0]:.6g}"])
        if len(values) == 2:
            agree.append(f"{name}: `map` and `vmap` values differ by "
                         f"{_rel(values['vmap'][0], values['map'][0]):.1e} (relative), gradients "
                         f"by {_rel_max(values['vmap'][1], values['map'][1]):.1e} (largest "
                         "difference over largest entry)")
    table = bench_report.markdown_table(
        ["loss", "batch_mode", "pairs x points", "ms (median)", "range", "pairs/s",
         "warm-up s", "value"], rows)
    return "\n\n".join([
        "### Chamfer and Sinkhorn EMD, forward + backward",
        f"`jax.jit(jax.value_and_grad(loss))` on {sizes.pairs} pairs of {sizes.points}-point "
        "normal clouds (std 0.3); median of the timed repetitions after a warm-up (compilation "
        "included in the warm-up).",
        table, "\n".join(f"- {line}." for line in agree)])


def exact_section(sizes: Sizes, budget: Budget, failures: list[str]) -> str:
    """``exact_emd`` with the JAX solver against SciPy on the same pairs."""
    x, y = object_pairs(sizes.exact_pairs, sizes.exact_points, sizes.exact_points, seed=2)
    x, y = jnp.asarray(x), jnp.asarray(y)
    rows, values = [], {}
    for solver in ("jax", "scipy"):
        fn = jax.jit(lambda a, b, s=solver: exact_emd(a, b, solver=s))
        result = budget.measure(f"exact EMD {solver}", lambda f=fn: jax.block_until_ready(f(x, y)),
                                sizes.repeats if solver == "jax" else min(sizes.repeats, 3))
        if result is None:
            continue
        warm, times = result
        values[solver] = np.asarray(fn(x, y), np.float64)
        med, span = _ms(times)
        where = "device" if solver == "jax" else "host (SciPy, one call for the batch)"
        rows.append([f"`{solver}` ({where})", sizes.exact_pairs, med, span,
                     f"{1e3 * statistics.median(times) / sizes.exact_pairs:.2f}", f"{warm:.1f}"])
    if len(values) == 2:
        rel = _rel(values["jax"], values["scipy"])
        ok = bool(np.all(np.isfinite(values["jax"])) and rel <= EXACT_RTOL)
        check = (f"JAX solver against SciPy: max relative difference {rel:.1e} over "
                 f"{sizes.exact_pairs} pairs (mean EMD {values['scipy'].mean():.4g}) -> "
                 f"**{'passed' if ok else 'FAILED'}** (required: <= {EXACT_RTOL:g})")
        if not ok:
            failures.append(f"exact EMD: {check}")
    else:
        check = "JAX solver against SciPy: **not compared** (a solver was skipped)"
        failures.append("exact EMD: not compared")
    table = bench_report.markdown_table(
        ["solver", "pairs", "ms per batch (median)", "range", "ms per pair", "warm-up s"], rows)
    return "\n\n".join([
        f"### Exact EMD, {sizes.exact_points}-point pairs",
        f"`exact_emd(x, y, solver=...)` jitted, on {sizes.exact_pairs} pairs of synthetic "
        "objects (an object against another sample of itself, of each category in turn).",
        table, check + "."])


def train_section(sizes: Sizes, budget: Budget, failures: list[str]) -> str:
    """The real training step of the config, float32 and bfloat16, on one device."""
    config = configs.load_config_file(sizes.config)
    config.data.batch_size = sizes.batch
    mesh = train.make_mesh(jax.devices()[:1])
    replicated = NamedSharding(mesh, P())
    rng = np.random.default_rng(0)
    batch = train.shard_batch({
        "image": rng.uniform(0, 1, (sizes.batch, layout.IMAGE_SIZE, layout.IMAGE_SIZE, 3)
                             ).astype(np.float32),
        "points": rng.normal(0, 0.3, (sizes.batch, config.data.target_points, 3)
                             ).astype(np.float32)}, mesh)
    # The initial state (float32 parameters and optimizer state) does not depend on the compute
    # dtype: made once, jitted (eager initialisation compiles every operation on its own).
    model, tx = state.create_model(config), state.create_optimizer(config)
    initial = jax.jit(lambda: state.create_train_state(config, model, tx),
                      out_shardings=replicated)()
    rows, first_loss = [], {}
    for dtype in ("float32", "bfloat16"):
        cfg = copy.deepcopy(config)
        cfg.model.dtype = dtype
        run: dict[str, Any] = {}

        def step(run=run, cfg=cfg, dtype=dtype) -> None:
            if not run:  # first call: compile, and record the first step's loss
                run["compiled"], _ = compile_train_step(cfg, mesh)
                run["state"] = jax.tree.map(jnp.copy, initial)  # the step donates it
                run["state"], metrics = run["compiled"](run["state"], batch)
                first_loss[dtype] = float(metrics["loss"])
            run["state"], metrics = run["compiled"](run["state"], batch)
            jax.block_until_ready(metrics)

        result = budget.measure(f"training step {dtype}", step, sizes.repeats)
        if result is None:
            continue
        warm, times = result
        peak, temp = step_memory(run.pop("compiled"))
        run.clear()  # free the state before the next dtype
        if not np.isfinite(first_loss[dtype]):
            failures.append(f"training step {dtype}: non-finite loss {first_loss[dtype]}")
        med, span = _ms(times)
        rows.append([dtype, f"{sizes.batch / statistics.median(times):.1f}", med, span,
                     f"{peak / 2**20:.0f}", f"{temp / 2**20:.0f}", f"{warm:.1f}",
                     f"{first_loss[dtype]:.6g}"])
    m = config.model
    lines = [f"### Training step, `{os.path.relpath(sizes.config, os.path.dirname(HERE))}`, "
             f"batch {sizes.batch}",
             f"The jitted step of `recon_jax.train` (forward, loss {config.loss.kl_weight} KL + "
             f"{config.loss.cd_weight} CD + {config.loss.emd_weight} Sinkhorn EMD, backward, "
             f"{config.optim.optimizer}) via `recon_jax.cli.flops.compile_train_step`, "
             f"{m.encoder} at {m.image_size}x{m.image_size}, {m.num_points} points against "
             f"{config.data.target_points}, one device, random batch. Peak and temp: XLA's memory "
             "analysis (`recon_jax.measure.step_memory`); warm-up: compilation and two steps; "
             "both dtypes start from the same state.",
             bench_report.markdown_table(
                 ["dtype", "images/s", "step ms (median)", "range", "peak MiB", "temp MiB",
                  "warm-up s", "first-step loss"], rows)]
    if len(first_loss) == 2:
        lines.append(f"bfloat16 first-step loss against float32 (same state and batch): "
                     f"{_rel(first_loss['bfloat16'], first_loss['float32']):.1e} relative.")
    return "\n\n".join(lines)


def eval_section(sizes: Sizes, budget: Budget, failures: list[str]) -> str:
    """Prediction on the device; the protocol per view on the host, and batched on the device."""
    config = configs.load_config_file(sizes.config)
    model = state.create_model(config)
    proto = protocol.get_protocol(protocol.DEFAULT_PROTOCOL)
    rows, lines = [], []
    per_view: dict[str, float] = {}  # key -> seconds per view

    def add(key: str, label: str, views: int, result: tuple[float, list[float]] | None) -> None:
        if result is None:
            return
        per_view[key] = seconds = statistics.median(result[1]) / views
        rows.append([label, views, f"{1 / seconds:.1f}", f"{1e3 * seconds:.2f}",
                     f"{result[0]:.1f}"])

    # Prediction: the evaluation's jitted forward pass (z = mu, running statistics).
    predict = evaluate.make_predict_fn(model)
    variables = jax.jit(lambda key: init_variables(model, key))(jax.random.key(0))
    images = jnp.asarray(np.random.default_rng(3).uniform(
        0, 1, (sizes.predict_views, layout.IMAGE_SIZE, layout.IMAGE_SIZE, 3)), jnp.float32)
    add("predict", f"predict (device, batch {sizes.predict_views})", sizes.predict_views,
        budget.measure("predict", lambda: jax.block_until_ready(predict(variables, images)),
                       sizes.repeats))

    views = max(sizes.host_views, sizes.device_views)
    preds, gts = object_pairs(views, model.num_points, sizes.gt_points, seed=4)
    seeds = [(0, i) for i in range(views)]
    host: dict[str, np.ndarray] = {}

    def score_host() -> None:
        n = sizes.host_views
        host["cd"], host["emd"] = protocol.score_views(preds[:n], gts[:n], seeds=seeds[:n])

    add("host", "protocol on the host (`score_view`: scaling, ICP, CD, exact EMD; one process)",
        sizes.host_views, budget.measure("host protocol", score_host, 1))

    def prepare() -> tuple[jax.Array, jax.Array]:
        n = sizes.device_views
        pairs = [protocol.prepare_view(p, g, protocol=proto, seed=s)
                 for p, g, s in zip(preds[:n], gts[:n], seeds[:n], strict=True)]
        return (jnp.asarray(np.asarray([p for p, _ in pairs], np.float32)),
                jnp.asarray(np.asarray([g for _, g in pairs], np.float32)))

    add("prepare", "scaling + subsample (host, feeds the device path)", sizes.device_views,
        budget.measure("prepare", lambda: jax.block_until_ready(prepare()), 1))
    p_dev, g_dev = prepare()
    icp = jax.jit(lambda g, p: evaluate.icp_batch_jax(
        g, p, tolerance=proto.icp_tolerance, max_iterations=proto.icp_max_iterations))
    add("icp", f"ICP on the device (`icp_batch_jax`, batch {sizes.device_views})",
        sizes.device_views,
        budget.measure("device ICP", lambda: jax.block_until_ready(icp(g_dev, p_dev)),
                       sizes.repeats))

    n_dev = sizes.device_views
    device: dict[str, np.ndarray] = {}

    def score_device() -> None:  # what `recon-jax eval --scoring device` runs on each batch
        device["cd"], device["emd"] = evaluate.score_views_device(
            preds[:n_dev], gts[:n_dev], protocol_name=proto, seeds=seeds[:n_dev],
            batch_size=n_dev)

    add("device", f"protocol on the device (`score_views_device`: host scaling + subsample, "
        f"then ICP + CD + exact EMD batched, batch {n_dev})", n_dev,
        budget.measure("device protocol", score_device, sizes.repeats))
    table = bench_report.markdown_table(
        ["stage", "views", "views/s", "ms/view", "warm-up s"], rows)
    if device:
        cd, em = device["cd"], device["emd"]
        if not (np.all(np.isfinite(cd)) and np.all(np.isfinite(em))):
            failures.append("device protocol: non-finite CD or EMD")
        if host:
            n = min(sizes.host_views, n_dev)
            its = np.asarray(icp(g_dev, p_dev)[2]) if "icp" in per_view else None
            iterations = ("" if its is None else
                          f"; ICP iterations on the device {int(its.min())}-{int(its.max())}")
            lines.append(
                f"Device protocol against the host's on the same {n} views (float32 against "
                f"float64{iterations}): CD differs by {_rel(cd[:n], host['cd'][:n]):.1e}, EMD by "
                f"{_rel(em[:n], host['emd'][:n]):.1e} at most (relative).")
    cores = os.cpu_count() or 1
    if "predict" in per_view and "host" in per_view:
        hours = (per_view["predict"] + per_view["host"] / cores) * SHAPENET_TEST_VIEWS / 3600
        lines.append(f"Projected {SHAPENET_TEST_VIEWS:,} views with the host protocol in a pool "
                     f"of {cores} processes (linear scaling assumed) after the device's "
                     f"prediction: {hours:.2f} h.")
    if "predict" in per_view and "device" in per_view:
        seconds = per_view["predict"] + per_view["device"]
        lines.append(f"Projected {SHAPENET_TEST_VIEWS:,} views with the protocol on the device "
                     "(scaling and subsample in the main process, as `recon-jax eval` does): "
                     f"{seconds * SHAPENET_TEST_VIEWS / 3600:.2f} h.")
    return "\n\n".join([
        "### Evaluation views/s",
        f"The model of the config ({model.encoder}, {model.num_points} points, random "
        f"weights) and {views} synthetic object pairs (prediction: another sample of the object, "
        f"rotated N(0, 5 deg), scaled, shifted, noisy; ground truth {sizes.gt_points} points); "
        f"protocol {proto.name} with ICP (tolerance {proto.icp_tolerance:g}, at most "
        f"{proto.icp_max_iterations} iterations). The device path is `recon-jax eval --scoring "
        "device`'s (`evaluate.score_views_device`: ICP, `chamfer_distance(squared=False)` and "
        "`exact_emd(solver=\"jax\")` after the host's scaling and subsample).",
        table, *lines])


SECTIONS = (("losses", losses_section), ("exact", exact_section), ("train", train_section),
            ("eval", eval_section))


def run_check(sizes: Sizes, command: str, time_limit: float | None = None
              ) -> tuple[str, list[str]]:
    """Run every section; return the Markdown body and the failed checks."""
    start = time.perf_counter()
    deadline = start + (sizes.time_limit if time_limit is None else time_limit)
    notes: list[str] = []
    failures: list[str] = []
    parts = [TITLE, f"Command: `{command}`. {device_info()}", bench_report.machine_info()]
    for name, section in SECTIONS:
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        budget = Budget(name, sizes.budgets[name], deadline, notes)
        try:
            parts.append(section(sizes, budget, failures))
        except Exception as e:  # noqa: BLE001 -- one section's error must not lose the others
            traceback.print_exc()
            message = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            parts.append(f"### Section `{name}` failed\n\n`{message}`")
            failures.append(f"section {name} raised {message}")
    total = time.perf_counter() - start
    parts.append(f"Total {total:.0f} s (time limit {deadline - start:.0f} s).")
    if notes:
        parts.append("Time guard:\n" + "\n".join(f"- {n}" for n in notes))
    parts.append("Checks: " + ("all passed." if not failures
                               else "**FAILED**:\n" + "\n".join(f"- {f}" for f in failures)))
    return "\n\n".join(parts), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes on the CPU (writes only with --out)")
    parser.add_argument("--out", default=None,
                        help="markdown file whose 'gpu_check' section is replaced "
                        "(default: docs/benchmarks.md for the full run)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds for the sections (default 420; quick 300)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run the full sizes even when JAX sees only the CPU (hours)")
    parser.add_argument("--placeholder", action="store_true",
                        help="write the 'not run on a GPU yet' section and exit")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.quick else DEFAULT_OUT
    if args.placeholder:
        bench_report.write_section(out or DEFAULT_OUT, SECTION, PLACEHOLDER)
        return 0
    if args.quick:
        # Tiny sizes: compile time dominates, and XLA:CPU compiles ~40% faster without its
        # backend optimisations (measured on the tiny training step). Timings are not the point.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_backend_optimization_level=0").strip()
        jax.config.update("jax_platforms", "cpu")
    elif jax.default_backend() == "cpu" and not args.allow_cpu:
        print("gpu_check: JAX sees no accelerator (backend cpu); run it on a GPU, or use "
              "--quick for the CPU smoke run", file=sys.stderr)
        return 2
    command = "python experiments/gpu_check.py" + (" --quick" if args.quick else "")
    body, failures = run_check(QUICK if args.quick else FULL, command, args.time_limit)
    print(body)
    if out and not args.no_write:
        bench_report.write_section(out, SECTION, body)
        print(f"wrote the '{SECTION}' section of {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
