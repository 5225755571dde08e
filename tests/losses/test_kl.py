"""Tests for ``recon_jax.losses.kl`` against a numerically integrated KL divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from recon_jax.losses.kl import kl_divergence


def kl_by_quadrature(mu: float, logvar: float) -> float:
    """KL(N(mu, e^logvar) || N(0, 1)) = integral of p log(p / q), by adaptive quadrature."""
    p = stats.norm(loc=mu, scale=np.exp(0.5 * logvar))
    q = stats.norm()
    sd = p.std()

    def integrand(z):
        return p.pdf(z) * (p.logpdf(z) - q.logpdf(z))

    value, _ = integrate.quad(integrand, mu - 12 * sd, mu + 12 * sd, epsabs=1e-13, epsrel=1e-11)
    return value


def test_matches_numerical_integration(rng):
    b, z = 3, 4
    mu = rng.normal(scale=1.5, size=(b, z))
    logvar = rng.uniform(-3.0, 2.0, size=(b, z))
    per_dim = np.array(
        [[kl_by_quadrature(mu[i, j], logvar[i, j]) for j in range(z)] for i in range(b)]
    )
    want_kl = per_dim.sum(1).mean()

    mu32, logvar32 = mu.astype(np.float32), logvar.astype(np.float32)
    # weight 0.5, sum over the latent: exactly the KL divergence, averaged over the batch.
    got = kl_divergence(mu32, logvar32, weight=0.5, reduction="sum")
    np.testing.assert_allclose(got, want_kl, rtol=1e-5)
    # The paper's default (eq. 3): 0.05 * -(1 + s - mu^2 - e^s) = 0.1 * KL per dimension.
    np.testing.assert_allclose(kl_divergence(mu32, logvar32), 0.1 * want_kl, rtol=1e-5)
    # "mean" divides the per-example sum by Z.
    np.testing.assert_allclose(
        kl_divergence(mu32, logvar32, reduction="mean"), 0.1 * per_dim.mean(1).mean(), rtol=1e-5
    )


def test_zero_at_standard_normal_and_positive_elsewhere():
    zeros = jnp.zeros((2, 100))
    assert float(kl_divergence(zeros, zeros)) == 0.0
    grads = jax.grad(kl_divergence, (0, 1))(zeros, zeros)
    assert all(np.all(np.asarray(g) == 0) for g in grads)
    assert float(kl_divergence(zeros + 0.1, zeros)) > 0
    assert float(kl_divergence(zeros, zeros - 1e-3)) > 0


def test_small_logvar_keeps_absolute_accuracy():
    # For small s the term e^s - 1 - s ~ s^2 / 2 is tiny. Written as 1 + s - e^s in float32 it
    # carries the rounding of e^s (~1e-7 absolute); written with expm1 only that of s (~1e-11).
    s = np.float32(1e-4)
    want = np.expm1(np.float64(s)) - np.float64(s)  # ~5e-9
    got = kl_divergence(jnp.zeros((1, 1)), jnp.full((1, 1), s), weight=1.0)
    naive = -(1 + s - np.exp(s))  # float32 throughout
    assert abs(float(got) - want) < 1e-10
    assert abs(float(naive) - want) > 100 * abs(float(got) - want)


def test_gradient_matches_finite_differences_float64(rng):
    mu0 = rng.normal(size=(3, 5))
    logvar0 = rng.uniform(-2, 1, size=(3, 5))
    with jax.enable_x64(True):
        f = jax.jit(lambda m, s: kl_divergence(m, s, weight=0.05))
        mu, logvar = jnp.asarray(mu0), jnp.asarray(logvar0)
        assert f(mu, logvar).dtype == jnp.float64
        g_mu, g_s = jax.grad(f, (0, 1))(mu, logvar)
        h = 1e-6
        for _ in range(3):
            v_mu, v_s = rng.normal(size=mu0.shape), rng.normal(size=logvar0.shape)
            fd = (f(mu + h * v_mu, logvar + h * v_s) - f(mu - h * v_mu, logvar - h * v_s)) / (2 * h)
            np.testing.assert_allclose(jnp.sum(g_mu * v_mu) + jnp.sum(g_s * v_s), fd, rtol=1e-7)
        # Hand-derived: d/dmu = weight * 2 mu / B, d/ds = weight * (e^s - 1) / B.
        np.testing.assert_allclose(g_mu, 0.05 * 2 * mu0 / 3, rtol=1e-12)
        np.testing.assert_allclose(g_s, 0.05 * np.expm1(logvar0) / 3, rtol=1e-12)
    assert jnp.ones(1).dtype == jnp.float32  # x64 switched off again


def test_jit_vmap_and_traced_weight(rng):
    mu = rng.normal(size=(4, 2, 6)).astype(np.float32)
    logvar = rng.normal(size=(4, 2, 6)).astype(np.float32)
    weights = np.array([0.0, 0.05, 0.5, 1.0], np.float32)
    got = jax.jit(jax.vmap(lambda m, s, w: kl_divergence(m, s, weight=w)))(mu, logvar, weights)
    for i in range(4):
        want = weights[i] * np.mean(np.sum(mu[i] ** 2 + np.exp(logvar[i]) - 1 - logvar[i], 1))
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "mu, logvar, kwargs, match",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), {}, r"same shape \[B, Z\].*\(2, 3\).*\(2, 4\)"),
        (np.zeros((6,)), np.zeros((6,)), {}, r"mu must have shape \[B, Z\], got shape \(6,\)"),
        (np.zeros((2, 3)), np.zeros((1, 2, 3)), {}, r"logvar must have shape \[B, Z\]"),
        (np.zeros((2, 3), np.int32), np.zeros((2, 3)), {}, r"mu must be a floating point"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"reduction": "max"}, r"reduction must be one of"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"weight": np.ones(3)}, r"weight must be a scalar"),
    ],
)
def test_bad_input_raises(mu, logvar, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl_divergence(mu, logvar, **kwargs)
