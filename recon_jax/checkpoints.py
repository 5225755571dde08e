"""Checkpoints of a work directory: the orbax manager, save, restore, and a run's variables.

Each checkpoint ``WORKDIR/checkpoints/<step>/`` holds the :class:`~recon_jax.state.TrainState`
(``state``), the input iterator's position (``data``, JSON) and the step's metrics (orbax's
``metrics`` item, ``{"test_cd": CD x100}``). The manager keeps the latest ``keep`` checkpoints
and the one of lowest test CD (``best_step()`` really selects it: ``best_fn`` is set, so the
metrics are stored). Saves are asynchronous; orbax writes into a temporary directory and renames
it when complete, so a run killed mid-save keeps its previous checkpoints. Only finite states
are saved (:func:`save_checkpoint` refuses others). Restored arrays are replicated over every
device of this process set, whatever devices wrote them.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from recon_jax import rundir
from recon_jax.errors import UserError
from recon_jax.models import Reconstructor
from recon_jax.state import (
    TrainState,
    create_model,
    create_optimizer,
    create_train_state,
    is_finite,
    variables_of,
)

__all__ = [
    "BEST_METRIC", "CHECKPOINTS", "NonFiniteStateError", "checkpoint_manager",
    "save_checkpoint", "restore_checkpoint", "load_config", "load_variables",
]

#: The metric stored with every checkpoint; the best checkpoint has its lowest value.
BEST_METRIC = "test_cd"
#: Which parameters of a run to load: best by test CD, latest, or the untrained initialisation.
CHECKPOINTS = ("best", "latest", "init")


class NonFiniteStateError(FloatingPointError):
    """A state with NaN or Inf values was about to be saved (it was not)."""


def _best_value(metrics: Mapping[str, float]) -> float:
    value = float(metrics[BEST_METRIC])
    return value if math.isfinite(value) else math.inf  # a NaN score is never the best


def checkpoint_manager(
    workdir: str, *, keep: int = 2, asynchronous: bool = True, read_only: bool = False
) -> ocp.CheckpointManager:
    """Orbax manager of ``workdir/checkpoints``: the latest ``keep`` plus the best by test CD."""
    if keep < 1:
        raise UserError(f"config field run.keep_checkpoints: expected >= 1, got {keep}")
    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=keep),
        # Sorted descending by CD, the last one (the lowest CD) is kept.
        pp.BestN(get_metric_fn=_best_value, reverse=True, n=1,
                 keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=_best_value,
        best_mode="min",
        enable_async_checkpointing=asynchronous,
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), rundir.CHECKPOINTS),
        options=options,
        item_names=("state", "data"),
    )


def save_checkpoint(
    manager: ocp.CheckpointManager,
    state: TrainState,
    data_state: Mapping[str, Any],
    metrics: Mapping[str, float],
    *,
    finite: bool | jax.Array | None = None,
) -> None:
    """Start an asynchronous save of ``state``, ``data_state`` and ``metrics`` at ``state.step``.

    ``finite``: whether ``state`` is free of NaN/Inf, if already computed on the device
    (:func:`recon_jax.state.is_finite`); else it is computed here.

    Raises:
      NonFiniteStateError: the state holds NaN or Inf; nothing is written.
    """
    ok = bool(jax.device_get(is_finite(state) if finite is None else finite))
    if not ok:
        raise NonFiniteStateError(
            f"non-finite parameters or optimizer state at step {int(state.step)}: not saved "
            "(the last checkpoint on disk is the last finite state)")
    manager.save(
        int(state.step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(dict(data_state))),
        metrics={k: float(v) for k, v in metrics.items()},
    )


def _replicated(mesh: Mesh | None = None) -> NamedSharding:
    mesh = mesh or Mesh(np.asarray(jax.devices()), ("data",))
    return NamedSharding(mesh, P())


def restore_checkpoint(
    manager: ocp.CheckpointManager, abstract_state: TrainState, step: int | None = None
) -> tuple[TrainState, dict[str, Any]] | None:
    """Restore ``step`` (default: the latest complete one); ``None`` if there is none.

    ``abstract_state``: a state (arrays or ``jax.ShapeDtypeStruct``) of the right structure.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    replicated = _replicated()
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()),
    )
    return restored["state"], restored["data"]


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """Read ``workdir/config.json``; a :class:`UserError` if ``workdir`` holds no training run."""
    path = rundir.path(workdir, rundir.CONFIG)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: is {workdir!r} a work directory of `recon-jax train`?")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable config ({e})") from None


def load_variables(
    workdir: str, *, which: str = "best"
) -> tuple[ml_collections.ConfigDict, Reconstructor, dict[str, Any], int]:
    """The model and ``{"params", "batch_stats"}`` of a run: its ``best`` checkpoint (lowest
    test CD), its ``latest``, or ``init``, the untrained initialisation (step 0).

    Returns:
      ``(config, model, variables, step)``.
    """
    if which not in CHECKPOINTS:
        raise UserError(f"checkpoint must be one of {CHECKPOINTS}, got {which!r}")
    config = load_config(workdir)
    model = create_model(config)
    tx = create_optimizer(config)
    if which == "init":
        state = create_train_state(config, model, tx)
        return config, model, variables_of(state), 0
    abstract = jax.eval_shape(lambda: create_train_state(config, model, tx))
    directory = rundir.path(workdir, rundir.CHECKPOINTS)
    if not os.path.isdir(directory):
        raise UserError(f"{directory}: no checkpoints (has `recon-jax train` saved one yet?)")
    manager = checkpoint_manager(workdir, keep=config.run.keep_checkpoints, asynchronous=False,
                                 read_only=True)
    try:
        step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None and which == "best" and manager.latest_step() is not None:
            step = manager.latest_step()
            warnings.warn(f"{directory}: no checkpoint stores its test CD (a run saved before "
                          f"metrics were stored); using the latest, step {step}", stacklevel=2)
        if step is None:
            raise UserError(f"{directory}: no complete checkpoint")
        state, _ = restore_checkpoint(manager, abstract, step)
    finally:
        manager.close()
    return config, model, variables_of(state), step
