"""sources: a config's dataset root (synthetic on first use), its TFDS copy, its splits."""

from __future__ import annotations

import os

import pytest

from recon_jax.configs import load_config_file
from recon_jax.data import layout, sources
from recon_jax.data.reader import ShapeNetReader
from recon_jax.errors import UserError

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "configs",
                       "default.py")


def data_config(**fields):
    """The ``data`` section of the default config with ``fields`` changed."""
    data = load_config_file(DEFAULT).data
    data.update(fields)
    return data


def test_real_root_is_used_as_it_is(shapenet, tmp_path):
    data = data_config(data_dir=shapenet.root, tfds_dir=str(tmp_path / "tfds"))
    assert sources.data_root(data) == shapenet.root
    assert sources.tfds_config(data) == "real"
    assert sources.tfds_dir(data) == str(tmp_path / "tfds")
    train, test = sources.open_sources(data)
    for split, source in (("train", train), ("test", test)):
        assert [(r["synset"].decode(), r["model_id"].decode()) for r in source] == \
            shapenet.splits[split]
    assert os.path.isdir(tmp_path / "tfds" / "shapenet_r2n2" / "real")
    assert not os.path.exists(os.path.join(shapenet.root, "tfds"))
    (test_only,) = sources.open_sources(data, ("test",))
    assert len(test_only) == len(shapenet.splits["test"])


def test_synthetic_set_is_made_and_prepared_on_first_use(tmp_path):
    root = str(tmp_path / "synthetic")
    data = data_config(synthetic_dir=root, synthetic_models_per_category=2,
                       synthetic_categories=("chair",), synthetic_seed=3)
    assert sources.tfds_config(data) == "synthetic"
    assert sources.tfds_dir(data) == os.path.join(root, "tfds")
    source = sources.open_source(data, "test", progress=False)
    reader = ShapeNetReader(root, "test")  # 24 views a model, as training reads them
    assert reader.num_views == layout.NUM_VIEWS and not reader.validate()
    assert [r["model_id"].decode() for r in source] == [m for _, m in reader.models]
    assert len(source) == 1 and len(sources.open_source(data, "train")) == 1
    assert os.path.isdir(os.path.join(root, "tfds", "shapenet_r2n2", "synthetic"))
    # an existing set is used as it is, whatever the settings now say
    stamp = os.path.getmtime(layout.split_path(root, "test"))
    data.synthetic_models_per_category = 5
    assert sources.data_root(data) == root
    assert os.path.getmtime(layout.split_path(root, "test")) == stamp


def test_incomplete_synthetic_set_is_a_user_error(tmp_path):
    root = tmp_path / "half"
    (root / layout.RENDER_DIR / "03001627").mkdir(parents=True)
    data = data_config(synthetic_dir=str(root))
    with pytest.raises(UserError, match="holds an incomplete dataset .* delete it"):
        sources.data_root(data)
    data = data_config(synthetic_dir=str(tmp_path / "new"), synthetic_categories=("bicycle",))
    with pytest.raises(UserError, match="unknown category 'bicycle'"):
        sources.data_root(data, progress=False)
    data = data_config(synthetic_dir=str(tmp_path / "new"), synthetic_models_per_category=1)
    with pytest.raises(UserError, match="data.synthetic_models_per_category: expected at least 2"):
        sources.data_root(data, progress=False)
    assert not os.path.exists(tmp_path / "new")
