"""``recon_jax.losses`` as a light, self-contained library, and its documented example."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "losses.md"
TRAINING_STACK = ("flax", "tensorflow_datasets", "tensorflow", "grain", "orbax", "matplotlib",
                  "tensorboardX", "ml_collections")

# ott-jax imports flax and matplotlib only when they are installed (its neural and plotting
# extras), as here for training: blocking them shows recon_jax.losses runs without them, as in a
# plain install; the rest of the training stack must not be imported at all.
SCRIPT = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("flax", "matplotlib"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
import recon_jax.losses as L
x = np.random.default_rng(0).normal(size=(2, 32, 3)).astype(np.float32)
y = x[:, ::-1] + 0.1
values = [L.chamfer_distance(x, y), L.emd(x, y), L.exact_emd(x, y).mean(),
          L.kl_divergence(x[:, :, 0], x[:, :, 1])]
assert all(np.isfinite(float(v)) for v in values), values
print(sorted({{m.partition(".")[0] for m in sys.modules}} & set({TRAINING_STACK!r})))
"""


def test_losses_import_none_of_the_training_stack():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_docs_example_runs():
    text = DOC.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert block, f"no python example in {DOC}"
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    assert np.isfinite(float(namespace["loss"]))
