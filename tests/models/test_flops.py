"""``recon-jax flops``: the FLOP counter against hand counts, the memory analysis against the
state's size, the report's ratios, and the command end to end on a tiny setting."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recon_jax.cli import main
from recon_jax.models.flops import (
    ExtractorReport,
    compiled_flops,
    format_report,
    layer_table,
    param_count,
    step_memory,
    time_train_step,
)


def _conv_flops(ho: int, wo: int, cin: int, cout: int, k: int) -> int:
    """Hand count: one multiply-add (2 FLOPs) per output value, input channel and tap."""
    return 2 * ho * wo * cin * cout * k * k


def _conv(features, k, stride=1, padding="VALID"):
    return nn.Conv(features, (k, k), strides=(stride, stride), padding=padding, use_bias=False)


@pytest.mark.parametrize(
    "batch, hw, cin, cout, k, stride, expected",
    [
        (1, 10, 4, 5, 3, 1, _conv_flops(8, 8, 4, 5, 3)),  # VALID: 8x8 outputs
        (3, 10, 4, 5, 2, 2, 3 * _conv_flops(5, 5, 4, 5, 2)),  # 2x2/2 patchify, batch of 3
        (1, 16, 3, 8, 1, 1, _conv_flops(16, 16, 3, 8, 1)),
    ],
)
def test_conv_flops_match_hand_count(batch, hw, cin, cout, k, stride, expected):
    conv = _conv(cout, k, stride)
    x = jnp.zeros((batch, hw, hw, cin))
    params = jax.eval_shape(conv.init, jax.random.key(0), x)
    assert compiled_flops(lambda v, x: conv.apply(v, x), params, x) == expected


def test_padded_taps_are_not_counted():
    # 3x3 'SAME' on 10x10: along each axis the 10 outputs see 2, 3, ..., 3, 2 real input rows,
    # 28 in all, so 28 * 28 (output, tap) pairs per channel pair instead of 10 * 10 * 9.
    conv = _conv(5, 3, padding="SAME")
    x = jnp.zeros((1, 10, 10, 4))
    params = jax.eval_shape(conv.init, jax.random.key(0), x)
    assert compiled_flops(lambda v, x: conv.apply(v, x), params, x) == 2 * 28 * 28 * 4 * 5


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
    assert total == rows[0].flops + rows[1].flops


def test_layer_table_of_the_efficient_extractor_adds_up(extractors):
    module, variables = extractors["efficient"]
    rows, total = layer_table(module, image_size=32)
    assert rows[0].name == "stem" and rows[-1].name == "fc"
    assert sum(r.params for r in rows) == param_count(variables["params"])
    # Each conv layer costs at least its multiply-adds on the unpadded taps (the 2x2/2
    # downsampling convs have no padded taps on even sizes), plus BatchNorm and ReLU.
    stage1 = next(r for r in rows if r.name == "stage1_conv0")
    assert stage1.output_shape == (1, 16, 16, 32)
    assert stage1.flops > _conv_flops(16, 16, 8, 32, 2)
    # Work between the layers (pooling, concatenation) is small but not negative.
    assert 0 <= total - sum(r.flops for r in rows) < 0.01 * total


def test_step_memory_holds_the_state(efficient_model, efficient_step):
    model, variables, _ = efficient_model
    peak, temp = step_memory(efficient_step)
    n_params = param_count(variables["params"])
    # Parameters, Adam's two moments and the gradients are all float32 and all live at once.
    assert peak >= 4 * 4 * n_params
    assert 0 < temp < peak
    # The state is donated: time_train_step builds its own from the variables.
    times = time_train_step(efficient_step, model, 32, 4, steps=2, warmup=1,
                            variables=variables)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert np.all(np.isfinite(np.asarray(variables["params"]["decoder"]["out"]["bias"])))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        time_train_step(efficient_step, model, 32, 4, steps=0, variables=variables)


def _report(name, params, gflops, peak, seconds):
    return ExtractorReport(name=name, image_size=128, batch_size=32, extractor_params=params,
                           model_params=params + 100, extractor_gflops=gflops,
                           model_gflops=gflops + 0.01, step_peak_bytes=peak,
                           step_temp_bytes=peak // 2, step_seconds=seconds, backend="cpu")


def test_format_report_ratios():
    reports = [_report("efficient", 1000, 0.5, 300 * 2**20, 1.5),
               _report("resnet18", 4000, 1.0, 400 * 2**20, 2.0)]
    text = format_report(reports, "recon-jax flops --image-size 128 --batch-size 32")
    assert "`recon-jax flops --image-size 128 --batch-size 32`" in text
    assert "| efficient | 1,000 | 1,100 | 0.500 | 0.510 | 300.0 | 150.0 | 1.500 |" in text
    # params 0.25, GFLOPs 0.5, memory 0.75, time 0.75.
    ratios = "| efficient / resnet18 | 0.25 (-75%) | 0.50 (-50%) | 0.75 (-25%) | 0.75 (-25%) |"
    assert ratios in text
    untimed = format_report([_report("efficient", 1, 1.0, 1, None)], "cmd")
    assert "step s" not in untimed and "efficient / " not in untimed


def test_command_writes_its_section(tmp_path, capsys):
    out = tmp_path / "bench.md"
    out.write_text("# Benchmarks\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    args = ["flops", "--image-size", "32", "--batch-size", "2", "--num-points", "32",
            "--extractors", "efficient", "--steps", "0", "--output", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| efficient | 1,824,928 |" in printed
    text = out.read_text()
    assert "kept" in text and "<!-- begin flops -->" in text and "| efficient | 1,824,928 |" in text
    assert ("recon-jax flops --image-size 32 --batch-size 2 --num-points 32 --extractors "
            "efficient --steps 0") in text


def test_command_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["flops", "--image-size", "16", "--no-write", "--output", str(out)]) == 2
    assert "--image-size must be at least 32" in capsys.readouterr().err
    assert main(["flops", "--batch-size", "0", "--no-write"]) == 2
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_efficient_docstring_table_is_the_measurement():
    """The stage table in ``recon_jax.models.efficient``'s docstring matches ``layer_table``."""
    import recon_jax.models.efficient as efficient

    rows, total = layer_table(efficient.EfficientExtractor(), image_size=128)
    documented = {}
    for line in efficient.__doc__.splitlines():
        words = line.split()
        if words and words[0] in {r.name for r in rows} | {"total"}:
            documented[words[0]] = (int(words[-2].replace(",", "")), float(words[-1]))
    assert set(documented) == {r.name for r in rows} | {"total"}
    for r in rows:
        params, mflops = documented[r.name]
        assert params == r.params, r.name
        assert mflops == pytest.approx(r.flops / 1e6, abs=0.051), r.name
        # The output shape is written as "H x W x C" on the same line.
        h, w, c = r.output_shape[1:] if len(r.output_shape) == 4 else (None, None, None)
        if h is not None:
            assert any(f"{h} x {w} x {c}" in line for line in efficient.__doc__.splitlines()
                       if line.split()[:1] == [r.name])
    assert documented["total"] == (sum(r.params for r in rows),
                                   pytest.approx(total / 1e6, abs=0.051))
