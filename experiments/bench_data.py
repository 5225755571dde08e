"""Data benchmark: generation, TFDS preparation, and pipeline throughput against the step.

Run (about 5 minutes on a quiet 2-core CPU):
    python experiments/bench_data.py [--models-per-category 40] [--pipeline-workers 0 2]

Four measurements, in temporary directories deleted at the end: (1) ``generate_dataset`` of
the default synthetic set (13 categories x 40 objects x 24 views, all CPUs): wall time (bar: 3
minutes), files, bytes; (2) ``tfds_builder.build`` of that root: wall time, prepared size
against the source files it reads; (3) ``train_dataset`` over the prepared train split (batch
32, 2048-point targets, the paper config's ``views``) for each ``--pipeline-workers`` value:
steady-state images/s after a warm-up that also absorbs the workers' start-up; (4)
``recon_jax.train.make_train_step`` of ``experiments/configs/paper.py`` on random data: the
median step time, hence the images/s a step consumes. The bar: the pipeline delivers at least
5x what the step consumes (each measured with the whole machine; a real run shares it).
Writes the "data" section of ``docs/benchmarks.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np
import tensorflow_datasets as tfds
from bench_report import machine_info, markdown_table, write_section
from bench_train import BusyMeter  # the sibling script (its directory is on sys.path when run)

from recon_jax import state as train_state
from recon_jax import train
from recon_jax.configs import load_config_file
from recon_jax.data import layout
from recon_jax.data.pipeline import train_dataset
from recon_jax.data.synthetic import generate_dataset
from recon_jax.data.tfds_builder import build, directory_usage, load_source, source_size

__all__ = [
    "time_generation",
    "time_prepare",
    "time_pipeline",
    "time_paper_step",
    "main",
]

MIB = 2**20
PAPER_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "paper.py")


def time_generation(root: str, models_per_category: int, seed: int = 0) -> dict[str, Any]:
    """Generates the synthetic set into ``root``; returns seconds, models, images, files, bytes."""
    start = time.perf_counter()
    summary = generate_dataset(root, models_per_category=models_per_category, seed=seed,
                               workers=None, progress=False)
    seconds = time.perf_counter() - start
    files, size = directory_usage(root)
    return {"seconds": seconds, "models": summary.num_models, "images": summary.num_images,
            "files": files, "bytes": size}


def time_prepare(root: str, data_dir: str) -> dict[str, Any]:
    """TFDS-prepares ``root`` into ``data_dir``; returns seconds, prepared and source bytes."""
    tfds.disable_progress_bar()
    start = time.perf_counter()
    builder = build(root, data_dir, config="synthetic")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "prepared": directory_usage(builder.data_dir)[1],
            "source": source_size(root),
            "splits": {k: v.num_examples for k, v in builder.info.splits.items()}}


def time_pipeline(data_dir: str, *, batch_size: int, num_points: int, views: str,
                  num_workers: int, warmup: int, batches: int, seed: int = 0) -> dict[str, float]:
    """Steady-state images/s of the training stream over the prepared ``train`` split."""
    source = load_source(data_dir, "train", config="synthetic")
    ds = train_dataset(source, batch_size=batch_size, num_points=num_points, views=views,
                       seed=seed, num_workers=num_workers, process_index=0, process_count=1)
    start = time.perf_counter()
    it = iter(ds)
    try:
        batch = next(it)
        first = time.perf_counter() - start
        expected = (batch_size, 128, 128, 3)
        if batch["image"].shape != expected or batch["points"].shape != (batch_size,
                                                                         num_points, 3):
            raise RuntimeError(f"unexpected batch shapes: image {batch['image'].shape}, points "
                               f"{batch['points'].shape}")
        for _ in range(max(warmup - 1, 0)):
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        seconds = time.perf_counter() - start
    finally:
        it.close()
    return {"first_batch_s": first, "images_per_s": batches * batch_size / seconds}


def time_paper_step(config: Any, *, steps: int, warmup: int, seed: int = 0) -> dict[str, float]:
    """Median seconds of ``recon_jax.train``'s jitted step for ``config`` on random data."""
    mesh = train.make_mesh()
    model, tx = train_state.create_model(config), train_state.create_optimizer(config)
    state = train_state.create_train_state(config, model, tx)
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = train.make_train_step(model, tx, config, mesh)
    rng = np.random.default_rng(seed)
    b, size = config.data.batch_size, layout.IMAGE_SIZE  # the pipeline's crop
    batch = train.shard_batch({
        "image": rng.uniform(0.0, 1.0, (b, size, size, 3)).astype(np.float32),
        "points": rng.normal(0.0, 0.2, (b, config.data.target_points, 3)).astype(np.float32),
    }, mesh)
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if not np.isfinite(float(metrics["loss"])):
        raise RuntimeError(f"the training step gave a non-finite loss: {metrics}")
    return {"first_step_s": first, "step_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times)}


def _measure_data(args: argparse.Namespace, config: Any
                  ) -> tuple[dict[str, Any] | None, dict[str, Any], dict[int, dict[str, float]]]:
    """Generation (unless ``--root``), TFDS preparation and the pipeline, in a temporary
    directory removed afterwards: ``(generation or None, preparation, {workers: pipeline})``."""
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    try:
        gen = None
        root = args.root
        if not root:
            root = os.path.join(tmp, "root")
            print(f"generating {args.models_per_category} models x 13 categories ...",
                  file=sys.stderr, flush=True)
            gen = time_generation(root, args.models_per_category, args.seed)
            print(f"  {gen['seconds']:.1f} s", file=sys.stderr, flush=True)
        print("preparing TFDS ...", file=sys.stderr, flush=True)
        prep = time_prepare(root, os.path.join(tmp, "tfds"))
        print(f"  {prep['seconds']:.1f} s", file=sys.stderr, flush=True)
        pipes = {}
        for workers in args.pipeline_workers:
            print(f"pipeline, num_workers={workers} ...", file=sys.stderr, flush=True)
            pipes[workers] = time_pipeline(
                os.path.join(tmp, "tfds"), batch_size=args.batch_size,
                num_points=config.data.target_points, views=config.data.views,
                num_workers=workers,
                warmup=args.pipeline_warmup, batches=args.pipeline_batches, seed=args.seed)
            print(f"  {pipes[workers]['images_per_s']:.1f} images/s", file=sys.stderr,
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return gen, prep, pipes


def _command(args: argparse.Namespace) -> str:
    parts = ["python experiments/bench_data.py"]
    defaults = {"models_per_category": 40, "batch_size": 32, "pipeline_batches": 30,
                "pipeline_warmup": 3, "steps": 3, "step_warmup": 1, "seed": 0,
                "output": "docs/benchmarks.md"}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            parts.append(f"--{key.replace('_', '-')} {getattr(args, key)}")
    if list(args.pipeline_workers) != [0, 2]:
        parts.append("--pipeline-workers " + " ".join(map(str, args.pipeline_workers)))
    if args.root:
        parts.append(f"--root {args.root}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-per-category", type=int, default=40)
    parser.add_argument("--root", default="",
                        help="use this existing dataset root instead of generating one "
                             "(skips the generation measurement)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--pipeline-batches", type=int, default=30)
    parser.add_argument("--pipeline-warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--step-warmup", type=int, default=1,
                        help="untimed training steps after the compiling one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")
    args = parser.parse_args(argv)
    if args.models_per_category < 2:
        parser.error("--models-per-category must be >= 2 (a test model per category)")
    for name in ("batch_size", "pipeline_batches", "pipeline_warmup", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.step_warmup < 0 or any(w < 0 for w in args.pipeline_workers):
        parser.error("--step-warmup and --pipeline-workers must be >= 0")
    if args.root and not os.path.isdir(args.root):
        parser.error(f"--root {args.root!r} is not a directory")

    if any(w > 0 for w in args.pipeline_workers):
        jax.config.parse_flags_with_absl()  # grain's worker processes need absl flags parsed
    config = load_config_file(PAPER_CONFIG)
    config.data.batch_size = args.batch_size
    with BusyMeter() as meter:
        gen, prep, pipes = _measure_data(args, config)
        print("training step of the paper config ...", file=sys.stderr, flush=True)
        step = time_paper_step(config, steps=args.steps, warmup=args.step_warmup,
                               seed=args.seed)
    load_line = meter.note("the whole benchmark")
    consumed = args.batch_size / step["step_s"]

    tables, bars = [], []
    if gen is not None:
        tables.append(markdown_table(
            ["generation (workers = all CPUs)", "models", "images", "files", "MiB", "wall s",
             "images/s"],
            [[f"13 categories x {args.models_per_category} objects x 24 views", gen["models"],
              gen["images"], gen["files"], f"{gen['bytes'] / MIB:.1f}", f"{gen['seconds']:.1f}",
              f"{gen['images'] / gen['seconds']:.1f}"]]))
        if args.models_per_category == 40:
            ok = gen["seconds"] <= 180
            bars.append(f"- Bar: the default synthetic set generates in at most 3 minutes: "
                        f"**{gen['seconds']:.0f} s** -> {'met' if ok else 'NOT met'}.")
    splits = ", ".join(f"{k} {v}" for k, v in sorted(prep["splits"].items()))
    tables.append(markdown_table(
        ["TFDS prepare", "models", "wall s", "source MiB", "prepared MiB", "prepared / source"],
        [["shapenet_r2n2/synthetic (array_record)", splits, f"{prep['seconds']:.1f}",
          f"{prep['source'] / MIB:.1f}", f"{prep['prepared'] / MIB:.1f}",
          f"{prep['prepared'] / prep['source']:.3f}"]]))
    rows = []
    for workers, p in pipes.items():
        ratio = p["images_per_s"] / consumed
        rows.append([f"train_dataset, num_workers={workers}", f"{p['images_per_s']:.1f}",
                     f"{p['first_batch_s']:.2f}", f"{ratio:.1f}x"])
        bars.append(f"- Bar: pipeline (num_workers={workers}) >= 5x the step's consumption: "
                    f"**{ratio:.1f}x** -> {'met' if ratio >= 5 else 'NOT met'}.")
    rows.append([f"training step, paper config (median of {args.steps}; range "
                 f"{step['min_s']:.2f}-{step['max_s']:.2f} s; first call with compilation "
                 f"{step['first_step_s']:.0f} s)",
                 f"{consumed:.2f} consumed ({step['step_s']:.2f} s/step)", "-", "1.0x"])
    tables.append(markdown_table(
        [f"images/s at batch {args.batch_size}", "images/s", "first batch s",
         "/ step consumption"], rows))
    for t in tables:
        print(t, end="\n\n")
    print("\n".join(bars))
    print(load_line)
    if args.no_write:
        return 0
    body = "\n\n".join([
        "## Data: generation, TFDS preparation, pipeline throughput (`experiments/bench_data.py`)",
        machine_info(),
        f"Command: `{_command(args)}`. Generation: `generate_dataset(out, "
        f"models_per_category={args.models_per_category}, workers=None)` (all CPUs), contact "
        "sheet included. TFDS: `tfds_builder.build` of the generated root (every file "
        "validated); source = the files it reads (PNGs, metadata, both clouds, splits). "
        f"Pipeline: `train_dataset` over the prepared train split, batch {args.batch_size}, "
        f"{config.data.target_points}-point targets, views={config.data.views!r}, "
        f"{args.pipeline_batches} batches timed after {args.pipeline_warmup}. Step: "
        "`recon_jax.train.make_train_step` with `experiments/configs/paper.py` (efficient "
        f"extractor, {config.model.image_size}x{config.model.image_size}, "
        f"{config.model.num_points} points, batch {args.batch_size}, loss "
        f"{config.loss.kl_weight} KL + {config.loss.cd_weight} CD + {config.loss.emd_weight} "
        f"EMD) on random data, median of {args.steps} steps after "
        f"{args.step_warmup} warm-up. Pipeline and step measured one after the other.",
        *tables,
        "\n".join(bars),
        load_line,
    ])
    write_section(args.output, "data", body)
    print(f"wrote the 'data' section of {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
