"""recon-jax summarize: rows from hand-written run files, checked against hand-computed values."""

import json
import os

import pytest

from recon_jax import cli, summarize
from recon_jax.errors import UserError


def _write_run(root, name, *, encoder="efficient", loss=None, seed=0, step_report=True,
               metrics=None, eval_result=True, cd=9.876, per_category=None):
    workdir = root / name
    workdir.mkdir()
    config = {
        "data": {"batch_size": 16}, "optim": {"num_steps": 100}, "run": {"seed": seed},
        "model": {"encoder": encoder, "num_points": 1024, "image_size": 64},
        "loss": {"kl_weight": 0.05, "cd_weight": 1.0, "emd_weight": 1.0, **(loss or {})},
        "eval": {},
    }
    (workdir / "config.json").write_text(json.dumps(config))
    if eval_result:
        per_category = per_category or {"airplane": 7.0 + len(name), "chair": 12.0 - len(name)}
        (workdir / "eval_test.json").write_text(json.dumps(
            {"mean": {"cd": cd, "emd": 8.5}, "views": 624, "step": 100, "checkpoint": "best",
             "protocol_name": "3d-lmnet",
             "per_category": {k: {"cd": v, "emd": 1.0, "views": 48}
                              for k, v in per_category.items()}}))
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
        # a step logged twice: its last record counts
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
    b = _write_run(tmp_path, "kl1", loss={"kl_weight": 1.0, "emd_weight": 0.0},
                   encoder="resnet18", step_report=False)
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
    assert lines[2] == ("| base | efficient | 0.05 KL + CD + EMD | 1024 | 0 | 9.88 | 8.50 | "
                        "0.108 / 0.111 | 3.46 | 300 | 2.0 |")
    assert lines[3] == ("| kl1 | resnet18 | KL + CD | 1024 | 0 | 9.88 | 8.50 | n/a / n/a | n/a | "
                        "n/a | n/a |")
    assert "protocol 3d-lmnet; checkpoint best" in table
    assert "Shared by every row: input 64x64, batch 16, 100 steps." in table
    assert "kl1: train_step.json, metrics.jsonl missing" in table
    # per category: base (len 4) airplane 11, chair 8; kl1 (len 3) airplane 10, chair 9
    assert "| category | base | kl1 |" in table
    assert "| airplane | 11.00 | **10.00** |" in table
    assert "| chair | **8.00** | 9.00 |" in table


def test_seed_replicates_are_grouped_and_paired(tmp_path):
    runs = [
        _write_run(tmp_path, "base_seed0", seed=0, cd=9.0,
                   per_category={"airplane": 5.0, "chair": 13.0}),
        _write_run(tmp_path, "base_seed1", seed=1, cd=10.0,
                   per_category={"airplane": 6.0, "chair": 14.0}),
        _write_run(tmp_path, "base_seed2", seed=2, cd=11.0,
                   per_category={"airplane": 7.0, "chair": 15.0}),
        _write_run(tmp_path, "resnet18_seed0", encoder="resnet18", seed=0, cd=9.5,
                   per_category={"airplane": 6.0, "chair": 13.0}),
        _write_run(tmp_path, "resnet18_seed2", encoder="resnet18", seed=2, cd=10.5,
                   per_category={"airplane": 6.0, "chair": 14.0}),
    ]
    rows = [summarize.load_run(r) for r in runs]
    table = summarize.summary_markdown(rows)
    # mean 10, sample std 1 (ddof 1) over three seeds; resnet18: mean 10, std 0.71
    assert "| base | efficient | 0.05 KL + CD + EMD | 1024 | 0,1,2 | 10.00 ± 1.00 |" in table
    assert "| resnet18 | resnet18 | 0.05 KL + CD + EMD | 1024 | 0,2 | 10.00 ± 0.71 |" in table
    # per-category means over seeds: base airplane 6, chair 14; resnet18 airplane 6, chair 13.5
    assert "| airplane | **6.00** | **6.00** |" in table
    assert "| chair | 14.00 | **13.50** |" in table
    cmp = summarize.paired_comparison(
        [r for r in rows if r["encoder"] == "efficient"],
        [r for r in rows if r["encoder"] == "resnet18"])
    # seed 0: 9 - 9.5 = -0.5, airplane won, chair tied (not won); seed 2: 11 - 10.5 = +0.5,
    # neither category won
    assert cmp["seeds"] == [0, 2] and cmp["cd_diff"] == pytest.approx([-0.5, 0.5])
    assert cmp["won"] == [1, 0] and cmp["categories"] == [2, 2]
    assert ("- base vs resnet18: CD difference +0.00 ± 0.71 (negative: base better); "
            "categories won by base: 1 of 4 (seed 0: 1/2, seed 2: 0/2)") in table
    assert summarize.paired_comparison(rows[:1], rows[4:]) is None


def test_ablations_pair_with_the_reference_and_not_with_other_extractors(tmp_path):
    runs = [
        _write_run(tmp_path, "base_seed0", seed=0, cd=9.0,
                   per_category={"airplane": 5.0, "chair": 13.0}),
        _write_run(tmp_path, "base_seed1", seed=1, cd=10.0,
                   per_category={"airplane": 6.0, "chair": 14.0}),
        _write_run(tmp_path, "kl0_seed0", seed=0, cd=8.5, loss={"kl_weight": 0.0},
                   per_category={"airplane": 4.0, "chair": 13.5}),
        _write_run(tmp_path, "resnet18_seed0", encoder="resnet18", seed=0, cd=9.5,
                   per_category={"airplane": 6.0, "chair": 13.0}),
    ]
    table = summarize.summary_markdown([summarize.load_run(r) for r in runs])
    # the extractor pair has the same loss; kl0 differs from resnet18 in two things: not paired
    assert "- base vs resnet18: CD difference -0.50" in table
    assert "kl0 vs resnet18" not in table
    # kl0 seed 0 against base seed 0: 8.5 - 9 = -0.5, airplane won; base's std over 9, 10: 0.71
    assert ("- kl0 vs base: CD difference -0.50 (negative: kl0 better); categories won by kl0: "
            "1 of 2 (seed 0: 1/2); loss CD + EMD (not 0.05 KL + CD + EMD); base's CD seed "
            "std 0.71") in table


def test_a_run_without_its_evaluation_names_the_command(tmp_path):
    workdir = _write_run(tmp_path, "noeval", eval_result=False)
    with pytest.raises(UserError, match="recon-jax eval --workdir .*noeval"):
        summarize.load_run(workdir)
    with pytest.raises(UserError, match="no config.json of a `recon-jax train` run"):
        summarize.load_run(str(tmp_path))
    (tmp_path / "noeval" / "eval_test.json").write_text("{broken")
    with pytest.raises(UserError, match="eval_test.json: not valid JSON"):
        summarize.load_run(workdir)
