"""Training EMD schedules: error against the exact EMD and time, 1,024-point synthetic pairs.

    python experiments/bench_emd_schedule.py [--data data/synthetic] [--output docs/benchmarks.md]

Backs the ``loss.emd_coarse_stages``/``loss.emd_fine_stages`` of
``experiments/configs/compare.py``: 16 pairs of two different synthetic objects and 8 pairs of a
Gaussian blob (sigma 0.15, what an untrained decoder emits) against an object. The objects are
the ``pointcloud_1024.npy`` of a data set made by ``recon-jax make-data`` (``--data``; 32 models
drawn with seed 0) or, without ``--data``, 32 models generated in memory by the same generator
(seed 0, the categories in turn). Error: ``|emd - exact_emd| / exact_emd``; time:
forward+backward of the 16 object pairs, jitted, one call after a warm-up.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import bench_report  # experiments/bench_report.py (this script's directory is on sys.path)
import jax
import numpy as np

from recon_jax.data import layout
from recon_jax.data.synthetic import generate_model
from recon_jax.losses import SinkhornSchedule, emd, exact_emd

SCHEDULES = {
    "default (170 iterations)": None,
    "compare.py (60 iterations)": SinkhornSchedule(
        coarse_stages=((3.0, 5), (1.0, 15), (0.3, 20)), fine_stages=((0.02, 10), (0.004, 10))
    ),
    "40 iterations": SinkhornSchedule(
        coarse_stages=((3.0, 5), (1.0, 10), (0.3, 15)), fine_stages=((0.02, 10),)
    ),
}


def load_objects(data: str | None, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """32 object clouds ``[32, 1024, 3]`` and a phrase saying where they come from."""
    if data is None:
        clouds = [
            generate_model(0, layout.CATEGORIES[k % len(layout.CATEGORIES)][0], k, views=1)[2][1024]
            for k in range(32)
        ]
        return np.stack(clouds).astype(np.float32), "32 models generated in memory (seed 0)"
    files = sorted(glob.glob(os.path.join(
        data, "ShapeNet_pointclouds", "*", "*", "pointcloud_1024.npy")))
    if len(files) < 32:
        raise SystemExit(f"{data}: need >= 32 models with pointcloud_1024.npy, "
                         f"found {len(files)} (run `recon-jax make-data --out {data}`)")
    idx = rng.choice(len(files), 32, replace=False)
    return np.stack([np.load(files[i]) for i in idx]).astype(np.float32), f"32 models of {data}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None,
                        help="a data set made by `recon-jax make-data` (default: in memory)")
    parser.add_argument("--output", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    load = (f"Load average when the run started: {os.getloadavg()[0]:.1f} (1 min) on "
            f"{os.cpu_count()} cores.")
    rng = np.random.default_rng(0)
    objects, source = load_objects(args.data, rng)
    x, y = objects[:16], objects[16:]
    blob = (0.15 * rng.standard_normal((8, 1024, 3))).astype(np.float32)
    x, y = np.concatenate([x, blob]), np.concatenate([y, y[:8]])
    exact = np.asarray(exact_emd(x, y, solver="scipy"))
    rows = []
    for name, schedule in SCHEDULES.items():
        grad = jax.jit(jax.value_and_grad(
            lambda a, b, s=schedule: emd(a, b, batch_reduction="sum", schedule=s)))
        jax.block_until_ready(grad(x[:16], y[:16]))
        tic = time.perf_counter()
        jax.block_until_ready(grad(x[:16], y[:16]))
        seconds = time.perf_counter() - tic
        value = np.asarray(jax.jit(
            lambda a, b, s=schedule: emd(a, b, batch_reduction=None, schedule=s))(x, y))
        err = np.abs(value - exact) / exact
        rows.append([name, f"{seconds:.3f}", f"{100 * err[:16].mean():.2f}%",
                     f"{100 * err[:16].max():.2f}%", f"{100 * err[16:].mean():.2f}%"])
    table = bench_report.markdown_table(
        ["schedule", "s fwd+bwd (16 pairs)", "mean error (objects)", "max error",
         "mean error (blob vs object)"], rows)
    print(table)
    command = "python experiments/bench_emd_schedule.py" + (
        f" --data {args.data}" if args.data else "")
    body = "\n\n".join([
        "## Training EMD schedules, 1,024-point pairs (`experiments/bench_emd_schedule.py`)",
        f"Regenerate: `{command}` (objects: {source}).",
        bench_report.machine_info() + " " + load, table])
    bench_report.write_section(args.output, "emd_schedule", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
