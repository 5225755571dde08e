"""Data benchmark (the bar of issue 4): generation, TFDS preparation, and pipeline throughput.

Run (about 5 minutes on a quiet 2-core CPU):
    python experiments/bench_data.py [--models-per-category 40] [--pipeline-workers 0 2]

Four measurements, in order, everything in temporary directories (deleted at the end):

1. **Generation**: ``generate_dataset(out, models_per_category=40, workers=None)`` -- the
   default synthetic set, 13 categories x 40 objects x 24 views (137x137 RGBA PNGs, metadata,
   two point clouds per object, splits, contact sheet). Wall time (bar: at most 3 minutes),
   files and bytes written.
2. **TFDS preparation**: :func:`recon_jax.data.tfds_builder.build` over that root (every file
   validated, PNG bytes stored as they are): wall time, prepared size against the size of the
   source files it reads (:func:`~recon_jax.data.tfds_builder.source_size`).
3. **Pipeline**: :func:`recon_jax.data.pipeline.train_dataset` over the prepared ``train``
   split (``load_source``, PNG decoding with Pillow, crop to 128x128, composite), batch 32,
   2048-point targets, the paper config's ``views``, for each ``--pipeline-workers`` value
   (worker processes; 0 = reader threads in this process). Images/s in steady state:
   ``--pipeline-batches`` batches timed after ``--pipeline-warmup`` batches (the warm-up also
   absorbs the workers' start-up, reported as the time to the first batch).
4. **Training step**: ``recon_jax.train.make_train_step`` with ``experiments/configs/paper.py``
   (efficient extractor, 128x128, 2048 points, batch 32, the full loss of eq. 1: 0.05 KL +
   squared Chamfer + Sinkhorn EMD, Adam, state donated) on random images and clouds (the EMD
   solver runs a fixed number of iterations, so its time does not depend on the data): the
   median step time gives the images/s one step consumes.

The bar: the pipeline delivers at least 5x the images/s that the step consumes. Pipeline and
step are measured one after the other, each with the whole machine (in a real run they share
it).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from recon_jax.bench_report import machine_info, markdown_table, write_section

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import BusyMeter  # noqa: E402  (the sibling script)

__all__ = [
    "load_config",
    "time_generation",
    "time_prepare",
    "time_pipeline",
    "time_paper_step",
    "tree_size",
    "main",
]

MIB = 2**20
PAPER_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "paper.py")


def tree_size(path: str) -> tuple[int, int]:
    """``(files, bytes)`` of the regular files under ``path``."""
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return files, size


def load_config(path: str) -> Any:
    """``get_config()`` of the ml_collections config file at ``path``."""
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("bench_data_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def time_generation(root: str, models_per_category: int, seed: int = 0) -> dict[str, Any]:
    """Generates the synthetic set into ``root``; returns seconds, models, images, files, bytes."""
    from recon_jax.data.synthetic import generate_dataset

    start = time.perf_counter()
    summary = generate_dataset(root, models_per_category=models_per_category, seed=seed,
                               workers=None, progress=False)
    seconds = time.perf_counter() - start
    files, size = tree_size(root)
    return {"seconds": seconds, "models": summary.num_models, "images": summary.num_images,
            "files": files, "bytes": size}


def time_prepare(root: str, data_dir: str) -> dict[str, Any]:
    """TFDS-prepares ``root`` into ``data_dir``; returns seconds, prepared and source bytes."""
    import tensorflow_datasets as tfds

    from recon_jax.data.tfds_builder import build, directory_size, source_size

    tfds.disable_progress_bar()
    start = time.perf_counter()
    builder = build(root, data_dir, config="synthetic")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "prepared": directory_size(builder.data_dir),
            "source": source_size(root),
            "splits": {k: v.num_examples for k, v in builder.info.splits.items()}}


def time_pipeline(data_dir: str, *, batch_size: int, num_points: int, views: str,
                  num_workers: int, warmup: int, batches: int, seed: int = 0) -> dict[str, float]:
    """Steady-state images/s of the training stream over the prepared ``train`` split."""
    from recon_jax.data.pipeline import train_dataset
    from recon_jax.data.tfds_builder import load_source

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
    import jax

    from recon_jax import train

    mesh = train.make_mesh()
    model, tx = train.create_model(config), train.create_optimizer(config)
    state = train.create_train_state(config, model, tx)
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = train.make_train_step(model, tx, config, mesh)
    rng = np.random.default_rng(seed)
    b, size = config.batch_size, config.image_size
    batch = train.shard_batch({
        "image": rng.uniform(0.0, 1.0, (b, size, size, 3)).astype(np.float32),
        "points": rng.normal(0.0, 0.2, (b, config.target_points, 3)).astype(np.float32),
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
                num_points=config.target_points, views=config.views, num_workers=workers,
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
    for name in ("models_per_category", "batch_size", "pipeline_batches", "pipeline_warmup",
                 "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.step_warmup < 0 or any(w < 0 for w in args.pipeline_workers):
        parser.error("--step-warmup and --pipeline-workers must be >= 0")
    if args.root and not os.path.isdir(args.root):
        parser.error(f"--root {args.root!r} is not a directory")

    config = load_config(PAPER_CONFIG)
    config.batch_size = args.batch_size
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
        f"{config.target_points}-point targets, views={config.views!r}, "
        f"{args.pipeline_batches} batches timed after {args.pipeline_warmup}. Step: "
        "`recon_jax.train.make_train_step` with `experiments/configs/paper.py` (efficient "
        f"extractor, {config.image_size}x{config.image_size}, {config.num_points} points, batch "
        f"{args.batch_size}, loss {config.kl_weight} KL + {config.cd_weight} CD + "
        f"{config.emd_weight} EMD) on random data, median of {args.steps} steps after "
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
