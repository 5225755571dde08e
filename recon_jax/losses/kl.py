"""The divergence loss of paper eq. 3: a weighted KL divergence of the latent to ``N(0, I)``.

Kim & Lee (2023), eq. 3::

    L_DIV = -0.05 * (1 + s - mu^2 - e^s)

where ``s`` is the encoder's log-variance output (the paper writes it sigma; it enters as
``e^s``, so it is ``log sigma^2``) and the latent is ``z = mu + e^(s/2) * eps``.
For one latent dimension the KL divergence of ``N(mu, e^s)`` from ``N(0, 1)`` is
``-1/2 (1 + s - mu^2 - e^s)``, so eq. 3 is ``0.1 * KL`` per dimension, and ``weight=0.5`` with
``reduction="sum"`` gives exactly ``KL(N(mu, diag(e^s)) || N(0, I))``.

Pure ``jax.numpy``: jit, vmap and grad safe. A batch of size 0 gives 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from recon_jax.losses._checks import check_choice, reduce_batch

__all__ = ["kl_divergence"]

_REDUCTIONS = ("sum", "mean")


def kl_divergence(
    mu: ArrayLike, logvar: ArrayLike, *, weight: ArrayLike = 0.05, reduction: str = "sum"
) -> jax.Array:
    """Paper eq. 3: ``-weight * (1 + s - mu^2 - e^s)``, reduced over the latent, mean over batch.

    Args:
      mu: ``[B, Z]`` floating point latent means.
      logvar: ``[B, Z]`` log-variances ``s`` (same shape and kind as ``mu``).
      weight: the factor of eq. 3 (0.05 in the paper); a Python float or a scalar array (may be
        traced, e.g. an annealing schedule under ``jit``).
      reduction: how the ``Z`` per-dimension terms of one example are combined: ``"sum"``
        (default, the usual VAE KL: with ``weight=0.5`` it is exactly
        ``KL(N(mu, diag(e^s)) || N(0, I))``) or ``"mean"`` (the sum divided by ``Z``).

    Returns:
      A scalar: the per-example value averaged over the ``B`` examples (0 when ``B = 0``), in
      the promoted dtype of ``mu`` and ``logvar`` (at least float32).

    Raises:
      ValueError: ``mu``/``logvar`` not floating ``[B, Z]`` arrays of equal shape, a non-scalar
        ``weight`` or an unknown ``reduction``.
    """
    mu = _check_latent("mu", mu)
    logvar = _check_latent("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape [B, Z], got mu shape {tuple(mu.shape)} and "
            f"logvar shape {tuple(logvar.shape)}"
        )
    check_choice("reduction", reduction, _REDUCTIONS)
    if jnp.ndim(weight) != 0:
        raise ValueError(f"weight must be a scalar, got shape {tuple(jnp.shape(weight))}")

    dtype = jnp.promote_types(jnp.promote_types(mu.dtype, logvar.dtype), jnp.float32)
    mu = mu.astype(dtype)
    logvar = logvar.astype(dtype)
    # 1 + s - e^s = -(expm1(s) - s): expm1 keeps the term accurate (and exactly 0) near s = 0.
    per_dim = mu * mu + (jnp.expm1(logvar) - logvar)  # = -(1 + s - mu^2 - e^s) >= 0
    per_example = jnp.sum(per_dim, axis=1) if reduction == "sum" else jnp.mean(per_dim, axis=1)
    return jnp.asarray(weight, dtype) * reduce_batch(per_example, "mean")


def _check_latent(name: str, a: ArrayLike) -> jax.Array:
    """``a`` must be a floating ``[B, Z]`` array."""
    a = jnp.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [B, Z], got shape {tuple(a.shape)}")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating point array, got dtype {a.dtype}")
    return a
