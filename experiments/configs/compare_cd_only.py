"""Comparison suite: Chamfer distance only (no EMD term): L = 0.05 KL + CD.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_cd_only.py \
        --workdir runs/compare_cpu/compare_cd_only
    recon-jax eval --workdir runs/compare_cpu/compare_cd_only

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 13.59,
EMD x100 21.19 (mean of 13 categories, no ICP); 5.75 M parameters, 0.100
GFLOPs (extractor, 64x64), 140 MiB per training step; training 1.7 min.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.emd_weight = 0.0
    return config
