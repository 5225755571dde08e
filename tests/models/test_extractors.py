"""Feature extractors: shapes, parameter counts by hand, the paper network's resolution and long
skip, padding against a NumPy convolution, BatchNorm state, determinism and input checks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.measure import param_count
from recon_jax.models import EXTRACTORS, EfficientExtractor, ResNetExtractor, make_extractor
from recon_jax.models.layers import ConvBN
from tests.models.conftest import key


def _images(rng, batch, height, width=None):
    return jnp.asarray(rng.normal(size=(batch, height, width or height, 3)), jnp.float32)


@pytest.mark.parametrize(
    "name, size", [("efficient", 64), ("efficient", 128), ("efficient_small", 64),
                   ("efficient_small", 128), ("resnet18", 64), ("resnet18", 128),
                   ("resnet34", 64)],
)
def test_output_shape_and_dtype(extractors, rng, name, size):
    module, variables = extractors[name]
    if name == "resnet34":
        feats = jax.eval_shape(module.apply, variables, _images(rng, 2, size))
    else:
        feats = jax.jit(module.apply)(variables, _images(rng, 2, size))
        assert np.all(np.isfinite(np.asarray(feats)))
    assert feats.shape == (2, 1000)
    assert feats.dtype == jnp.float32


@pytest.mark.parametrize("name, shape", [("efficient", (100, 75)), ("efficient", (9, 13)),
                                         ("efficient_small", (100, 75)),
                                         ("efficient_small", (16, 17)), ("resnet18", (33, 47))])
def test_odd_image_sizes(extractors, rng, name, shape):
    module, variables = extractors[name]
    feats = jax.jit(module.apply)(variables, _images(rng, 1, *shape))
    assert feats.shape == (1, 1000)
    assert np.all(np.isfinite(np.asarray(feats)))


def _convbn_params(cin: int, cout: int, k: int) -> int:
    """k x k conv without bias, plus BatchNorm scale and bias."""
    return k * k * cin * cout + 2 * cout


def test_efficient_parameter_count(extractors):
    # The paper's network: stem 3x3 3->32 and three 3x3 32->32 layers at full resolution, three
    # 3x3/2 stages 64/128/256, fuse 3x3 (256 + 32) -> 256, Dense 256 -> 1000.
    c0, widths = 32, (64, 128, 256)
    expected = _convbn_params(3, c0, 3) + 3 * _convbn_params(c0, c0, 3)
    cin = c0
    for c in widths:
        expected += _convbn_params(cin, c, 3)
        cin = c
    expected += _convbn_params(widths[-1] + c0, widths[-1], 3) + widths[-1] * 1000 + 1000
    _, variables = extractors["efficient"]
    assert param_count(variables["params"]) == expected == 1_337_800
    channels = 4 * c0 + sum(widths) + widths[-1]
    assert param_count(variables["batch_stats"]) == 2 * channels


def test_efficient_small_parameter_count(extractors):
    # Documented widths: stem 8 (3x3), one 3x3 8->8 layer at full resolution, stages 32/64/128/256
    # each a 2x2/2 conv and a 3x3 conv, fuse 3x3 (256 + 8) -> 256, Dense 256 -> 1000.
    c0, widths = 8, (32, 64, 128, 256)
    expected = _convbn_params(3, c0, 3) + _convbn_params(c0, c0, 3)
    cin = c0
    for c in widths:
        expected += _convbn_params(cin, c, 2) + _convbn_params(c, c, 3)
        cin = c
    expected += _convbn_params(widths[-1] + c0, widths[-1], 3)
    expected += widths[-1] * 1000 + 1000
    _, variables = extractors["efficient_small"]
    assert param_count(variables["params"]) == expected == 1_824_928
    # BatchNorm running mean and variance: 2 per channel of every ConvBN.
    channels = 2 * c0 + 2 * sum(widths) + widths[-1]
    assert param_count(variables["batch_stats"]) == 2 * channels


def _basic_block_params(cin: int, cout: int, stride: int) -> int:
    n = _convbn_params(cin, cout, 3) + _convbn_params(cout, cout, 3)
    if stride != 1 or cin != cout:
        n += _convbn_params(cin, cout, 1)
    return n


@pytest.mark.parametrize(
    "name, stages, torchvision_count",
    [("resnet18", (2, 2, 2, 2), 11_689_512), ("resnet34", (3, 4, 6, 3), 21_797_672)],
)
def test_resnet_parameter_count(extractors, name, stages, torchvision_count):
    expected = _convbn_params(3, 64, 7)
    cin = 64
    for i, blocks in enumerate(stages):
        cout = 64 * 2**i
        for j in range(blocks):
            expected += _basic_block_params(cin, cout, 2 if i > 0 and j == 0 else 1)
            cin = cout
    expected += 512 * 1000 + 1000
    _, variables = extractors[name]
    # torchvision.models.resnet18/34(num_classes=1000): the published counts.
    assert param_count(variables["params"]) == expected == torchvision_count


def _numpy_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: tuple[int, int]) -> np.ndarray:
    """Direct convolution, NHWC input, HWIO kernel, zero padding (lo, hi) on both axes."""
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), pad, pad, (0, 0)))
    ho = (xp.shape[1] - k) // stride + 1
    wo = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, w)
    return out


@pytest.mark.parametrize("k, stride, pad", [(3, 1, (1, 1)), (3, 2, (1, 1)), (2, 2, (0, 1)),
                                            (7, 2, (3, 3)), (1, 2, (0, 0))])
def test_convbn_matches_numpy_and_maps_to_ceil(rng, k, stride, pad):
    x = rng.normal(size=(2, 9, 10, 3)).astype(np.float32)
    layer = ConvBN(4, k, stride, relu=True)
    variables = layer.init(key(1), jnp.asarray(x), train=False)
    stats = {"mean": rng.normal(size=4).astype(np.float32),
             "var": rng.uniform(0.5, 2.0, size=4).astype(np.float32)}
    bn = {"scale": rng.normal(size=4).astype(np.float32),
          "bias": rng.normal(size=4).astype(np.float32)}
    variables = {"params": {**variables["params"], "bn": bn}, "batch_stats": {"bn": stats}}
    got = np.asarray(layer.apply(variables, jnp.asarray(x), train=False))
    conv = _numpy_conv(x, np.asarray(variables["params"]["conv"]["kernel"]), stride, pad)
    want = np.maximum((conv - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"]
                      + bn["bias"], 0)
    assert got.shape == (2, -(-9 // stride), -(-10 // stride), 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fixed_key_is_deterministic(rng):
    images = _images(rng, 2, 32)

    def features(seed):
        module = EfficientExtractor()  # a fresh module each time
        variables = jax.jit(module.init)(key(seed), jnp.zeros((1, 32, 32, 3)))
        return np.asarray(jax.jit(module.apply)(variables, images))

    np.testing.assert_array_equal(features(7), features(7))
    assert not np.allclose(features(7), features(8))


def test_batchnorm_state_and_batch_dependence(extractors, rng):
    module, variables = extractors["efficient"]
    train = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))
    evaluate = jax.jit(module.apply)
    images = np.asarray(_images(rng, 4, 32)) * 3.0 + 1.0
    _, updates = train(variables, images)
    # Running statistics: new = 0.9 * old + 0.1 * (biased) batch statistic of the stem conv.
    conv = _numpy_conv(images, np.asarray(variables["params"]["stem"]["conv"]["kernel"]), 1,
                       (1, 1))
    old, new = variables["batch_stats"]["stem"]["bn"], updates["batch_stats"]["stem"]["bn"]
    np.testing.assert_allclose(np.asarray(new["mean"]),
                               0.9 * np.asarray(old["mean"]) + 0.1 * conv.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new["var"]),
                               0.9 * np.asarray(old["var"]) + 0.1 * conv.var(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    # Another batch sharing its first image.
    other = images.copy()
    other[1:] = np.asarray(_images(rng, 3, 32))
    # Evaluation (running statistics): an image's feature does not depend on its batch ...
    np.testing.assert_allclose(np.asarray(evaluate(variables, images)[0]),
                               np.asarray(evaluate(variables, other)[0]), rtol=1e-4, atol=1e-5)
    # ... while training normalises with the statistics of the batch.
    assert not np.allclose(np.asarray(train(variables, images)[0][0]),
                           np.asarray(train(variables, other)[0][0]), atol=1e-3)


def test_long_skip_reaches_the_last_convolution(extractors):
    _, variables = extractors["efficient_small"]
    kernel = variables["params"]["fuse"]["conv"]["kernel"]
    assert kernel.shape == (3, 3, 256 + 8, 256)
    _, variables = extractors["efficient"]
    assert variables["params"]["fuse"]["conv"]["kernel"].shape == (3, 3, 256 + 32, 256)


def _conv_calls(module, variables, height, width=None, *, values=False):
    """``[(path, input [B, H, W, C] shape, output shape)]`` of every ``nn.Conv`` call on random
    images, and with ``values`` (run eagerly, else traced only) the intermediate values
    ``{path: (input, output)}`` of every ConvBN."""
    calls, seen = [], {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        path = "/".join(context.module.scope.path)
        if isinstance(context.module, nn.Conv):
            calls.append((path, args[0].shape, out.shape))
        if values and isinstance(context.module, ConvBN):
            seen[path] = (np.asarray(args[0]), np.asarray(out))
        return out

    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, height, width or height, 3)),
                         jnp.float32)
    with nn.intercept_methods(record):
        if values:
            module.apply(variables, images)
        else:
            jax.eval_shape(module.apply, variables, images)
    return calls, seen


@pytest.mark.parametrize("size", [32, 64])
def test_efficient_keeps_full_resolution_through_half_of_its_convolutions(extractors, size):
    """No 7x7/2 stem, no early pooling: the first half of the convolutions (in call order) see
    and give the full input size; ResNet-18 has none at full resolution."""
    module, variables = extractors["efficient"]
    calls, _ = _conv_calls(module, variables, size)
    full = [(out[1], out[2]) == (size, size) and (inp[1], inp[2]) == (size, size)
            for _, inp, out in calls]
    assert len(calls) == 8 and sum(full) == 4
    assert all(full[: len(calls) // 2])  # the first half
    assert sum(full) / len(calls) >= 0.5
    # kernels are 3x3 throughout (no 7x7 stem)
    kernels = [variables["params"][path.split("/")[0]]["conv"]["kernel"].shape[:2]
               for path, _, _ in calls]
    assert set(kernels) == {(3, 3)}
    calls, _ = _conv_calls(*extractors["resnet18"], size)
    assert not any((out[1], out[2]) == (size, size) for _, _, out in calls)
    # efficient_small, the ablation: 2 of 11 convolutions at full resolution
    calls, _ = _conv_calls(*extractors["efficient_small"], size)
    assert len(calls) == 11
    assert sum((out[1], out[2]) == (size, size) for _, _, out in calls) == 2


def test_long_skip_carries_the_stem_features_to_the_last_convolution(extractors):
    """The last convolution's input is [last stage, stem output average-pooled to its grid]:
    the initial features pass through no other layer on their way there."""
    for name, stride in (("efficient", 8), ("efficient_small", 16)):
        module, variables = extractors[name]
        # 40 = 5 x 8: a partial last window
        _, values = _conv_calls(module, variables, 40, 48, values=True)
        stem = values["stem"][1].astype(np.float64)
        fuse_in = values["fuse"][0]
        c0 = stem.shape[-1]
        last = [k for k in values if k.startswith("stage")][-1]
        np.testing.assert_array_equal(fuse_in[..., :-c0], values[last][1])
        # NumPy reference: mean over each stride x stride window, the partial windows on the
        # border averaged over their real pixels only (no padding counted).
        b, h, w, _ = stem.shape
        ho, wo = -(-h // stride), -(-w // stride)
        assert fuse_in.shape[1:3] == (ho, wo)
        pad_h, pad_w = ho * stride - h, wo * stride - w
        top, left = pad_h // 2, pad_w // 2
        want = np.zeros((b, ho, wo, c0))
        for i in range(ho):
            for j in range(wo):
                rows = slice(max(i * stride - top, 0), min((i + 1) * stride - top, h))
                cols = slice(max(j * stride - left, 0), min((j + 1) * stride - left, w))
                want[:, i, j] = stem[:, rows, cols].mean(axis=(1, 2))
        np.testing.assert_allclose(fuse_in[..., -c0:], want, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_output(extractors, rng):
    module = EfficientExtractor(dtype=jnp.bfloat16)
    shapes = jax.eval_shape(module.init, key(0), jnp.zeros((1, 32, 32, 3)))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))
    full_module, variables = extractors["efficient"]  # the same variables in float32
    images = _images(rng, 2, 32)
    feats = jax.jit(module.apply)(variables, images)
    assert feats.dtype == jnp.bfloat16 and feats.shape == (2, 1000)
    full = jax.jit(full_module.apply)(variables, images)
    # bfloat16 keeps about 3 significant digits.
    scale = float(jnp.max(jnp.abs(full)))
    np.testing.assert_allclose(np.asarray(feats, np.float32), np.asarray(full), atol=0.05 * scale)


@pytest.mark.parametrize(
    "shape, dtype, match",
    [((64, 64, 3), jnp.float32, r"shape \[B, H, W, 3\].*\(64, 64, 3\)"),
     ((1, 2, 64, 64, 3), jnp.float32, r"shape \[B, H, W, 3\]"),
     ((2, 64, 64, 1), jnp.float32, r"3 \(RGB\) channels.*\(2, 64, 64, 1\)"),
     ((2, 64, 64, 4), jnp.float32, r"3 \(RGB\) channels"),
     ((2, 64, 64, 3), jnp.int32, "floating point"),
     ((0, 64, 64, 3), jnp.float32, "at least one image")],
)
def test_bad_images_raise(extractors, shape, dtype, match):
    for name in ("efficient", "resnet18"):
        module, variables = extractors[name]
        with pytest.raises(ValueError, match=match):
            module.apply(variables, jnp.zeros(shape, dtype))


@pytest.mark.parametrize("name, min_size", [("efficient", 8), ("efficient_small", 16),
                                            ("resnet18", 32), ("resnet34", 32)])
def test_too_small_images_raise(extractors, name, min_size):
    module, variables = extractors[name]
    assert module.min_size == min_size
    # The smallest size works (traced only: the checks run at trace time).
    out = jax.eval_shape(module.apply, variables, jnp.zeros((1, min_size, min_size, 3)))
    assert out.shape == (1, 1000)
    for shape in ((min_size - 1, min_size), (min_size, min_size - 1)):
        with pytest.raises(ValueError, match=rf"at least {min_size}x{min_size}.*{shape[0]}x"):
            jax.eval_shape(module.apply, variables, jnp.zeros((1, *shape, 3)))


def test_bad_fields_raise():
    with pytest.raises(ValueError, match="stage_features must be a non-empty list"):
        EfficientExtractor(stage_features=()).init(key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="stage_depth must be an integer >= 1, got 0"):
        EfficientExtractor(stage_depth=0).init(key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="encoder must be one of"):
        make_extractor("resnet50")
    with pytest.raises(ValueError, match=r"num_filters must be an integer >= 1, got 'x'"):
        make_extractor("resnet18", num_filters="x")
    with pytest.raises(ValueError, match=r"stem_features is not a field of the 'resnet34'"):
        make_extractor("resnet34", stem_features=8)


def test_extractor_fields_override_the_defaults():
    module = make_extractor("efficient", stem_features=16, stage_features=[32, 64])
    assert (module.stem_features, module.stage_features, module.min_size) == (16, (32, 64), 4)
    assert make_extractor("efficient_small", full_res_layers=2).stage_features == (32, 64, 128,
                                                                                   256)
    assert make_extractor("resnet18", num_filters=32).stage_sizes == (2, 2, 2, 2)
    assert set(EXTRACTORS) == {"efficient", "efficient_small", "resnet18", "resnet34"}


def test_resnet_min_size_follows_stage_count():
    assert ResNetExtractor(stage_sizes=(1, 1, 1)).min_size == 16
