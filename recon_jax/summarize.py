"""``recon-jax summarize RUN_DIR...``: one table of runs, in the shape of Kim & Lee's Table 2.

Kim & Lee (2023) Table 2 lists CD, EMD and FLOPs per method; the table here adds what the paper
claims beside them (parameters, training memory) and what a reader needs to weigh them
(training time, the settings that differ). One row per run directory, read from the files a run
leaves behind, nothing recomputed:

* **CD, EMD** (x100): ``eval_test.json`` of ``recon-jax eval`` (mean of the categories, the
  protocol of :mod:`recon_jax.protocol`: unsquared CD, exact EMD, no ICP unless ``--icp``).
* **GFLOPs, params**: ``train_step.json`` (:func:`recon_jax.train.write_step_report`): forward
  pass on one image at the run's input size, XLA's count (a multiply-add is 2 FLOPs), for the
  extractor and for the whole network; trainable parameters of the whole network.
* **Peak train memory**: XLA's buffer assignment of the compiled training step, per device
  (parameters, Adam state, batch, activations and loss workspace; the host's data pipeline is
  not counted).
* **Training time**: wall-clock minutes of the training loop, the sum of the ``interval_s`` of
  the train records in ``metrics.jsonl`` (compilation and the periodic test-CD evaluations
  included; the final ``eval`` is not). For records without ``interval_s`` (runs older than
  this field) it is the record's images divided by its ``images_per_s``.

A missing file leaves its cells "n/a" (and says which file); a run without the eval result is an
error naming the command to run.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

__all__ = [
    "load_run", "training_seconds", "summary_markdown", "per_category_markdown",
    "configure_parser", "run",
]

_MISSING = "n/a"


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


def training_seconds(metrics_path: str, batch_size: int) -> float | None:
    """Wall seconds of the training loop from ``metrics.jsonl`` (module docstring).

    A step logged twice (a run resumed from a checkpoint older than its last record) counts
    once, with its last record. ``None`` if the file is missing or holds no train record.
    """
    if not os.path.exists(metrics_path):
        return None
    records: dict[int, dict[str, Any]] = {}
    with open(metrics_path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{metrics_path}, line {line_no}: not valid JSON ({e})") from None
            if record.get("split") == "train":
                records[int(record["step"])] = record
    if not records:
        return None
    total, previous = 0.0, 0
    for step in sorted(records):
        record = records[step]
        if "interval_s" in record:
            total += float(record["interval_s"])
        else:
            total += (step - previous) * batch_size / float(record["images_per_s"])
        previous = step
    return total


def _loss_label(config: dict[str, Any]) -> str:
    terms = []
    for key, name in (("kl_weight", "KL"), ("cd_weight", "CD"), ("emd_weight", "EMD")):
        weight = float(config.get(key, 0.0))
        if weight:
            terms.append(name if weight == 1 else f"{weight:g} {name}")
    return " + ".join(terms) or "(no loss)"


def load_run(workdir: str, *, icp: bool = False) -> dict[str, Any]:
    """One table row: settings, CD/EMD, cost figures and training time of the run in ``workdir``.

    Raises:
      FileNotFoundError: ``config.json`` or the evaluation result is missing.
    """
    config = _read_json(os.path.join(workdir, "config.json"))
    if config is None:
        raise FileNotFoundError(
            f"{workdir}: no config.json (not a `recon-jax train` work directory)")
    eval_name = "eval_test_icp.json" if icp else "eval_test.json"
    results = _read_json(os.path.join(workdir, eval_name))
    if results is None:
        raise FileNotFoundError(
            f"{workdir}: no {eval_name}; run `recon-jax eval --workdir {workdir}"
            f"{' --icp' if icp else ''}` first")
    step_report = _read_json(os.path.join(workdir, "train_step.json")) or {}
    seconds = training_seconds(os.path.join(workdir, "metrics.jsonl"), config["batch_size"])
    return {
        "run": os.path.basename(os.path.normpath(workdir)),
        "workdir": workdir,
        "encoder": config["encoder"],
        "loss": _loss_label(config),
        "num_points": config["num_points"],
        "image_size": config["image_size"],
        "batch_size": config["batch_size"],
        "num_steps": config["num_steps"],
        "eval_step": results.get("step"),
        "cd": results["mean"]["cd"],
        "emd": results["mean"]["emd"],
        "views": results.get("views"),
        "per_category": {name: v["cd"] for name, v in results.get("per_category", {}).items()},
        "extractor_gflops": step_report.get("extractor_gflops"),
        "model_gflops": step_report.get("model_gflops"),
        "model_params": step_report.get("model_params"),
        "step_peak_bytes": step_report.get("step_peak_bytes"),
        "devices": step_report.get("devices"),
        "train_seconds": seconds,
        "missing": [name for name, ok in (("train_step.json", bool(step_report)),
                                          ("metrics.jsonl", seconds is not None)) if not ok],
    }


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return _MISSING if value is None else format(value / scale, spec)


def summary_markdown(rows: list[dict[str, Any]], *, icp: bool = False) -> str:
    """The Markdown table of :func:`load_run` rows, with the settings they share stated once."""
    shared = []
    for key, label in (("image_size", "input {0}x{0}"), ("batch_size", "batch {0}"),
                       ("num_steps", "{0} steps")):
        values = {row[key] for row in rows}
        if len(values) == 1:
            shared.append(label.format(values.pop()))
    lines = [
        "| run | extractor | loss | points | CD x100 | EMD x100 | GFLOPs extractor / "
        "network | params (M) | peak train memory (MiB/device) | training time (min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['encoder']} | {row['loss']} | {row['num_points']} | "
            f"{row['cd']:.2f} | {_fmt(row['emd'], '.2f')} | "
            f"{_fmt(row['extractor_gflops'], '.3f')} / {_fmt(row['model_gflops'], '.3f')} | "
            f"{_fmt(row['model_params'], '.2f', 1e6)} | "
            f"{_fmt(row['step_peak_bytes'], '.0f', 2**20)} | "
            f"{_fmt(row['train_seconds'], '.1f', 60)} |")
    notes = [
        "",
        f"Test split, mean of the categories, {'with' if icp else 'no'} ICP; CD unsquared, "
        "EMD exact (protocol: README). GFLOPs: forward pass on one image, a multiply-add = 2. "
        "Memory: XLA's buffers of one training step. Time: the training loop, compilation and "
        "periodic test-CD checks included.",
    ]
    if shared:
        notes.append(f"Shared by every row: {', '.join(shared)}.")
    for row in rows:
        if row["missing"]:
            notes.append(f"{row['run']}: {', '.join(row['missing'])} missing, cells n/a.")
    return "\n".join(lines + notes + per_category_markdown(rows)) + "\n"


def per_category_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of a second table: CD x100 per category (rows) and run (columns), with the run
    of lowest CD in bold; empty when no row has per-category results."""
    names = list(dict.fromkeys(n for row in rows for n in row.get("per_category", {})))
    if not names:
        return []
    lines = ["", "CD x100 per category (lowest in bold):", "",
             "| category | " + " | ".join(row["run"] for row in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for name in names:
        values = [row.get("per_category", {}).get(name) for row in rows]
        best = min(v for v in values if v is not None)
        cells = [_MISSING if v is None else (f"**{v:.2f}**" if v == best else f"{v:.2f}")
                 for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdirs", nargs="+", metavar="RUN_DIR",
                        help="work directories of evaluated `recon-jax train` runs")
    parser.add_argument("--icp", action="store_true",
                        help="use the ICP-aligned results (eval_test_icp.json)")
    parser.add_argument("--out", default=None,
                        help="also write OUT.md (the table) and OUT.json (the rows)")


def run(args: argparse.Namespace) -> int:
    rows = [load_run(workdir, icp=args.icp) for workdir in args.workdirs]
    table = summary_markdown(rows, icp=args.icp)
    print(table, end="")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".md", "w") as f:
            f.write(table)
        with open(args.out + ".json", "w") as f:
            json.dump(rows, f, indent=2)
    return 0
