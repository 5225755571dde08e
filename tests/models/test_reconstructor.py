"""Latent head, decoder and the whole reconstructor: NumPy references, sampling statistics,
parameter counts, determinism, and a few Adam steps that lower the Chamfer loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.losses.chamfer import chamfer_distance
from recon_jax.models import (
    LATENT_RNG,
    LatentHead,
    PointDecoder,
    ReconstructorOutput,
    init_variables,
    make_model,
)
from recon_jax.models.flops import compile_train_step, default_optimizer, param_count
from tests.models.conftest import key


def _leaky(x: np.ndarray, slope: float) -> np.ndarray:
    return np.where(x >= 0, x, slope * x)


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_decoder_matches_numpy(rng, slope):
    decoder = PointDecoder(num_points=5, hidden=(7, 6), negative_slope=slope)
    z = rng.normal(size=(3, 4)).astype(np.float32)
    params = decoder.init(key(0), jnp.asarray(z))["params"]
    got = np.asarray(decoder.apply({"params": params}, jnp.asarray(z)))
    p = jax.tree.map(np.asarray, params)
    h = _leaky(z @ p["hidden0"]["kernel"] + p["hidden0"]["bias"], slope)
    h = _leaky(h @ p["hidden1"]["kernel"] + p["hidden1"]["bias"], slope)
    out = h @ p["out"]["kernel"] + p["out"]["bias"]  # no activation on the output
    assert got.shape == (3, 5, 3) and got.dtype == np.float32
    # Point i is outputs 3i, 3i+1, 3i+2.
    np.testing.assert_allclose(got, out.reshape(3, 5, 3), rtol=1e-5, atol=1e-5)


def test_decoder_paper_widths_and_parameter_count():
    decoder = PointDecoder()
    params = jax.eval_shape(decoder.init, key(0), jnp.zeros((1, 100)))["params"]
    # 100 -> 512 -> 1024 -> 6144 (paper Fig. 7), weights and biases.
    assert param_count(params) == (100 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 6144 + 6144)
    assert params["out"]["kernel"].shape == (1024, 6144)


def test_latent_head_deterministic_is_mu_and_matches_numpy(rng):
    head = LatentHead(latent_dim=6)
    feats = rng.normal(size=(4, 10)).astype(np.float32)
    params = head.init(key(0), jnp.asarray(feats))["params"]
    mu, logvar, z = head.apply({"params": params}, jnp.asarray(feats), deterministic=True)
    p = jax.tree.map(np.asarray, params)
    np.testing.assert_allclose(np.asarray(mu), feats @ p["mu"]["kernel"] + p["mu"]["bias"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(logvar), feats @ p["logvar"]["kernel"] + p["logvar"]["bias"], rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(np.asarray(z), np.asarray(mu))


def test_latent_sampling_has_the_right_distribution(rng):
    """z - mu = exp(logvar / 2) * eps with eps ~ N(0, I), from the "latent" stream."""
    head = LatentHead(latent_dim=100)
    one = rng.normal(size=(1, 32)).astype(np.float32) * 3.0
    feats = jnp.asarray(np.repeat(one, 4000, axis=0))  # 4000 draws of the same Gaussian
    params = head.init(key(0), feats[:1])["params"]
    mu, logvar, z = head.apply({"params": params}, feats, deterministic=False,
                               rngs={LATENT_RNG: key(1)})
    mu, logvar, z = (np.asarray(a, np.float64) for a in (mu, logvar, z))
    assert np.ptp(logvar[0]) > 1.0  # the variances differ across dimensions: a real test
    eps = (z - mu) / np.exp(logvar / 2)
    assert abs(eps.mean()) < 0.01 and abs(eps.std() - 1.0) < 0.01  # 400,000 samples
    # Per dimension, the sample variance of z is exp(logvar) (4000 draws: 2.2% relative s.d.).
    np.testing.assert_allclose(z.var(axis=0), np.exp(logvar[0]), rtol=0.12)
    np.testing.assert_allclose(z.mean(axis=0), mu[0], atol=0.12 * np.exp(logvar[0] / 2).max())
    # The same key gives the same draws, another key other ones.
    def draw(seed):
        return np.asarray(head.apply({"params": params}, feats[:8], deterministic=False,
                                     rngs={LATENT_RNG: key(seed)})[2])

    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.allclose(draw(5), draw(6))


def test_reconstructor_outputs_and_defaults(efficient_model, rng):
    model, variables, _ = efficient_model
    images = jnp.asarray(rng.normal(size=(3, 32, 32, 3)), jnp.float32)
    # jit also shows that the output (a flax struct dataclass) is a pytree.
    evaluate = jax.jit(lambda v, x: model.apply(v, x))
    out = evaluate(variables, images)
    assert isinstance(out, ReconstructorOutput)
    assert out.points.shape == (3, 64, 3) and out.points.dtype == jnp.float32
    for a in (out.mu, out.logvar, out.z):
        assert a.shape == (3, 100) and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out.z), np.asarray(out.mu))  # eval: z = mu

    @functools.partial(jax.jit, static_argnums=3)
    def train(v, x, k, deterministic):
        return model.apply(v, x, train=True, deterministic=deterministic,
                           rngs={LATENT_RNG: k}, mutable=["batch_stats"])[0]

    # Training samples z from the "latent" stream (deterministic defaults to not train) ...
    sampled = train(variables, images, key(3), None)
    assert not np.allclose(np.asarray(sampled.z), np.asarray(sampled.mu))
    np.testing.assert_array_equal(np.asarray(train(variables, images, key(3), None).points),
                                  np.asarray(sampled.points))
    # ... unless deterministic=True.
    fixed = train(variables, images, key(3), True)
    np.testing.assert_array_equal(np.asarray(fixed.z), np.asarray(fixed.mu))
    # Without the stream, sampling fails loudly.
    with pytest.raises(Exception, match="latent"):
        model.apply(variables, images, train=True, mutable=["batch_stats"])


def test_reconstructor_parameter_count(efficient_model):
    model, variables, _ = efficient_model
    params = variables["params"]
    assert set(params) == {"extractor", "latent", "decoder"}
    # The extractor's count is derived layer by layer in test_extractors.py.
    assert param_count(params["extractor"]) == 1_824_928
    assert param_count(params["latent"]) == 2 * (1000 * 100 + 100)  # mu and logvar heads
    # 100 -> 512 -> 1024 -> 3 * 64 for 64 points.
    assert param_count(params["decoder"]) == (
        (100 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 3 * 64 + 3 * 64)
    )
    assert set(variables["batch_stats"]) == {"extractor"}


def test_init_is_deterministic_for_a_fixed_key(efficient_model, rng):
    model, variables, init = efficient_model  # variables = init(key(0))
    images = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
    again = init(key(0))
    jax.tree.map(np.testing.assert_array_equal, again, variables)
    predict = jax.jit(lambda v: model.apply(v, images).points)
    np.testing.assert_array_equal(np.asarray(predict(again)), np.asarray(predict(variables)))
    assert not np.allclose(np.asarray(predict(init(key(1)))), np.asarray(predict(variables)))


def test_make_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"encoder must be one of .*'vgg'"):
        make_model("vgg")
    with pytest.raises(ValueError, match="num_points must be a positive integer, got 0"):
        make_model("efficient", num_points=0)
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        make_model("resnet18", latent_dim=-3)


def test_reconstructor_rejects_bad_images(efficient_model):
    model, variables, _ = efficient_model
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels"):
        model.apply(variables, jnp.zeros((1, 32, 32, 4)))
    with pytest.raises(ValueError, match="at least 16x16"):
        model.apply(variables, jnp.zeros((1, 8, 32, 3)))


@pytest.mark.parametrize(
    "encoder", ["efficient", pytest.param("resnet18", marks=pytest.mark.slow)]
)
def test_adam_steps_on_a_fixed_batch_lower_the_chamfer_loss(
    request, rng, efficient_model, encoder
):
    if encoder == "efficient":
        model, variables, _ = efficient_model
        step = request.getfixturevalue("efficient_step")  # batch 4, 32x32, Adam 1e-3
    else:
        model = make_model(encoder, num_points=64)
        variables = jax.jit(lambda k: init_variables(model, k, image_size=32))(key(0))
        step = compile_train_step(model, image_size=32, batch_size=4)
    tx = default_optimizer()
    # The step donates its state: start from copies of the variables.
    state = jax.tree.map(jnp.copy, (variables["params"], variables["batch_stats"],
                                    tx.init(variables["params"])))
    images = jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32)
    # Four different target clouds on the unit sphere.
    points = rng.normal(size=(4, 64, 3))
    points = jnp.asarray(points / np.linalg.norm(points, axis=-1, keepdims=True), jnp.float32)
    losses = []
    for i in range(25):  # each step's loss is measured before its update
        state, loss = step(state, images, points, jax.random.key(i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    # z is sampled (noisy losses): compare the means of the first 3 and the last 5 steps.
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    # The trained model's deterministic prediction (running BatchNorm statistics, z = mu) is
    # closer too.
    predict = jax.jit(lambda p, s: model.apply({"params": p, "batch_stats": s}, images).points)
    before = float(chamfer_distance(predict(variables["params"], variables["batch_stats"]),
                                    points))
    after = float(chamfer_distance(predict(state[0], state[1]), points))
    assert after < before, (before, after)
