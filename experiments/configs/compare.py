"""Comparison suite, base row: the paper's model and loss (efficient extractor, 0.05 KL + CD + EMD).

Every ``compare_*.py`` changes one field of this config; ``experiments/run_compare.sh`` trains and
evaluates all of them and ``recon-jax summarize`` tabulates the results (README, "Experiments").

Two scales, chosen by the argument after the file name:

* ``cpu`` (default): what a 2-core CPU finishes in 5-20 minutes a row (96 for the suite). The
  default config's data (13 synthetic categories x 10 models, 24 views), 64x64 input, 1,024
  output points trained against the 1,024-point ground truth, batch 16, 600 steps (~3.8 epochs
  of the 2,496 training views), and a shorter Sinkhorn schedule for the training EMD (60
  iterations instead of 170: 0.3% mean error against the exact EMD on 1,024-point synthetic
  pairs instead of 0.06%, at half the time: experiments/bench_emd_schedule.py; evaluation
  always uses the exact EMD).
* ``paper``: ``paper.py``'s sizes (128x128, 2,048 points, batch 32, 100k steps) and the default
  Sinkhorn schedule, for a GPU.

Run:
    recon-jax train --config experiments/configs/compare.py --workdir runs/compare_cpu/compare
    recon-jax eval --workdir runs/compare_cpu/compare
    # GPU: --config experiments/configs/compare.py:paper

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 9.03,
EMD x100 8.92 (mean of 13 categories, no ICP); 5.75 M parameters, 0.100
GFLOPs (extractor, 64x64), 172 MiB per training step; training 6.2 min.
Seeds 0, 1, 2 (experiments/run_seeds.sh): CD x100 9.03, 9.13, 8.80.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import default  # noqa: E402
import paper  # noqa: E402

SCALES = ("cpu", "paper")


def get_config(scale: str = "cpu"):
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if scale == "paper":
        return paper.get_config()
    config = default.get_config()
    config.num_points = 1024  # the other point count is compare_points2048.py
    config.target_points = 1024  # each model is trained against a ground truth of its size
    config.num_steps = 600
    config.eval_every = 200
    # 60 Sinkhorn iterations instead of 170 (module docstring: 0.3% error, half the time).
    config.emd_coarse_stages = ((3.0, 5), (1.0, 15), (0.3, 20))
    config.emd_fine_stages = ((0.02, 10), (0.004, 10))
    return config
