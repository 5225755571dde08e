"""Tiny smoke-test config: three categories, a handful of models, a few steps (about a minute).

Used by the end-to-end tests and the notebook's smallest size; it checks that everything runs,
not that anything is learned well.

Run:
    recon-jax train --config experiments/configs/tiny.py --workdir runs/tiny
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import default  # noqa: E402


def get_config():
    config = default.get_config()
    config.synthetic_dir = "data/synthetic_tiny"
    config.synthetic_models_per_category = 3  # 2 train + 1 test per category
    config.synthetic_categories = ("airplane", "chair", "lamp")
    config.image_size = 32
    config.num_points = 128
    config.target_points = 1024
    config.batch_size = 4
    config.num_steps = 8
    config.warmup_steps = 1
    config.log_every = 2
    config.eval_every = 4
    config.eval_views = 1
    config.progress_bar = False
    return config
