"""Training: the loss of eq. 1, the jitted data-parallel step, and the loop.

Reads top to bottom: **loss** (``kl_weight * KL + cd_weight * CD + emd_weight * EMD``, each term
a mean over the batch; CD/EMD summed or averaged over points by ``config.loss.point_reduction``),
**step** (forward, losses, backward and the optax update in one ``jax.jit``, state donated,
batch sharded along a one-axis ``Mesh`` "data", parameters replicated; the point losses run per
device under ``shard_map``), **loop** (:func:`train_and_evaluate`). The loop never waits on the
host between steps: metrics accumulate on the device and are fetched every
``config.run.log_every`` steps (where the NaN/Inf check runs), the next batch is on the devices
before it is needed, and only finite states are checkpointed. Multi-host: each process feeds its
slice of the global batch (``jax.make_array_from_process_local_data``). Nothing in the package
imports this module but the command line. Design notes: docs/design.md, "recon_jax.train".
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from recon_jax import checkpoints, configs, evaluate, measure, rundir
from recon_jax.data import pipeline, sources
from recon_jax.errors import UserError
from recon_jax.losses import SinkhornSchedule, chamfer_distance, emd, kl_divergence
from recon_jax.metric_writers import MetricWriter, NonFiniteError, check_finite, read_metrics
from recon_jax.models import LATENT_RNG, Reconstructor
from recon_jax.rundir import RunLock
from recon_jax.state import (
    TrainState,
    create_model,
    create_optimizer,
    create_train_state,
    is_finite,
    variables_of,
)

__all__ = [
    "DATA_AXIS", "RESUME_SECTIONS", "emd_schedule", "loss_terms", "make_mesh", "make_train_step",
    "shard_batch", "validate_config", "write_step_report", "train_and_evaluate",
]

DATA_AXIS = "data"
#: Sections of the config a resumed run must share with the saved one (``run.seed`` too);
#: the optimisation schedule's length, evaluation and logging intervals may change.
RESUME_SECTIONS = ("data", "model", "loss")


# ----------------------------------------------------------------------------------------------
# 1. Loss
# ----------------------------------------------------------------------------------------------
def emd_schedule(config: ml_collections.ConfigDict) -> SinkhornSchedule | None:
    """The training EMD's Sinkhorn schedule from ``config.loss`` (``None``: the default)."""
    coarse = tuple(tuple(stage) for stage in config.loss.emd_coarse_stages)
    fine = tuple(tuple(stage) for stage in config.loss.emd_fine_stages)
    return SinkhornSchedule(coarse_stages=coarse, fine_stages=fine) if coarse else None


def _per_example_point_losses(
    pred: jax.Array, target: jax.Array, *, use_cd: bool, use_emd: bool, reduction: str,
    schedule: SinkhornSchedule | None,
) -> tuple[jax.Array, jax.Array]:
    """Per-example CD and EMD, each ``[B]`` float32 (zeros for a disabled term).

    ``reduction="sum"`` is eqs. 4-5 as written: CD sums the squared distances over the points
    of each cloud (both directions added), EMD sums the matched distances over the predicted
    points (``emd``'s per-point value times ``P``). ``"mean"`` divides each by its point count.
    """
    pred = pred.astype(jnp.float32)
    zeros = jnp.zeros(pred.shape[:1], jnp.float32)
    cd = (chamfer_distance(pred, target, point_reduction=reduction, batch_reduction=None)
          if use_cd else zeros)
    em = emd(pred, target, batch_reduction=None, schedule=schedule) if use_emd else zeros
    if reduction == "sum":
        em = em * pred.shape[1]
    return cd, em


def loss_terms(
    params: Any,
    batch_stats: Any,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    *,
    model: Reconstructor,
    config: ml_collections.ConfigDict,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
    """Eq. 1 on one batch: returns ``(loss, (terms, new_batch_stats))``.

    Args:
      batch: ``image`` ``[B, H, W, 3]`` float32 (the model resizes it to its input size) and
        ``points`` ``[B, N, 3]`` float32.
      key: the step's key for the reparameterisation noise.
    Returns:
      ``loss = kl_weight * kl + cd_weight * cd + emd_weight * emd``: ``kl`` is eq. 3 without its
      factor (summed over the latent), ``cd`` the squared Chamfer distance (eq. 4, directions
      added), ``emd`` the Sinkhorn EMD (eq. 5, Euclidean), each a mean over the batch.
    """
    out, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, batch["image"], train=True,
        rngs={LATENT_RNG: key}, mutable=["batch_stats"])
    lc = config.loss
    kl = kl_divergence(out.mu, out.logvar, weight=1.0)
    point_losses = functools.partial(
        _per_example_point_losses, use_cd=lc.cd_weight != 0, use_emd=lc.emd_weight != 0,
        reduction=lc.point_reduction, schedule=emd_schedule(config))
    if mesh is not None:
        point_losses = jax.shard_map(
            point_losses, mesh=mesh, in_specs=(P(DATA_AXIS), P(DATA_AXIS)),
            out_specs=(P(DATA_AXIS), P(DATA_AXIS)),
            # The losses use no collectives; their scan carries are per-device values that
            # the varying-manual-axes check cannot infer from zero initialisers.
            check_vma=False)
    cd, em = point_losses(out.points, batch["points"])
    cd, em = jnp.mean(cd), jnp.mean(em)
    loss = lc.kl_weight * kl + lc.cd_weight * cd + lc.emd_weight * em
    return loss, ({"loss": loss, "kl": kl, "cd": cd, "emd": em}, updates["batch_stats"])


# ----------------------------------------------------------------------------------------------
# 2. Step and data parallelism
# ----------------------------------------------------------------------------------------------
def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-axis ("data") mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of the global batch -> global arrays sharded along "data".

    Each process passes its own ``[B / process_count, ...]`` arrays; the global batch is their
    concatenation in process order. Only numeric arrays are sent (strings stay on the host).
    """
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items() if np.asarray(v).dtype.kind in "fiub"}


def _step(state: TrainState, batch: Mapping[str, jax.Array], *, model: Reconstructor,
          tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
          mesh: Mesh | None) -> tuple[TrainState, dict[str, jax.Array]]:
    key = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(loss_terms, has_aux=True)
    (_, (terms, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, batch, key, model=model, config=config, mesh=mesh)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    terms["grad_norm"] = optax.tree.norm(grads)
    # 1 if the updated parameters and optimizer state are finite: a huge learning rate can make
    # NaN parameters from finite gradients.
    terms["state_finite"] = is_finite((params, opt_state)).astype(jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, terms


def make_train_step(
    model: Reconstructor, tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
    mesh: Mesh,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The jitted step ``(state, batch) -> (state, metrics)``; the input state is donated.

    The state is replicated over ``mesh`` and the batch sharded along its "data" axis.
    ``metrics``: ``loss``, ``kl``, ``cd``, ``emd``, ``grad_norm`` and ``state_finite`` (1/0).
    """
    replicated, data = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA_AXIS))
    step = functools.partial(_step, model=model, tx=tx, config=config, mesh=mesh)
    return jax.jit(step, in_shardings=(replicated, data), out_shardings=(replicated, replicated),
                   donate_argnums=(0,))


@jax.jit
def _accumulate(acc: dict[str, jax.Array], metrics: dict[str, jax.Array], step: jax.Array
                ) -> dict[str, jax.Array]:
    """Add ``metrics`` to the running sums; ``first_bad`` = first step with a non-finite term
    or state (-1 while there is none). Runs on the device: nothing is fetched."""
    bad = jnp.logical_not(jnp.all(jnp.stack(
        [jnp.isfinite(v) for v in metrics.values()])) & (metrics["state_finite"] > 0))
    first_bad = jnp.where((acc["first_bad"] < 0) & bad, step, acc["first_bad"])
    sums = {k: acc["sums"][k] + v for k, v in metrics.items()}
    return {"sums": sums, "count": acc["count"] + 1, "first_bad": first_bad}


def _zero_accumulator(metrics_shape: Mapping[str, Any]) -> dict[str, Any]:
    return {"sums": {k: jnp.zeros((), jnp.float32) for k in metrics_shape},
            "count": jnp.zeros((), jnp.int32), "first_bad": jnp.full((), -1, jnp.int32)}


def _prefetch(data_iter: Any, mesh: Mesh, size: int = 2
              ) -> Iterator[tuple[dict[str, jax.Array], dict[str, Any]]]:
    """``(device batch, data position after it)``, ``size`` batches ahead: the next batch is on
    the devices while the current step runs (``device_put`` is asynchronous)."""
    queue: collections.deque = collections.deque()

    def pull() -> None:
        batch = next(data_iter)
        batch = shard_batch({"image": batch["image"], "points": batch["points"]}, mesh)
        queue.append((batch, data_iter.get_state()))

    while True:
        while len(queue) < size:
            pull()
        yield queue.popleft()


# ----------------------------------------------------------------------------------------------
# 3. Loop
# ----------------------------------------------------------------------------------------------
def write_step_report(workdir: str, compiled: Any, model: Reconstructor,
                      config: ml_collections.ConfigDict, mesh: Mesh) -> dict[str, Any]:
    """Write ``workdir/train_step.json``: what one compiled training step costs.

    Keys: ``encoder``, ``image_size``, ``num_points``, ``batch_size`` (global), ``dtype``,
    ``devices``, ``backend``, the forward counts of :func:`recon_jax.measure.forward_counts`
    (parameters, GFLOPs per image with a multiply-add = 2 FLOPs) and ``step_peak_bytes`` /
    ``step_temp_bytes`` (:func:`recon_jax.measure.step_memory`, per device). Process 0 writes.
    """
    peak, temp = measure.step_memory(compiled)
    report = {
        "encoder": config.model.encoder, "image_size": config.model.image_size,
        "num_points": config.model.num_points, "batch_size": config.data.batch_size,
        "dtype": config.model.dtype, "devices": int(mesh.devices.size),
        "backend": jax.default_backend(), **measure.forward_counts(model),
        "step_peak_bytes": peak, "step_temp_bytes": temp,
    }
    if jax.process_index() == 0:
        with open(rundir.path(workdir, rundir.STEP_REPORT), "w") as f:
            json.dump(report, f, indent=2)
    return report


def validate_config(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> None:
    """Check the fields the loop relies on before anything compiles (:class:`UserError`)."""
    def positive(section: str, field: str, minimum: int = 1) -> None:
        value = config[section][field]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UserError(f"config field {section}.{field}: expected an integer >= {minimum}, "
                            f"got {value!r}")

    for section, field in (("optim", "num_steps"), ("run", "log_every"), ("eval", "every"),
                           ("eval", "views"), ("data", "batch_size"),
                           ("run", "keep_checkpoints")):
        positive(section, field)
    positive("optim", "warmup_steps", 0)
    positive("data", "workers", 0)
    if config.eval.views > 24:
        raise UserError(f"config field eval.views: expected 1..24, got {config.eval.views}")
    if config.loss.point_reduction not in ("sum", "mean"):
        raise UserError("config field loss.point_reduction: expected 'sum' or 'mean', got "
                        f"{config.loss.point_reduction!r}")
    if config.data.views not in ("all", "random"):
        raise UserError(f"config field data.views: expected 'all' or 'random', got "
                        f"{config.data.views!r}")
    if mesh is not None and config.data.batch_size % mesh.size:
        raise UserError(f"config field data.batch_size: {config.data.batch_size} must be a "
                        f"multiple of the number of devices ({mesh.size})")


def _check_resume(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse to resume a run whose data, model, loss or seed differ from ``config.json``."""
    saved = checkpoints.load_config(workdir)
    changed = configs.config_diff(saved, config, RESUME_SECTIONS)
    if saved.get("run", {}).get("seed") != config.run.seed:
        changed.append("run.seed")
    if changed:
        raise UserError(
            f"{rundir.path(workdir, rundir.CONFIG)}: this run was made with other values of "
            f"{', '.join(changed)}; resume with the saved config or use a new --workdir\n"
            "(only the schedule's length, evaluation, logging and checkpoint fields may change "
            "on a resume)")


def _trim_metrics(workdir: str, step: int) -> None:
    """Drop records after ``step`` from ``metrics.jsonl`` (a resume replays those steps), so
    each step is recorded once. Rewritten atomically."""
    path = rundir.path(workdir, rundir.METRICS)
    if not os.path.exists(path):
        return
    records = read_metrics(path)
    kept = [r for r in records if int(r["step"]) <= step]
    if len(kept) == len(records):
        return
    with open(path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(path + ".tmp", path)


def _fetch_and_check(acc: dict[str, Any], step: int) -> dict[str, float]:
    """Fetch the interval's metric means (a host transfer: logging steps only); raise
    :class:`NonFiniteError` naming the first bad step and the non-finite terms."""
    host = jax.device_get(acc)
    count = max(int(host["count"]), 1)
    means = {k: float(v) / count for k, v in host["sums"].items()}
    first_bad = int(host["first_bad"])
    if first_bad >= 0:
        terms = {k: v for k, v in means.items() if k != "state_finite"}
        if means.get("state_finite", 1.0) < 1.0:
            terms["state"] = math.nan
        check_finite(first_bad, terms)
        raise NonFiniteError(f"non-finite parameters after the update at step {first_bad}")
    means.pop("state_finite", None)
    return means


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> TrainState:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Writes ``config.json`` (after a successful restore or on a fresh start), ``metrics.jsonl``
    (train records carry ``interval_s``, the wall seconds since the previous record),
    ``train_step.json``, TensorBoard events and ``checkpoints/``. Every ``config.eval.every``
    steps (and at the end) the test CD is measured and a checkpoint saved with it. ``stop_after``
    ends the loop after that many steps of this call, as an interruption would (for tests).

    Raises:
      UserError: a bad config field, a resume with other data/model/loss fields, a work
        directory that is not writable or is used by another ``train``.
      NonFiniteError: a loss term or the updated state was NaN or Inf (the last checkpoint on
        disk stays the last finite one).
    """
    mesh = make_mesh()
    validate_config(config, mesh)
    first = jax.process_index() == 0
    if first:
        rundir.ensure_writable_dir(workdir, "work directory")
    with RunLock(workdir, enabled=first, log=log):
        return _train(config, workdir, mesh, stop_after=stop_after, log=log)


def _train(config: ml_collections.ConfigDict, workdir: str, mesh: Mesh, *,
           stop_after: int | None, log: Callable[[str], None]) -> TrainState:
    first = jax.process_index() == 0
    model, tx = create_model(config), create_optimizer(config)
    manager = checkpoints.checkpoint_manager(workdir, keep=config.run.keep_checkpoints)
    try:
        if manager.latest_step() is not None:
            _check_resume(config, workdir)
        state = create_train_state(config, model, tx)
        restored = checkpoints.restore_checkpoint(manager, state)
        if first:  # only now: a failed restore leaves the saved config as it was
            with open(rundir.path(workdir, rundir.CONFIG), "w") as f:
                f.write(config.to_json(indent=2))
        num_steps = config.optim.num_steps
        start_step = 0 if restored is None else int(restored[0].step)
        if start_step >= num_steps:
            log(f"nothing to do: run complete at step {start_step} of {num_steps} ({workdir})")
            return restored[0]
        if restored is not None:
            log(f"resuming from step {start_step} of {num_steps} ({workdir})")
            if first:
                _trim_metrics(workdir, start_step)
        return _loop(config, workdir, mesh, model, tx, manager, state, restored,
                     stop_after=stop_after)
    finally:
        manager.wait_until_finished()
        manager.close()


def _loop(config, workdir, mesh, model, tx, manager, state, restored, *, stop_after):
    first = jax.process_index() == 0
    train_source, test_source = sources.open_sources(config.data, ("train", "test"))
    data_iter = iter(pipeline.train_dataset(
        train_source, batch_size=config.data.batch_size // jax.process_count(),
        num_points=config.data.target_points, views=config.data.views, seed=config.run.seed,
        num_workers=config.data.workers))
    if restored is not None:
        state, data_state = restored
        data_iter.set_state(data_state)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step_fn = make_train_step(model, tx, config, mesh)
    predict = evaluate.make_predict_fn(model)

    start_step, num_steps = int(state.step), config.optim.num_steps
    end_step = num_steps if stop_after is None else min(num_steps, start_step + stop_after)
    writer = MetricWriter(workdir, enabled=first)
    bar = tqdm(total=num_steps, initial=start_step, desc="train", dynamic_ncols=True,
               disable=not config.run.progress_bar or not first)
    batches = _prefetch(data_iter, mesh)
    tic, logged_step = time.perf_counter(), start_step
    compiled, acc = None, None
    try:
        for step in range(start_step + 1, end_step + 1):
            batch, data_state = next(batches)
            if compiled is None:  # compile once, explicitly, to record its cost
                compiled = step_fn.lower(state, batch).compile()
                write_step_report(workdir, compiled, model, config, mesh)
            state, metrics = compiled(state, batch)
            if acc is None:
                acc = _zero_accumulator(metrics)
            acc = _accumulate(acc, metrics, jnp.int32(step))
            bar.update(1)
            evaluating = step % config.eval.every == 0 or step == num_steps
            if step % config.run.log_every == 0 or step == end_step or evaluating:
                means = _fetch_and_check(acc, step)
                acc = None
                interval = time.perf_counter() - tic
                means["interval_s"] = interval
                means["images_per_s"] = (step - logged_step) * config.data.batch_size / interval
                tic, logged_step = time.perf_counter(), step
                writer.write(step, means)
                bar.set_postfix({k: f"{means[k]:.4g}" for k in
                                 ("loss", "kl", "cd", "emd", "images_per_s")})
            if evaluating:
                test_cd = evaluate.quick_test_cd(
                    predict, variables_of(state), test_source, views=config.eval.views,
                    batch_size=config.data.batch_size)
                writer.write(step, {"cd_x100": test_cd}, split="test")
                checkpoints.save_checkpoint(manager, state, data_state,
                                            {checkpoints.BEST_METRIC: test_cd})
    finally:
        bar.close()
        writer.close()
        close = getattr(data_iter, "close", None)
        if close is not None:
            close()
    return state
