"""Every preparation kind is fitted through its object (`fit` on the training rows only), and what training saves is
what the code before the kinds saved: the same preprocessing (keys in the same order, so the same JSON bytes) and
the same tensors. The expected values are computed here as load_dataset and the text source computed them before
(fit_standardize / apply_standardize on the training rows, Tokenizer.fit on the training texts)."""
import json

import numpy as np
import pandas as pd
import pytest

from netkiln.data import load_dataset_and_source
from netkiln.data.preparations import (ArraysPreparation, ImagesPreparation, PlainPreparation, preparation_class,
                                       preparation_for)
from netkiln.data.preprocess import apply_standardize, fit_standardize
from netkiln.data.table_preparation import TablePreparation
from netkiln.data.text_preparation import TextPreparation
from netkiln.data.tokenize import Tokenizer

from test_data_npz_images import make_images


def same_json(a: dict, b: dict) -> None:
    assert json.dumps(a) == json.dumps(b)           # equal values and keys in the same order


def train_rows(ds, raw) -> np.ndarray:
    return raw.x[np.asarray(ds.split_indices["train"])]


@pytest.mark.parametrize("standardize", [True, False])
def test_arrays_kind_fits_the_standardisation_of_the_training_rows(tmp_path, standardize):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", x=(rng.normal(size=(40, 5, 3)) * 3 + 1).astype(np.float32),
             y=rng.integers(0, 3, 40))
    ds, raw = load_dataset_and_source({"name": "npz", "path": str(tmp_path / "a.npz"), "standardize": standardize})
    x_tr = train_rows(ds, raw)
    expected = dict(raw.preprocessing)
    if standardize:
        expected["standardize"] = fit_standardize(x_tr, "sequence")
        x_tr = apply_standardize(x_tr, expected["standardize"])
    same_json(ds.preprocessing, expected)
    assert np.array_equal(ds.x_train.numpy(), x_tr)
    prep = preparation_for(ds.preprocessing)
    assert isinstance(prep, ArraysPreparation) and prep.to_json() == ds.preprocessing
    # predict's path (apply on raw rows) gives the tensors training's path gave
    assert np.array_equal(prep.apply(train_rows(ds, raw)), ds.x_train.numpy())


def test_images_kind_fits_on_pixels_as_floats_and_leaves_them_uint8(tmp_path):
    root = make_images(tmp_path / "shapes", per_class=6)
    ds, raw = load_dataset_and_source({"name": "images", "path": str(root), "image_size": [8, 8],
                                       "standardize": True})
    x_tr = train_rows(ds, raw)
    assert x_tr.dtype == np.uint8
    expected = {**raw.preprocessing, "standardize": fit_standardize(x_tr.astype(np.float32) / 255.0, "image")}
    same_json(ds.preprocessing, expected)
    assert ds.x_train.dtype.is_floating_point is False and np.array_equal(ds.x_train.numpy(), x_tr)
    prep = preparation_for(ds.preprocessing)
    assert isinstance(prep, ImagesPreparation)
    files = [str(root / f) for f in sorted(p.relative_to(root) for p in root.rglob("*.png"))[:2]]
    assert prep.apply(files).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("standardize", [True, False])
def test_builtin_rows_are_the_plain_kind(standardize):
    ds, raw = load_dataset_and_source({"name": "digits", "standardize": standardize})
    x_tr = train_rows(ds, raw)
    expected = {"standardize": fit_standardize(x_tr, "image")} if standardize else {}
    same_json(ds.preprocessing, expected)
    assert np.array_equal(ds.x_train.numpy(), apply_standardize(x_tr, expected["standardize"]) if standardize
                          else x_tr)
    assert preparation_class(ds.preprocessing) is PlainPreparation


def test_text_source_fits_through_the_text_kind(tmp_path):
    words = "good bad film plot fine awful great acting not very".split()
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, 1 + i % 7)) for i in range(40)]
    pd.DataFrame({"text": texts, "label": rng.choice(["pos", "neg"], 40)}).to_csv(tmp_path / "t.csv", index=False)
    node = {"name": "text", "path": str(tmp_path / "t.csv"), "text": "text", "target": "label", "max_length": 6}
    ds, raw = load_dataset_and_source(node)
    train = [texts[i] for i in ds.split_indices["train"]]
    tok = Tokenizer.fit(train, kind="word", max_tokens=20000, min_freq=1, max_length=6)
    target = {k: v for k, v in ds.preprocessing.items() if k in ("target", "task")}
    same_json(ds.preprocessing, {"kind": "text", "format": 1, "layout": "tokens", "text_column": "text",
                                 "tokenizer": tok.to_json(), "vocab_size": tok.vocab_size, "max_length": 6,
                                 **target})
    assert np.array_equal(ds.x_train.numpy(), tok.encode(train).astype(np.float32))
    assert raw.table["tokenizer"].vocabulary == tok.vocabulary
    fitted = TextPreparation.fit(train, {"kind": "word", "max_tokens": 20000, "min_freq": 1, "max_length": 6},
                                 text_column="text", target_info=target["target"], task=ds.task)
    assert fitted.to_json() == ds.preprocessing
    back = preparation_for(json.loads(json.dumps(fitted.to_json())))
    assert np.array_equal(back.apply(train), ds.x_train.numpy())


def test_table_kind_saved_as_fitted(tmp_path):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=40), "b": rng.choice(["x", "y"], 40), "y": rng.choice(["p", "q"], 40)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds, raw = load_dataset_and_source({"name": "csv", "path": str(tmp_path / "t.csv"), "target": "y"})
    prep = preparation_for(ds.preprocessing)
    assert isinstance(prep, TablePreparation) and prep.to_json() == ds.preprocessing
    rows = frame.iloc[np.asarray(ds.split_indices["train"])].drop(columns="y")
    assert np.array_equal(prep.apply(rows), ds.x_train.numpy())


def test_every_registered_kind_fits_and_applies_itself():
    from netkiln.data.preparations import PREPARATIONS, Preparation

    for cls in PREPARATIONS.values():
        assert cls.fit.__func__ is not Preparation.fit.__func__, f"{cls.__name__} has no fit of its own"
        assert cls.apply is not Preparation.apply, f"{cls.__name__} has no apply of its own"
