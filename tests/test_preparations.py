"""Preparation kinds as objects (netkiln.data.preparations): the registry, JSON round trips, the one check of a
table's columns, and that no module tests a kind by its name."""
import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netkiln.data import load_dataset
from netkiln.data.json_checks import BadEntry
from netkiln.data.preparations import (PREPARATIONS, ArraysPreparation, ImagesPreparation, PlainPreparation,
                                       check_input_columns, preparation_for)
from netkiln.data.table_preparation import TablePreparation
from netkiln.errors import NetkilnError

SRC = Path(__file__).resolve().parent.parent / "src" / "netkiln"
RNG = np.random.default_rng(0)


def _csv(tmp_path, n=60):
    frame = pd.DataFrame({"age": RNG.integers(18, 80, n), "color": RNG.choice(["red", "green", "blue"], n),
                          "score": RNG.normal(size=n).round(3), "label": RNG.choice(["yes", "no"], n)})
    frame.to_csv(tmp_path / "t.csv", index=False)
    return frame, load_dataset({"name": "csv", "path": str(tmp_path / "t.csv"), "target": "label"})


FEATURES, MEAN, STD = ["sepal", "width", "length", "petal"], [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 4.0, 4.0]


def _plain():
    """A built-in source's saved steps (no kind): a standardisation, the schema beside it."""
    steps = {"standardize": {"feature_axis": 0, "mean": MEAN, "std": STD}}
    return preparation_for(steps, input_shape=(4,), layout="flat", feature_names=FEATURES)


def test_every_saved_kind_has_one_registered_class():
    assert {k: c for k, c in PREPARATIONS.items() if k in (None, "table", "arrays", "images")} == {
        None: PlainPreparation, "table": TablePreparation, "arrays": ArraysPreparation, "images": ImagesPreparation}
    from netkiln.data.text_preparation import TextPreparation
    assert PREPARATIONS["text"] is TextPreparation and TextPreparation.export_dtype == "int64"
    with pytest.raises(NetkilnError, match="unknown preprocessing kind 'holograms'"):
        preparation_for({"kind": "holograms"})


def test_table_round_trip_and_apply(tmp_path):
    frame, ds = _csv(tmp_path)
    saved = json.loads(json.dumps(ds.preprocessing))          # as preprocessing.json holds it
    prep = preparation_for(saved)
    assert isinstance(prep, TablePreparation) and prep.to_json() == saved
    assert prep.input_columns() == ["age", "color", "score"] and prep.has_categories and prep.labelled_tables
    x = prep.apply(frame.drop(columns=["label"]))
    assert np.allclose(x[ds.split_indices["val"]], ds.x_val.numpy(), atol=1e-6)
    # the bundle's file whole (input schema beside "preparation") gives the same object
    whole = {"layout": "flat", "input_shape": list(ds.input_shape), "preparation": saved}
    assert preparation_for(whole).to_json() == saved
    assert prep.file_refusal("arrays") == ("this model was trained on a table; give the rows as a .csv or .parquet "
                                           "file with the columns age, color, score")
    assert prep.file_refusal("table") is None


def test_arrays_and_plain_round_trip(tmp_path):
    x = RNG.normal(size=(50, 6, 6, 3)).astype(np.float32)     # channels last: reshaped by the saved transform
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(50) % 2)
    ds = load_dataset({"name": "npz", "path": str(tmp_path / "a.npz")})
    prep = preparation_for(json.loads(json.dumps(ds.preprocessing)))
    assert isinstance(prep, ArraysPreparation) and prep.to_json() == json.loads(json.dumps(ds.preprocessing))
    assert np.allclose(prep.apply(x)[ds.split_indices["val"]], ds.x_val.numpy(), atol=1e-5)
    assert prep.file_refusal("table") is not None            # image rows: a table cannot hold them
    plain = _plain()
    assert isinstance(plain, PlainPreparation) and plain.file_refusal("table") is None
    table = pd.DataFrame(np.ones((2, 4)), columns=FEATURES)
    assert np.allclose(plain.apply(table), (1 - np.array(MEAN)) / np.array(STD))
    with pytest.raises(NetkilnError, match="data row 11 has a missing"):
        plain.apply(np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]]), first_row=10)
    with pytest.raises(NetkilnError, match="cannot apply \\(mystery\\)"):
        preparation_for({"mystery": 1}).apply(np.zeros((1, 4)))


def test_table_columns_are_checked_in_one_place(tmp_path):
    check_input_columns(["a", "b", "y"], ["a", "b"], ignore=["y"])
    with pytest.raises(NetkilnError, match="lacks the column 'b'.*Did you mean 'bb'") as e:
        check_input_columns(["a", "bb"], ["a", "b"])
    assert e.value.column == "b"
    with pytest.raises(NetkilnError, match="'c'; remove it or allow extra columns"):
        check_input_columns(["a", "b", "c"], ["a", "b"])
    check_input_columns(["a", "b", "c"], ["a", "b"], allow_extra=True)
    # the table kind and the flat arrays kind (a table for a built-in dataset) both use it
    frame, ds = _csv(tmp_path)
    with pytest.raises(NetkilnError, match="lacks the column 'color'"):
        preparation_for(ds.preprocessing).apply(frame.drop(columns=["color"]))
    with pytest.raises(NetkilnError, match="lacks the column 'petal'"):
        _plain().apply(pd.DataFrame({"sepal": [1.0], "width": [1.0], "length": [1.0], "petals": [1.0]}))


def test_kinds_check_their_own_saved_json():
    images = {"kind": "images", "image_size": [8, 8], "color": "rgb"}
    ImagesPreparation.check_json(images, "image", (3, 8, 8), {})
    with pytest.raises(BadEntry, match="preparation.color"):
        ImagesPreparation.check_json(images, "image", (1, 8, 8), {})
    with pytest.raises(BadEntry, match="preparation.columns"):
        TablePreparation.check_json({"kind": "table", "columns": []}, "flat", (3,), {})


def test_what_an_export_can_embed(tmp_path):
    _, ds = _csv(tmp_path)
    with pytest.raises(NetkilnError, match="embed_preparation=false"):
        preparation_for(ds.preprocessing).embeddable_standardize()
    plain = _plain()
    assert plain.embeddable_standardize() == plain.steps["standardize"]
    assert "raw values" in plain.export_note(True) and "prepared values" in plain.export_note(False)


PREPARATION_KINDS = {"table", "arrays", "images", "text"}


def _mentions_kind(node: ast.AST) -> bool:
    """`kind`, `x.kind`, `x["kind"]`, `x.get("kind")`: an expression that reads a preparation's kind."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == "kind" or isinstance(sub, ast.Attribute) and sub.attr == "kind":
            return True
        if isinstance(sub, ast.Constant) and sub.value == "kind":
            return True
    return False


def _kind_names(node: ast.AST) -> set:
    return {sub.value for sub in ast.walk(node) if isinstance(sub, ast.Constant) and sub.value in PREPARATION_KINDS}


def test_no_module_tests_a_preparation_kind_by_its_name():
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(_kind_names(o) for o in operands) and any(_mentions_kind(o) for o in operands):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, "ask the preparation object (netkiln.data.preparations) instead:\n" + "\n".join(found)
