"""Default experiment: the paper's model and loss, sized to train on a 2-core CPU in minutes.

Efficient extractor, reparameterised 100-d latent, 3-layer LeakyReLU decoder, and the loss of
Kim & Lee (2023) eq. 1: L = 0.05 KL + CD + EMD. To fit a laptop CPU it uses 64x64 crops
(downscaled from the 128x128 crop), 512 output points and a small synthetic set; the
full-size settings are in ``paper.py``.

Run:
    recon-jax train --config experiments/configs/default.py --workdir runs/default
    recon-jax eval --workdir runs/default

Result (2026-11-24, 2-core CPU, README "Results"): test CD x100 9.31, EMD x100 8.65 (mean of 13
categories, no ICP; untrained: 20.13 / 21.58); with ICP 8.32 / 7.90; 1,200 steps in 15.3 min.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # ---- Data -------------------------------------------------------------------------------
    # Root of a dataset in the ShapeNet layout (SPEC section 5). Empty: the synthetic set in
    # `synthetic_dir`, generated on first use.
    config.data_dir = ""
    # Where the synthetic set lives (relative paths are relative to the current directory).
    config.synthetic_dir = "data/synthetic"
    # Synthetic models per category (80% train, 20% test; 24 views each), seed, and the
    # categories to generate (names or synsets; empty = all 13).
    config.synthetic_models_per_category = 10
    config.synthetic_seed = 0
    config.synthetic_categories = ()
    # Where the TFDS copy is prepared on first use; empty = ROOT/tfds.
    config.tfds_dir = ""
    # Network input side in pixels: the 128x128 crop, resized if smaller.
    config.image_size = 64
    # Points the decoder outputs (the paper: 2048).
    config.num_points = 512
    # Training target: pointcloud_2048.npy or pointcloud_1024.npy (CD and the Sinkhorn EMD
    # accept clouds of different sizes).
    config.target_points = 2048
    # "random": one random view per model per visit; "all": every view is an example.
    config.views = "all"
    # Data loader worker processes (0 = in the main process).
    config.data_workers = 0

    # ---- Model ------------------------------------------------------------------------------
    # "efficient" (the paper's extractor), "resnet18" or "resnet34".
    config.encoder = "efficient"
    config.latent_dim = 100  # size of mu, logvar and z (paper 2.3)
    config.feature_dim = 1000  # extractor output (paper 2.2)

    # ---- Loss (eq. 1): weights of each term -------------------------------------------------
    config.kl_weight = 0.05  # eq. 3's factor (KL summed over the 100 latents); 0 disables KL
    config.cd_weight = 1.0  # squared Chamfer distance (eq. 4)
    config.emd_weight = 1.0  # Sinkhorn EMD, Euclidean (eq. 5)
    # "sum": CD and EMD summed over the points, as eqs. 4-5 are written (this sets the balance
    # against the KL term: with "mean" the KL term dominates and the latent collapses).
    # "mean": divided by the point counts.
    config.point_reduction = "sum"
    # Sinkhorn schedule of the training EMD as (multiplier, iterations) stages (see
    # recon_jax/losses/emd.py); empty: the library default (170 iterations, ~0.03% error).
    config.emd_coarse_stages = ()
    config.emd_fine_stages = ()

    # ---- Optimisation -----------------------------------------------------------------------
    config.batch_size = 16  # global batch (split across all devices)
    config.num_steps = 1200
    config.optimizer = "adam"
    config.learning_rate = 1e-3  # peak learning rate
    config.warmup_steps = 50
    config.schedule = "cosine"  # "constant" or "cosine" decay to 0 after warm-up
    config.weight_decay = 0.0
    config.grad_clip = 0.0  # global-norm clipping threshold; 0 disables (the paper has none)
    config.seed = 0

    # ---- Logging, evaluation, checkpoints ---------------------------------------------------
    config.log_every = 25  # steps between train-metric records
    config.eval_every = 250  # steps between test-CD evaluations (also checkpoint steps)
    config.eval_views = 2  # views per test model in the periodic evaluation (full eval: all)
    config.keep_checkpoints = 2  # latest checkpoints kept, besides the best by test CD
    config.progress_bar = True
    return config
