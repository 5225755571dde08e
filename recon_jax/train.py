"""Training: state, the jitted data-parallel step, checkpoints, and the loop.

Reads top to bottom:

1. **State** -- :class:`TrainState` holds everything a resumed run needs: step, parameters,
   BatchNorm statistics, optimizer state and the base RNG key (the data position is saved
   beside it by the checkpoint manager).
2. **Loss** -- eq. 1 of Kim & Lee (2023): ``kl_weight * KL + cd_weight * CD + emd_weight * EMD``
   with the reductions of :mod:`recon_jax.losses` (each term a mean over the batch).
3. **Step** -- forward, losses, backward and the optax update in one ``jax.jit``, with the
   state donated. Data parallel over every local device: the batch is sharded along a
   one-axis ``Mesh`` ("data"), parameters are replicated, and XLA inserts the gradient
   all-reduce; BatchNorm statistics are computed over the global batch. The point losses run
   per device under ``jax.shard_map`` (each pair is independent; their solvers loop over the
   local pairs). Multi-host: each process feeds its own slice of the global batch through
   ``jax.make_array_from_process_local_data``.
4. **Checkpoints** -- orbax ``CheckpointManager``: asynchronous saves every ``eval_every``
   steps, the latest ``keep_checkpoints`` and the best by test CD are kept. Orbax writes into
   a temporary directory and renames it when complete, so a run killed mid-save leaves the
   previous checkpoints intact, and a restart resumes from the last complete step.
5. **Loop** -- :func:`train_and_evaluate` (what ``recon-jax train`` calls).

Per-step randomness (the reparameterisation noise) is ``fold_in(state.rng, step)``: it does
not depend on the number of devices or on where a run was interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from recon_jax import evaluate, inference
from recon_jax.losses import chamfer_distance, emd, kl_divergence
from recon_jax.metric_writers import MetricWriter, check_finite
from recon_jax.models.latent import LATENT_RNG
from recon_jax.models.reconstructor import Reconstructor, init_variables, make_model

__all__ = [
    "TrainState",
    "create_model",
    "create_optimizer",
    "create_train_state",
    "loss_terms",
    "make_mesh",
    "make_train_step",
    "shard_batch",
    "checkpoint_manager",
    "save_checkpoint",
    "restore_checkpoint",
    "quick_test_cd",
    "train_and_evaluate",
    "write_step_report",
    "emd_schedule",
]

DATA_AXIS = "data"


# ----------------------------------------------------------------------------------------------
# 1. State
# ----------------------------------------------------------------------------------------------
@flax.struct.dataclass
class TrainState:
    """Everything the step changes.

    Attributes:
      step: int32 scalar, number of updates applied.
      params: model parameters.
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
    """The :class:`Reconstructor` that ``config`` describes."""
    return make_model(
        config.encoder,
        num_points=config.num_points,
        latent_dim=config.latent_dim,
        feature_dim=config.feature_dim,
    )


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam(W) with linear warm-up and optional cosine decay, after global-norm clipping."""
    if config.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, max(config.warmup_steps, 1),
            max(config.num_steps, config.warmup_steps + 1),
        )
    elif config.schedule == "constant":
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1)),
             optax.constant_schedule(config.learning_rate)],
            [max(config.warmup_steps, 1)],
        )
    else:
        raise ValueError(f"config.schedule must be 'cosine' or 'constant', got {config.schedule!r}")
    if config.optimizer == "adam":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = optax.sgd(schedule, momentum=0.9)
    else:
        raise ValueError(f"config.optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")
    if config.grad_clip:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    return opt


def create_train_state(
    config: ml_collections.ConfigDict, model: Reconstructor, tx: optax.GradientTransformation
) -> TrainState:
    """A fresh state from ``config.seed`` (parameters from ``init_variables``)."""
    root = jax.random.PRNGKey(config.seed)
    init_key, rng = jax.random.split(root)
    variables = init_variables(model, init_key, image_size=config.image_size)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=rng,
    )


# ----------------------------------------------------------------------------------------------
# 2. Loss
# ----------------------------------------------------------------------------------------------
def emd_schedule(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``emd`` keyword arguments for the config's Sinkhorn schedule.

    ``config.emd_coarse_stages`` empty: ``{}`` (the library's default schedule, both parts);
    otherwise ``coarse_stages`` and ``fine_stages`` as given (``fine_stages`` may be empty).
    """
    coarse = tuple(tuple(stage) for stage in config.get("emd_coarse_stages", ()))
    fine = tuple(tuple(stage) for stage in config.get("emd_fine_stages", ()))
    return {"coarse_stages": coarse, "fine_stages": fine} if coarse else {}


def _per_example_point_losses(
    pred: jax.Array, target: jax.Array, *, use_cd: bool, use_emd: bool, reduction: str,
    emd_kwargs: Mapping[str, Any],
) -> tuple[jax.Array, jax.Array]:
    """Per-example CD and EMD, each ``[B]`` (zeros for a disabled term).

    ``reduction="sum"`` is eqs. 4-5 as written: CD sums the squared distances over the points
    of each cloud (both directions added), EMD sums the matched distances over the predicted
    points (``emd``'s per-point value times ``P``). ``"mean"`` divides each by its point count.
    ``emd_kwargs``: the Sinkhorn schedule (:func:`emd_schedule`).
    """
    zeros = jnp.zeros(pred.shape[:1], jnp.float32)
    cd = (chamfer_distance(pred, target, point_reduction=reduction, batch_reduction=None)
          if use_cd else zeros)
    em = emd(pred, target, batch_reduction=None, **emd_kwargs) if use_emd else zeros
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
      batch: ``image`` ``[B, H, W, 3]`` float32 (resized to ``config.image_size``) and
        ``points`` ``[B, N, 3]`` float32.
      key: the step's key for the reparameterisation noise.
    Returns:
      ``loss`` = ``kl_weight * kl + cd_weight * cd + emd_weight * emd``, where ``kl`` is eq. 3
      without its factor (summed over the latent), ``cd`` the squared Chamfer distance (eq. 4:
      the two directions added) and ``emd`` the Sinkhorn EMD (eq. 5, Euclidean), both summed
      over points (``config.point_reduction="sum"``, as the equations are written) or averaged
      (``"mean"``), and every term averaged over the batch. ``terms`` holds these four.
    """
    out, updates = model.apply(
        {"params": params, "batch_stats": batch_stats},
        inference.resize_images(batch["image"], config.image_size),
        train=True,
        rngs={LATENT_RNG: key},
        mutable=["batch_stats"],
    )
    kl = kl_divergence(out.mu, out.logvar, weight=1.0)
    point_losses = functools.partial(
        _per_example_point_losses, use_cd=config.cd_weight != 0, use_emd=config.emd_weight != 0,
        reduction=config.point_reduction, emd_kwargs=emd_schedule(config),
    )
    if mesh is not None:
        point_losses = jax.shard_map(
            point_losses, mesh=mesh, in_specs=(P(DATA_AXIS), P(DATA_AXIS)),
            out_specs=(P(DATA_AXIS), P(DATA_AXIS)),
            # The losses use no collectives; their scan carries are per-device values that
            # the varying-manual-axes check cannot infer from zero initialisers.
            check_vma=False,
        )
    cd, em = point_losses(out.points, batch["points"])
    cd, em = jnp.mean(cd), jnp.mean(em)
    loss = config.kl_weight * kl + config.cd_weight * cd + config.emd_weight * em
    return loss, ({"loss": loss, "kl": kl, "cd": cd, "emd": em}, updates["batch_stats"])


# ----------------------------------------------------------------------------------------------
# 3. Step and data parallelism
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
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in batch.items()
        if np.asarray(v).dtype.kind in "fiub"
    }


def _step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: Reconstructor,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: Mesh | None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    key = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(loss_terms, has_aux=True)
    (_, (terms, batch_stats)), grads = grad_fn(
        state.params, state.batch_stats, batch, key, model=model, config=config, mesh=mesh
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    terms["grad_norm"] = optax.tree.norm(grads)
    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    return new_state, terms


def make_train_step(
    model: Reconstructor,
    tx: optax.GradientTransformation,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The jitted step ``(state, batch) -> (state, metrics)``; the input state is donated.

    The state is replicated over ``mesh`` and the batch sharded along its "data" axis.
    """
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P(DATA_AXIS))
    step = functools.partial(_step, model=model, tx=tx, config=config, mesh=mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, data),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


# ----------------------------------------------------------------------------------------------
# 4. Checkpoints
# ----------------------------------------------------------------------------------------------
BEST_METRIC = "test_cd"


def checkpoint_manager(
    workdir: str, *, keep: int = 2, asynchronous: bool = True
) -> ocp.CheckpointManager:
    """Orbax manager for ``workdir/checkpoints``: keeps the latest ``keep`` and the best by test CD.

    Each checkpoint holds two items: ``state`` (the :class:`TrainState`) and ``data`` (the
    input iterator's position, JSON).
    """
    from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

    policy = pp.AnyPreservationPolicy([
        pp.LatestN(n=keep),
        # Sorted descending by CD, the last one (the lowest CD) is kept.
        pp.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True, n=1),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        enable_async_checkpointing=asynchronous,
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=options,
        item_names=("state", "data"),
    )


def save_checkpoint(
    manager: ocp.CheckpointManager,
    state: TrainState,
    data_state: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> None:
    """Start an asynchronous save of ``state`` and ``data_state`` at ``state.step``."""
    manager.save(
        int(state.step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(dict(data_state))
        ),
        metrics={k: float(v) for k, v in metrics.items()},
    )


def restore_checkpoint(
    manager: ocp.CheckpointManager, abstract_state: TrainState, step: int | None = None
) -> tuple[TrainState, dict[str, Any]] | None:
    """Restore ``step`` (default: the latest complete one); ``None`` if there is none.

    ``abstract_state``: a state (arrays or ``jax.ShapeDtypeStruct``) of the right structure.
    The arrays come back replicated over every device of this run, whatever devices or
    processes wrote them (train on several hosts, evaluate on one).
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    replicated = NamedSharding(make_mesh(), P())
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract_state)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], restored["data"]


# ----------------------------------------------------------------------------------------------
# 5. Loop
# ----------------------------------------------------------------------------------------------
def quick_test_cd(
    predict_fn: Callable[..., jax.Array],
    variables: Any,
    source: Any,
    *,
    views: int,
    batch_size: int,
) -> float:
    """Protocol CD (x100, unsquared, no ICP, mean of categories; SPEC section 6) on the first
    ``views`` views of every test model, without the EMD: a cheap signal for the best
    checkpoint. ``recon-jax eval`` computes the full table."""
    results = evaluate.evaluate_model(predict_fn, variables, source, batch_size=batch_size,
                                      views=list(range(views)), with_emd=False)
    return results["mean"]["cd"]


STEP_REPORT = "train_step.json"


def write_step_report(
    workdir: str, compiled: Any, model: Reconstructor, config: ml_collections.ConfigDict,
    mesh: Mesh,
) -> dict[str, Any]:
    """Write ``workdir/train_step.json``: what one compiled training step costs.

    Keys: ``encoder``, ``image_size``, ``num_points``, ``batch_size`` (global), ``devices``,
    ``backend``; ``model_params``/``extractor_params`` (trainable) and
    ``model_gflops``/``extractor_gflops`` (forward pass, one image, a multiply-add = 2 FLOPs:
    :func:`recon_jax.models.flops.forward_counts`); ``step_peak_bytes``/``step_temp_bytes``:
    XLA's buffer assignment of the step *per device* (arguments + outputs - donated aliases +
    temporaries: parameters, optimizer state, batch, activations, loss workspace), the
    figure :func:`recon_jax.models.flops.step_memory` defines. Only process 0 writes.
    """
    from recon_jax.models import flops

    peak, temp = flops.step_memory(compiled)
    report = {
        "encoder": config.encoder, "image_size": config.image_size,
        "num_points": config.num_points, "batch_size": config.batch_size,
        "devices": int(mesh.devices.size), "backend": jax.default_backend(),
        **flops.forward_counts(model, config.image_size),
        "step_peak_bytes": peak, "step_temp_bytes": temp,
    }
    if jax.process_index() == 0:
        with open(os.path.join(workdir, STEP_REPORT), "w") as f:
            json.dump(report, f, indent=2)
    return report


def _check_batch_size(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
    """This process's share of the global batch; it must split evenly over devices."""
    if config.batch_size % mesh.size:
        raise ValueError(
            f"config.batch_size={config.batch_size} must be a multiple of the number of "
            f"devices ({mesh.size})"
        )
    return config.batch_size // jax.process_count()


DATA_READY_TIMEOUT_S = 4 * 3600  # how long other processes wait for process 0's data


def _open_sources(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The train and test sources. With several processes, process 0 generates the synthetic
    set and prepares the TFDS copy (shared storage) while the others wait for it."""
    several, first = jax.process_count() > 1, jax.process_index() == 0

    def barrier() -> None:
        # A coordination-service barrier (no device collective: preparing the data can take
        # longer than a collective's set-up waits).
        ocp.multihost.sync_global_processes(
            "recon_jax_data_ready", timeout=DATA_READY_TIMEOUT_S,
            processes=set(range(jax.process_count())))

    if several and not first:
        barrier()
    sources = inference.open_source(config, "train"), inference.open_source(config, "test")
    if several and first:
        barrier()
    return sources


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_after: int | None = None,
) -> TrainState:
    """Train ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    Writes ``config.json``, ``metrics.jsonl`` (train records carry ``interval_s``, the wall
    seconds since the previous record: their sum is the training time), ``train_step.json``
    (:func:`write_step_report`), TensorBoard events and ``checkpoints/``. Every ``eval_every``
    steps (and at the end) the test CD is measured and a checkpoint saved. ``stop_after`` ends
    the loop after that many steps of this call (the schedule still spans ``config.num_steps``),
    as an interruption would; for tests.

    Raises:
      NonFiniteError: a loss term was NaN or Inf (the last checkpoint stays the last good one).
    """
    if jax.process_index() == 0:
        inference.save_config(config, workdir)
    mesh = make_mesh()
    model, tx = create_model(config), create_optimizer(config)
    local_batch = _check_batch_size(config, mesh)

    from recon_jax.data.pipeline import train_dataset

    train_source, test_source = _open_sources(config)
    data_iter = iter(train_dataset(
        train_source, batch_size=local_batch, num_points=config.target_points,
        views=config.views, seed=config.seed, num_workers=config.data_workers,
    ))

    manager = checkpoint_manager(workdir, keep=config.keep_checkpoints)
    state = create_train_state(config, model, tx)
    restored = restore_checkpoint(manager, state)
    if restored is not None:
        state, data_state = restored
        data_iter.set_state(data_state)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step_fn = make_train_step(model, tx, config, mesh)
    predict = inference.make_predict_fn(model, config.image_size)

    start_step = int(state.step)
    end_step = config.num_steps if stop_after is None else min(
        config.num_steps, start_step + stop_after)
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    bar = tqdm(total=config.num_steps, initial=start_step, desc="train", dynamic_ncols=True,
               disable=not config.progress_bar or jax.process_index() != 0)
    tic, images_seen = time.perf_counter(), 0
    compiled = None
    try:
        for step in range(start_step + 1, end_step + 1):
            batch = next(data_iter)
            batch = shard_batch({"image": batch["image"], "points": batch["points"]}, mesh)
            if compiled is None:  # compile once, explicitly, to record its cost
                compiled = step_fn.lower(state, batch).compile()
                write_step_report(workdir, compiled, model, config, mesh)
            state, metrics = compiled(state, batch)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            check_finite(step, metrics)
            images_seen += config.batch_size
            bar.update(1)
            if step % config.log_every == 0 or step == end_step:
                metrics["interval_s"] = time.perf_counter() - tic
                metrics["images_per_s"] = images_seen / metrics["interval_s"]
                tic, images_seen = time.perf_counter(), 0
                writer.write(step, metrics)
                bar.set_postfix({k: f"{metrics[k]:.4g}" for k in
                                 ("loss", "kl", "cd", "emd", "images_per_s")})
            if step % config.eval_every == 0 or step == config.num_steps:
                variables = {"params": state.params, "batch_stats": state.batch_stats}
                test_cd = quick_test_cd(predict, variables, test_source,
                                        views=config.eval_views, batch_size=config.batch_size)
                writer.write(step, {"cd_x100": test_cd}, split="test")
                save_checkpoint(manager, state, data_iter.get_state(), {BEST_METRIC: test_cd})
    finally:
        bar.close()
        writer.close()
        manager.wait_until_finished()
        manager.close()
    return state


# ----------------------------------------------------------------------------------------------
# Command line: recon-jax train --config FILE --workdir DIR [--config.field=value ...]
# ----------------------------------------------------------------------------------------------
def main_argv(argv: list[str]) -> int:
    """``recon-jax train``: absl flags so that ``--config.field=value`` overrides work."""
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", "experiments/configs/default.py", "ml_collections config file",
        flag_values=fv, lock_config=True)
    flags.DEFINE_string("workdir", None, "work directory (resumed if it holds checkpoints)",
                        flag_values=fv, required=True)
    flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() first (one "
                      "process per host). Slurm, Open MPI, Kubernetes and Cloud TPU set it up "
                      "from their environment; elsewhere give the three flags below",
                      flag_values=fv)
    flags.DEFINE_string("coordinator_address", None, "with --multihost: host:port of process "
                        "0's coordinator service", flag_values=fv)
    flags.DEFINE_integer("num_processes", None, "with --multihost: number of processes",
                         flag_values=fv)
    flags.DEFINE_integer("process_id", None, "with --multihost: this process's index, "
                         "0 .. num_processes - 1", flag_values=fv)
    if any(a in ("-h", "--help") for a in argv):
        print("usage: recon-jax train --config experiments/configs/default.py --workdir DIR "
              "[--config.FIELD=VALUE ...] [--multihost]\n")
        print(fv.main_module_help() or fv)
        return 0
    try:
        fv(["recon-jax train", *argv])
    except flags.Error as e:
        raise SystemExit(f"recon-jax train: {e}") from None
    if fv.multihost:
        jax.distributed.initialize(coordinator_address=fv.coordinator_address,
                                   num_processes=fv.num_processes, process_id=fv.process_id)
    elif any(v is not None for v in (fv.coordinator_address, fv.num_processes, fv.process_id)):
        raise SystemExit("recon-jax train: --coordinator_address, --num_processes and "
                         "--process_id need --multihost")
    config = fv.config
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} "
          f"({jax.process_count()} process(es)); workdir {fv.workdir}")
    train_and_evaluate(config, fv.workdir)
    return 0
