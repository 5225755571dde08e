"""Loss benchmark: Chamfer and EMD side by side, written to docs/benchmarks.md.

Run (about 10 minutes on a 2-core CPU):
    python experiments/bench_losses.py [--chamfer-batch 32] [--emd-pairs 8] [--large 100000]

Clouds: surface samples (2048 points) of synthetic ShapeNet-like objects (bounding-box diagonal
1). EMD pairs are of two kinds, half each: two different objects of one category (a
"prediction vs target" distance), and two independent samples of one object (the hard case for
relative error: the EMD is small, close to the sampling noise).

Every time is the median of ``--repeats`` runs after a warm-up (compilation excluded); JAX
results are waited for with ``block_until_ready``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from recon_jax.bench_report import machine_info, markdown_table, write_section
from recon_jax.data import layout
from recon_jax.losses import chamfer_distance, emd, exact_emd


def timeit(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def surface_clouds(pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``pairs`` cloud pairs ``[pairs, 2048, 3]`` from the synthetic generator, and their kinds."""
    from recon_jax.data.synthetic import make_model, object_rng, sample_outer_surface

    xs, ys, kinds = [], [], []
    for k in range(pairs):
        synset = layout.CATEGORIES[k % len(layout.CATEGORIES)][0]
        shape, _, clouds = make_model(seed, synset, k, views=1)
        xs.append(clouds[2048])
        if k % 2 == 0:
            _, _, other = make_model(seed, synset, k + 1000, views=1)
            ys.append(other[2048])
            kinds.append("different objects")
        else:
            resample = sample_outer_surface(shape, 2048, object_rng(seed + 1, synset, k, 99))[0]
            ys.append(resample.astype(np.float32))
            kinds.append("resample of one object")
    return np.stack(xs), np.stack(ys), kinds


# ------------------------------------------------------------------------------------------
# Chamfer
# ------------------------------------------------------------------------------------------
def naive_chamfer(x, y):
    d = jnp.sum((x[:, :, None] - y[:, None]) ** 2, axis=-1)
    return jnp.mean(jnp.mean(d.min(2), 1) + jnp.mean(d.min(1), 1))


def bench_chamfer(x: np.ndarray, y: np.ndarray, repeats: int) -> list[list[object]]:
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    rows = []
    ours_f = jax.jit(chamfer_distance)
    ours_fb = jax.jit(jax.value_and_grad(chamfer_distance, argnums=(0, 1)))
    naive_f = jax.jit(naive_chamfer)
    naive_fb = jax.jit(jax.value_and_grad(naive_chamfer, argnums=(0, 1)))
    t_ours_f = timeit(lambda: ours_f(xj, yj), repeats)
    t_ours_fb = timeit(lambda: ours_fb(xj, yj), repeats)
    rows.append(["recon_jax chamfer_distance", t_ours_f, t_ours_fb])
    rows.append(["naive jnp (full [B,N,M])", timeit(lambda: naive_f(xj, yj), repeats),
                 timeit(lambda: naive_fb(xj, yj), repeats)])
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.from_numpy(y).requires_grad_(True)

        def torch_fwd():
            d = torch.cdist(xt, yt) ** 2
            return (d.min(2).values.mean(1) + d.min(1).values.mean(1)).mean()

        def torch_fb():
            loss = torch_fwd()
            loss.backward()
            return loss.detach()

        with torch.no_grad():
            t_torch_f = timeit(lambda: torch_fwd(), repeats)
        rows.append([f"torch {torch.__version__} cdist + min", t_torch_f,
                     timeit(torch_fb, repeats)])
    except ImportError:
        rows.append(["torch cdist + min", "torch not installed", ""])
    from scipy.spatial import cKDTree

    def kdtree():
        total = 0.0
        for a, b in zip(x, y, strict=True):
            da, _ = cKDTree(b).query(a, workers=-1)
            db, _ = cKDTree(a).query(b, workers=-1)
            total += np.mean(da**2) + np.mean(db**2)
        return total / len(x)

    rows.append(["SciPy cKDTree (forward only)", timeit(kdtree, repeats), "n/a"])
    # Agreement of our value with the kd-tree (float64) value.
    ours_val = float(ours_f(xj, yj))
    ref = kdtree()
    rows.append(["(check) |ours - cKDTree| / cKDTree", f"{abs(ours_val - ref) / ref:.1e}", ""])
    return rows


LARGE_SCRIPT = """
import resource, sys, time, jax, jax.numpy as jnp, numpy as np
from recon_jax.losses import chamfer_distance
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(1, n, 3)).astype(np.float32))
y = jnp.asarray(rng.normal(size=(1, n, 3)).astype(np.float32))
f = jax.jit(jax.value_and_grad(chamfer_distance, argnums=(0, 1)))
compiled = f.lower(x, y).compile()
mem = compiled.memory_analysis()
jax.block_until_ready(f(x, y))
t = time.perf_counter(); jax.block_until_ready(f(x, y)); t = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(t, mem.temp_size_in_bytes / 2**20, rss)
"""


def bench_large(n: int) -> list[object]:
    """Our Chamfer forward+backward at ``n`` points, in a fresh process for a clean peak RSS."""
    out = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, str(n)], capture_output=True,
                         text=True, check=True).stdout.split()
    seconds, temp_mib, rss_mib = (float(v) for v in out)
    full = n * n * 4 / 2**20
    return [f"recon_jax chamfer_distance, N = M = {n:,}, forward+backward", f"{seconds:.2f} s",
            f"XLA scratch {temp_mib:.1f} MiB; process peak RSS {rss_mib:.0f} MiB "
            f"(one dense N x M float32 matrix would be {full:,.0f} MiB)"]


# ------------------------------------------------------------------------------------------
# EMD
# ------------------------------------------------------------------------------------------
def bench_emd(x: np.ndarray, y: np.ndarray, kinds: list[str]) -> tuple[list, dict]:
    import ot
    from ott.geometry import costs, pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    pairs = len(x)
    exact = np.asarray(exact_emd(x, y), np.float64)
    results: dict[str, dict] = {}

    def per_pair(name, fn):
        """fn(i) -> value for pair i; times each pair once after a warm-up of pair 0."""
        fn(0)
        values, times = [], []
        for i in range(pairs):
            t = time.perf_counter()
            values.append(float(jax.block_until_ready(fn(i))))
            times.append(time.perf_counter() - t)
        rel = np.abs(np.asarray(values) - exact) / exact
        results[name] = {"time": statistics.median(times), "rel": rel}

    ours_fb = jax.jit(jax.value_and_grad(lambda a, b: emd(a[None], b[None])))
    per_pair("recon_jax emd (forward+backward)", lambda i: ours_fb(x[i], y[i])[0])
    ours_f = jax.jit(lambda a, b: emd(a[None], b[None]))
    per_pair("recon_jax emd (forward)", lambda i: ours_f(x[i], y[i]))

    def ott_default(a, b):
        # ott-jax's default settings, with the Euclidean cost of eq. 5 (its default is squared).
        geom = pointcloud.PointCloud(a, b, cost_fn=costs.Euclidean())
        out = sinkhorn.Sinkhorn()(linear_problem.LinearProblem(geom))
        return jnp.sum(out.matrix * geom.cost_matrix)

    ott_f = jax.jit(ott_default)
    per_pair("ott-jax Sinkhorn, default settings, <P, C>", lambda i: ott_f(x[i], y[i]))

    def pot(i):
        c = cdist(x[i].astype(np.float64), y[i].astype(np.float64))
        w = np.full(len(x[i]), 1.0 / len(x[i]))
        return ot.emd2(w, w, c, numItermax=10_000_000)

    per_pair(f"POT {ot.__version__} ot.emd2 (exact)", pot)

    def lsa(i):
        c = cdist(x[i].astype(np.float64), y[i].astype(np.float64))
        r, cc = linear_sum_assignment(c)
        return c[r, cc].mean()

    per_pair("SciPy linear_sum_assignment (exact)", lsa)
    per_pair("recon_jax exact_emd (SciPy on host)", lambda i: exact_emd(x[i][None], y[i][None])[0])
    kinds_arr = np.asarray(kinds)
    rows = []
    for name, r in results.items():
        rel = r["rel"]
        rows.append([name, f"{r['time']:.3f}", f"{100 * rel.mean():.2f}%",
                     f"{100 * rel.max():.2f}%",
                     " / ".join(f"{100 * rel[kinds_arr == k].mean():.2f}%"
                                for k in ("different objects", "resample of one object"))])
    return rows, {"exact_mean": float(exact.mean()), "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chamfer-batch", type=int, default=32)
    parser.add_argument("--emd-pairs", type=int, default=8)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    x, y, kinds = surface_clouds(max(args.chamfer_batch, args.emd_pairs))
    print(f"Chamfer, B = {args.chamfer_batch}, N = M = 2048 ...", flush=True)
    cham = bench_chamfer(x[: args.chamfer_batch], y[: args.chamfer_batch], args.repeats)
    ours_f, ours_fb = cham[0][1], cham[0][2]
    torch_fb = cham[2][2] if isinstance(cham[2][2], float) else None
    cham_rows = [[r[0], f"{1e3 * r[1]:.1f}" if isinstance(r[1], float) else r[1],
                  f"{1e3 * r[2]:.1f}" if isinstance(r[2], float) else r[2]] for r in cham]
    print(markdown_table(["Chamfer (B = 32 pairs)", "forward ms", "forward+backward ms"],
                         cham_rows), flush=True)
    large = bench_large(args.large) if args.large else None
    if large:
        print(large, flush=True)
    print(f"EMD, {args.emd_pairs} pairs of 2048 points ...", flush=True)
    emd_rows, emd_info = bench_emd(x[: args.emd_pairs], y[: args.emd_pairs],
                                   kinds[: args.emd_pairs])
    emd_table = markdown_table(
        ["EMD (one pair, 2048 points)", "s / pair", "mean rel. error vs exact", "max",
         "different objects / resample"], emd_rows)
    print(emd_table)

    res = emd_info["results"]
    pot_time = next(v["time"] for k, v in res.items() if k.startswith("POT"))
    ours = res["recon_jax emd (forward+backward)"]
    bars = [
        "- Chamfer forward+backward vs torch.cdist + min + backward: "
        + (f"**{torch_fb / ours_fb:.1f}x faster** (bar: >= 5x)" if torch_fb else "torch absent"),
        f"- Chamfer forward+backward / our forward: **{ours_fb / ours_f:.2f}** (bar: <= 2)",
        f"- EMD mean relative error vs exact: **{100 * ours['rel'].mean():.2f}%** (bar: <= 1%); "
        f"time per pair forward+backward / POT exact: **{ours['time'] / pot_time:.2f}** "
        f"(bar: <= 1.0)",
    ]
    print("\n".join(bars))
    if args.no_write:
        return
    body = "\n\n".join([
        "## Losses (`experiments/bench_losses.py`)",
        machine_info(),
        "Command: `python experiments/bench_losses.py` (defaults: Chamfer B = 32, EMD on "
        f"{args.emd_pairs} pairs, large Chamfer N = {args.large:,}). Clouds: surfaces of "
        "synthetic objects, 2048 points, bounding-box diagonal 1. Times: median of "
        f"{args.repeats} runs after warm-up (Chamfer), median over pairs (EMD).",
        markdown_table(["Chamfer (B = 32 pairs, N = M = 2048)", "forward ms",
                        "forward+backward ms"], cham_rows),
        markdown_table(["large cloud", "time", "memory"], [large]) if large else "",
        f"Exact EMD of these pairs: mean {emd_info['exact_mean']:.4f} (Euclidean, per point).",
        emd_table,
        "Against the bars of the foundation issue:\n" + "\n".join(bars),
    ])
    write_section(args.output, "losses", body)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
