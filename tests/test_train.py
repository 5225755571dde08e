"""Training, evaluation and prediction end to end on the tiny config (SPEC section 7)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from PIL import Image

from recon_jax import cli, evaluate, figures, inference, predict, summarize, train
from recon_jax.metric_writers import NonFiniteError, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir: str, **overrides):
    config = inference.load_config_file(os.path.join(ROOT, "experiments", "configs", "tiny.py"))
    config.synthetic_dir = data_dir
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The tiny synthetic set, generated once (through the same path `train` uses)."""
    root = str(tmp_path_factory.mktemp("synthetic"))
    config = tiny_config(os.path.join(root, "data"))
    inference.data_root(config, progress=False)
    return config.synthetic_dir


def _params(state):
    return jax.tree.leaves(jax.device_get(state.params))


def test_end_to_end_train_eval_predict(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, num_steps=12, eval_every=6, learning_rate=3e-3)
    tic = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - tic

    records = read_metrics(os.path.join(workdir, "metrics.jsonl"), split="train")
    losses = [r["loss"] for r in records]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses  # the loss falls
    assert {"kl", "cd", "emd", "images_per_s"} <= set(records[0])
    assert len(read_metrics(os.path.join(workdir, "metrics.jsonl"), split="test")) == 2
    assert os.listdir(os.path.join(workdir, "tensorboard", "train"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[:2] == ["12", "6"] or \
        {"6", "12"} <= set(os.listdir(os.path.join(workdir, "checkpoints")))

    results = evaluate.evaluate_workdir(workdir, progress=False)
    assert set(results["per_category"]) == {"airplane", "chair", "lamp"}
    assert results["views"] == 3 * 24  # one test model per category, every view
    for v in results["per_category"].values():
        assert np.isfinite(v["cd"]) and np.isfinite(v["emd"]) and v["cd"] > 0
    means = np.mean([v["cd"] for v in results["per_category"].values()])
    assert results["mean"]["cd"] == pytest.approx(means)
    table = open(os.path.join(workdir, "eval_test.md")).read()
    assert "mean of categories" in table and "3D-LMNet" in table and "bijection" in table
    assert json.load(open(os.path.join(workdir, "eval_test.json")))["views"] == 72
    # A subset of views: the first 2 of each model (the eval_test files are rewritten).
    subset = evaluate.evaluate_workdir(workdir, views=2, progress=False)
    assert subset["views"] == 3 * 2 and subset["views_per_model"] == 2
    assert "first 2 views of each model" in open(os.path.join(workdir, "eval_test.md")).read()
    with pytest.raises(ValueError, match="views must be in"):
        evaluate.evaluate_workdir(workdir, views=25, progress=False)
    results = evaluate.evaluate_workdir(workdir, progress=False)
    # The untrained model, the baseline a run must beat, scored the same way.
    init = evaluate.evaluate_workdir(workdir, which="init", progress=False)
    assert init["step"] == 0 and os.path.isfile(os.path.join(workdir, "eval_test_init.md"))
    assert init["mean"]["cd"] > results["mean"]["cd"]

    # predict: a 137x137 render of the test set and an arbitrary-size RGB image.
    render = os.path.join(data_dir, "ShapeNetRendering")
    synset = sorted(os.listdir(render))[0]
    model_id = sorted(os.listdir(os.path.join(render, synset)))[0]
    png = os.path.join(render, synset, model_id, "rendering", "00.png")
    other = str(tmp_path / "photo.jpg")
    Image.fromarray(np.full((90, 150, 3), 128, np.uint8)).save(other)
    out = str(tmp_path / "pred")
    written = predict.predict_files(workdir, [png, other], out)
    assert len(written) == 2
    for ply, fig in written:
        with open(ply) as f:
            header = [next(f) for _ in range(8)]
            body = np.loadtxt(f)
        assert header[0] == "ply\n" and f"element vertex {config.num_points}\n" in header
        assert body.shape == (config.num_points, 3) and np.isfinite(body).all()
        with Image.open(fig) as im:
            assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    bad = str(tmp_path / "bad.png")
    open(bad, "wb").write(b"not an image")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        predict.predict_files(workdir, [bad], out)

    # train_step.json: the compiled step's cost, checked against independent counts.
    report = json.load(open(os.path.join(workdir, "train_step.json")))
    _, _, variables, _ = inference.load_variables(workdir)
    n_params = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    assert report["model_params"] == n_params
    assert 0 < report["extractor_params"] < n_params
    assert 0 < report["extractor_gflops"] < report["model_gflops"]
    # Peak memory holds at least the parameters and Adam's two moments (float32).
    assert report["step_peak_bytes"] >= 3 * 4 * n_params
    assert report["batch_size"] == config.batch_size and report["devices"] == 1

    # summarize: one row from the run's files; training time within the measured wall time.
    row = summarize.load_run(workdir)
    assert row["cd"] == results["mean"]["cd"] and row["model_params"] == n_params
    assert 0 < row["train_seconds"] <= wall
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"), split="train")
    assert row["train_seconds"] == pytest.approx(sum(r["interval_s"] for r in records))

    # figure: the chosen test objects with their ground truth, and the run's predictions.
    source = inference.open_source(config, "test")
    examples = figures.test_examples(source, ["lamp", "airplane"], view=3)
    assert list(examples["category"]) == ["lamp", "airplane"]
    for k, synset in enumerate(("03636649", "02691156")):
        model_id = str(examples["model_id"][k])
        gt = np.load(os.path.join(data_dir, "ShapeNet_pointclouds", synset, model_id,
                                  "pointcloud_1024.npy"))
        np.testing.assert_allclose(examples["points"][k], gt, rtol=0, atol=0)
    examples = figures.predict_examples(workdir, examples)
    ply_like = np.asarray(inference.make_predict_fn(
        train.create_model(config), config.image_size)(variables, examples["image"]))
    np.testing.assert_allclose(examples["prediction"], ply_like, atol=1e-6)
    assert examples["cd"].shape == (2,) and (examples["cd"] > 0).all()
    fig_path = str(tmp_path / "fig.png")
    assert cli.main(["figure", "--workdir", workdir, "--out", fig_path,
                     "--categories", "chair", "lamp"]) == 0
    with Image.open(fig_path) as im:
        # two rows of three panels: 7.5 x (2 x 2.5) inches at 110 dpi
        assert im.format == "PNG" and im.size == (825, 550)
    # Default rows: the test categories present, in DEFAULT_CATEGORIES order.
    assert figures.figure_categories(data_dir) == ["airplane", "chair", "lamp"]
    assert figures.figure_categories(data_dir, 2) == ["airplane", "chair"]
    assert cli.main(["figure", "--workdir", workdir, "--out", fig_path]) == 0
    with Image.open(fig_path) as im:
        assert im.size == (825, 825)
    with pytest.raises(ValueError, match="unknown category 'boat'"):
        figures.test_examples(source, ["boat"])
    with pytest.raises(ValueError, match="fewer than 2 model"):
        figures.test_examples(source, ["chair"], per_category=2)


def test_resume_is_exact(data_dir, tmp_path):
    config = tiny_config(data_dir, num_steps=6, eval_every=2)
    straight = train.train_and_evaluate(config, str(tmp_path / "a"))
    first = train.train_and_evaluate(config, str(tmp_path / "b"), stop_after=3)
    assert int(first.step) == 3
    # Checkpoints at 2 (and none at 3): the resumed run replays step 3 from step 2's state
    # and data position.
    resumed = train.train_and_evaluate(config, str(tmp_path / "b"))
    assert int(resumed.step) == 6
    for a, b in zip(_params(straight), _params(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_ignores_a_half_written_checkpoint(data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, num_steps=4, eval_every=2)
    train.train_and_evaluate(config, workdir, stop_after=2)
    ckpt = os.path.join(workdir, "checkpoints")
    assert os.listdir(ckpt) == ["2"]
    # What a kill in the middle of saving step 4 leaves: orbax's temporary directory, with
    # truncated files and no commit.
    partial = os.path.join(ckpt, "4.orbax-checkpoint-tmp-1234567")
    shutil.copytree(os.path.join(ckpt, "2"), partial)
    for dirpath, _, files in os.walk(partial):
        for name in files:
            with open(os.path.join(dirpath, name), "r+b") as f:
                f.truncate(max(0, os.path.getsize(f.name) // 2))
    state = train.train_and_evaluate(config, workdir)
    assert int(state.step) == 4
    assert sorted(os.listdir(ckpt)) == ["2", "4"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    config = tiny_config(data_dir, num_steps=4, eval_every=2)
    train.train_and_evaluate(config, workdir, stop_after=2)

    real_shard = train.shard_batch

    def poisoned(batch, mesh):
        batch = dict(batch)
        batch["points"] = np.full_like(batch["points"], np.nan)
        return real_shard(batch, mesh)

    monkeypatch.setattr(train, "shard_batch", poisoned)
    with pytest.raises(NonFiniteError, match=r"step 3: .*cd=nan"):
        train.train_and_evaluate(config, workdir)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
    _, _, variables, step = inference.load_variables(workdir, which="latest")
    assert step == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


EIGHT_DEVICES = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_train import tiny_config
    from recon_jax import train
    assert jax.device_count() == 8
    # SGD: the update is linear in the gradient, so summation-order noise stays at float32
    # rounding (Adam's first steps are ~lr * sign(g) and amplify it on near-zero gradients).
    config = tiny_config("unused", batch_size=8, image_size=32, optimizer="sgd")
    model, tx = train.create_model(config), train.create_optimizer(config)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=(8, 128, 128, 3)).astype(np.float32),
             "points": rng.normal(size=(8, 1024, 3)).astype(np.float32)}
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.make_mesh(devices)
        state = jax.device_put(train.create_train_state(config, model, tx),
                               jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        step = train.make_train_step(model, tx, config, mesh)
        for _ in range(2):
            state, metrics = step(state, train.shard_batch(batch, mesh))
        results.append((jax.device_get(state), jax.device_get(metrics)))
    (s1, m1), (s8, m8) = results
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(s1.params) + jax.tree.leaves(s1.batch_stats),
                    jax.tree.leaves(s8.params) + jax.tree.leaves(s8.batch_stats)):
        # Summation order differs between 1 and 8 devices: float32 rounding of the gradient
        # sums (the losses are sums over 2048 points) moves parameters by ~1e-6.
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    print("EQUAL", {k: float(v) for k, v in m8.items()})
""")


def test_eight_device_step_equals_one_device_step():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EQUAL" in proc.stdout
