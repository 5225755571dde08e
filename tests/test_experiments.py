"""The experiment configs and run_compare.sh: each variant is the base config, one field changed."""

import os
import subprocess

import pytest

from recon_jax.configs import ConfigError, config_diff, load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")
COMPARE = os.path.join(CONFIGS, "compare.py")
SCRIPT = os.path.join(REPO, "experiments", "run_compare.sh")

# variant -> the fields it changes from the base row, at either scale
CHANGES = {
    "efficient_small": {"model.encoder": "efficient_small"},
    "resnet18": {"model.encoder": "resnet18"},
    "resnet34": {"model.encoder": "resnet34"},
    "kl0": {"loss.kl_weight": 0.0},
    "kl1": {"loss.kl_weight": 1.0},
    "cd_only": {"loss.emd_weight": 0.0},
    "emd_only": {"loss.cd_weight": 0.0},
    "points1024": {"model.num_points": 1024, "data.target_points": 1024},
    "points2048": {"model.num_points": 2048, "data.target_points": 2048},
}


def _load(arg=None, path=COMPARE):
    return load_config_file(path if arg is None else f"{path}:{arg}")


def _get(config, dotted):
    section, field = dotted.split(".")
    return config[section][field]


def test_every_config_file_names_its_command_and_loads_without_path_edits():
    for name in ("default", "tiny", "paper", "compare"):
        text = open(os.path.join(CONFIGS, name + ".py")).read()
        assert f"recon-jax train --config experiments/configs/{name}.py" in text, name
        assert "sys.path" not in text, name
        _load(path=os.path.join(CONFIGS, name + ".py"))


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_variants_change_only_their_fields(scale):
    base = _load(f"base,{scale}")
    for name, changes in CHANGES.items():
        config = _load(f"{name},{scale}")
        expected = sorted(k for k, v in changes.items() if _get(base, k) != v)
        assert config_diff(base, config) == expected, name
        for k in expected:
            assert _get(config, k) == changes[k]


def test_scales():
    cpu, paper = _load("base").to_dict(), _load("base,paper").to_dict()
    assert cpu == _load("base,cpu").to_dict() == _load().to_dict()
    assert paper == _load(path=os.path.join(CONFIGS, "paper.py")).to_dict()
    assert (cpu["model"]["num_points"], cpu["data"]["target_points"],
            cpu["model"]["image_size"]) == (1024, 1024, 64)
    assert cpu["loss"]["emd_coarse_stages"] and paper["loss"]["emd_coarse_stages"] == ()
    with pytest.raises(ConfigError, match="scale must be one of"):
        _load("base,huge")
    with pytest.raises(ConfigError, match="variant must be one of"):
        _load("resnet50")


def _dry_run(*args, **env):
    return subprocess.run(["bash", SCRIPT, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1", **env))


@pytest.mark.parametrize("scale,points", [("cpu", "points2048"), ("paper", "points1024")])
def test_run_compare_trains_evaluates_and_summarizes_every_variant(tmp_path, scale, points):
    runs = str(tmp_path / "runs")
    proc = _dry_run(scale, runs, "--config.data.data_dir=/data")
    assert proc.returncode == 0, proc.stderr
    runs_made = [(v, s) for v in ("base", "efficient_small", "resnet18", "resnet34")
                 for s in (0, 1, 2)]
    runs_made += [(v, 0) for v in ("kl0", "kl1", "cd_only", "emd_only", points)]
    expected = []
    for variant, seed in runs_made:
        expected += [f"recon-jax train --config experiments/configs/compare.py:{variant},{scale} "
                     f"--workdir {runs}/{variant}_seed{seed} --config.run.seed={seed} "
                     "--config.data.data_dir=/data",
                     f"recon-jax eval --workdir {runs}/{variant}_seed{seed}"]
    expected.append("recon-jax summarize " + " ".join(f"{runs}/{v}_seed{s}" for v, s in runs_made)
                    + f" --out {runs}/summary")
    assert proc.stdout.splitlines() == expected
    # every variant the script names exists in compare.py
    for variant, _ in runs_made:
        _load(f"{variant},{scale}")


def test_run_compare_rows_seeds_skips_evaluated_runs_and_rejects_a_bad_scale(tmp_path):
    runs = tmp_path / "runs"
    (runs / "resnet18_seed0").mkdir(parents=True)
    (runs / "resnet18_seed0" / "eval_test.json").write_text("{}")
    proc = _dry_run("cpu", str(runs), ROWS="resnet18 kl0", SEEDS="0 5")
    lines = proc.stdout.splitlines()
    assert "already evaluated" in lines[0]
    assert [line.split(" --workdir ")[1].split()[0] for line in lines if "train" in line] == [
        f"{runs}/resnet18_seed5", f"{runs}/kl0_seed0"]
    proc = _dry_run("huge")
    assert proc.returncode == 2 and "scale must be 'cpu' or 'paper'" in proc.stderr
