"""The training state and its factories: model, optimizer and initial state from a config.

:class:`TrainState` holds everything a resumed run needs besides the data position: step,
parameters, BatchNorm statistics, optimizer state and the base RNG key (the key of step ``t``
is ``fold_in(rng, t)``, so it does not depend on the devices or on where a run stopped).
``config`` is the nested config of ``experiments/configs/default.py``: the model is built from
``config.model`` whole, the optimizer from ``config.optim``, the initial state from
``config.run.seed``.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from recon_jax.errors import UserError
from recon_jax.models import Reconstructor, build_model, init_variables

__all__ = [
    "TrainState", "create_model", "create_optimizer", "create_train_state", "variables_of",
    "is_finite",
]


@flax.struct.dataclass
class TrainState:
    """Everything the step changes.

    Attributes:
      step: int32 scalar, number of updates applied.
      params: model parameters (float32).
      batch_stats: BatchNorm running statistics.
      opt_state: optax state.
      rng: uint32 ``[2]`` base key; the key of step ``t`` is ``fold_in(rng, t)``.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


def create_model(config: ml_collections.ConfigDict) -> Reconstructor:
    """The :class:`Reconstructor` that ``config.model`` describes."""
    return build_model(config.model)


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam(W) or SGD with linear warm-up and optional cosine decay (``config.optim``), after
    global-norm clipping when ``grad_clip`` > 0."""
    o = config.optim
    warmup = max(int(o.warmup_steps), 1)
    if o.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, o.learning_rate, warmup, max(int(o.num_steps), warmup + 1))
    elif o.schedule == "constant":
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, o.learning_rate, warmup),
             optax.constant_schedule(o.learning_rate)], [warmup])
    else:
        raise UserError(f"config field optim.schedule: expected 'cosine' or 'constant', "
                        f"got {o.schedule!r}")
    if o.optimizer == "adam":
        opt = optax.adamw(schedule, weight_decay=o.weight_decay)
    elif o.optimizer == "sgd":
        opt = optax.sgd(schedule, momentum=0.9)
    else:
        raise UserError(f"config field optim.optimizer: expected 'adam' or 'sgd', "
                        f"got {o.optimizer!r}")
    if o.grad_clip:
        opt = optax.chain(optax.clip_by_global_norm(o.grad_clip), opt)
    return opt


def create_train_state(
    config: ml_collections.ConfigDict, model: Reconstructor, tx: optax.GradientTransformation
) -> TrainState:
    """A fresh state from ``config.run.seed`` (parameters from ``init_variables``)."""
    init_key, rng = jax.random.split(jax.random.PRNGKey(config.run.seed))
    variables = init_variables(model, init_key)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=rng,
    )


def variables_of(state: TrainState) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of ``state``: what ``model.apply`` takes."""
    return {"params": state.params, "batch_stats": state.batch_stats}


def is_finite(tree: Any) -> jax.Array:
    """Scalar bool: every floating-point leaf of ``tree`` is free of NaN and Inf."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
