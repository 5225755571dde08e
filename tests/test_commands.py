"""eval, predict, figure and summarize on one shared trained run, and the command line's errors."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from recon_jax import checkpoints, cli, evaluate, figures, predict, protocol, rundir, summarize
from recon_jax.data import sources
from recon_jax.errors import UserError
from recon_jax.metric_writers import read_metrics

from .conftest import TINY


@pytest.fixture(scope="module")
def scored(trained):
    """The shared run scored on its first 2 views with the default protocol (ICP included)."""
    workdir, _ = trained
    results, stem = evaluate.evaluate_workdir(workdir, views=2, workers=1, progress=False)
    return results, stem


def test_eval_scores_every_category_with_the_default_protocol(trained, scored):
    workdir, config = trained
    results, stem = scored
    assert stem == os.path.join(workdir, "eval_test_views2")
    assert set(results["per_category"]) == {"airplane", "chair", "lamp"}
    assert results["views"] == 3 * 2 and results["failed_views"] == 0
    assert results["icp"] is True and results["protocol_name"] == "3d-lmnet"
    for v in results["per_category"].values():
        assert np.isfinite(v["cd"]) and np.isfinite(v["emd"]) and v["cd"] > 0
    assert results["mean"]["cd"] == pytest.approx(
        np.mean([v["cd"] for v in results["per_category"].values()]))
    table = open(stem + ".md").read()
    assert "mean of categories" in table and "3D-LMNet" in table and "ICP" in table
    assert json.load(open(stem + ".json"))["views"] == 6
    assert not os.path.exists(stem + ".partial.jsonl")
    # the best checkpoint: the step of lowest periodic test CD
    tests = {r["step"]: r["cd_x100"] for r in
             read_metrics(rundir.path(workdir, rundir.METRICS), split="test")}
    assert results["step"] == min(tests, key=tests.get)


def test_eval_matches_the_protocol_view_by_view(trained, scored):
    """The table is the per-category mean of protocol.score_view on each view's prediction."""
    workdir, _ = trained
    results, _ = scored
    config, model, variables, _ = checkpoints.load_variables(workdir)
    source = sources.open_source(config.data, "test")
    from recon_jax.data.pipeline import eval_dataset

    predict_fn = evaluate.make_predict_fn(model)
    per_cat: dict[str, list[float]] = {}
    for batch in eval_dataset(source, batch_size=8, num_points=1024, views=[0, 1],
                              process_index=0, process_count=1):
        pred = np.asarray(predict_fn(variables, batch["image"]))
        for i in np.flatnonzero(batch["mask"]):
            seed = evaluate._view_seed(0, str(batch["model_id"][i]), int(batch["view"][i]))
            cd, _ = protocol.score_view(pred[i], batch["points"][i], seed=seed, with_emd=False)
            name = [n for s, n in figures.layout.CATEGORIES if s == _synset(batch, i)][0]
            per_cat.setdefault(name, []).append(cd)
    for name, cds in per_cat.items():
        assert results["per_category"][name]["cd"] == pytest.approx(np.mean(cds), rel=1e-9)


def _synset(batch, i):
    return figures.layout.CATEGORIES[int(batch["category"][i])][0]


def test_eval_counts_nan_predictions_as_failed_views_never_as_scores(trained):
    workdir, config = trained
    _, model, variables, _ = checkpoints.load_variables(workdir)
    source = sources.open_source(config.data, "test")
    real = evaluate.make_predict_fn(model)

    def half_nan(v, images):  # every other view of the batch predicts NaN somewhere
        pred = np.array(real(v, images))
        pred[::2, 5] = np.nan
        return pred

    results = evaluate.evaluate_model(half_nan, variables, source, batch_size=6, views=[0, 1],
                                      icp=False)
    assert results["failed_views"] == 3 and results["views"] == 3
    assert all(np.isfinite(v["cd"]) for v in results["per_category"].values())
    all_nan = evaluate.evaluate_model(lambda v, im: np.full((len(im), 128, 3), np.nan),
                                      variables, source, batch_size=6, views=[0], icp=False)
    assert all_nan["failed_views"] == 3 and all_nan["views"] == 0
    assert np.isnan(all_nan["mean"]["cd"]) and np.isnan(all_nan["mean"]["emd"])
    assert "failed" in evaluate.markdown_report(all_nan, "nan")


def test_an_interrupted_eval_resumes_to_the_same_table(trained, scored, monkeypatch):
    workdir, _ = trained
    results, stem = scored
    os.rename(stem + ".json", stem + ".json.bak")
    calls = []
    real_model = evaluate.evaluate_model

    def evaluate_then_die(*args, on_scored, **kwargs):
        def save_once(new):  # the first batch is scored and saved, then the run dies
            on_scored(new)
            calls.append(len(new))
            raise KeyboardInterrupt

        return real_model(*args, on_scored=save_once, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_model", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_workdir(workdir, views=2, workers=1, progress=False, batch_size=4)
    monkeypatch.setattr(evaluate, "evaluate_model", real_model)
    assert calls == [4] and os.path.exists(stem + ".partial.jsonl")
    resumed, _ = evaluate.evaluate_workdir(workdir, views=2, workers=1, progress=False,
                                           batch_size=4)
    assert resumed["per_category"] == results["per_category"]
    assert resumed["mean"] == results["mean"]
    os.replace(stem + ".json.bak", stem + ".json")


def test_eval_with_two_workers_gives_the_same_table(trained, scored):
    workdir, _ = trained
    results, _ = scored
    two, _ = evaluate.evaluate_workdir(workdir, views=2, workers=2, progress=False)
    assert two["per_category"] == results["per_category"]


def test_eval_of_the_untrained_model_is_worse_and_named(trained, scored):
    workdir, _ = trained
    results, _ = scored
    init, stem = evaluate.evaluate_workdir(workdir, views=2, which="init", icp=False, workers=1,
                                           progress=False)
    assert stem.endswith("eval_test_noicp_init_views2") and init["step"] == 0
    assert init["mean"]["cd"] > results["mean"]["cd"]
    with pytest.raises(UserError, match="views must be in"):
        evaluate.evaluate_workdir(workdir, views=25, progress=False)


def test_predict_writes_clouds_and_pictures(trained, data_dir, tmp_path):
    workdir, config = trained
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
        assert header[0] == "ply\n" and f"element vertex {config.model.num_points}\n" in header
        assert body.shape == (config.model.num_points, 3) and np.isfinite(body).all()
        with Image.open(fig) as im:
            assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    # the cloud written is the model's prediction for the pipeline's preprocessing of the image
    from recon_jax.data.pipeline import load_image_file

    _, model, variables, _ = checkpoints.load_variables(workdir)
    expected = np.asarray(evaluate.make_predict_fn(model)(variables, load_image_file(png)[None]))
    np.testing.assert_allclose(np.loadtxt(written[0][0], skiprows=8), expected[0], atol=1e-5)
    bad = str(tmp_path / "bad.png")
    open(bad, "wb").write(b"not an image")
    with pytest.raises(UserError, match="bad.png"):
        predict.predict_files(workdir, [bad], out)


def test_figure_draws_the_chosen_test_objects(trained, data_dir, tmp_path):
    workdir, config = trained
    source = sources.open_source(config.data, "test")
    examples = figures.test_examples(source, ["lamp", "airplane"], view=3)
    assert list(examples["category"]) == ["lamp", "airplane"]
    for k, synset in enumerate(("03636649", "02691156")):
        model_id = str(examples["model_id"][k])
        gt = np.load(os.path.join(data_dir, "ShapeNet_pointclouds", synset, model_id,
                                  "pointcloud_1024.npy"))
        np.testing.assert_allclose(examples["points"][k], gt, rtol=0, atol=0)
    with_pred = figures.predict_examples(workdir, examples)
    _, model, variables, _ = checkpoints.load_variables(workdir)
    direct = np.asarray(evaluate.make_predict_fn(model)(variables, examples["image"]))
    np.testing.assert_allclose(with_pred["prediction"], direct, atol=1e-6)
    assert with_pred["cd"].shape == (2,) and (with_pred["cd"] > 0).all()
    fig_path = str(tmp_path / "fig.png")
    assert cli.main(["figure", "--workdir", workdir, "--out", fig_path,
                     "--categories", "chair", "lamp"]) == 0
    with Image.open(fig_path) as im:
        # two rows of three panels: 7.5 x (2 x 2.5) inches at 110 dpi
        assert im.format == "PNG" and im.size == (825, 550)
    assert figures.figure_categories(data_dir) == ["airplane", "chair", "lamp"]
    assert figures.figure_categories(data_dir, 2) == ["airplane", "chair"]
    with pytest.raises(UserError, match="unknown category 'boat'"):
        figures.test_examples(source, ["boat"])
    with pytest.raises(UserError, match="fewer than 2 model"):
        figures.test_examples(source, ["chair"], per_category=2)


def test_summarize_reads_the_run(trained, scored):
    workdir, config = trained
    results, stem = scored
    row = summarize.load_run(workdir, eval_name=os.path.basename(stem) + ".json")
    _, _, variables, _ = checkpoints.load_variables(workdir)
    assert row["cd"] == results["mean"]["cd"]
    assert row["model_params"] == sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    records = read_metrics(rundir.path(workdir, rundir.METRICS), split="train")
    assert row["train_seconds"] == pytest.approx(sum(r["interval_s"] for r in records))
    assert row["seed"] == config.run.seed and row["encoder"] == config.model.encoder


# ---- the command line: one-line errors, exit 2, traceback only with --debug ------------------
def _cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv,message", [
    (["train", "--config", "nope.py", "--workdir", "w"], "config file 'nope.py' not found"),
    (["train", "--config", TINY, "--workdir", "w", "--config.model.nope=1"],
     "config field 'model.nope' does not exist"),
    (["train", "--config", TINY, "--workdir", "w", "--config.run.log_every=0"],
     "config field run.log_every: expected an integer >= 1, got 0"),
    (["train", "--config", TINY, "--workdir", "w", "--config.optim.num_steps=ten"],
     "config field 'optim.num_steps': expected a int"),
    (["eval", "--workdir", "missing_run"], "missing_run/config.json not found"),
    (["summarize", "missing_run"], "no config.json"),
])
def test_user_errors_are_one_or_two_lines_with_exit_status_2(capsys, tmp_path, monkeypatch,
                                                             argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, *argv)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) <= 2, err
    assert "Traceback" not in err
    assert not os.path.exists(tmp_path / "w")  # nothing was started
    code, _, err = _cli(capsys, "--debug", *argv)
    assert code == 2 and "Traceback" in err


def test_eval_refuses_an_unwritable_output_before_any_work(trained, capsys, tmp_path):
    workdir, _ = trained
    stem = rundir.eval_stem(workdir, "test", views=1)
    os.makedirs(stem + ".json")  # a directory where the result file goes
    try:
        code, _, err = _cli(capsys, "eval", "--workdir", workdir, "--views", "1")
        assert code == 2 and "is a directory, expected a file path" in err
    finally:
        os.rmdir(stem + ".json")


def test_train_prints_resume_and_nothing_to_do(trained, capsys):
    workdir, _ = trained
    code, out, _ = _cli(capsys, "train", "--config", TINY, "--workdir", workdir,
                        "--config.optim.num_steps=12", "--config.eval.every=6",
                        f"--config.data.synthetic_dir={checkpoints.load_config(workdir).data.synthetic_dir}")
    assert code == 0 and "nothing to do: run complete at step 12 of 12" in out
