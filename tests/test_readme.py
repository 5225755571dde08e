"""The README's Python example runs as written and gives what its comments say."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_losses_example_runs():
    text = open(README).read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "no python example in the README"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["g"].shape == (4, 2048, 3) and np.isfinite(np.asarray(scope["g"])).all()
    exact, approx = np.asarray(scope["exact"]), float(scope["e"])
    assert exact.shape == (4,)
    np.testing.assert_allclose(approx, exact.mean(), rtol=0.02)  # Sinkhorn ~ exact
