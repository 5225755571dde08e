"""``recon-jax flops``: the report's ratio rows, and the command end to end on the tiny config.

Depends on ``recon_jax.train`` (``make_mesh``, ``make_train_step``, ``shard_batch``) and
``recon_jax.state`` (``create_model``, ``create_optimizer``, ``create_train_state``): the
command measures the memory of the real training step.
"""

from __future__ import annotations

import io
import os
import sys

import jax
import pytest

from recon_jax.cli import main
from recon_jax.cli.flops import format_report
from recon_jax.measure import param_count
from recon_jax.models import build_model, init_variables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "experiments", "configs", "tiny.py")
MIB = 2**20


def _counts(params, gmacs):
    return {"extractor_params": params, "model_params": params + 100,
            "extractor_gflops": 2.2 * gmacs, "model_gflops": 2.2 * gmacs + 0.01,
            "extractor_gmacs": gmacs, "model_gmacs": gmacs + 0.005}


def test_format_report_ratios():
    counts = {"efficient": {128: _counts(1000, 0.5), 224: _counts(1000, 2.0)},
              "resnet34": {128: _counts(4000, 1.0), 224: _counts(4000, 4.0)}}
    memory = {"efficient": {"float32": (300 * MIB, 150 * MIB), "bfloat16": (200 * MIB, MIB)},
              "resnet34": {"float32": (400 * MIB, 100 * MIB), "bfloat16": (400 * MIB, MIB)}}
    text = format_report(counts, memory, step_line="batch 32", command="recon-jax flops")
    assert "`recon-jax flops`" in text
    assert "0.0050 G multiply-adds" in text  # what the latent head and decoder add
    assert "| efficient | 1,000 | 1,100 | 0.500 | 1.100 | 2.000 | 4.400 |" in text
    # params 0.25, model params 1100 / 4100, multiply-adds and FLOPs 0.5 at both sizes.
    assert ("| efficient / resnet34 | 0.25 (-75%) | 0.27 (-73%) | 0.50 (-50%) | 0.50 (-50%) | "
            "0.50 (-50%) | 0.50 (-50%) |") in text
    assert "efficient / resnet18" not in text
    # the paper's figures against ours at 224x224
    assert "`efficient` 2.00 G multiply-adds against ResNet-34's 4.00 G (ratio 0.500)" in text
    assert "| efficient | 300.0 | 150.0 | 200.0 | 1.0 |" in text
    assert "| efficient / resnet34 | 0.75 (-25%) | 1.50 (+50%) | 0.50 (-50%) | 1.00 (+0%) |" in text
    alone = format_report({"resnet18": {64: _counts(10, 0.1)}}, {}, step_line="", command="c")
    assert "efficient / " not in alone and "Training step" not in alone


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """``recon-jax flops`` on the tiny config for efficient_small in float32, run in an empty
    directory with ``--out report.md``: ``(exit status, stdout, files left in the directory)``."""
    workdir = tmp_path_factory.mktemp("flops")
    old = os.getcwd()
    os.chdir(workdir)
    capture = pytest.MonkeyPatch()
    try:
        out = io.StringIO()
        capture.setattr(sys, "stdout", out)
        status = main(["flops", "--config", TINY, "--config.data.batch_size=2",
                       "--encoders", "efficient_small", "--image-size", "32,64",
                       "--dtype", "float32", "--out", "report.md"])
    finally:
        capture.undo()
        os.chdir(old)
    return status, out.getvalue(), {p: (workdir / p).read_text() for p in os.listdir(workdir)}


def test_command_prints_the_report_and_writes_only_where_told(tiny_report):
    status, printed, files = tiny_report
    assert status == 0
    assert set(files) == {"report.md"} and files["report.md"] == printed
    assert ("`recon-jax flops --config " + TINY + " --config.data.batch_size=2 --encoders "
            "efficient_small --image-size 32,64 --dtype float32`") in printed
    # 128 output points (tiny.py): 100 -> 512 -> 1024 -> 384 decoder, 1000 -> 2 x 100 head.
    head = (1000 * 100 + 100) * 2 + (100 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 384 + 384)
    assert f"| efficient_small | 1,824,928 | {1_824_928 + head:,} | 0.015 |" in printed
    assert "batch 2, 32x32 network input (from 128x128 images), 128 points against 1024" in printed


def test_command_reports_the_memory_of_the_real_step(tiny_report):
    _, printed, _ = tiny_report
    row = next(line for line in printed.splitlines()
               if line.startswith("| efficient_small |") and line.count("|") == 4)
    peak, temp = (float(c) * MIB for c in row.strip("|").split("|")[1:])
    model = build_model({"encoder": "efficient_small", "image_size": 32, "num_points": 128})
    n = param_count(jax.eval_shape(lambda k: init_variables(model, k),
                                   jax.random.key(0))["params"])
    # Parameters, AdamW's two moments and the gradients are float32 and live at once.
    assert peak >= 4 * 4 * n * 0.999
    assert 0 < temp < peak


@pytest.mark.parametrize(
    "args, message",
    [(["--encoders", "resnet18", "--image-size", "16"],
      "--image-size: resnet18 needs inputs of at least 32x32, got 16"),
     (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
     (["--dtype", "float16"], "--dtype: expected a comma-separated list of"),
     (["--encoders", "vgg"], "--encoders: expected a comma-separated list of"),
     (["--image-size", "a,b"], "--image-size: expected comma-separated integers"),
     (["--config.model.widths=3"], "config field 'model.widths' does not exist")],
)
def test_command_rejects_bad_options(tmp_path, capsys, args, message):
    out = tmp_path / "report.md"
    assert main(["flops", "--config", TINY, "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
