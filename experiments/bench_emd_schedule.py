"""Training EMD schedules: error against the exact EMD and time, 1,024-point synthetic pairs.

    python experiments/bench_emd_schedule.py [--data data/synthetic] [--output docs/benchmarks.md]

Backs the ``emd_coarse_stages``/``emd_fine_stages`` of ``experiments/configs/compare.py``:
16 pairs of two different synthetic objects (``pointcloud_1024.npy`` of the data set, models
drawn with seed 0) and 8 pairs of a Gaussian blob (sigma 0.15, what an untrained decoder emits)
against an object. Error: ``|emd - exact_emd| / exact_emd``; time: forward+backward of the 16
object pairs, jitted, one call after a warm-up.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import jax
import numpy as np

from recon_jax.bench_report import machine_info, markdown_table, write_section
from recon_jax.losses import emd, exact_emd

SCHEDULES = {
    "default (170 iterations)": None,
    "compare.py (60 iterations)": (((3.0, 5), (1.0, 15), (0.3, 20)), ((0.02, 10), (0.004, 10))),
    "40 iterations": (((3.0, 5), (1.0, 10), (0.3, 15)), ((0.02, 10),)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--output", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    files = sorted(glob.glob(os.path.join(
        args.data, "ShapeNet_pointclouds", "*", "*", "pointcloud_1024.npy")))
    if len(files) < 32:
        raise SystemExit(f"{args.data}: need >= 32 models with pointcloud_1024.npy, "
                         f"found {len(files)} (run `recon-jax make-data --out {args.data}`)")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(files), 32, replace=False)
    x = np.stack([np.load(files[i]) for i in idx[:16]]).astype(np.float32)
    y = np.stack([np.load(files[i]) for i in idx[16:]]).astype(np.float32)
    blob = (0.15 * rng.standard_normal((8, 1024, 3))).astype(np.float32)
    x, y = np.concatenate([x, blob]), np.concatenate([y, y[:8]])
    exact = np.asarray(exact_emd(x, y))
    rows = []
    for name, schedule in SCHEDULES.items():
        kw = {} if schedule is None else {"coarse_stages": schedule[0],
                                          "fine_stages": schedule[1]}
        grad = jax.jit(jax.value_and_grad(
            lambda a, b, kw=kw: emd(a, b, batch_reduction="sum", **kw)))
        jax.block_until_ready(grad(x[:16], y[:16]))
        tic = time.perf_counter()
        jax.block_until_ready(grad(x[:16], y[:16]))
        seconds = time.perf_counter() - tic
        value = np.asarray(jax.jit(lambda a, b, kw=kw: emd(a, b, batch_reduction=None, **kw))(
            x, y))
        err = np.abs(value - exact) / exact
        rows.append([name, f"{seconds:.3f}", f"{100 * err[:16].mean():.2f}%",
                     f"{100 * err[:16].max():.2f}%", f"{100 * err[16:].mean():.2f}%"])
    table = markdown_table(["schedule", "s fwd+bwd (16 pairs)", "mean error (objects)",
                            "max error", "mean error (blob vs object)"], rows)
    print(table)
    body = "\n\n".join([
        "## Training EMD schedules, 1,024-point pairs (`experiments/bench_emd_schedule.py`)",
        f"Regenerate: `python experiments/bench_emd_schedule.py --data {args.data}`",
        machine_info(), table])
    write_section(args.output, "emd_schedule", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
