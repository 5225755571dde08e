"""One table of runs in the shape of Kim & Lee's Table 2 (``recon-jax summarize RUN_DIR...``).

One row per work directory, read from the files a run leaves behind, nothing recomputed: CD and
EMD x100 from ``eval_test.json`` (mean of the categories), GFLOPs (forward, one image, a
multiply-add = 2 FLOPs), parameters and the training step's peak memory per device from
``train_step.json``, and the training time (minutes: the sum of the train records'
``interval_s`` in ``metrics.jsonl``, compilation and periodic test-CD checks included). A
missing file leaves its cells "n/a" and says which; a run without its evaluation is a
:class:`~recon_jax.errors.UserError` naming the command to run. Design notes: docs/design.md.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from recon_jax import rundir
from recon_jax.errors import UserError

__all__ = [
    "load_run", "training_seconds", "group_name", "group_runs", "mean_std", "summary_markdown",
    "per_category_markdown", "paired_comparison", "paired_markdown",
]

_MISSING = "n/a"


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None


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
                raise UserError(f"{metrics_path}, line {line_no}: not valid JSON ({e})") from None
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


def _loss_label(loss: dict[str, Any]) -> str:
    terms = []
    for key, name in (("kl_weight", "KL"), ("cd_weight", "CD"), ("emd_weight", "EMD")):
        weight = float(loss.get(key, 0.0))
        if weight:
            terms.append(name if weight == 1 else f"{weight:g} {name}")
    return " + ".join(terms) or "(no loss)"


def load_run(workdir: str, *, eval_name: str = "eval_test.json") -> dict[str, Any]:
    """One table row: settings, CD/EMD, cost figures and training time of the run in ``workdir``.

    Raises:
      UserError: ``config.json`` or the evaluation result ``eval_name`` is missing.
    """
    config = _read_json(rundir.path(workdir, rundir.CONFIG))
    if config is None or "model" not in config:
        raise UserError(f"{workdir}: no config.json of a `recon-jax train` run (with sections "
                        "data, model, loss, ...)")
    results = _read_json(os.path.join(workdir, eval_name))
    if results is None:
        raise UserError(f"{workdir}: no {eval_name}; run `recon-jax eval --workdir {workdir}` "
                        "first")
    step_report = _read_json(rundir.path(workdir, rundir.STEP_REPORT)) or {}
    data, model = config["data"], config["model"]
    seconds = training_seconds(rundir.path(workdir, rundir.METRICS), data["batch_size"])
    return {
        "run": os.path.basename(os.path.normpath(workdir)),
        "workdir": workdir,
        "encoder": model["encoder"],
        "loss": _loss_label(config["loss"]),
        "seed": config["run"]["seed"],
        "num_points": model["num_points"],
        "image_size": model["image_size"],
        "batch_size": data["batch_size"],
        "num_steps": config["optim"]["num_steps"],
        "eval_step": results.get("step"),
        "checkpoint": results.get("checkpoint"),
        "protocol": results.get("protocol_name", results.get("protocol")),
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
        "missing": [name for name, ok in ((rundir.STEP_REPORT, bool(step_report)),
                                          (rundir.METRICS, seconds is not None)) if not ok],
    }


def _fmt(value: Any, spec: str, scale: float = 1.0) -> str:
    return _MISSING if value is None else format(value / scale, spec)


def group_name(row: dict[str, Any]) -> str:
    """The experiment a run replicates: its directory name without a ``_seed<N>`` suffix."""
    return re.sub(r"_seed\d+$", "", row["run"])


def group_runs(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by :func:`group_name`, in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(group_name(row), []).append(row)
    return groups


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; ``None`` for one value or a missing one)."""
    if not values or any(v is None for v in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)


def _fmt_spread(values: list[float | None], spec: str = ".2f", scale: float = 1.0) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return _MISSING
    return _fmt(mean, spec, scale) + ("" if std is None else f" ± {_fmt(std, spec, scale)}")


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown of :func:`load_run` rows: one line per experiment (seed replicates grouped, mean
    ± sample std), the settings they share, CD per category, and paired comparisons."""
    groups = group_runs(rows)
    shared = []
    for key, label in (("image_size", "input {0}x{0}"), ("batch_size", "batch {0}"),
                       ("num_steps", "{0} steps")):
        values = {row[key] for row in rows}
        if len(values) == 1:
            shared.append(label.format(values.pop()))
    lines = [
        "| run | extractor | loss | points | seeds | CD x100 | EMD x100 | GFLOPs extractor / "
        "network | params (M) | peak train memory (MiB/device) | training time (min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in groups.items():
        first = runs[0]
        lines.append(
            f"| {name} | {first['encoder']} | {first['loss']} | {first['num_points']} | "
            f"{','.join(str(r['seed']) for r in runs)} | "
            f"{_fmt_spread([r['cd'] for r in runs])} | {_fmt_spread([r['emd'] for r in runs])} | "
            f"{_fmt(first['extractor_gflops'], '.3f')} / {_fmt(first['model_gflops'], '.3f')} | "
            f"{_fmt(first['model_params'], '.2f', 1e6)} | "
            f"{_fmt(first['step_peak_bytes'], '.0f', 2**20)} | "
            f"{_fmt_spread([r['train_seconds'] for r in runs], '.1f', 60)} |")
    protocols = sorted({str(r.get("protocol")) for r in rows})
    steps = sorted({str(r.get("checkpoint")) for r in rows})
    notes = [
        "",
        f"Test split, mean of the categories; protocol {', '.join(protocols)}; checkpoint "
        f"{', '.join(steps)} (best = lowest periodic test CD). CD unsquared, EMD exact, both "
        "x100; with several seeds: mean ± sample std. GFLOPs: forward pass on one image, a "
        "multiply-add = 2. Memory: XLA's buffers of one training step. Time: the training "
        "loop, compilation and periodic test-CD checks included.",
    ]
    if shared:
        notes.append(f"Shared by every row: {', '.join(shared)}.")
    for row in rows:
        if row["missing"]:
            notes.append(f"{row['run']}: {', '.join(row['missing'])} missing, cells n/a.")
    return "\n".join(lines + notes + per_category_markdown(rows)
                     + paired_markdown(rows)) + "\n"


def per_category_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of a second table: CD x100 per category (rows) and experiment (columns, the mean
    over its seeds), the lowest in bold; empty when no row has per-category results."""
    groups = group_runs(rows)
    names = list(dict.fromkeys(n for row in rows for n in row.get("per_category", {})))
    if not names:
        return []
    lines = ["", "CD x100 per category, mean over seeds (lowest in bold):", "",
             "| category | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for name in names:
        values = [mean_std([r.get("per_category", {}).get(name) for r in runs])[0]
                  for runs in groups.values()]
        present = [v for v in values if v is not None]
        best = min(present) if present else None
        cells = [_MISSING if v is None else (f"**{v:.2f}**" if v == best else f"{v:.2f}")
                 for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def paired_comparison(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Runs of ``a`` against runs of ``b`` with the same seed (same initialisation seed and data
    order): per seed the CD difference ``a - b`` (mean of categories) and the categories where
    ``a``'s CD is lower. ``None`` when no seed is shared."""
    by_seed = {r["seed"]: r for r in b}
    pairs = [(r, by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    if not pairs:
        return None
    diffs, won, total = [], [], []
    for ra, rb in pairs:
        diffs.append(ra["cd"] - rb["cd"])
        cats = [c for c in ra["per_category"] if c in rb["per_category"]]
        won.append(sum(ra["per_category"][c] < rb["per_category"][c] for c in cats))
        total.append(len(cats))
    mean, std = mean_std(diffs)
    return {"seeds": [ra["seed"] for ra, _ in pairs], "cd_diff": diffs, "cd_diff_mean": mean,
            "cd_diff_std": std, "won": won, "categories": total}


_SETTINGS = ("loss", "num_points", "image_size", "batch_size", "num_steps")


def _settings(runs: list[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple(runs[0][k] for k in _SETTINGS)


def _paired_line(a: str, b: str, cmp: dict[str, Any]) -> str:
    spread = "" if cmp["cd_diff_std"] is None else f" ± {cmp['cd_diff_std']:.2f}"
    per_seed = ", ".join(f"seed {s}: {w}/{t}" for s, w, t in
                         zip(cmp["seeds"], cmp["won"], cmp["categories"], strict=True))
    return (f"- {a} vs {b}: CD difference {cmp['cd_diff_mean']:+.2f}{spread} (negative: {a} "
            f"better); categories won by {a}: {sum(cmp['won'])} of {sum(cmp['categories'])} "
            f"({per_seed})")


def paired_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Paired comparisons (same seeds) of experiments that differ in one thing.

    Extractors: each ``efficient`` experiment against each ResNet experiment with the same loss,
    point count, input, batch and steps. Ablations: each experiment against the reference of its
    extractor (the experiment with the most seeds, the first on ties) when their settings
    differ, with the reference's seed spread beside it."""
    groups = group_runs(rows)
    lines = []
    for a, runs_a in groups.items():
        if runs_a[0]["encoder"] != "efficient":
            continue
        for b, runs_b in groups.items():
            if runs_b[0]["encoder"].startswith("resnet") and _settings(runs_a) == _settings(runs_b):
                cmp = paired_comparison(runs_a, runs_b)
                if cmp is not None:
                    lines.append(_paired_line(a, b, cmp))
    ablations = []
    for encoder in dict.fromkeys(runs[0]["encoder"] for runs in groups.values()):
        same = {n: runs for n, runs in groups.items() if runs[0]["encoder"] == encoder}
        ref = max(same, key=lambda n: len(same[n]))  # first of the largest
        _, ref_std = mean_std([r["cd"] for r in same[ref]])
        for a, runs_a in same.items():
            if a == ref or _settings(runs_a) == _settings(same[ref]):
                continue
            cmp = paired_comparison(runs_a, same[ref])
            if cmp is None:
                continue
            changed = ", ".join(f"{k} {runs_a[0][k]} (not {same[ref][0][k]})" for k in _SETTINGS
                                if runs_a[0][k] != same[ref][0][k])
            spread = "" if ref_std is None else f"; {ref}'s CD seed std {ref_std:.2f}"
            ablations.append(f"{_paired_line(a, ref, cmp)}; {changed}{spread}")
    out = ["", "Paired comparisons (same seed, same data order):", "", *lines] if lines else []
    if ablations:
        out += ["", "Ablations against the reference of their extractor (same seed):", "",
                *ablations]
    return out
