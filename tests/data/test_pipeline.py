"""Grain pipeline: shapes, values against a hand computation, order, resume, sharding."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from recon_jax.data import layout
from recon_jax.data.pipeline import (
    BACKGROUND,
    ReaderSource,
    eval_dataset,
    preprocess_view,
    train_dataset,
)
from recon_jax.data.reader import DataError, ShapeNetReader

KEYS = {"image", "points", "category", "synset", "model_id", "view", "camera", "mask"}
SHARD = {"process_index": 0, "process_count": 1}


def expected_image(rgba: np.ndarray) -> np.ndarray:
    """Independent reference: crop rows/cols 4..131, composite over white, scale to [0, 1]."""
    crop = rgba[4:132, 4:132].astype(np.float64)
    alpha = crop[..., 3:] / 255.0
    return crop[..., :3] / 255.0 * alpha + 1.0 * (1.0 - alpha)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_preprocess_view_by_hand():
    rgba = np.zeros((137, 137, 4), np.uint8)
    rgba[..., :3] = (255, 0, 255)  # hidden colour under alpha 0 must not show
    rgba[4, 4] = (255, 0, 0, 255)  # first kept pixel -> output (0, 0)
    rgba[131, 131] = (0, 255, 0, 255)  # last kept pixel -> output (127, 127)
    rgba[3, 3] = rgba[132, 132] = rgba[4, 132] = (0, 0, 255, 255)  # cropped away
    rgba[50, 60] = (0, 0, 0, 102)  # 40% black over white -> 0.6 grey
    rgba[20, 30] = (200, 100, 50, 255)
    out = preprocess_view(rgba)
    assert out.shape == (128, 128, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[127, 127], [0, 1, 0])
    np.testing.assert_allclose(out[46, 56], [0.6, 0.6, 0.6], atol=1e-6)
    np.testing.assert_allclose(out[16, 26], [200 / 255, 100 / 255, 50 / 255], atol=1e-6)
    background = np.ones((128, 128), bool)
    background[[0, 127, 46, 16], [0, 127, 56, 26]] = False
    assert BACKGROUND == 1.0
    np.testing.assert_array_equal(out[background], 1.0)  # everything else is white
    with pytest.raises(ValueError, match=r"rgba must be uint8 \[137, 137, 4\]"):
        preprocess_view(rgba[..., :3])


def test_eval_stream_values_order_and_padding(shapenet):
    reader = ShapeNetReader(shapenet.root, "test")
    batches = list(eval_dataset(reader, batch_size=5, **SHARD))
    models = shapenet.splits["test"]
    total = len(models) * 24
    assert len(batches) == -(-total // 5)  # ceil
    items = []
    for batch in batches:
        assert set(batch) == KEYS
        assert batch["image"].shape == (5, 128, 128, 3) and batch["image"].dtype == np.float32
        assert batch["points"].shape == (5, 1024, 3) and batch["points"].dtype == np.float32
        assert batch["camera"].shape == (5, 5) and batch["camera"].dtype == np.float32
        assert batch["view"].dtype == np.int32 and batch["category"].dtype == np.int32
        assert batch["mask"].dtype == np.bool_
        assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        for b in range(5):
            model = (str(batch["synset"][b]), str(batch["model_id"][b]))
            view = int(batch["view"][b])
            np.testing.assert_allclose(
                batch["image"][b], expected_image(shapenet.views[model][view]), atol=1e-6
            )
            np.testing.assert_array_equal(batch["points"][b], shapenet.points[model][1024])
            np.testing.assert_array_equal(
                batch["camera"][b], shapenet.metadata[model][view].astype(np.float32)
            )
            assert batch["category"][b] == [s for s, _ in layout.CATEGORIES].index(model[0])
            items.append((model, view, bool(batch["mask"][b])))
    valid = [(m, v) for m, v, ok in items if ok]
    assert valid == [(m, v) for m in models for v in range(24)]  # model-major, fixed order
    assert [ok for _, _, ok in items] == [True] * total + [False] * (len(items) - total)
    # deterministic: a second pass is identical
    assert_batches_equal(batches, list(eval_dataset(reader, batch_size=5, **SHARD)))


def test_reader_and_tfds_sources_give_identical_batches(shapenet, shapenet_tfds):
    from recon_jax.data.tfds_builder import load_source

    for split, n in (("train", 2048), ("test", 1024)):
        reader = ShapeNetReader(shapenet.root, split)
        tfds_source = load_source(shapenet_tfds, split)
        a = list(eval_dataset(reader, batch_size=8, num_points=n, views=[0, 11, 23], **SHARD))
        b = list(eval_dataset(tfds_source, batch_size=8, num_points=n, views=[0, 11, 23], **SHARD))
        assert_batches_equal(a, b)
        ta = take(iter(train_dataset(ReaderSource(reader), batch_size=3, num_points=n, **SHARD)), 4)
        tb = take(iter(train_dataset(tfds_source, batch_size=3, num_points=n, **SHARD)), 4)
        assert_batches_equal(ta, tb)


def test_train_random_views_shuffles_each_epoch(shapenet):
    reader = ShapeNetReader(shapenet.root, "train")
    models = shapenet.splits["train"]
    n = len(models)
    ds = train_dataset(reader, batch_size=n, views="random", seed=3, **SHARD)
    epochs = take(iter(ds), 6)  # batch_size == models per epoch: one batch is one epoch
    orders, views = [], []
    for batch in epochs:
        assert set(batch) == KEYS and batch["mask"].all()
        assert batch["image"].shape == (n, 128, 128, 3)
        assert batch["points"].shape == (n, 2048, 3)
        got = [(str(s), str(m)) for s, m in zip(batch["synset"], batch["model_id"], strict=True)]
        assert sorted(got) == sorted(models)  # every model once per epoch
        orders.append(got)
        views.extend(int(v) for v in batch["view"])
        for b, model in enumerate(got):
            view = int(batch["view"][b])
            np.testing.assert_allclose(
                batch["image"][b], expected_image(shapenet.views[model][view]), atol=1e-6
            )
            np.testing.assert_array_equal(batch["points"][b], shapenet.points[model][2048])
    assert len({tuple(o) for o in orders}) > 1  # reshuffled across epochs
    assert orders[0] != models  # shuffled
    assert all(0 <= v < 24 for v in views) and len(set(views)) > 5  # views drawn at random
    # seeded: same seed, same stream; another seed, another stream
    assert_batches_equal(epochs, take(iter(ds), 6))
    other = take(iter(train_dataset(reader, batch_size=n, seed=4, **SHARD)), 6)
    assert [list(b["model_id"]) + list(b["view"]) for b in other] != [
        list(b["model_id"]) + list(b["view"]) for b in epochs
    ]


def test_train_all_views_covers_each_pair_once_per_epoch(shapenet):
    reader = ShapeNetReader(shapenet.root, "train")
    pairs_per_epoch = len(reader) * 24  # 120
    ds = train_dataset(reader, batch_size=8, views="all", seed=0, **SHARD)
    batches = take(iter(ds), 2 * pairs_per_epoch // 8)
    seen = [
        (str(m), int(v)) for b in batches for m, v in zip(b["model_id"], b["view"], strict=True)
    ]
    expected = sorted((m, v) for _, m in reader.models for v in range(24))
    assert sorted(seen[:pairs_per_epoch]) == expected
    assert sorted(seen[pairs_per_epoch:]) == expected
    assert seen[:pairs_per_epoch] != seen[pairs_per_epoch:]


def test_reader_threads_do_not_change_the_stream(shapenet):
    reader = ShapeNetReader(shapenet.root, "train")
    streams = [
        take(iter(train_dataset(reader, batch_size=3, seed=1, num_threads=t, **SHARD)), 5)
        for t in (0, 3)
    ]
    assert_batches_equal(*streams)


@pytest.mark.parametrize("num_threads", [0, 2])
def test_resume_from_saved_state(shapenet, num_threads):
    reader = ShapeNetReader(shapenet.root, "train")
    ds = train_dataset(reader, batch_size=4, seed=7, num_threads=num_threads, **SHARD)
    it = iter(ds)
    take(it, 3)  # crosses an epoch boundary (5 models, 12 examples)
    state = json.loads(json.dumps(it.get_state()))  # a plain, serialisable dict
    expected = take(it, 4)
    resumed = iter(ds)
    take(resumed, 1)  # a fresh iterator elsewhere in the stream...
    resumed.set_state(state)  # ...jumps to the saved position
    assert_batches_equal(take(resumed, 4), expected)


def test_sharding_partitions_models_and_eval_items(shapenet):
    reader = ShapeNetReader(shapenet.root, "train")
    models = reader.models  # 5
    # training: strided model shards; one epoch of each process covers all models once
    seen = []
    for p in range(3):  # models [0, 3], [1, 4], [2]
        count = len(models[p::3])
        ds = train_dataset(reader, batch_size=count, process_index=p, process_count=3)
        batch = next(iter(ds))
        got = sorted(str(m) for m in batch["model_id"])
        assert got == sorted(m for _, m in models[p::3])
        seen.extend(got)
    assert sorted(seen) == sorted(m for _, m in models)
    # evaluation: contiguous blocks, same number of batches everywhere, global order kept
    per_process = [
        list(eval_dataset(reader, batch_size=16, process_index=p, process_count=3))
        for p in range(3)
    ]
    assert {len(b) for b in per_process} == {3}  # ceil(ceil(120 / 3) / 16)
    valid = [
        (str(m), int(v))
        for batches in per_process
        for b in batches
        for m, v, ok in zip(b["model_id"], b["view"], b["mask"], strict=True)
        if ok
    ]
    assert valid == [(m, v) for _, m in models for v in range(24)]


def test_defaults_shard_by_jax_process(shapenet):
    reader = ShapeNetReader(shapenet.root, "test")
    implicit = list(eval_dataset(reader, batch_size=16))
    assert_batches_equal(implicit, list(eval_dataset(reader, batch_size=16, **SHARD)))


@pytest.mark.slow
def test_worker_processes(shapenet, absl_flags_parsed):
    """num_workers=W (mp_prefetch): worker w batches elements w, w + W, ...; batches alternate
    between workers. Checked exactly against the in-process element stream; resumable."""
    reader = ShapeNetReader(shapenet.root, "train")
    kwargs = dict(views="all", seed=5, **SHARD)
    workers, batch, steps = 2, 4, 6
    single = take(iter(train_dataset(reader, batch_size=1, **kwargs)), workers * batch * steps)
    ds = train_dataset(reader, batch_size=batch, num_workers=workers, **kwargs)
    it = iter(ds)
    got = take(it, steps)
    for j, b in enumerate(got):
        w, i = j % workers, j // workers
        ids = [w + workers * (i * batch + r) for r in range(batch)]
        for key in ("model_id", "view", "image", "points"):
            np.testing.assert_array_equal(b[key], np.concatenate([single[k][key] for k in ids]))
    state = it.get_state()
    expected = take(it, 3)
    it.close()
    resumed = iter(ds)
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 3), expected)
    resumed.close()
    # evaluation batches in this process: workers change nothing, no item lost
    test = ShapeNetReader(shapenet.root, "test")
    assert_batches_equal(
        list(eval_dataset(test, batch_size=7, num_workers=2, **SHARD)),
        list(eval_dataset(test, batch_size=7, **SHARD)),
    )


def test_workers_without_absl_flags_say_how(shapenet, absl_flags_unparsed):
    """grain 0.2.18's workers fail in the main process unless absl flags are parsed: a clear
    error naming the remedy, before any worker starts."""
    reader = ShapeNetReader(shapenet.root, "train")
    for make in (train_dataset, eval_dataset):
        with pytest.raises(RuntimeError, match=r"jax\.config\.parse_flags_with_absl\(\)"):
            make(reader, batch_size=2, num_workers=1, **SHARD)
    assert len(next(iter(train_dataset(reader, batch_size=2, **SHARD)))["image"]) == 2


def test_bad_arguments_and_bad_files(shapenet, make_shapenet):
    reader = ShapeNetReader(shapenet.root, "train")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        train_dataset(reader, batch_size=0, **SHARD)
    with pytest.raises(ValueError, match="views must be 'random' or 'all'"):
        train_dataset(reader, batch_size=2, views="some", **SHARD)
    with pytest.raises(ValueError, match="must be given together"):
        train_dataset(reader, batch_size=2, process_index=0)
    with pytest.raises(ValueError, match="0 <= process_index < process_count"):
        eval_dataset(reader, batch_size=2, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="process 6 of 7 gets no models"):
        train_dataset(reader, batch_size=2, process_index=6, process_count=7)
    with pytest.raises(ValueError, match=r"views must be a non-empty list of views in \[0, 24\)"):
        eval_dataset(reader, batch_size=2, views=[24], **SHARD)
    with pytest.raises(ValueError, match="source is empty"):
        eval_dataset([], batch_size=2, **SHARD)
    with pytest.raises(ValueError, match="no 1024-point cloud"):
        next(iter(eval_dataset(ReaderSource(reader), batch_size=2, **SHARD)))
    # a bad file met while streaming raises, naming it
    fx = make_shapenet()
    model = fx.splits["test"][0]
    path = layout.view_path(fx.root, *model, 0)
    with open(path, "wb") as f:
        f.write(b"broken")
    with pytest.raises(DataError, match=f"{os.path.basename(path)}: not a readable PNG"):
        next(iter(eval_dataset(ShapeNetReader(fx.root, "test"), batch_size=2, **SHARD)))
