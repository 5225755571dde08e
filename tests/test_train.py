"""Training end to end on the tiny config: the loop, checkpoints, resumes, and their failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from recon_jax import checkpoints, evaluate, rundir, state, train
from recon_jax.errors import UserError
from recon_jax.metric_writers import NonFiniteError, read_metrics

from .conftest import tiny_config


def _params(s):
    return jax.tree.leaves(jax.device_get(s.params))


def test_training_logs_falling_finite_losses_once_per_log_step(trained):
    workdir, config = trained
    records = read_metrics(rundir.path(workdir, rundir.METRICS), split="train")
    assert [r["step"] for r in records] == list(range(2, 13, 2))
    losses = [r["loss"] for r in records]
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
    assert {"kl", "cd", "emd", "grad_norm", "images_per_s", "interval_s"} <= set(records[0])
    assert "state_finite" not in records[0]  # an internal flag, not a metric
    tests = read_metrics(rundir.path(workdir, rundir.METRICS), split="test")
    assert [r["step"] for r in tests] == [6, 12]
    assert os.listdir(rundir.path(workdir, "tensorboard/train"))
    saved = json.load(open(rundir.path(workdir, rundir.CONFIG)))
    assert saved == json.loads(config.to_json())


def test_checkpoints_store_their_test_cd(trained):
    workdir, _ = trained
    manager = checkpoints.checkpoint_manager(workdir, asynchronous=False, read_only=True)
    try:
        tests = {r["step"]: r["cd_x100"] for r in
                 read_metrics(rundir.path(workdir, rundir.METRICS), split="test")}
        assert manager.all_steps() == [6, 12]
        for step in (6, 12):
            assert manager.metrics(step) == {"test_cd": pytest.approx(tests[step])}
        assert manager.best_step() == min(tests, key=tests.get)
    finally:
        manager.close()


def test_step_report_matches_independent_counts(trained):
    workdir, config = trained
    report = json.load(open(rundir.path(workdir, rundir.STEP_REPORT)))
    _, _, variables, _ = checkpoints.load_variables(workdir)
    n_params = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    assert report["model_params"] == n_params
    assert 0 < report["extractor_params"] < n_params
    assert 0 < report["extractor_gflops"] < report["model_gflops"]
    # Peak memory holds at least the parameters and Adam's two moments (float32).
    assert report["step_peak_bytes"] >= 3 * 4 * n_params
    assert report["batch_size"] == config.data.batch_size and report["devices"] == 1


def _fake_test_cd(monkeypatch, values):
    """Make the periodic test CD return ``values[step]`` (the step is read from the state)."""
    def fake(predict_fn, variables, source, *, views, batch_size):
        return values.pop(0)

    monkeypatch.setattr(evaluate, "quick_test_cd", fake)


def test_best_checkpoint_is_the_lowest_test_cd_and_eval_uses_it(data_dir, tmp_path,
                                                                  monkeypatch):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "optim.num_steps=6", "eval.every=2",
                         "run.keep_checkpoints=1")
    _fake_test_cd(monkeypatch, [5.0, 3.0, 4.0])  # steps 2, 4, 6: the best is step 4
    train.train_and_evaluate(config, workdir, log=lambda _: None)
    monkeypatch.undo()
    # kept: the latest (6) and the best (4); step 2 deleted
    assert sorted(int(d) for d in os.listdir(rundir.path(workdir, rundir.CHECKPOINTS))) == [4, 6]
    _, _, best, step = checkpoints.load_variables(workdir, which="best")
    _, _, latest, latest_step = checkpoints.load_variables(workdir, which="latest")
    assert (step, latest_step) == (4, 6)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(best), jax.tree.leaves(latest), strict=True))
    results, _ = evaluate.evaluate_workdir(workdir, views=1, icp=False, workers=1,
                                           progress=False)
    assert results["step"] == 4 and results["checkpoint"] == "best"


def test_resume_is_exact_and_logs_each_step_once(data_dir, tmp_path):
    config = tiny_config(data_dir, "optim.num_steps=6", "eval.every=2", "run.log_every=1",
                         "run.keep_checkpoints=1")
    straight = train.train_and_evaluate(config, str(tmp_path / "a"), log=lambda _: None)
    b = str(tmp_path / "b")
    first = train.train_and_evaluate(config, b, stop_after=3, log=lambda _: None)
    assert int(first.step) == 3
    # Checkpoints at 2 (and none at 3): the resumed run replays step 3 from step 2's state
    # and data position, and metrics.jsonl loses its record of the first step 3.
    messages = []
    resumed = train.train_and_evaluate(config, b, log=messages.append)
    assert messages == [f"resuming from step 2 of 6 ({b})"]
    assert int(resumed.step) == 6
    for x, y in zip(_params(straight), _params(resumed), strict=True):
        np.testing.assert_array_equal(x, y)
    steps = [r["step"] for r in read_metrics(rundir.path(b, rundir.METRICS), split="train")]
    assert steps == [1, 2, 3, 4, 5, 6]
    # keep_checkpoints=1 honoured across the restart: the latest plus the best, no more
    assert len(os.listdir(rundir.path(b, rundir.CHECKPOINTS))) <= 2
    messages.clear()
    again = train.train_and_evaluate(config, b, log=messages.append)
    assert int(again.step) == 6
    assert messages == [f"nothing to do: run complete at step 6 of 6 ({b})"]


def test_resume_ignores_a_half_written_checkpoint(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2")
    train.train_and_evaluate(config, workdir, stop_after=2, log=lambda _: None)
    ckpt = rundir.path(workdir, rundir.CHECKPOINTS)
    assert os.listdir(ckpt) == ["2"]
    # What a kill in the middle of saving step 4 leaves: orbax's temporary directory, with
    # truncated files and no commit.
    partial = os.path.join(ckpt, "4.orbax-checkpoint-tmp-1234567")
    shutil.copytree(os.path.join(ckpt, "2"), partial)
    for dirpath, _, files in os.walk(partial):
        for name in files:
            with open(os.path.join(dirpath, name), "r+b") as f:
                f.truncate(max(0, os.path.getsize(f.name) // 2))
    s = train.train_and_evaluate(config, workdir, log=lambda _: None)
    assert int(s.step) == 4
    assert sorted(os.listdir(ckpt)) == ["2", "4"]


def test_resume_with_other_model_fields_is_refused_and_leaves_the_run_intact(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2")
    train.train_and_evaluate(config, workdir, stop_after=2, log=lambda _: None)
    saved = open(rundir.path(workdir, rundir.CONFIG)).read()
    changed = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2", "model.num_points=64",
                          "loss.kl_weight=1.0")
    with pytest.raises(UserError, match=r"loss\.kl_weight, model\.num_points.*\n.*may change"):
        train.train_and_evaluate(changed, workdir, log=lambda _: None)
    assert open(rundir.path(workdir, rundir.CONFIG)).read() == saved
    _, _, _, step = checkpoints.load_variables(workdir, which="latest")
    assert step == 2
    # a longer schedule is allowed
    longer = tiny_config(data_dir, "optim.num_steps=6", "eval.every=2")
    assert int(train.train_and_evaluate(longer, workdir, log=lambda _: None).step) == 6


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2")
    train.train_and_evaluate(config, workdir, stop_after=2, log=lambda _: None)
    real_shard = train.shard_batch

    def poisoned(batch, mesh):
        batch = dict(batch)
        batch["points"] = np.full_like(batch["points"], np.nan)
        return real_shard(batch, mesh)

    monkeypatch.setattr(train, "shard_batch", poisoned)
    with pytest.raises(NonFiniteError, match=r"step 3: .*cd=nan"):
        train.train_and_evaluate(config, workdir, log=lambda _: None)
    assert os.listdir(rundir.path(workdir, rundir.CHECKPOINTS)) == ["2"]
    _, _, variables, step = checkpoints.load_variables(workdir, which="latest")
    assert step == 2 and all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


def test_a_diverging_update_never_reaches_disk(data_dir, tmp_path):
    """Finite loss and gradients, but an infinite learning rate makes NaN parameters."""
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2")
    train.train_and_evaluate(config, workdir, stop_after=2, log=lambda _: None)
    diverging = tiny_config(data_dir, "optim.num_steps=4", "eval.every=2",
                            "optim.learning_rate=1e39", "optim.schedule='constant'")
    with pytest.raises(NonFiniteError, match="step 3"):
        train.train_and_evaluate(diverging, workdir, log=lambda _: None)
    assert os.listdir(rundir.path(workdir, rundir.CHECKPOINTS)) == ["2"]
    _, _, variables, step = checkpoints.load_variables(workdir, which="latest")
    assert step == 2 and all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


def test_save_checkpoint_refuses_a_non_finite_state(data_dir, tmp_path):
    config = tiny_config(data_dir)
    model, tx = state.create_model(config), state.create_optimizer(config)
    s = state.create_train_state(config, model, tx)
    bad = s.replace(params=jax.tree.map(lambda x: x * np.nan, s.params))
    manager = checkpoints.checkpoint_manager(str(tmp_path), asynchronous=False)
    with pytest.raises(checkpoints.NonFiniteStateError, match="step 0"):
        checkpoints.save_checkpoint(manager, bad, {}, {"test_cd": 1.0})
    manager.close()
    assert not os.listdir(tmp_path / "checkpoints")


def test_a_second_training_on_the_same_workdir_is_refused(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    config = tiny_config(data_dir, "optim.num_steps=2", "eval.every=2")
    with rundir.RunLock(workdir):
        with pytest.raises(UserError, match=rf"process {os.getpid()}\) is using this work"):
            train.train_and_evaluate(config, workdir, log=lambda _: None)
    # a lock file left by a dead process (no flock held) is taken over, with a message
    with open(rundir.path(workdir, rundir.LOCK), "w") as f:
        f.write("999999")
    messages = []
    train.train_and_evaluate(config, workdir, log=messages.append)
    assert any("stale lock of process 999999" in m for m in messages)


@pytest.mark.parametrize("override,field", [
    ("run.log_every=0", "run.log_every"), ("data.batch_size=-4", "data.batch_size"),
    ("eval.views=30", "eval.views"), ("loss.point_reduction='max'", "loss.point_reduction"),
])
def test_bad_fields_are_refused_before_anything_compiles(data_dir, tmp_path, override, field):
    config = tiny_config(data_dir, override)
    with pytest.raises(UserError, match=rf"config field {field}"):
        train.train_and_evaluate(config, str(tmp_path / "run"), log=lambda _: None)
    assert not os.path.exists(tmp_path / "run")


def test_a_file_shaped_workdir_is_a_clear_error(data_dir, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, expected a directory"):
        train.train_and_evaluate(tiny_config(data_dir), str(tmp_path / "file"),
                                 log=lambda _: None)


def test_the_loop_fetches_from_the_device_only_on_log_and_eval_steps(data_dir, tmp_path,
                                                                   monkeypatch):
    """Between logging steps nothing comes back to the host: implicit device-to-host transfers
    are disallowed for the whole run, and the explicit fetch happens on logging steps only."""
    config = tiny_config(data_dir, "optim.num_steps=8", "eval.every=8", "run.log_every=4")
    fetched = []
    real_fetch = train._fetch_and_check
    monkeypatch.setattr(train, "_fetch_and_check",
                        lambda acc, step: fetched.append(step) or real_fetch(acc, step))
    with jax.transfer_guard_device_to_host("disallow"):
        train.train_and_evaluate(config, str(tmp_path / "run"), log=lambda _: None)
    assert fetched == [4, 8]


EIGHT_DEVICES = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import tiny_config
    from recon_jax import state, train
    assert jax.device_count() == 8
    # SGD: the update is linear in the gradient, so summation-order noise stays at float32
    # rounding (Adam's first steps are ~lr * sign(g) and amplify it on near-zero gradients).
    config = tiny_config("unused", "data.batch_size=8", "optim.optimizer='sgd'")
    model, tx = state.create_model(config), state.create_optimizer(config)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=(8, 128, 128, 3)).astype(np.float32),
             "points": rng.normal(size=(8, 1024, 3)).astype(np.float32)}
    init = jax.device_get(state.create_train_state(config, model, tx))
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.make_mesh(devices)
        s = jax.device_put(state.create_train_state(config, model, tx),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        step = train.make_train_step(model, tx, config, mesh)
        for _ in range(2):
            s, metrics = step(s, train.shard_batch(batch, mesh))
        results.append((jax.device_get(s), jax.device_get(metrics)))
    (s1, m1), (s8, m8) = results
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(s1.batch_stats), jax.tree.leaves(s8.batch_stats)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for p0, a, b in zip(jax.tree.leaves(init.params), jax.tree.leaves(s1.params),
                        jax.tree.leaves(s8.params)):
        # The two-step updates agree to 1% of their size: summation order differs between 1
        # and 8 devices, and float32 rounding can move a nearest-neighbour match of the Chamfer
        # search (measured: 0.3% at most). A sharding error (per-device statistics, a missing
        # gradient all-reduce) changes the update by its own size.
        np.testing.assert_allclose(b - p0, a - p0, rtol=0,
                                   atol=0.01 * float(np.abs(a - p0).max()) + 1e-12)
    print("EQUAL", {k: float(v) for k, v in m8.items()})
""")


def test_eight_device_step_equals_one_device_step():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EQUAL" in proc.stdout


def test_a_bfloat16_step_is_finite_and_close_to_the_float32_step():
    """Mixed precision: extractor and decoder compute in bfloat16, parameters, optimizer state
    and losses stay float32; one step from the same state and batch gives a loss within 2% of
    the float32 step's (bfloat16 keeps 8 bits of mantissa: ~0.4% per rounding)."""
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=(4, 128, 128, 3)).astype(np.float32),
             "points": rng.normal(size=(4, 1024, 3)).astype(np.float32)}
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config("unused", f"model.dtype='{dtype}'")
        model, tx = state.create_model(config), state.create_optimizer(config)
        mesh = train.make_mesh()
        s = state.create_train_state(config, model, tx)
        new, metrics = train.make_train_step(model, tx, config, mesh)(
            s, train.shard_batch(batch, mesh))
        metrics = jax.device_get(metrics)
        assert all(np.isfinite(v) for v in metrics.values()), (dtype, metrics)
        leaves = jax.tree.leaves(new.params) + jax.tree.leaves(new.opt_state)
        assert {x.dtype for x in leaves if x.dtype.kind == "f"} == {np.dtype("float32")}
        losses[dtype] = metrics
    for term in ("loss", "cd", "emd", "kl"):
        np.testing.assert_allclose(losses["bfloat16"][term], losses["float32"][term], rtol=0.02,
                                   err_msg=term)
