"""Two processes on one machine train one model together through `recon-jax train --multihost`.

Each process has one CPU device; the gradient all-reduce between them goes through gloo (JAX's
CPU collectives). This is the multi-host path of the README ("GPUs and several hosts"), with
localhost as the coordinator.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from recon_jax import checkpoints, evaluate
from recon_jax.metric_writers import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_model(tmp_path):
    workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "recon_jax.cli", "train",
             "--config", os.path.join(REPO, "experiments", "configs", "tiny.py"),
             "--workdir", workdir, f"--config.data.synthetic_dir={data}", "--multihost",
             f"--coordinator-address=localhost:{port}", "--num-processes=2",
             f"--process-id={i}"],
            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:  # never leave a half of the pair waiting for the other
            p.kill()
    for i, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"process {i}:\n{out[-4000:]}"
        assert "devices: 2 x cpu (2 process(es))" in out, out[-2000:]

    config = checkpoints.load_config(workdir)
    train = read_metrics(os.path.join(workdir, "metrics.jsonl"), split="train")
    # written once (by process 0), every log step, all finite
    assert [r["step"] for r in train] == list(range(config.run.log_every,
                                                     config.optim.num_steps + 1,
                                                     config.run.log_every))
    assert all(np.isfinite(r["loss"]) for r in train)
    report = json.load(open(os.path.join(workdir, "train_step.json")))
    assert report["devices"] == 2 and report["batch_size"] == config.data.batch_size
    steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                   if d.isdigit())
    assert steps[-1] == config.optim.num_steps
    # The checkpoint written by the pair restores in a single process and evaluates.
    results, _ = evaluate.evaluate_workdir(workdir, which="latest", views=2, workers=1,
                                           progress=False)
    assert results["step"] == config.optim.num_steps and results["views"] == 3 * 2
