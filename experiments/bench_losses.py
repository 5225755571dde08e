"""Loss benchmark: Chamfer (both batch modes, against SciPy's cKDTree) and EMD, on this machine.

Run (about 6 minutes on a 2-core CPU; writes its section of docs/benchmarks.md):
    python experiments/bench_losses.py [--chamfer-batch 32] [--emd-pairs 8] [--large 100000]

Clouds: surface samples (2048 points) of synthetic ShapeNet-like objects (bounding-box diagonal
1). EMD pairs are of two kinds, half each: two different objects of one category (a
"prediction vs target" distance), and two independent samples of one object (the hard case for
relative error: the EMD is small, close to the sampling noise).

Chamfer times are medians over ``--repeats`` rounds after a warm-up, the contenders timed in turn
within each round (so that load from other processes hits them alike); JAX results are waited for
with ``block_until_ready``. EMD times are medians over the pairs, one call each, the contenders
timed in turn on each pair.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import bench_report  # experiments/bench_report.py (this script's directory is on sys.path)
import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from recon_jax.data import layout
from recon_jax.data.primitives import sample_outer_surface
from recon_jax.data.synthetic import generate_model, object_rng
from recon_jax.losses import chamfer_distance, emd, exact_emd


def surface_clouds(pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``pairs`` cloud pairs ``[pairs, 2048, 3]`` from the synthetic generator, and their kinds."""
    xs, ys, kinds = [], [], []
    for k in range(pairs):
        synset = layout.CATEGORIES[k % len(layout.CATEGORIES)][0]
        shape, _, clouds = generate_model(seed, synset, k, views=1)
        xs.append(clouds[2048])
        if k % 2 == 0:
            _, _, other = generate_model(seed, synset, k + 1000, views=1)
            ys.append(other[2048])
            kinds.append("different objects")
        else:
            resample = sample_outer_surface(shape, 2048, object_rng(seed + 1, synset, k, 99))[0]
            ys.append(resample.astype(np.float32))
            kinds.append("resample of one object")
    return np.stack(xs), np.stack(ys), kinds


def interleaved(contenders: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each ``fn()`` over ``repeats`` rounds (one warm-up call each)."""
    for fn in contenders.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            tic = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


# ------------------------------------------------------------------------------------------
# Chamfer
# ------------------------------------------------------------------------------------------
def naive_chamfer(x, y):
    d = jnp.sum((x[:, :, None] - y[:, None]) ** 2, axis=-1)
    return jnp.mean(jnp.mean(d.min(2), 1) + jnp.mean(d.min(1), 1))


def kdtree_chamfer(x: np.ndarray, y: np.ndarray) -> float:
    """Squared-distance Chamfer by SciPy's cKDTree, both directions, all cores (forward only)."""
    total = 0.0
    for a, b in zip(x, y, strict=True):
        da, _ = cKDTree(b).query(a, workers=-1)
        db, _ = cKDTree(a).query(b, workers=-1)
        total += np.mean(da**2) + np.mean(db**2)
    return total / len(x)


def bench_chamfer(x: np.ndarray, y: np.ndarray, repeats: int) -> tuple[list[list], dict]:
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    contenders, names = {}, []
    for mode in ("map", "vmap"):
        def loss(a, b, mode=mode):
            return chamfer_distance(a, b, batch_mode=mode)

        fwd, fwd_bwd = jax.jit(loss), jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        name = f'recon_jax chamfer_distance, batch_mode="{mode}"'
        contenders[(name, "f")] = lambda f=fwd: f(xj, yj)
        contenders[(name, "fb")] = lambda f=fwd_bwd: f(xj, yj)
        names.append(name)
    naive_f = jax.jit(naive_chamfer)
    naive_fb = jax.jit(jax.value_and_grad(naive_chamfer, argnums=(0, 1)))
    contenders[("naive jnp (full [B,N,M])", "f")] = lambda: naive_f(xj, yj)
    contenders[("naive jnp (full [B,N,M])", "fb")] = lambda: naive_fb(xj, yj)
    names.append("naive jnp (full [B,N,M])")
    contenders[("SciPy cKDTree, both directions (forward only)", "f")] = (
        lambda: kdtree_chamfer(x, y)
    )
    names.append("SciPy cKDTree, both directions (forward only)")
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.from_numpy(y).requires_grad_(True)

        def torch_loss():
            d = torch.cdist(xt, yt) ** 2
            return (d.min(2).values.mean(1) + d.min(1).values.mean(1)).mean()

        def torch_f():
            with torch.no_grad():
                return torch_loss()

        def torch_fb():
            loss = torch_loss()
            loss.backward()
            return loss.detach()

        name = f"torch {torch.__version__} cdist + min"
        contenders[(name, "f")], contenders[(name, "fb")] = torch_f, torch_fb
        names.append(name)
    except ImportError:
        pass
    times = interleaved(contenders, repeats)
    rows = [[name, f"{1e3 * times[(name, 'f')]:.1f}",
             f"{1e3 * times[(name, 'fb')]:.1f}" if (name, "fb") in times else "n/a"]
            for name in names]
    ours = float(jax.jit(chamfer_distance)(xj, yj))
    ref = kdtree_chamfer(x, y)
    rows.append(["(check) |ours - cKDTree| / cKDTree", f"{abs(ours - ref) / ref:.1e}", ""])
    return rows, times


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
# Peak RSS of this process image: /proc's VmHWM (ru_maxrss would include the RSS of the parent
# at fork time, which Linux carries across exec).
try:
    with open("/proc/self/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
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
    exact = np.asarray(exact_emd(x, y, solver="scipy"), np.float64)
    contenders = {}
    ours_fb = jax.jit(jax.value_and_grad(lambda a, b: emd(a[None], b[None])))
    contenders["recon_jax emd (forward+backward)"] = lambda i: ours_fb(x[i], y[i])[0]
    ours_f = jax.jit(lambda a, b: emd(a[None], b[None]))
    contenders["recon_jax emd (forward)"] = lambda i: ours_f(x[i], y[i])

    def ott_default(a, b):
        # ott-jax's default settings, with the Euclidean cost of eq. 5 (its default is squared).
        geom = pointcloud.PointCloud(a, b, cost_fn=costs.Euclidean())
        out = sinkhorn.Sinkhorn()(linear_problem.LinearProblem(geom))
        return jnp.sum(out.matrix * geom.cost_matrix)

    ott_f = jax.jit(ott_default)
    contenders["ott-jax Sinkhorn, default settings, <P, C>"] = lambda i: ott_f(x[i], y[i])

    def pot(i):
        c = cdist(x[i].astype(np.float64), y[i].astype(np.float64))
        w = np.full(len(x[i]), 1.0 / len(x[i]))
        return ot.emd2(w, w, c, numItermax=10_000_000)

    contenders[f"POT {ot.__version__} ot.emd2 (exact)"] = pot

    def lsa(i):
        c = cdist(x[i].astype(np.float64), y[i].astype(np.float64))
        r, cc = linear_sum_assignment(c)
        return c[r, cc].mean()

    contenders["SciPy linear_sum_assignment (exact)"] = lsa
    contenders['recon_jax exact_emd(solver="scipy")'] = (
        lambda i: exact_emd(x[i][None], y[i][None], solver="scipy")[0])
    # Each pair once per contender, the contenders in turn for each pair (after a warm-up on
    # pair 0), so that load from other processes hits them alike.
    for fn in contenders.values():
        jax.block_until_ready(fn(0))
    values = {name: [] for name in contenders}
    times = {name: [] for name in contenders}
    for i in range(pairs):
        for name, fn in contenders.items():
            tic = time.perf_counter()
            values[name].append(float(jax.block_until_ready(fn(i))))
            times[name].append(time.perf_counter() - tic)
    results = {
        name: {"time": statistics.median(times[name]),
               "rel": np.abs(np.asarray(values[name]) - exact) / exact}
        for name in contenders
    }
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
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    load = (f"Load average when the run started: {os.getloadavg()[0]:.1f} (1 min) on "
            f"{os.cpu_count()} cores; other processes slow every contender alike.")
    x, y, kinds = surface_clouds(max(args.chamfer_batch, args.emd_pairs))
    print(f"Chamfer, B = {args.chamfer_batch}, N = M = 2048 ...", flush=True)
    cham_rows, times = bench_chamfer(x[: args.chamfer_batch], y[: args.chamfer_batch],
                                     args.repeats)
    cham_header = [f"Chamfer (B = {args.chamfer_batch} pairs, N = M = 2048)", "forward ms",
                   "forward+backward ms"]
    print(bench_report.markdown_table(cham_header, cham_rows), flush=True)
    large = bench_large(args.large) if args.large else None
    if large:
        print(large, flush=True)
    print(f"EMD, {args.emd_pairs} pairs of 2048 points ...", flush=True)
    emd_rows, emd_info = bench_emd(x[: args.emd_pairs], y[: args.emd_pairs],
                                   kinds[: args.emd_pairs])
    emd_table = bench_report.markdown_table(
        ["EMD (one pair, 2048 points)", "s / pair", "mean rel. error vs exact", "max",
         "different objects / resample"], emd_rows)
    print(emd_table)

    res = emd_info["results"]
    pot_time = next(v["time"] for k, v in res.items() if k.startswith("POT"))
    ours = res["recon_jax emd (forward+backward)"]
    name_map = 'recon_jax chamfer_distance, batch_mode="map"'
    kd = times[("SciPy cKDTree, both directions (forward only)", "f")]
    torch_fb = next((t for (n, kind), t in times.items()
                     if n.startswith("torch") and kind == "fb"), None)
    bars = [
        f"- Chamfer forward+backward (batch_mode=\"map\", the CPU default) / SciPy cKDTree "
        f"forward, both directions: **{times[(name_map, 'fb')] / kd:.2f}** (bar: <= 1)",
        "- Chamfer forward+backward vs torch.cdist + min + backward: "
        + (f"**{torch_fb / times[(name_map, 'fb')]:.1f}x faster** (bar: >= 5x)"
           if torch_fb else "torch absent"),
        f"- Chamfer forward+backward / our forward: "
        f"**{times[(name_map, 'fb')] / times[(name_map, 'f')]:.2f}** (bar: <= 2)",
        f"- EMD mean relative error vs exact: **{100 * ours['rel'].mean():.2f}%** (bar: <= 1%); "
        f"time per pair forward+backward / POT exact: **{ours['time'] / pot_time:.2f}** "
        f"(bar: <= 1.0)",
    ]
    print("\n".join(bars))
    if args.no_write:
        return
    body = "\n\n".join(filter(None, [
        "## Losses (`experiments/bench_losses.py`)",
        bench_report.machine_info() + " " + load,
        "Command: `python experiments/bench_losses.py` (defaults: Chamfer B = "
        f"{args.chamfer_batch}, EMD on {args.emd_pairs} pairs, large Chamfer N = "
        f"{args.large:,}). Clouds: surfaces of synthetic objects, 2048 points, bounding-box "
        f"diagonal 1. Chamfer times: median of {args.repeats} rounds after warm-up, the "
        "contenders timed in turn within each round; EMD: median over pairs, the contenders "
        "timed in turn on each pair.",
        bench_report.markdown_table(cham_header, cham_rows),
        bench_report.markdown_table(["large cloud", "time", "memory"], [large]) if large else "",
        f"Exact EMD of these pairs: mean {emd_info['exact_mean']:.4f} (Euclidean, per point).",
        emd_table,
        "Against the bars of the issues:\n" + "\n".join(bars),
    ]))
    bench_report.write_section(args.output, "losses", body)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
