"""Comparison suite: 1,024 output points, trained against the 1,024-point ground truth.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_points1024.py \
        --workdir runs/compare_cpu/compare_points1024
    recon-jax eval --workdir runs/compare_cpu/compare_points1024

Result: not run. At the cpu scale this is the base row itself (run_compare.sh runs
compare_points2048.py there); the paper scale needs a GPU.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.num_points = 1024
    config.target_points = 1024
    return config
