"""recon_jax.measure: FLOPs and multiply-adds against hand counts, the layer table, the memory
analysis against the state's size, and the paper network's multiply-adds against ResNet-34's."""

from __future__ import annotations

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from recon_jax.measure import (
    compiled_flops,
    forward_counts,
    layer_table,
    multiply_adds,
    param_count,
    step_memory,
)
from recon_jax.models import build_model, make_extractor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _conv_macs(ho: int, wo: int, cin: int, cout: int, k: int) -> int:
    """Hand count: one multiply-add per output value, input channel and tap."""
    return ho * wo * cin * cout * k * k


def _conv_flops(ho: int, wo: int, cin: int, cout: int, k: int) -> int:
    return 2 * _conv_macs(ho, wo, cin, cout, k)


def _conv(features, k, stride=1, padding="VALID", groups=1):
    return nn.Conv(features, (k, k), strides=(stride, stride), padding=padding, use_bias=False,
                   feature_group_count=groups)


def _both(module, x):
    params = jax.eval_shape(module.init, jax.random.key(0), x)
    fn = lambda v, x: module.apply(v, x)  # noqa: E731
    return compiled_flops(fn, params, x), multiply_adds(fn, params, x)


@pytest.mark.parametrize(
    "batch, hw, cin, cout, k, stride, expected",
    [
        (1, 10, 4, 5, 3, 1, _conv_macs(8, 8, 4, 5, 3)),  # VALID: 8x8 outputs
        (3, 10, 4, 5, 2, 2, 3 * _conv_macs(5, 5, 4, 5, 2)),  # 2x2/2 patchify, batch of 3
        (1, 16, 3, 8, 1, 1, _conv_macs(16, 16, 3, 8, 1)),
    ],
)
def test_conv_counts_match_hand_count(batch, hw, cin, cout, k, stride, expected):
    flops, macs = _both(_conv(cout, k, stride), jnp.zeros((batch, hw, hw, cin)))
    assert macs == expected
    assert flops == 2 * expected  # XLA: a multiply-add is 2 FLOPs


def test_padded_taps_count_as_multiply_adds_but_not_as_xla_flops():
    # 3x3 'SAME' on 10x10: along each axis the 10 outputs see 2, 3, ..., 3, 2 real input rows,
    # 28 in all, so XLA counts 28 * 28 (output, tap) pairs per channel pair instead of the
    # 10 * 10 * 9 of the usual tables.
    flops, macs = _both(_conv(5, 3, padding="SAME"), jnp.zeros((1, 10, 10, 4)))
    assert flops == 2 * 28 * 28 * 4 * 5
    assert macs == _conv_macs(10, 10, 4, 5, 3)


def test_multiply_adds_of_dense_grouped_conv_and_scan():
    dense = nn.Dense(7)
    _, macs = _both(dense, jnp.zeros((3, 5)))
    assert macs == 3 * 5 * 7  # the bias add is not a multiply-add
    _, macs = _both(_conv(6, 3, groups=2), jnp.zeros((2, 9, 9, 4)))
    assert macs == 2 * _conv_macs(7, 7, 4 // 2, 6, 3)

    def scanned(w, x):
        def body(c, _):
            return c @ w, None
        return jax.lax.scan(body, x, None, length=4)[0]

    w, x = jnp.zeros((6, 6)), jnp.zeros((2, 6))
    assert multiply_adds(scanned, w, x) == 4 * 2 * 6 * 6
    assert multiply_adds(jax.jit(lambda w, x: x @ w), w, x) == 2 * 6 * 6  # inside a jit
    assert multiply_adds(lambda x: jnp.tanh(x) + 1, x) == 0


def _resnet_macs(stages, size):
    """ResNet (torchvision layout) multiply-adds by hand on a ``size`` x ``size`` image."""
    s = -(-size // 2)
    total = _conv_macs(s, s, 3, 64, 7)
    s, cin = -(-s // 2), 64
    for i, blocks in enumerate(stages):
        cout = 64 * 2**i
        for j in range(blocks):
            stride = 2 if i > 0 and j == 0 else 1
            s = -(-s // stride)
            total += _conv_macs(s, s, cin, cout, 3) + _conv_macs(s, s, cout, cout, 3)
            if stride != 1 or cin != cout:
                total += _conv_macs(s, s, cin, cout, 1)
            cin = cout
    return total + 512 * 1000


def _efficient_macs(size):
    """The paper network by hand: 4 full-resolution convs (32), three 3x3/2 stages, fuse, fc."""
    total = _conv_macs(size, size, 3, 32, 3) + 3 * _conv_macs(size, size, 32, 32, 3)
    s, cin = size, 32
    for cout in (64, 128, 256):
        s = -(-s // 2)
        total += _conv_macs(s, s, cin, cout, 3)
        cin = cout
    return total + _conv_macs(s, s, 256 + 32, 256, 3) + 256 * 1000


def _extractor_macs(name, size):
    module = make_extractor(name)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), x)
    return multiply_adds(lambda v, x: module.apply(v, x), variables, x)


@pytest.mark.parametrize("size", [64, 128, 224])
def test_the_paper_network_costs_0_70_to_0_76_of_resnet34(size):
    """Issue 12's bar, in multiply-adds (the convention of the paper's 2.9 G / 4 G)."""
    r34 = _extractor_macs("resnet34", size)
    assert r34 == _resnet_macs((3, 4, 6, 3), size)
    assert _extractor_macs("resnet18", size) == _resnet_macs((2, 2, 2, 2), size)
    efficient = _extractor_macs("efficient", size)
    assert efficient == _efficient_macs(size)
    assert 0.70 <= efficient / r34 <= 0.76
    if size == 224:  # the usual tables' 3.66 G (torchvision: "3.66 GFLOPS"), the paper's "4 G"
        assert r34 / 1e9 == pytest.approx(3.66, abs=0.005)


class _TwoConvs(nn.Module):
    """Two VALID convolutions and nothing else: the layer table must be exact."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = nn.Conv(6, (3, 3), padding="VALID", use_bias=False, name="first")(x)
        return nn.Conv(2, (2, 2), strides=(2, 2), padding="VALID", use_bias=False,
                       name="second")(x)


def test_layer_table_is_exact_for_plain_convolutions():
    rows, total = layer_table(_TwoConvs(), image_size=12)
    assert [r.name for r in rows] == ["first", "second"]
    assert [r.kind for r in rows] == ["Conv", "Conv"]
    assert rows[0].input_shape == (1, 12, 12, 3) and rows[0].output_shape == (1, 10, 10, 6)
    assert rows[1].output_shape == (1, 5, 5, 2)
    assert [r.params for r in rows] == [3 * 3 * 3 * 6, 2 * 2 * 6 * 2]
    assert rows[0].flops == _conv_flops(10, 10, 3, 6, 3)
    assert rows[1].flops == _conv_flops(5, 5, 6, 2, 2)
    assert [r.macs for r in rows] == [_conv_macs(10, 10, 3, 6, 3), _conv_macs(5, 5, 6, 2, 2)]
    assert total == rows[0].flops + rows[1].flops


def test_layer_table_of_the_efficient_extractors_adds_up(extractors):
    module, variables = extractors["efficient_small"]
    rows, total = layer_table(module, image_size=32)
    assert rows[0].name == "stem" and rows[-1].name == "fc"
    assert sum(r.params for r in rows) == param_count(variables["params"])
    # Each conv layer costs at least its multiply-adds on the unpadded taps (the 2x2/2
    # downsampling convs have no padded taps on even sizes), plus BatchNorm and ReLU.
    stage1 = next(r for r in rows if r.name == "stage1_conv0")
    assert stage1.output_shape == (1, 16, 16, 32)
    assert stage1.flops > _conv_flops(16, 16, 8, 32, 2)
    assert stage1.macs == _conv_macs(16, 16, 8, 32, 2)
    # Work between the layers (pooling, concatenation) is small but not negative.
    assert 0 <= total - sum(r.flops for r in rows) < 0.01 * total
    module, variables = extractors["efficient"]
    rows, _ = layer_table(module, image_size=32)
    assert [r.name for r in rows] == ["stem", "full_res0", "full_res1", "full_res2",
                                      "stage1_conv0", "stage2_conv0", "stage3_conv0", "fuse",
                                      "fc"]
    assert sum(r.params for r in rows) == param_count(variables["params"])
    assert sum(r.macs for r in rows) == _efficient_macs(32)


def test_forward_counts(extractors):
    model = build_model({"encoder": "efficient", "image_size": 64, "num_points": 64})
    counts = forward_counts(model)
    assert set(counts) == {"extractor_params", "model_params", "extractor_gflops",
                           "model_gflops", "extractor_gmacs", "model_gmacs"}
    assert counts["extractor_params"] == param_count(extractors["efficient"][1]["params"])
    head = (1000 * 100 + 100) * 2 + (100 * 512 + 512) + (512 * 1024 + 1024) + (
        1024 * 192 + 192)
    assert counts["model_params"] == counts["extractor_params"] + head
    assert counts["extractor_gmacs"] * 1e9 == pytest.approx(_efficient_macs(64), abs=1)
    head_macs = 1000 * 100 * 2 + 100 * 512 + 512 * 1024 + 1024 * 192
    assert counts["model_gmacs"] * 1e9 == pytest.approx(_efficient_macs(64) + head_macs, abs=1)
    assert 2 * counts["extractor_gmacs"] * 0.95 < counts["extractor_gflops"]
    assert counts["extractor_gflops"] < counts["model_gflops"]
    # Another size: the model is measured with its input set to that size (no resize counted).
    at_32 = forward_counts(model, 32)
    assert at_32["extractor_gmacs"] * 1e9 == pytest.approx(_efficient_macs(32), abs=1)
    assert at_32["model_params"] == counts["model_params"]


def test_step_memory_holds_the_state(efficient_model, efficient_step):
    _, variables, _ = efficient_model
    peak, temp = step_memory(efficient_step)
    n_params = param_count(variables["params"])
    # Parameters, Adam's two moments and the gradients are all float32 and all live at once.
    assert peak >= 4 * 4 * n_params
    assert 0 < temp < peak


def _documented_table(section: str) -> str:
    """The models section of the design notes."""
    for path in ("docs/design.md",):
        full = os.path.join(REPO, path)
        if os.path.exists(full):
            text = open(full).read()
            start = text.find(section)
            if start >= 0:
                end = text.find("\n## ", start + 1)
                return text[start:end if end >= 0 else None]
    raise AssertionError(f"no {section!r} in the design notes")


@pytest.mark.parametrize("name", ["efficient", "efficient_small"])
def test_design_notes_tables_are_the_measurement(name):
    """The layer table of each efficient variant in the design notes matches layer_table."""
    text = _documented_table("## recon_jax.models")
    start = text.index(f"<!-- layers {name} -->")
    table = text[start:text.index("<!-- end layers -->", start)]
    rows, total = layer_table(make_extractor(name), image_size=128)
    documented = {}
    for line in table.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in {r.name for r in rows} | {"total"}:
            documented[cells[0]] = cells
    assert set(documented) == {r.name for r in rows} | {"total"}
    for r in rows:
        cells = documented[r.name]
        params, mmacs, mflops = (float(re.sub(",", "", c)) for c in cells[-3:])
        assert params == r.params, r.name
        assert mmacs == pytest.approx(r.macs / 1e6, abs=0.051), r.name
        assert mflops == pytest.approx(r.flops / 1e6, abs=0.051), r.name
        if len(r.output_shape) == 4:
            h, w, c = r.output_shape[1:]
            assert f"{h} x {w} x {c}" in cells, r.name
    params, mmacs, mflops = (float(re.sub(",", "", c)) for c in documented["total"][-3:])
    assert params == sum(r.params for r in rows)
    assert mmacs == pytest.approx(sum(r.macs for r in rows) / 1e6, abs=0.051)
    assert mflops == pytest.approx(total / 1e6, abs=0.051)
