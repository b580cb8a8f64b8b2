"""The table preparation's numeric columns are fitted and applied as 2-D blocks (data/numeric_block.py), for wide
tables; every number must be the one a plain per-column computation gives, bit for bit. The reference below is that
computation, written out here on 1-D numpy columns (what tabular did column by column before the blocks)."""
import json

import numpy as np
import pandas as pd
import pytest

from netkiln.data import load_dataset, numeric_block, tabular
from netkiln.data.tabular import TablePlan, apply_columns, fit_columns
from netkiln.data.tables import read_table
from netkiln.errors import NetkilnError

IMPUTING = ("mean", "median", "most_frequent")


# ------------------------------------------------------------------------------------------- the reference
def reference_numeric(values: np.ndarray, strategy: str, method: str) -> tuple[dict, dict]:
    """(impute, scale) of one float64 column (NaN where missing)."""
    present = values[~np.isnan(values)]
    impute: dict = {"strategy": strategy}
    if strategy in IMPUTING:
        if strategy == "mean":
            fill = float(present.mean())
        elif strategy == "median":
            fill = float(np.median(present))
        else:
            uniq, counts = np.unique(present, return_counts=True)
            fill = float(uniq[np.argmax(counts)])
        impute["value"] = fill
        values = np.where(np.isnan(values), fill, values)
    v = values[~np.isnan(values)]
    if method == "none" or len(v) == 0:
        scale = {"method": "none"}
    elif method == "standard":
        std = float(v.std())
        scale = {"method": "standard", "mean": float(v.mean()), "std": std if std > 1e-12 else 1.0}
    else:
        scale = {"method": "minmax", "min": float(v.min()), "max": float(v.max())}
    return impute, scale


def reference_outputs(frame: pd.DataFrame, specs: list[dict]) -> np.ndarray:
    """Each spec applied to its column on its own; the pieces side by side, as float32."""
    pieces = []
    for spec in specs:
        column = frame[spec["name"]]
        if spec["kind"] == "numeric":
            v = column.to_numpy(dtype=np.float64)
            if "value" in spec["impute"]:
                v = np.where(np.isnan(v), spec["impute"]["value"], v)
            pieces.append(scaled(v, spec["scale"])[:, None])
            continue
        keys = [None if pd.isna(k) else str(k).strip() for k in column]
        keys = [spec["impute"].get("value") if k is None else k for k in keys]
        codes = np.array([np.nan if k is None else (spec["categories"].index(k) if k in spec["categories"] else -1)
                          for k in keys])
        if spec["encoding"] == "ordinal":
            pieces.append(scaled(codes, spec["scale"])[:, None])
        else:
            onehot = (codes[:, None] == np.arange(len(spec["categories"]))[None, :]).astype(np.float64)
            onehot[np.isnan(codes)] = np.nan
            pieces.append(onehot)
    return np.concatenate(pieces, axis=1).astype(np.float32)


def scaled(v: np.ndarray, s: dict) -> np.ndarray:
    if s["method"] == "standard":
        return (v - s["mean"]) / s["std"]
    if s["method"] == "minmax":
        rng = s["max"] - s["min"]
        return (v - s["min"]) / (rng if rng > 1e-12 else 1.0)
    return v


# ------------------------------------------------------------------------------------------- the tables
def random_frame(rows: int, seed: int, unknown: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(12):
        v = rng.normal(loc=rng.normal() * 50, scale=rng.uniform(0.01, 20), size=rows)
        if i % 3 == 0:
            v = np.round(v / 5)                     # many ties: most_frequent picks the smallest of a tie
        if i % 4 != 1:
            v[rng.random(rows) < rng.uniform(0.02, 0.4)] = np.nan      # a different present count per column
        data[f"n{i}"] = v
    data["const"] = np.full(rows, 3.25)             # std 0: scaled by 1.0
    data["ints"] = rng.integers(-3, 40, rows)        # an integer dtype
    data["small"] = rng.integers(0, 3, rows).astype(np.float32)
    colours = np.array(["red", "green", "blue", "grey"], dtype=object)
    for j in range(3):
        c = rng.choice(colours[:3 + j % 2], size=rows).astype(object)
        c[rng.random(rows) < 0.1] = None
        if unknown and j == 1:
            c[rng.random(rows) < 0.2] = "purple"
        data[f"c{j}"] = c
    return pd.DataFrame(data)


def plan_of(frame, missing, scale, encoding, impute=None) -> TablePlan:
    features = list(frame.columns)
    kinds = {c: "categorical" if c.startswith("c") and c != "const" else "numeric" for c in features}
    return TablePlan(target=["y"], features=features, task="auto", missing=missing, impute=impute or {},
                     forced_categorical=set(), forced_numeric=set(), encoding=encoding, encodings={},
                     max_categories=50, scale=scale, filter=None, split_column=None, kinds=kinds)


def no_column_by_column(monkeypatch):
    """Fail if the whole frame falls back to the per-column path: the blocks must do the numeric columns."""
    def refuse(*args, **kwargs):
        raise AssertionError("the per-column fallback ran")
    monkeypatch.setattr(tabular, "_fit_columns_one_by_one", refuse)
    monkeypatch.setattr(tabular, "_apply_columns_one_by_one", refuse)


# ------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("missing", ["mean", "median", "most_frequent", "drop", "none"])
@pytest.mark.parametrize("scale", ["standard", "minmax", "none"])
@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
def test_blocks_fit_and_apply_as_the_per_column_reference(monkeypatch, missing, scale, encoding):
    train = random_frame(300, seed=1)           # over 128 rows: numpy's pairwise sum splits the column
    plan = plan_of(train, missing, scale, encoding)
    monkeypatch.setattr(numeric_block, "BLOCK_VALUES", 1000)       # several column chunks
    no_column_by_column(monkeypatch)
    specs = fit_columns(train, plan)
    for spec in specs:
        if spec["kind"] == "numeric":
            values = train[spec["name"]].to_numpy(dtype=np.float64)
            impute, scale_stats = reference_numeric(values, plan.strategy(spec["name"]), scale)
            assert json.dumps(spec["impute"]) == json.dumps(impute), spec["name"]     # the same bits, in JSON
            assert json.dumps(spec["scale"]) == json.dumps(scale_stats), spec["name"]
            assert spec["dtype"] == str(train[spec["name"]].dtype)

    new = random_frame(80, seed=2, unknown=True)
    new = new[list(np.random.default_rng(3).permutation(new.columns))]     # another column order
    unseen: list = []
    x = apply_columns(new, specs, unseen=unseen)
    assert x.dtype == np.float32 and x.shape == (80, sum(len(s["outputs"]) for s in specs))
    assert np.array_equal(x, reference_outputs(new, specs), equal_nan=True)
    assert [u.column for u in unseen] == ["c1"] and set(u.values[0] for u in unseen) == {"purple"}


def test_blocks_equal_the_per_column_path_kept_for_errors():
    train = random_frame(150, seed=4)
    plan = plan_of(train, "median", "standard", "onehot",
                   impute={"n0": "mean", "n1": "none", "n2": "most_frequent", "c0": "most_frequent"})
    specs = fit_columns(train, plan)
    assert json.dumps(specs) == json.dumps(tabular._fit_columns_one_by_one(train, plan, None, "data"))
    new = random_frame(40, seed=5, unknown=True)
    blocks_unseen: list = []
    one_by_one_unseen: list = []
    x = apply_columns(new, specs, unseen=blocks_unseen)
    assert np.array_equal(x, tabular._apply_columns_one_by_one(new, specs, None, None, one_by_one_unseen),
                          equal_nan=True)
    assert [(u.column, u.positions.tolist()) for u in blocks_unseen] == [
        (u.column, u.positions.tolist()) for u in one_by_one_unseen]


def test_an_infinite_value_is_named_as_before(monkeypatch):
    train = random_frame(60, seed=6)
    train.loc[7, "n5"] = np.inf
    train.loc[9, "n8"] = -np.inf
    plan = plan_of(train, "mean", "standard", "onehot")
    with pytest.raises(NetkilnError, match=r"row 7: infinite value inf in the numeric column 'n5' \(1 such value\)"):
        fit_columns(train, plan)
    specs = fit_columns(random_frame(60, seed=6), plan)
    with pytest.raises(NetkilnError, match=r"row 9: infinite value -inf in the numeric column 'n8'"):
        apply_columns(train.assign(n5=1.0), specs)


def test_a_column_without_values_is_refused_in_column_order():
    train = random_frame(60, seed=7)
    train["n3"] = np.nan
    train["n9"] = np.nan
    with pytest.raises(NetkilnError, match="column 'n3' has no values in the training rows"):
        fit_columns(train, plan_of(train, "mean", "standard", "onehot"))


def test_a_wide_csv_loads_through_the_blocks_with_the_reference_numbers(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    rows, columns = 120, 3000
    x = rng.normal(size=(rows, columns)).round(3)
    x[rng.random(x.shape) < 0.05] = np.nan
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(columns)])
    frame["colour"] = rng.choice(["red", "blue"], size=rows)
    frame["y"] = rng.integers(0, 2, rows)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    no_column_by_column(monkeypatch)
    ds = load_dataset({"name": "csv", "path": str(tmp_path / "wide.csv"), "target": "y", "missing": "median"},
                      seed=0)
    read = read_table(tmp_path / "wide.csv")
    assert read.equals(pd.read_csv(tmp_path / "wide.csv", skipinitialspace=True))    # copied, not changed
    specs = ds.preprocessing["columns"]
    train = read.iloc[ds.split_indices["train"]]
    for spec in specs[:columns:97]:
        impute, scale = reference_numeric(train[spec["name"]].to_numpy(dtype=np.float64), "median", "standard")
        assert (spec["impute"], spec["scale"]) == (impute, scale)
    for split in ("train", "val", "test"):
        rows_of = read.iloc[ds.split_indices[split]]
        assert np.array_equal(getattr(ds, f"x_{split}").numpy(), reference_outputs(rows_of, specs))


def test_only_a_wide_frame_of_few_cells_is_copied_into_few_blocks(monkeypatch):
    from netkiln.data import tables

    wide = pd.DataFrame(np.arange(2 * 1500, dtype=np.float64).reshape(2, 1500))
    copied = tables.few_blocks(wide)
    assert copied is not wide and copied.equals(wide)
    narrow = wide.iloc[:, :1000]
    assert tables.few_blocks(narrow) is narrow                  # 1,000 columns: left as read
    monkeypatch.setattr(tables, "COPY_CELLS", 2 * 1500 - 1)
    assert tables.few_blocks(wide) is wide                      # too many cells: a copy would cost their memory
