"""The layout module: categories resolved one way for every caller, DataError as a user error."""

from __future__ import annotations

import pickle

import pytest

from recon_jax.data import layout
from recon_jax.data.layout import DataError
from recon_jax.errors import UserError


def test_category_synset_by_name_or_synset():
    assert layout.category_synset("chair") == "03001627"
    assert layout.category_synset("03001627") == "03001627"
    for bad in ("Chair", "bicycle", "", "3001627"):
        with pytest.raises(UserError, match=f"unknown category {bad!r}"):
            layout.category_synset(bad)


def test_resolve_categories_order_duplicates_and_errors():
    everything = tuple(syn for syn, _ in layout.CATEGORIES)
    assert layout.resolve_categories(None) == everything and len(everything) == 13
    # table order whatever the order given; names and synsets mixed; duplicates dropped
    assert layout.resolve_categories(["vessel", "02691156", "airplane", "chair"]) == (
        "02691156", "03001627", "04530566")
    assert layout.resolve_categories("lamp") == ("03636649",)  # one string is one category
    assert layout.resolve_categories(iter(["sofa"])) == ("04256520",)
    with pytest.raises(UserError, match="at least one category"):
        layout.resolve_categories([])
    with pytest.raises(UserError, match="unknown category 'spaceship'"):
        layout.resolve_categories(["chair", "spaceship"])


def test_data_error_is_a_one_line_user_error_naming_the_file():
    error = DataError("root/x/00.png", "expected a 137x137 RGBA image, got 64x64 mode RGBA")
    assert isinstance(error, UserError) and isinstance(error, ValueError)
    assert str(error) == "root/x/00.png: expected a 137x137 RGBA image, got 64x64 mode RGBA"
    assert error.path == "root/x/00.png"
    copy = pickle.loads(pickle.dumps(error))  # raised in grain worker processes
    assert type(copy) is DataError and copy.path == error.path and str(copy) == str(error)


def test_constants():
    assert layout.POINT_COUNTS == (2048, 1024)
    assert layout.IMAGE_SIZE == 128 == len(range(layout.RENDER_SIZE)[slice(*layout.CROP)])
    with pytest.raises(ValueError, match="split must be one of"):
        layout.split_path("root", "validation")
