"""The latent head (Kim & Lee 2023, section 2.3): the reparameterisation trick.

Two Dense layers read the ``[B, feature_dim]`` image feature and give the mean ``mu`` and the
log-variance ``logvar`` (``s`` in the paper) of a diagonal Gaussian, ``[B, latent_dim]`` each.
The paper's eq. 3 uses ``e^sigma`` where a variance belongs, so its ``sigma`` is a log-variance,
and the sample is

    z = mu + exp(logvar / 2) * eps,    eps ~ N(0, I),

drawn from the ``"latent"`` RNG stream (:data:`LATENT_RNG`). With ``deterministic=True`` (the
evaluation default) ``z = mu`` and no RNG is needed.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["LATENT_RNG", "LatentHead"]

LATENT_RNG = "latent"


class LatentHead(nn.Module):
    """Dense heads for ``mu`` and ``logvar`` and the reparameterised sample ``z``.

    Attributes:
      latent_dim: size of the latent vector (100 in the paper).
      dtype: computation dtype; ``mu``, ``logvar`` and ``z`` are returned in float32.
    """

    latent_dim: int = 100
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, features: jax.Array, *, deterministic: bool = True
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``[B, F]`` features -> ``(mu, logvar, z)``, each ``[B, latent_dim]`` float32.

        ``deterministic=False`` samples ``eps`` from ``self.make_rng("latent")``, so ``apply``
        must be given ``rngs={"latent": key}``.
        """
        if features.ndim != 2:
            raise ValueError(f"features must have shape [B, F], got shape {tuple(features.shape)}")
        mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(features)
        logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(features)
        mu, logvar = mu.astype(jnp.float32), logvar.astype(jnp.float32)
        if deterministic:
            return mu, logvar, mu
        eps = jax.random.normal(self.make_rng(LATENT_RNG), mu.shape, jnp.float32)
        return mu, logvar, mu + jnp.exp(0.5 * logvar) * eps
