"""Jitted EMD evaluations shared by the loss tests, at one canonical shape (compiled once).

Every Sinkhorn solve of a new shape or setting is a ~2-3 s XLA compilation on the CPU, while
running one ``[7, 512]`` batch takes ~0.1 s: the tests therefore evaluate ``emd`` through
:func:`emd_values_and_grads`, which pads any batch of clouds with at most ``CANONICAL_POINTS``
points into ``[CANONICAL_BATCH, CANONICAL_POINTS, 3]`` arrays with ``lengths`` (PyTorch3D
padding, which ``test_emd.py`` checks equals the unpadded computation) and so reuses one
compilation per cost, in every test file of the session (and, through JAX's persistent cache,
in the other xdist workers).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from recon_jax.losses import emd

__all__ = ["CANONICAL_BATCH", "CANONICAL_POINTS", "emd_values_and_grads"]

CANONICAL_BATCH = 7  # the surface pairs of test_emd.py
CANONICAL_POINTS = 512


@functools.partial(jax.jit, static_argnames="cost")
def _values_and_grads(x, y, x_lengths, y_lengths, *, cost):
    """``[B]`` per-pair ``emd`` and the gradients of their NaN-ignoring sum in ``x`` and ``y``."""

    def total(a, b):
        values = emd(a, b, cost=cost, x_lengths=x_lengths, y_lengths=y_lengths,
                     batch_reduction=None)
        return jnp.nansum(values), values

    (_, values), (grad_x, grad_y) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(x, y)
    return values, grad_x, grad_y


def emd_values_and_grads(x, y, x_lengths=None, y_lengths=None, *, cost="euclidean"):
    """``emd(x, y, batch_reduction=None)`` ``[B]`` and its gradients ``[B, N, 3]``, ``[B, M, 3]``.

    ``x`` ``[B, N, 3]``, ``y`` ``[B, M, 3]`` (any ``B``, ``N, M <= CANONICAL_POINTS``), lengths
    ``[B]`` or ``None`` (full). Pairs are independent, so each value and gradient is that of the
    pair alone; the gradient is that of ``nansum`` of the values (0 for a NaN pair).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    batch, n, m = x.shape[0], x.shape[1], y.shape[1]
    if n > CANONICAL_POINTS or m > CANONICAL_POINTS or x.shape[2] != 3:
        raise AssertionError(f"not a canonical shape: {x.shape}, {y.shape}")
    x_lengths = np.full(batch, n) if x_lengths is None else np.asarray(x_lengths)
    y_lengths = np.full(batch, m) if y_lengths is None else np.asarray(y_lengths)
    values, grad_x, grad_y = [], [], []
    for start in range(0, max(batch, 1), CANONICAL_BATCH):
        rows = slice(start, min(start + CANONICAL_BATCH, batch))
        k = rows.stop - rows.start
        # Padding points and filler pairs hold zeros (filler pairs are empty: emd 0).
        xp = np.zeros((CANONICAL_BATCH, CANONICAL_POINTS, 3), np.float32)
        yp = np.zeros((CANONICAL_BATCH, CANONICAL_POINTS, 3), np.float32)
        xp[:k, :n], yp[:k, :m] = x[rows], y[rows]
        xl = np.zeros(CANONICAL_BATCH, np.int32)
        yl = np.zeros(CANONICAL_BATCH, np.int32)
        xl[:k], yl[:k] = x_lengths[rows], y_lengths[rows]
        v, gx, gy = _values_and_grads(xp, yp, xl, yl, cost=cost)
        values.append(np.asarray(v)[:k])
        grad_x.append(np.asarray(gx)[:k, :n])
        grad_y.append(np.asarray(gy)[:k, :m])
    return np.concatenate(values), np.concatenate(grad_x), np.concatenate(grad_y)
