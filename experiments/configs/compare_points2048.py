"""Comparison suite: 2,048 output points (the paper's), trained on the 2,048-point ground truth.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_points2048.py \
        --workdir runs/compare_cpu/compare_points2048
    recon-jax eval --workdir runs/compare_cpu/compare_points2048

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 8.95,
EMD x100 8.94 (mean of 13 categories, no ICP); 8.90 M parameters, 0.100
GFLOPs (extractor, 64x64), 353 MiB per training step; training 19.4 min.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.num_points = 2048
    config.target_points = 2048
    return config
