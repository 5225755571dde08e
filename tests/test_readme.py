"""The README's Python example runs as written and gives what its comments say."""

import os
import re

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")


def test_losses_example_runs():
    text = open(README).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "no python example in the README"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["g"].shape == (4, 2048, 3) and np.isfinite(np.asarray(scope["g"])).all()
    exact, approx = np.asarray(scope["exact"]), float(scope["e"])
    assert exact.shape == (4,)
    np.testing.assert_allclose(approx, exact.mean(), rtol=0.02)  # Sinkhorn ~ exact


def _bash_block_after(heading: str) -> str:
    text = open(README).read()
    start = text.index(heading)
    match = re.search(r"```bash\n(.*?)```", text[start:], flags=re.DOTALL)
    assert match, f"no bash block after {heading!r}"
    return match.group(1)


def test_quick_start_runs_as_written(tmp_path):
    """The README's quick start (and so its set-up command 1), on a fresh directory.

    Every line runs exactly as written, in a directory holding a copy of ``experiments/``, with
    one change: ``experiments/configs/default.py`` there is the default config shrunk to the tiny
    config's sizes (3 categories, 8 steps), so that it finishes in about a minute. ``pip
    install`` lines are skipped: the package is installed in this environment exactly as they
    say (``.ci/run`` does it from a fresh clone).
    """
    import json
    import shutil
    import subprocess
    import sys

    from recon_jax.configs import load_config_file

    configs = os.path.join(REPO, "experiments", "configs")
    default = load_config_file(os.path.join(configs, "default.py")).to_dict()
    tiny = load_config_file(os.path.join(configs, "tiny.py")).to_dict()
    overrides = {section: {k: v for k, v in fields.items() if default[section][k] != v}
                 for section, fields in tiny.items()}
    overrides["data"].pop("synthetic_dir")  # keep the README's data path
    shutil.copytree(os.path.join(REPO, "experiments"), tmp_path / "experiments")
    (tmp_path / "experiments" / "configs" / "default.py").write_text(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('original', {os.path.join(configs, 'default.py')!r})\n"  # noqa: E501
        "_module = importlib.util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_module)\n\n\n"
        "def get_config():\n"
        "    config = _module.get_config()\n"
        f"    config.update({json.loads(json.dumps(overrides))!r})\n"
        "    return config\n")

    setup = _bash_block_after("## Set-up").splitlines()[1]  # command 1 (line 0: comment)
    assert setup.startswith("pip install -e '.[train]' && recon-jax train"), setup
    quick = _bash_block_after("## Quick start")
    lines = [ln for ln in quick.splitlines()
             if ln.strip() and not ln.startswith("#") and not ln.startswith("pip install")]
    assert len(lines) >= 6, lines
    # Set-up command 1 is the quick start's first commands joined by && (so it runs here too).
    assert setup.split(" && ")[1:] == lines[:len(setup.split(" && ")) - 1], (setup, lines)
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    for line in lines:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if line.startswith("recon-jax summarize"):
            assert "| default | efficient | 0.05 KL + CD + EMD | 128 | 0 |" in proc.stdout

    run = tmp_path / "runs" / "default"
    evaluated = json.loads((run / "eval_test.json").read_text())
    assert evaluated["checkpoint"] == "best" and evaluated["protocol_name"] == "3d-lmnet"
    assert evaluated["icp"] is True and evaluated["views"] == 3 * 24
    assert (run / "eval_test_init.json").is_file()
    plys = sorted((run / "predictions").glob("*.ply"))
    assert plys and len(plys) == len(list((run / "predictions").glob("*.png")))
    assert (run / "reconstructions.png").stat().st_size > 10_000
