"""Comparison suite: no KL term (KL weight 0 instead of 0.05): an autoencoder with a noisy latent.

The base row (``compare.py``, same scales) with one change. Run (``experiments/run_compare.sh``
runs every row; add ``:paper`` after the file name for the GPU scale):
    recon-jax train --config experiments/configs/compare_kl0.py \
        --workdir runs/compare_cpu/compare_kl0
    recon-jax eval --workdir runs/compare_cpu/compare_kl0

Result (cpu scale, 2026-11-24, 2-core CPU, README "Experiments"): test CD x100 8.56,
EMD x100 8.53 (mean of 13 categories, no ICP); 5.75 M parameters, 0.100
GFLOPs (extractor, 64x64), 172 MiB per training step; training 5.3 min.
Seed 1 (experiments/run_seeds.sh): CD x100 8.89, EMD x100 8.93.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402


def get_config(scale: str = "cpu"):
    config = compare.get_config(scale)
    config.kl_weight = 0.0
    return config
