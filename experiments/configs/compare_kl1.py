"""Comparison suite: KL weight 1 instead of 0.05: a plain VAE objective.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_kl1.py \
        --workdir runs/compare_cpu/compare_kl1
    recon-jax eval --workdir runs/compare_cpu/compare_kl1

Result (cpu scale): filled in from the run in the README ("Experiments").
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.kl_weight = 1.0
    return config
