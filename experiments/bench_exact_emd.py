"""Exact EMD in JAX (auction, optax's Hungarian) against SciPy: accuracy and CPU time per pair.

Run (about 12 minutes on a 2-core CPU):
    python experiments/bench_exact_emd.py [--pairs-per-kind 4] [--repeats 3] [--no-write]

Accuracy: ``auction_assignment_cost`` (the optimal bijection's mean cost per point), auction and
Hungarian solvers, against the optimum of SciPy's ``linear_sum_assignment`` on the float64 cost
matrix of the same float32 points: ``8 kinds x pairs-per-kind`` pairs of 1024 and of 2048
points, each kind timed once per solver. Time: batches of 1, 8 and 32 pairs of 1024 points, end
to end from the clouds (cost matrix included); a batch of 1 is the mean over 8 pairs run one at
a time. Those times are the median of ``--repeats`` runs after a warm-up (compilation excluded).
The tables go to the ``exact_emd`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import bench_report
import jax
import numpy as np
from bench_report import median_seconds
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from recon_jax.data import layout
from recon_jax.data.primitives import sample_outer_surface
from recon_jax.data.shapes import make_object
from recon_jax.losses.assignment import SOLVERS, auction_assignment, auction_assignment_cost

KINDS = (
    "sphere",
    "box",
    "gauss",
    "translated",
    "duplicated",
    "ties",
    "two objects",
    "object resample",
)
SIZES = (1024, 2048)
BATCHES = (1, 8, 32)
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")


def cloud_pair(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 clouds ``[n, 3]`` (bounding-box diagonal about 1 to 4) of one kind."""
    if kind == "sphere":  # independent samples of the unit sphere
        x, y = rng.normal(size=(2, n, 3))
        x, y = x / np.linalg.norm(x, axis=1)[:, None], y / np.linalg.norm(y, axis=1)[:, None]
    elif kind == "box":  # independent samples of the surface of a 1 x 0.6 x 0.3 box
        half = np.array([0.5, 0.3, 0.15])
        points = rng.uniform(-half, half, (2, n, 3))
        face = rng.integers(0, 3, (2, n))
        sign = rng.choice([-1.0, 1.0], (2, n))
        np.put_along_axis(points, face[..., None], (sign * half[face])[..., None], axis=2)
        x, y = points
    elif kind == "gauss":  # anisotropic Gaussians, shifted
        x = rng.normal(size=(n, 3)) * [0.3, 0.2, 0.1]
        y = rng.normal(size=(n, 3)) * [0.2, 0.3, 0.1] + [0.1, 0.0, 0.05]
    elif kind == "translated":  # a shuffled, translated copy (optimum: the translation)
        x = rng.uniform(size=(n, 3))
        y = x[rng.permutation(n)] + rng.normal(scale=0.05, size=3)
    elif kind == "duplicated":  # every point 4 times, in both clouds
        x, y = np.repeat(rng.uniform(size=(2, n // 4, 3)), 4, axis=1)
    elif kind == "ties":  # points of a 6^3 grid: many exactly equal costs
        x, y = rng.integers(0, 6, (2, n, 3)) / 6.0
    else:  # synthetic ShapeNet-like objects: two of one category, or one object sampled twice
        synset = layout.CATEGORIES[rng.integers(len(layout.CATEGORIES))][0]
        shape = make_object(synset, rng)
        other = make_object(synset, rng) if kind == "two objects" else shape
        x = sample_outer_surface(shape, n, rng)[0]
        y = sample_outer_surface(other, n, rng)[0]
    return np.asarray(x, np.float32), np.asarray(y, np.float32)


def scipy_cost(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[B]`` optimal mean Euclidean cost per point (SciPy) and the float64 matrices used."""
    matrices = np.stack(
        [cdist(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(x, y, strict=True)]
    )
    return np.array([m[linear_sum_assignment(m)].mean() for m in matrices]), matrices


def accuracy(pairs_per_kind: int, seed: int) -> tuple[list[list[object]], float, int]:
    """Rows ``[points, kind, pairs, EMD, errors, rounds, seconds per pair]`` and the worst error.

    The auction's error is the larger of two: ``auction_assignment_cost``'s value, and the
    float64 cost of ``auction_assignment``'s permutation of the float32 cost matrix. Times are
    one run of the batch of ``pairs_per_kind`` pairs (compiled beforehand), divided by it.
    """
    rng = np.random.default_rng(seed)
    rows, worst, count = [], 0.0, 0
    solve = jax.jit(auction_assignment_cost, static_argnames=("solver",))

    def timed(fn, *args):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        return out, (time.perf_counter() - start) / pairs_per_kind

    for n in SIZES:
        dummy = np.zeros((pairs_per_kind, n, 3), np.float32)
        for solver in SOLVERS:  # compile outside the timed runs
            jax.block_until_ready(solve(dummy, dummy, solver=solver))
        for kind in KINDS:
            pairs = [cloud_pair(kind, n, rng) for _ in range(pairs_per_kind)]
            x, y = map(np.stack, zip(*pairs, strict=True))
            (reference, matrices), t_scipy = timed(scipy_cost, x, y)
            values, t_auction = timed(functools.partial(solve, solver="auction"), x, y)
            perm, _, info = auction_assignment(matrices.astype(np.float32), return_info=True)
            matched = np.take_along_axis(matrices, np.asarray(perm)[..., None], 2).mean((1, 2))
            error = max(
                np.max(np.abs(np.asarray(v, np.float64) - reference) / reference)
                for v in (values, matched)
            )
            h, t_hungarian = timed(functools.partial(solve, solver="hungarian"), x, y)
            h_error = np.max(np.abs(np.asarray(h, np.float64) - reference) / reference)
            worst, count = max(worst, error), count + len(x)
            rows.append(
                [n, kind, len(x), f"{reference.mean():.4g}", f"{error:.1e}", f"{h_error:.1e}"]
                + [int(np.max(info["iterations"]))]
                + [f"{t:.3f}" for t in (t_scipy, t_auction, t_hungarian)]
            )
            print(" | ".join(map(str, rows[-1])), flush=True)
    return rows, worst, count


def timing(repeats: int, seed: int) -> list[list[object]]:
    """Rows ``[pairs per batch, SciPy, auction (map), auction (vmap of pairs), auction
    (batch_mode="vmap"), Hungarian, auction / SciPy]`` in seconds per pair."""
    rng = np.random.default_rng(seed + 1)
    pairs = [cloud_pair(KINDS[k % len(KINDS)], 1024, rng) for k in range(max(BATCHES))]
    x_all, y_all = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    solvers = {
        "auction": jax.jit(auction_assignment_cost),
        "vmap": jax.jit(jax.vmap(lambda a, b: auction_assignment_cost(a[None], b[None])[0])),
        "together": jax.jit(functools.partial(auction_assignment_cost, batch_mode="vmap")),
        "hungarian": jax.jit(functools.partial(auction_assignment_cost, solver="hungarian")),
    }

    def per_pair(fn, batch: int) -> float:
        if batch == 1:  # 8 different pairs, one at a time
            return statistics.mean(
                median_seconds(lambda k=k: fn(x_all[k : k + 1], y_all[k : k + 1]), repeats)
                for k in range(8)
            )
        return median_seconds(lambda: fn(x_all[:batch], y_all[:batch]), repeats) / batch

    rows = []
    for batch in BATCHES:
        times = {"scipy": per_pair(lambda a, b: scipy_cost(a, b)[0], batch)}
        for name, fn in solvers.items():
            # All pairs bidding in the same rounds is for accelerators: too slow here at 32.
            if name != "together" or batch <= 8:
                times[name] = per_pair(fn, batch)
        row = [batch] + [
            f"{times[k]:.3f}" if k in times else "not run" for k in ("scipy", *solvers)
        ]
        rows.append(row + [f"{times['auction'] / times['scipy']:.1f}x"])
        print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-per-kind", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    started, load = time.perf_counter(), os.getloadavg()[0]
    acc_rows, worst, count = accuracy(args.pairs_per_kind, args.seed)
    time_rows = timing(args.repeats, args.seed)
    acc_table = bench_report.markdown_table(
        [
            "points",
            "kind",
            "pairs",
            "mean EMD (SciPy)",
            "auction: worst rel. error",
            "Hungarian: worst rel. error",
            "auction: most rounds",
            "SciPy (s/pair)",
            "auction (s/pair)",
            "Hungarian (s/pair)",
        ],
        acc_rows,
    )
    time_table = bench_report.markdown_table(
        [
            "pairs per batch",
            "SciPy (s/pair)",
            "auction (s/pair)",
            "auction, vmap of pairs (s/pair)",
            'auction, `batch_mode="vmap"` (s/pair)',
            "Hungarian (optax, s/pair)",
            "auction / SciPy",
        ],
        time_rows,
    )
    mode = "map" if jax.default_backend() == "cpu" else "vmap"
    section = (
        "## Exact EMD in JAX: auction and Hungarian against SciPy\n\n"
        f"`python experiments/bench_exact_emd.py --pairs-per-kind {args.pairs_per_kind} "
        f"--repeats {args.repeats}` ({(time.perf_counter() - started) / 60:.0f} min). "
        + bench_report.machine_info()
        + f" Load average (1 min) when the run started: {load:.1f}; other processes slow every "
        "contender alike."
        + "\n\nAccuracy: `auction_assignment_cost` (Euclidean, `rtol=1e-6`, float32) against "
        "SciPy's `linear_sum_assignment` optimum (float64 cost matrix of the same points), "
        f"{count} pairs; worst relative error {worst:.1e}.\n\n"
        + acc_table
        + "\n\nTime per pair, 1024 points, end to end from the clouds, median of "
        f"{args.repeats} runs after a warm-up; batch 1 is the mean over 8 pairs (one of each "
        f'kind). JAX is jitted, with the default `batch_mode="auto"` (here `"{mode}"`; '
        '`"map"`: pairs one after the other) unless said; `batch_mode="vmap"` makes all pairs '
        "bid in the same rounds (for accelerators). SciPy is `cdist` + "
        "`linear_sum_assignment`, one pair after the other (one core).\n\n" + time_table
    )
    print("\n" + section)
    if not args.no_write:
        bench_report.write_section(DOCS, "exact_emd", section)
        print(f"\nwritten to {os.path.normpath(DOCS)}")


if __name__ == "__main__":
    main()
