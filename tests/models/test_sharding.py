"""BatchNorm under a batch-sharded ``jit``: the statistics are those of the global batch.

Runs in a subprocess because the fake CPU devices must be requested before JAX starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from recon_jax.models import make_extractor

    assert len(jax.devices()) == 4, jax.devices()
    module = make_extractor("efficient")
    # Images whose scale differs per example: per-device statistics would differ a lot.
    x = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
    x = x * jnp.arange(1.0, 9.0)[:, None, None, None]
    variables = jax.jit(module.init)(jax.random.key(1, impl="rbg"), x[:1])
    train = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))
    single, single_stats = train(variables, x)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded, sharded_stats = train(jax.device_put(variables, NamedSharding(mesh, P())),
                                   jax.device_put(x, NamedSharding(mesh, P("data"))))
    assert len(sharded.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree.leaves(sharded_stats), jax.tree.leaves(single_stats)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    print("ok")
    """
)


def test_batchnorm_statistics_are_global_under_sharded_jit():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
