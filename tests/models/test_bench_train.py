"""The timing harness of ``experiments/bench_train.py``: its Chamfer step and step timer."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.conftest import load_experiment


def test_time_chamfer_step_leaves_the_variables_valid(efficient_model, efficient_step):
    bench = load_experiment("bench_train")
    model, variables, _ = efficient_model
    # The state is donated: time_chamfer_step builds its own from the variables.
    times = bench.time_chamfer_step(efficient_step, model, 4, steps=2, warmup=1,
                                    variables=variables)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert np.all(np.isfinite(np.asarray(variables["params"]["decoder"]["out"]["bias"])))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        bench.time_chamfer_step(efficient_step, model, 4, steps=0, variables=variables)


def test_step_inputs_are_the_timed_inputs():
    bench = load_experiment("bench_train")
    images, points = bench.step_inputs(8, 3, 5, seed=1)
    assert images.shape == (3, 8, 8, 3) and points.shape == (3, 5, 3)
    assert images.dtype == points.dtype == np.float32
    again = bench.step_inputs(8, 3, 5, seed=1)
    np.testing.assert_array_equal(jnp.asarray(images), again[0])
    assert not np.allclose(bench.step_inputs(8, 3, 5, seed=2)[0], images)
