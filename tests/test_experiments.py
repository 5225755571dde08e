"""The experiment configs and run_compare.sh: each row is the base config with its one change."""

import glob
import os
import subprocess

import pytest

from recon_jax import inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")
SCRIPT = os.path.join(REPO, "experiments", "run_compare.sh")

# row config -> the fields it changes from compare.py, at either scale
CHANGES = {
    "compare_resnet18": {"encoder": "resnet18"},
    "compare_resnet34": {"encoder": "resnet34"},
    "compare_kl0": {"kl_weight": 0.0},
    "compare_kl1": {"kl_weight": 1.0},
    "compare_cd_only": {"emd_weight": 0.0},
    "compare_emd_only": {"cd_weight": 0.0},
    "compare_points1024": {"num_points": 1024, "target_points": 1024},
    "compare_points2048": {"num_points": 2048, "target_points": 2048},
}


def _load(name, scale=None):
    path = os.path.join(CONFIGS, name + ".py")
    return inference.load_config_file(path if scale is None else f"{path}:{scale}").to_dict()


def test_every_row_config_is_a_file_with_its_command():
    rows = sorted(os.path.basename(p)[:-3]
                  for p in glob.glob(os.path.join(CONFIGS, "compare_*.py")))
    assert rows == sorted(CHANGES)
    for name in ["compare", *rows]:
        doc = open(os.path.join(CONFIGS, name + ".py")).read().split('"""')[1]
        assert f"recon-jax train --config experiments/configs/{name}.py" in doc, name
        assert "Result" in doc, name


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_rows_change_only_their_fields(scale):
    base = _load("compare", scale)
    for name, changes in CHANGES.items():
        config = _load(name, scale)
        diff = {k: v for k, v in config.items() if base[k] != v}
        expected = {k: v for k, v in changes.items() if base[k] != v}
        assert diff == expected, name


def test_scales():
    cpu, paper, default = _load("compare"), _load("compare", "paper"), _load("paper")
    assert cpu == _load("compare", "cpu")
    assert paper == default  # the paper scale is paper.py itself
    assert (cpu["num_points"], cpu["target_points"], cpu["image_size"]) == (1024, 1024, 64)
    assert cpu["emd_coarse_stages"] and paper["emd_coarse_stages"] == ()
    with pytest.raises(ValueError, match="scale must be one of"):
        _load("compare", "huge")


def _dry_run(*args):
    return subprocess.run(["bash", SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1"))


@pytest.mark.parametrize("scale,points_row", [("cpu", "compare_points2048"),
                                              ("paper", "compare_points1024")])
def test_run_compare_trains_evaluates_and_summarizes_every_row(tmp_path, scale, points_row):
    runs = str(tmp_path / "runs")
    proc = _dry_run(scale, runs, "--config.data_dir=/data")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = ["compare", *[r for r in CHANGES if r.startswith("compare_") and
                         not r.startswith("compare_points")], points_row]
    expected = []
    for row in rows:
        expected += [f"recon-jax train --config experiments/configs/{row}.py:{scale} "
                     f"--workdir {runs}/{row} --config.data_dir=/data",
                     f"recon-jax eval --workdir {runs}/{row}"]
    expected.append("recon-jax summarize " + " ".join(f"{runs}/{r}" for r in rows)
                    + f" --out {runs}/summary")
    assert lines == expected


def test_run_compare_skips_evaluated_rows_and_rejects_a_bad_scale(tmp_path):
    runs = tmp_path / "runs"
    (runs / "compare").mkdir(parents=True)
    (runs / "compare" / "eval_test.json").write_text("{}")
    proc = _dry_run("cpu", str(runs))
    assert "experiments/configs/compare.py" not in proc.stdout
    assert "already evaluated" in proc.stdout
    proc = _dry_run("huge")
    assert proc.returncode == 2 and "scale must be 'cpu' or 'paper'" in proc.stderr


def test_run_seeds_trains_one_run_per_seed(tmp_path):
    script = os.path.join(REPO, "experiments", "run_seeds.sh")
    runs = str(tmp_path)
    proc = subprocess.run(
        ["bash", script, "experiments/configs/compare.py:paper", runs, "1", "2", "--",
         "--config.data_dir=/data"],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, DRY_RUN="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"recon-jax train --config experiments/configs/compare.py:paper --workdir "
        f"{runs}/compare_seed1 --config.seed=1 --config.data_dir=/data",
        f"recon-jax eval --workdir {runs}/compare_seed1",
        f"recon-jax train --config experiments/configs/compare.py:paper --workdir "
        f"{runs}/compare_seed2 --config.seed=2 --config.data_dir=/data",
        f"recon-jax eval --workdir {runs}/compare_seed2",
        f"recon-jax summarize {runs}/compare_seed1 {runs}/compare_seed2",
    ]
    proc = subprocess.run(["bash", script, "only-one-arg"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: run_seeds.sh" in proc.stderr
