"""Full-size settings of Kim & Lee (2023), for a GPU: 128x128 input, 2048 points, batch 32.

The paper fixes the architecture (sections 2.2-2.4), the loss (eq. 1, KL weight 0.05 in eq. 3),
the input (ShapeNet renderings cropped to 128x128, as 3D-LMNet) and the output (2048 points).
It states no optimizer, learning rate, schedule or training length: we use Adam (what PSGN and
3D-LMNet use) at 1e-4 with a short warm-up and cosine decay, for 100k steps of batch 32
(~50 epochs of the 3D-R2N2 training views). These four are our choice, not the paper's.

Run (real ShapeNet in the layout of SPEC section 5):
    recon-jax train --config experiments/configs/paper.py --workdir runs/paper \\
        --config.data_dir=/path/to/shapenet_root
    recon-jax eval --workdir runs/paper --icp

On the synthetic set (the default data): drop `--config.data_dir`.
Result: not run yet (needs a GPU; no run of this config is recorded).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import default  # noqa: E402


def get_config():
    config = default.get_config()
    config.synthetic_models_per_category = 40  # the default synthetic benchmark size
    config.image_size = 128
    config.num_points = 2048
    config.target_points = 2048
    config.views = "all"
    config.batch_size = 32
    config.num_steps = 100_000
    config.learning_rate = 1e-4
    config.warmup_steps = 1000
    config.log_every = 100
    config.eval_every = 5000
    config.eval_views = 4
    config.data_workers = 8
    return config
