"""Point-cloud losses in pure ``jax.numpy`` (plus ott-jax for Sinkhorn): no flax, no data code.

    from recon_jax.losses import chamfer_distance, emd, exact_emd, kl_divergence

Conventions (spelled out once here; each function's docstring repeats its own):

* ``chamfer_distance``: squared Euclidean by default (paper eq. 4); ``point_reduction="mean"``
  averages each direction over its valid points and adds the two directions; no 1/2 factor.
* ``emd``: entropic OT (Sinkhorn, ott-jax) approximating the bijection cost of paper eq. 5:
  the transport cost <P, C> of the plan divided by the number of points, Euclidean
  (unsquared) cost by default, so it is the mean distance between matched points.
* ``exact_emd``: the exact bijection (Hungarian) cost, mean distance per point; evaluation only.
* ``kl_divergence``: paper eq. 3 with weight 0.05, summed over the latent, mean over the batch.
* Nothing here multiplies by 100; evaluation tables do (``recon_jax.evaluate``).
"""

from recon_jax.losses.chamfer import chamfer_distance
from recon_jax.losses.emd import emd, exact_emd
from recon_jax.losses.kl import kl_divergence

__all__ = ["chamfer_distance", "emd", "exact_emd", "kl_divergence"]
