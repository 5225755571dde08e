"""Default experiment: the paper's model and loss, sized to train on a 2-core CPU in minutes.

Paper extractor, reparameterised 100-d latent, 3-layer LeakyReLU decoder, and the loss of
Kim & Lee (2023) eq. 1: L = 0.05 KL + CD + EMD. To fit a laptop CPU it uses 64x64 input
(downscaled from the 128x128 crop), 512 output points and a small synthetic set; the
full-size settings are in ``paper.py``.

Run:
    recon-jax train --config experiments/configs/default.py --workdir runs/default
    recon-jax eval --workdir runs/default
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    # ---- Data: what the pipeline reads and feeds ----------------------------------------------
    data = config.data = ml_collections.ConfigDict()
    # Root of a dataset in the ShapeNet layout (3D-R2N2 renderings + 3D-LMNet clouds). Empty:
    # the synthetic set in `synthetic_dir`, generated on first use.
    data.data_dir = ""
    # Where the synthetic set lives (relative paths are relative to the current directory).
    data.synthetic_dir = "data/synthetic"
    # Synthetic models per category (80% train, 20% test; 24 views each), seed, and the
    # categories to generate (names or synsets; empty = all 13).
    data.synthetic_models_per_category = 10
    data.synthetic_seed = 0
    data.synthetic_categories = ()
    # Where the TFDS copy is prepared on first use; empty = ROOT/tfds.
    data.tfds_dir = ""
    # Training target: pointcloud_2048.npy or pointcloud_1024.npy (CD and the Sinkhorn EMD
    # accept clouds of different sizes).
    data.target_points = 2048
    # "random": one random view per model per visit; "all": every view is an example.
    data.views = "all"
    # Global batch (split across all devices and processes).
    data.batch_size = 16
    # Data loader worker processes (0 = in the main process).
    data.workers = 0

    # ---- Model: the Reconstructor is built from this section whole ----------------------------
    model = config.model = ml_collections.ConfigDict()
    # "efficient" (the paper's extractor), "efficient_small" (a lighter CPU variant),
    # "resnet18" or "resnet34".
    model.encoder = "efficient"
    # Extractor fields beyond the defaults of the chosen extractor (empty = its defaults).
    model.extractor = ml_collections.ConfigDict()
    # Network input side in pixels: the 128x128 crop is resized to it inside the model.
    model.image_size = 64
    model.feature_dim = 1000  # extractor output (paper 2.2)
    model.latent_dim = 100  # size of mu, logvar and z (paper 2.3)
    model.decoder_hidden = (512, 1024)  # decoder hidden widths (paper 2.4)
    model.negative_slope = 0.01  # LeakyReLU slope of the decoder
    model.num_points = 512  # points the decoder outputs (the paper: 2048)
    # Compute dtype of extractor and decoder: "float32" or "bfloat16" (parameters, optimizer
    # state and the losses stay float32).
    model.dtype = "float32"

    # ---- Loss (eq. 1): weights of each term --------------------------------------------------
    loss = config.loss = ml_collections.ConfigDict()
    loss.kl_weight = 0.05  # eq. 3's factor (KL summed over the 100 latents); 0 disables KL
    loss.cd_weight = 1.0  # squared Chamfer distance (eq. 4)
    loss.emd_weight = 1.0  # Sinkhorn EMD, Euclidean (eq. 5)
    # "sum": CD and EMD summed over the points, as eqs. 4-5 are written (this sets the balance
    # against the KL term: with "mean" the KL term dominates and the latent collapses).
    # "mean": divided by the point counts.
    loss.point_reduction = "sum"
    # Sinkhorn schedule of the training EMD as (multiplier, iterations) stages (see
    # recon_jax/losses/sinkhorn.py); empty: the library default (170 iterations).
    loss.emd_coarse_stages = ()
    loss.emd_fine_stages = ()

    # ---- Optimisation --------------------------------------------------------------------------
    optim = config.optim = ml_collections.ConfigDict()
    optim.num_steps = 1200
    optim.optimizer = "adam"  # "adam" (AdamW) or "sgd" (momentum 0.9)
    optim.learning_rate = 1e-3  # peak learning rate
    optim.warmup_steps = 50
    optim.schedule = "cosine"  # "constant" or "cosine" decay to 0 after warm-up
    optim.weight_decay = 0.0
    optim.grad_clip = 0.0  # global-norm clipping threshold; 0 disables (the paper has none)

    # ---- Periodic evaluation during training ---------------------------------------------------
    evaluation = config.eval = ml_collections.ConfigDict()
    evaluation.every = 250  # steps between test-CD evaluations (also checkpoint steps)
    evaluation.views = 2  # views per test model in the periodic evaluation (full eval: all)

    # ---- The run: seed, logging, checkpoints ---------------------------------------------------
    run = config.run = ml_collections.ConfigDict()
    run.seed = 0  # parameter initialisation, data order and the latent noise
    run.log_every = 25  # steps between train-metric records
    run.keep_checkpoints = 2  # latest checkpoints kept, besides the best by test CD
    run.progress_bar = True
    return config
