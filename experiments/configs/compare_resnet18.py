"""Comparison suite: ResNet-18 extractor (standard stem, 1000-d output) instead of the paper's.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_resnet18.py \
        --workdir runs/compare_cpu/compare_resnet18
    recon-jax eval --workdir runs/compare_cpu/compare_resnet18

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 8.99,
EMD x100 8.85 (mean of 13 categories, no ICP); 15.62 M parameters, 0.228
GFLOPs (extractor, 64x64), 340 MiB per training step; training 13.3 min.
Seed 1 (experiments/run_seeds.sh): CD x100 8.65, EMD x100 8.51.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.encoder = "resnet18"
    return config
