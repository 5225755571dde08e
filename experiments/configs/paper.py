"""Full-size settings of Kim & Lee (2023), for a GPU: 128x128 input, 2048 points, batch 32.

The paper fixes the architecture (sections 2.2-2.4), the loss (eq. 1, KL weight 0.05 in eq. 3),
the input (ShapeNet renderings cropped to 128x128, as 3D-LMNet) and the output (2048 points).
It states no optimizer, learning rate, schedule or training length: we use Adam (what PSGN and
3D-LMNet use) at 1e-4 with a short warm-up and cosine decay, for 100k steps of batch 32
(~3.8 passes over the ~840k 3D-R2N2 training views). These four are our choice, not the paper's.

Run (real ShapeNet in the 3D-R2N2 + 3D-LMNet layout):
    recon-jax train --config experiments/configs/paper.py --workdir runs/paper \\
        --config.data.data_dir=/path/to/shapenet_root
    recon-jax eval --workdir runs/paper

On the synthetic set (the default data): drop `--config.data.data_dir`.
"""

import os

from recon_jax.configs import load_config_file


def get_config():
    config = load_config_file(os.path.join(os.path.dirname(__file__), "default.py"))
    config.data.synthetic_models_per_category = 40  # the default synthetic benchmark size
    config.data.target_points = 2048
    config.data.views = "all"
    config.data.batch_size = 32
    config.data.workers = 8
    config.model.image_size = 128
    config.model.num_points = 2048
    config.optim.num_steps = 100_000
    config.optim.learning_rate = 1e-4
    config.optim.warmup_steps = 1000
    config.eval.every = 5000
    config.eval.views = 4
    config.run.log_every = 100
    return config
