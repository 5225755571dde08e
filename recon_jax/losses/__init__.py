"""Point-cloud losses in JAX: no flax, no data code (jax, numpy, scipy and ott-jax only).

    from recon_jax.losses import chamfer_distance, emd, exact_emd, kl_divergence
    from recon_jax.losses import f_score, knn_points, SinkhornSchedule

Conventions (each docstring repeats its own; all of them, with examples: docs/losses.md):

* ``chamfer_distance``: squared Euclidean by default (paper eq. 4), each direction averaged over
  its valid points, the two added (no 1/2 factor); PyTorch3D's options and names.
* ``emd`` (entropic, Sinkhorn on ott-jax) and ``exact_emd`` (exact assignment): paper eq. 5 per
  point, Euclidean cost by default: the mean distance between matched points.
* ``kl_divergence``: paper eq. 3 with weight 0.05, summed over the latent, mean over the batch.
* ``f_score`` (Tatarchenko et al. 2019) and ``knn_points`` (differentiable distances).
* Clouds ``[B, N, D]`` with PyTorch3D-style ``lengths`` padding. A pair with a NaN or Inf valid
  point gets NaN, never a finite score. Nothing here multiplies by 100.
"""

from recon_jax.losses.chamfer import FScore, chamfer_distance, f_score
from recon_jax.losses.emd import emd, exact_emd
from recon_jax.losses.kl import kl_divergence
from recon_jax.losses.knn import KNN, knn_points
from recon_jax.losses.sinkhorn import SinkhornSchedule

__all__ = [
    "chamfer_distance",
    "emd",
    "exact_emd",
    "kl_divergence",
    "f_score",
    "knn_points",
    "SinkhornSchedule",
    "FScore",
    "KNN",
]
