"""Comparison suite: ResNet-34 extractor (standard stem, 1000-d output) instead of the paper's.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_resnet34.py \
        --workdir runs/compare_cpu/compare_resnet34
    recon-jax eval --workdir runs/compare_cpu/compare_resnet34

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 9.62,
EMD x100 9.20 (mean of 13 categories, no ICP); 25.72 M parameters, 0.449
GFLOPs (extractor, 64x64), 518 MiB per training step; training 20.4 min.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.encoder = "resnet34"
    return config
