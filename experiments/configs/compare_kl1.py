"""Comparison suite: KL weight 1 instead of 0.05: a plain VAE objective.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_kl1.py \
        --workdir runs/compare_cpu/compare_kl1
    recon-jax eval --workdir runs/compare_cpu/compare_kl1

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 13.90,
EMD x100 14.00 (mean of 13 categories, no ICP); 5.75 M parameters, 0.100
GFLOPs (extractor, 64x64), 172 MiB per training step; training 4.9 min.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.kl_weight = 1.0
    return config
