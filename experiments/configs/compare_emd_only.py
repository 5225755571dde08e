"""Comparison suite: EMD only (no Chamfer term): L = 0.05 KL + EMD.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_emd_only.py \
        --workdir runs/compare_cpu/compare_emd_only
    recon-jax eval --workdir runs/compare_cpu/compare_emd_only

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 8.74,
EMD x100 8.66 (mean of 13 categories, no ICP); 5.75 M parameters, 0.100
GFLOPs (extractor, 64x64), 172 MiB per training step; training 5.0 min.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.cd_weight = 0.0
    return config
