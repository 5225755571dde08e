"""Tiny smoke-test config: three categories, a handful of models, a few steps (about a minute).

Used by the end-to-end tests and the notebook's smallest size; it checks that everything runs,
not that anything is learned well.

Run:
    recon-jax train --config experiments/configs/tiny.py --workdir runs/tiny
"""

import os

from recon_jax.configs import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(__file__), "default.py"))
    config.data.synthetic_dir = "data/synthetic_tiny"
    config.data.synthetic_models_per_category = 3  # 2 train + 1 test per category
    config.data.synthetic_categories = ("airplane", "chair", "lamp")
    config.data.target_points = 1024
    config.data.batch_size = 4
    config.model.image_size = 32
    config.model.num_points = 128
    config.optim.num_steps = 8
    config.optim.warmup_steps = 1
    # A constant learning rate: the compiled step does not depend on num_steps, so the test
    # suite's many short tiny runs share one compilation (JAX's persistent cache).
    config.optim.learning_rate = 3e-3
    config.optim.schedule = "constant"
    config.eval.every = 4
    config.eval.views = 1
    config.run.log_every = 2
    config.run.progress_bar = False
    return config
