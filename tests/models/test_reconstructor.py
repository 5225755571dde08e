"""Latent head, decoder and the whole reconstructor: NumPy references, sampling statistics,
parameter counts, the model built from a config, resizing inside the model, bfloat16 compute,
determinism, and a few Adam steps that lower the Chamfer loss."""

from __future__ import annotations

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from recon_jax.configs import load_config_file
from recon_jax.errors import UserError
from recon_jax.losses.chamfer import chamfer_distance
from recon_jax.measure import param_count
from recon_jax.models import (
    LATENT_RNG,
    LatentHead,
    PointDecoder,
    Reconstructor,
    ReconstructorOutput,
    build_model,
    init_variables,
    resize_images,
)
from tests.models.conftest import key, load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def test_build_model_from_the_config_and_from_json():
    """Every field of the default config's model section reaches the model; the same section
    read back from JSON (tuples as lists) builds the same model."""
    section = load_config_file(os.path.join(REPO, "experiments/configs/default.py")).model
    model = build_model(section)
    assert isinstance(model, Reconstructor)
    for field in ("encoder", "image_size", "feature_dim", "latent_dim", "negative_slope",
                  "num_points"):
        assert getattr(model, field) == section[field], field
    assert tuple(model.decoder_hidden) == tuple(section.decoder_hidden)
    assert model.dtype == jnp.float32 and model.extractor_fields == ()
    assert build_model(json.loads(json.dumps(section.to_dict()))) == model
    assert build_model({}) == Reconstructor()  # missing fields: the paper's defaults
    custom = build_model({"encoder": "efficient", "image_size": 24, "feature_dim": 10,
                          "latent_dim": 6, "decoder_hidden": [7], "num_points": 5,
                          "negative_slope": 0.2, "dtype": "bfloat16",
                          "extractor": {"stem_features": 4, "stage_features": [8, 16]}})
    assert custom.dtype == jnp.bfloat16 and custom.decoder_hidden == (7,)
    assert custom.extractor_fields == (("stage_features", (8, 16)), ("stem_features", 4))
    shapes = jax.eval_shape(lambda k: init_variables(custom, k), key(0))["params"]
    assert shapes["extractor"]["stem"]["conv"]["kernel"].shape == (3, 3, 3, 4)
    assert shapes["extractor"]["fuse"]["conv"]["kernel"].shape == (3, 3, 16 + 4, 16)
    assert shapes["extractor"]["fc"]["kernel"].shape == (16, 10)
    assert shapes["latent"]["mu"]["kernel"].shape == (10, 6)
    assert shapes["decoder"]["hidden0"]["kernel"].shape == (6, 7)
    assert shapes["decoder"]["out"]["kernel"].shape == (7, 15)
    assert "hidden1" not in shapes["decoder"]
    assert jax.tree.leaves(shapes)[0].dtype == jnp.float32  # parameters stay float32


@pytest.mark.parametrize(
    "fields, match",
    [({"encoders": "efficient"}, r"model\.encoders does not exist"),
     ({"encoder": "vgg"}, r"model\.encoder must be one of .*'vgg'"),
     ({"extractor": {"widths": 3}}, r"model\.extractor\.widths is not a field of the "
                                     r"'efficient' extractor; expected one of"),
     ({"encoder": "resnet18", "extractor": {"stem_features": 8}},
      r"model\.extractor\.stem_features is not a field of the 'resnet18'"),
     ({"extractor": {"stage_depth": 0}}, r"model\.extractor\.stage_depth must be an integer >= 1"),
     ({"extractor": {"stage_features": []}},
      r"model\.extractor\.stage_features must be a non-empty list"),
     ({"extractor": 3}, r"model\.extractor: expected a mapping"),
     ({"image_size": 4}, r"model\.image_size must be an integer >= 8, got 4"),
     ({"encoder": "resnet34", "image_size": 16}, r"model\.image_size must be an integer >= 32"),
     ({"image_size": "64"}, r"model\.image_size must be an integer"),
     ({"feature_dim": 0}, r"model\.feature_dim must be an integer >= 1, got 0"),
     ({"latent_dim": -3}, r"model\.latent_dim must be an integer >= 1, got -3"),
     ({"decoder_hidden": [512, 0]}, r"model\.decoder_hidden must be a list of integers >= 1"),
     ({"decoder_hidden": 512}, r"model\.decoder_hidden must be a list"),
     ({"negative_slope": "0.2"}, r"model\.negative_slope must be a finite number"),
     ({"negative_slope": float("nan")}, r"model\.negative_slope must be a finite number"),
     ({"num_points": 0}, r"model\.num_points must be an integer >= 1, got 0"),
     ({"num_points": True}, r"model\.num_points must be an integer"),
     ({"dtype": "float16"}, r"model\.dtype must be one of \('float32', 'bfloat16'\)")],
)
def test_build_model_names_the_bad_field(fields, match):
    with pytest.raises(UserError, match=match):
        build_model(fields)


def test_reconstructor_rejects_bad_images_and_fields(efficient_model):
    model, variables, _ = efficient_model
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels"):
        model.apply(variables, jnp.zeros((1, 32, 32, 4)))
    with pytest.raises(ValueError, match="floating point"):
        model.apply(variables, jnp.zeros((1, 32, 32, 3), jnp.int32))
    with pytest.raises(ValueError, match="at least one image"):
        model.apply(variables, jnp.zeros((0, 32, 32, 3)))
    # A model made directly (not from a config) checks its fields too.
    with pytest.raises(ValueError, match="image_size must be an integer >= 16, got 8"):
        Reconstructor("efficient_small", image_size=8).init(key(0), jnp.zeros((1, 8, 8, 3)))


def test_resize_is_antialiased_bilinear(rng):
    """resize_images equals PIL's bilinear resize (antialiased: its filter widens with the
    downscale factor) channel by channel, and returns its input when the size is already
    right."""
    images = rng.uniform(0, 1, size=(2, 128, 128, 3)).astype(np.float32)
    assert resize_images(images, 128) is images
    for size in (64, 32, 100):
        got = np.asarray(resize_images(jnp.asarray(images), size))
        assert got.shape == (2, size, size, 3)
        for b in range(2):
            for c in range(3):
                want = Image.fromarray(images[b, :, :, c], mode="F").resize(
                    (size, size), Image.BILINEAR)
                np.testing.assert_allclose(got[b, :, :, c], np.asarray(want), atol=2e-5)


def test_the_model_resizes_its_input(efficient_model, rng):
    model, variables, _ = efficient_model  # image_size 32
    images = jnp.asarray(rng.uniform(0, 1, size=(2, 128, 128, 3)), jnp.float32)
    seen = []

    def record(next_fun, args, kwargs, context):
        if context.module.name == "extractor" and context.method_name == "__call__":
            seen.append(args[0].shape)
        return next_fun(*args, **kwargs)

    forward = jax.jit(lambda x: model.apply(variables, x).points)
    with nn.intercept_methods(record):
        full = forward(images)
        small = forward(jax.image.resize(images, (2, 32, 32, 3), method="linear",
                                         antialias=True))
        jax.eval_shape(lambda k: init_variables(model, k, batch_size=3), key(0))
    assert seen == [(2, 32, 32, 3), (2, 32, 32, 3), (3, 32, 32, 3)]
    np.testing.assert_allclose(np.asarray(full), np.asarray(small), rtol=1e-5, atol=1e-6)


def test_bfloat16_forward_is_finite_and_close_to_float32(rng):
    """Compute in bfloat16 (parameters and outputs float32): the paper network's points are
    finite and within 2% (evaluation) and 5% (training, batch statistics) of the float32 ones,
    as relative L2 error, with the same variables."""
    images = jnp.asarray(rng.uniform(0, 1, size=(4, 48, 48, 3)), jnp.float32)
    fields = {"encoder": "efficient", "image_size": 32, "num_points": 64}
    model, half = build_model(fields), build_model(fields | {"dtype": "bfloat16"})
    assert half.dtype == jnp.bfloat16
    variables = jax.jit(lambda k: init_variables(model, k))(key(0))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
    for train, tol in ((False, 0.02), (True, 0.05)):
        def forward(m, train=train):
            out = m.apply(variables, images, train=train, deterministic=True,
                          mutable=["batch_stats"] if train else False)
            return out[0] if train else out

        full, low = jax.jit(lambda: forward(model))(), jax.jit(lambda: forward(half))()
        for field in ("points", "mu", "logvar", "z"):
            value = getattr(low, field)
            assert value.dtype == jnp.float32, field
            assert np.all(np.isfinite(np.asarray(value))), field
        a, b = np.asarray(full.points), np.asarray(low.points)
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < tol, train
        assert not np.array_equal(a, b)  # bfloat16 was really used


@pytest.mark.parametrize(
    "encoder", ["efficient_small", "efficient", pytest.param("resnet18", marks=pytest.mark.slow)]
)
def test_adam_steps_on_a_fixed_batch_lower_the_chamfer_loss(
    request, rng, efficient_model, encoder
):
    if encoder == "efficient_small":
        model, variables, _ = efficient_model
        step = request.getfixturevalue("efficient_step")  # batch 4, 32x32, Adam 1e-3
    else:
        model = build_model({"encoder": encoder, "num_points": 64, "image_size": 32})
        variables = jax.jit(lambda k: init_variables(model, k))(key(0))
        step = load_experiment("bench_train").compile_chamfer_step(model, batch_size=4)
    tx = optax.adam(1e-3)
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
