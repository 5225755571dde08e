"""recon-jax summarize: rows from hand-written run files, checked against hand-computed values."""

import json
import os

import pytest

from recon_jax import cli, summarize


def _write_run(root, name, *, config=None, step_report=True, metrics=None, eval_result=True):
    workdir = root / name
    workdir.mkdir()
    base = {"encoder": "efficient", "num_points": 1024, "image_size": 64, "batch_size": 16,
            "num_steps": 100, "kl_weight": 0.05, "cd_weight": 1.0, "emd_weight": 1.0}
    (workdir / "config.json").write_text(json.dumps({**base, **(config or {})}))
    if eval_result:
        (workdir / "eval_test.json").write_text(json.dumps(
            {"mean": {"cd": 9.876, "emd": 8.5}, "views": 624, "step": 100,
             "per_category": {"airplane": {"cd": 7.0 + len(name), "emd": 1.0, "views": 48},
                              "chair": {"cd": 12.0 - len(name), "emd": 1.0, "views": 48}}}))
    if step_report:
        (workdir / "train_step.json").write_text(json.dumps({
            "extractor_gflops": 0.1077, "model_gflops": 0.1111, "model_params": 3_456_789,
            "step_peak_bytes": 300 * 2**20, "devices": 1}))
    if metrics is not None:
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return str(workdir)


def test_training_time_sums_intervals_and_counts_a_relogged_step_once(tmp_path):
    metrics = [
        {"step": 25, "split": "train", "interval_s": 30.0, "images_per_s": 1.0},
        {"step": 50, "split": "train", "interval_s": 10.0, "images_per_s": 1.0},
        {"step": 50, "split": "test", "cd_x100": 12.0},
        # resumed from step 25: step 50 logged again; its last record counts
        {"step": 50, "split": "train", "interval_s": 12.0, "images_per_s": 1.0},
        # an old-style record: 25 steps x 16 images at 40 images/s = 10 s
        {"step": 75, "split": "train", "images_per_s": 40.0},
    ]
    workdir = _write_run(tmp_path, "a", metrics=metrics)
    seconds = summarize.training_seconds(os.path.join(workdir, "metrics.jsonl"), 16)
    assert seconds == pytest.approx(30.0 + 12.0 + 10.0)


def test_rows_and_table(tmp_path, capsys):
    metrics = [{"step": 50, "split": "train", "interval_s": 90.0, "images_per_s": 1.0},
               {"step": 100, "split": "train", "interval_s": 30.0, "images_per_s": 1.0}]
    a = _write_run(tmp_path, "base", metrics=metrics)
    b = _write_run(tmp_path, "kl1", config={"kl_weight": 1.0, "emd_weight": 0.0,
                                             "encoder": "resnet18"}, step_report=False)
    out = str(tmp_path / "out" / "summary")
    assert cli.main(["summarize", a, b, "--out", out]) == 0
    printed = capsys.readouterr().out
    rows = json.load(open(out + ".json"))
    assert rows[0]["train_seconds"] == 120.0 and rows[0]["loss"] == "0.05 KL + CD + EMD"
    assert rows[1]["loss"] == "KL + CD" and rows[1]["missing"] == ["train_step.json",
                                                                      "metrics.jsonl"]
    table = open(out + ".md").read()
    assert table == printed
    lines = table.splitlines()
    assert lines[2] == ("| base | efficient | 0.05 KL + CD + EMD | 1024 | 9.88 | 8.50 | "
                        "0.108 / 0.111 | 3.46 | 300 | 2.0 |")
    assert lines[3] == ("| kl1 | resnet18 | KL + CD | 1024 | 9.88 | 8.50 | n/a / n/a | n/a | "
                        "n/a | n/a |")
    assert "Shared by every row: input 64x64, batch 16, 100 steps." in table
    assert "kl1: train_step.json, metrics.jsonl missing" in table
    # per category: base (len 4) airplane 11, chair 8; kl1 (len 3) airplane 10, chair 9
    assert "| category | base | kl1 |" in table
    assert "| airplane | 11.00 | **10.00** |" in table
    assert "| chair | **8.00** | 9.00 |" in table


def test_a_run_without_its_evaluation_names_the_command(tmp_path):
    workdir = _write_run(tmp_path, "noeval", eval_result=False)
    with pytest.raises(FileNotFoundError, match="recon-jax eval --workdir .*noeval"):
        summarize.load_run(workdir)
    with pytest.raises(FileNotFoundError, match="not a `recon-jax train` work directory"):
        summarize.load_run(str(tmp_path))
    (tmp_path / "noeval" / "eval_test.json").write_text("{broken")
    with pytest.raises(ValueError, match="eval_test.json: not valid JSON"):
        summarize.load_run(workdir)
