"""Evaluation throughput: views/s of ``recon-jax eval`` with 1 and 2 scoring processes.

Runs the real command, ``python -m recon_jax.cli eval``, in a fresh process per worker count
(and scoring path) on a trained run's whole test split (3D-LMNet's protocol with ICP and the exact
EMD, the default), in a scratch copy of the work directory (links to its config, metrics and
checkpoints: the run's own evaluation files stay as they are). views/s is views over the
command's own ``seconds`` (``evaluate_workdir`` from its first line to its table: pool start-up,
checkpoint restore, compilation, scoring); beside it the process's wall time (Python's imports
included) and the CPU time of all its processes. Projects real ShapeNet's ~210k test views.
Prints a Markdown table and writes it as the ``eval`` section of docs/benchmarks.md
(``--no-write`` to skip).

    python experiments/bench_eval.py --workdir runs/default [--workers 1,2] [--scoring host]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import bench_report

from recon_jax import checkpoints, rundir

SHAPENET_TEST_VIEWS = 210_000  # ~8.8k test models x 24 views
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scratch_run(workdir: str, into: str) -> str:
    """A work directory in ``into`` linking to ``workdir``'s files except its evaluations."""
    scratch = os.path.join(into, "run")
    os.makedirs(scratch)
    for name in os.listdir(workdir):
        if not name.startswith("eval_"):
            os.symlink(os.path.abspath(os.path.join(workdir, name)), os.path.join(scratch, name))
    return scratch


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_eval(workdir: str, workers: int, scoring: str) -> tuple[dict, float, float]:
    """One ``recon-jax eval`` in a fresh process: ``(results, wall seconds, CPU seconds)`` of
    the process and its scoring processes."""
    command = [sys.executable, "-m", "recon_jax.cli", "eval", "--workdir", workdir,
               "--workers", str(workers), "--scoring", scoring]
    cpu, tic = _children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - tic, _children_cpu() - cpu
    with open(rundir.eval_stem(workdir, "test") + ".json") as f:
        return json.load(f), wall, cpu


def across_paths(tables: dict[str, list[dict]]) -> str:
    """The largest relative difference of a category's CD or EMD between scoring paths."""
    if len(tables) < 2:
        return ""
    first, *others = (ts[0] for ts in tables.values())
    worst = max(abs(other[name][key] / first[name][key] - 1)
                for other in others for name in first for key in ("cd", "emd"))
    return f" Largest relative difference of a category's CD or EMD between paths: {worst:.1e}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/default")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--scoring", default="host", help="scoring paths, comma-separated")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each setting, interleaved; the median is reported")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    config = checkpoints.load_config(args.workdir)
    settings = [(s, int(w)) for s in args.scoring.split(",") for w in args.workers.split(",")]
    runs: dict[tuple[str, int], list[tuple[dict, float, float]]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        scratch = scratch_run(args.workdir, tmp)
        for _ in range(args.repeats):
            for scoring, workers in settings:
                runs[scoring, workers].append(run_eval(scratch, workers, scoring))
    rows, base, tables = [], None, {}
    for (scoring, workers), done in runs.items():
        results = done[0][0]
        seconds = statistics.median(r["seconds"] for r, _, _ in done)
        wall = statistics.median(w for _, w, _ in done)
        cpu = statistics.median(c for _, _, c in done)
        rate = results["views"] / seconds
        base = base or rate
        tables.setdefault(scoring, []).extend(r["per_category"] for r, _, _ in done)
        rows.append([results["scoring"], workers, results["views"],
                     ", ".join(f"{r['seconds']:.1f}" for r, _, _ in done), f"{rate:.1f}",
                     f"{rate / base:.2f}", f"{wall:.1f}", f"{cpu:.1f}",
                     f"{SHAPENET_TEST_VIEWS / rate / 3600:.1f}"])
    same = all(t == ts[0] for ts in tables.values() for t in ts)
    table = bench_report.markdown_table(
        ["scoring", "workers", "views", "seconds", "views/s", "speed-up", "process wall s",
         "CPU s", "210k views (h)"], rows)
    first = next(iter(runs.values()))[0][0]
    command = (f"python experiments/bench_eval.py --workdir {args.workdir} --workers "
               f"{args.workers} --scoring {args.scoring} --repeats {args.repeats}")
    markdown = (
        "## Evaluation throughput (`experiments/bench_eval.py`)\n\n"
        f"{bench_report.machine_info()}\n\n"
        f"Command: `{command}`. Run: {config.model.encoder}, step {first['step']} (best "
        f"checkpoint), {config.model.num_points} predicted points, every view of its test split; "
        "3D-LMNet's protocol with ICP and the exact EMD. Each setting is one `python -m "
        "recon_jax.cli eval` process (runs interleaved; seconds of each run listed, the median "
        "used): `seconds` is the command's own clock (`evaluate_workdir`, from its start to the "
        "table: scoring pool start-up, checkpoint restore, compilation, prediction, scoring), "
        "the process wall time adds Python's imports; CPU s: user + system time of the command "
        "and its scoring processes (the work done, whatever the machine's load). Host scoring: a "
        "pool of spawned processes started before the checkpoint is restored (1 worker: in the "
        "main process). The "
        "projection divides ~210k views (real ShapeNet's test split) by the rate; it holds for "
        f"{min(config.model.num_points, 1024)}-point pairs: a 2048-point model scores 1024-point "
        "pairs, whose exact EMD costs several times more (131-163 ms a view on one core, "
        "docs/design.md, \"recon_jax.protocol\").\n\n"
        f"{table}\n\nSame per-category table in every run of a scoring path: {same}."
        f"{across_paths(tables)}\n")
    print(markdown)
    if not args.no_write:
        bench_report.write_section(os.path.join(ROOT, "docs", "benchmarks.md"), "eval", markdown)


if __name__ == "__main__":
    main()
