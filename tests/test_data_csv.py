"""data=csv: the user's tables (CSV, TSV, Parquet), their preparation, splits and every bad-input error."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from netkiln.data import load_dataset, prepare_features, read_table
from netkiln.errors import NetkilnError


def mixed_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n).round(1)
    color = rng.choice(["red", "green", "blue"], n)
    score = rng.normal(0, 1, n).round(3)
    logit = (age - 40) / 5 + np.where(color == "red", 2.0, -1.0) + score
    frame = pd.DataFrame({"id": np.arange(n), "age": age, "color": color, "score": score,
                          "label": np.where(logit > 0, "yes", "no")})
    frame["age"] = frame["age"].astype(object)
    frame.loc[rng.choice(n, 15, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, 10, replace=False), "color"] = None
    return frame


@pytest.fixture
def mixed(tmp_path):
    p = tmp_path / "mixed.csv"
    mixed_frame().to_csv(p, index=False)
    return p


def cfg(path, **kw):
    return {"name": "csv", "path": str(path), "target": "label", **kw}


def err(node, seed=0) -> NetkilnError:
    with pytest.raises(NetkilnError) as e:
        load_dataset(node, seed=seed)
    return e.value


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------------------------- sources
def test_csv_loads_mixed_columns(mixed):
    ds = load_dataset(cfg(mixed, drop=["id"]))
    assert ds.layout == "flat" and ds.input_shape == (5,)
    assert ds.feature_names == ["age", "color=blue", "color=green", "color=red", "score"]
    assert ds.task.kind == "binary" and ds.task.class_names == ("no", "yes")
    assert ds.y_train.dtype == torch.int64 and ds.x_train.dtype == torch.float32
    assert sorted(sum(ds.split_indices.values(), [])) == list(range(200))
    assert ds.split_sizes == {"train": 140, "val": 30, "test": 30}
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_test).all()
    prep = json.loads(json.dumps(ds.preprocessing))       # plain JSON
    assert prep["kind"] == "table" and [c["name"] for c in prep["columns"]] == ["age", "color", "score"]
    assert prep["target"]["class_names"] == ["no", "yes"] and prep["task"]["kind"] == "binary"


def test_tsv_and_parquet_give_the_same_data(tmp_path, mixed):
    frame = pd.read_csv(mixed)
    frame.to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "m.parquet")
    a = load_dataset(cfg(mixed, drop=["id"]))
    for name in ("m.tsv", "m.parquet"):
        b = load_dataset(cfg(tmp_path / name, drop=["id"]))
        assert torch.allclose(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
        assert a.split_indices == b.split_indices


def test_split_indices_are_file_rows_and_reproducible(mixed):
    a, b = load_dataset(cfg(mixed), seed=3), load_dataset(cfg(mixed), seed=3)
    c = load_dataset(cfg(mixed), seed=4)
    assert a.split_indices == b.split_indices and torch.equal(a.x_train, b.x_train)
    assert a.split_indices["train"] != c.split_indices["train"]
    frame = pd.read_csv(mixed)
    # the ids are the file's row numbers: the test rows' ids come back through the split indices
    ids = a.x_test[:, a.feature_names.index("id")] * a.preprocessing["columns"][0]["scale"]["std"] \
        + a.preprocessing["columns"][0]["scale"]["mean"]
    assert np.allclose(ids.numpy(), frame["id"].to_numpy()[a.split_indices["test"]], atol=1e-3)
    # a pinned split: the same seed gives the same rows on every machine (numpy's PCG64 stream is fixed)
    assert a.split_indices["test"][:6] == [19, 45, 3, 199, 49, 34]


def test_split_indices_skip_filtered_rows(mixed):
    ds = load_dataset(cfg(mixed, filter="score > 0"))
    frame = pd.read_csv(mixed)
    kept = set(frame.index[frame.score > 0])
    assert set(sum(ds.split_indices.values(), [])) == kept


def test_task_inference(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "price": rng.normal(100, 5, n), "digit": rng.integers(0, 4, n),
                          "many": rng.integers(0, 500, n), "flag": rng.integers(0, 2, n).astype(bool)})
    p = tmp_path / "t.csv"
    frame.to_csv(p, index=False)
    base = {"name": "csv", "path": str(p), "features": ["a", "b"]}
    reg = load_dataset({**base, "target": "price"})
    assert reg.task.kind == "regression" and reg.y_train.shape[1] == 1 and reg.y_train.dtype == torch.float32
    assert abs(float(reg.y_train.mean()) - 100) < 5               # the target is not scaled
    multi = load_dataset({**base, "target": "digit"})
    assert multi.task.kind == "multiclass" and multi.task.class_names == ("0", "1", "2", "3")
    assert load_dataset({**base, "target": "many"}).task.kind == "regression"
    assert load_dataset({**base, "target": "many", "task": "classification", "split": {"stratify": False}}) \
        .task.num_outputs == len(np.unique(frame.many))
    assert load_dataset({**base, "target": "flag"}).task.class_names == ("False", "True")
    two = load_dataset({**base, "target": ["price", "many"]})
    assert two.task.kind == "regression" and two.task.num_outputs == 2
    assert load_dataset({**base, "target": "digit", "task": "regression"}).task.kind == "regression"


# ----------------------------------------------------------------------------------------------- preparation
def test_select_and_drop_columns(mixed):
    assert load_dataset(cfg(mixed, features=["age", "score"])).feature_names == ["age", "score"]
    ds = load_dataset(cfg(mixed, drop=["id", "color"]))
    assert ds.feature_names == ["age", "score"]


def test_row_filter(mixed):
    ds = load_dataset(cfg(mixed, filter="color == 'red' and score > -1"))
    frame = pd.read_csv(mixed)
    assert sum(ds.split_sizes.values()) == int(((frame.color == "red") & (frame.score > -1)).sum())
    assert ds.source_info["rows_after_filter"] == sum(ds.split_sizes.values())


def test_statistics_come_from_training_rows_only(tmp_path):
    # the validation/test rows are far away: any leak moves the statistics
    n = 100
    frame = pd.DataFrame({"v": np.arange(n, dtype=float), "c": ["a"] * 50 + ["b"] * 50,
                          "label": np.arange(n) % 2, "fold": ["train"] * 60 + ["val"] * 20 + ["test"] * 20})
    frame.loc[60:, "v"] = 1000.0
    frame.loc[60:, "c"] = "zzz"                      # a category seen only outside training
    frame.loc[[3, 5], "v"] = np.nan
    p = tmp_path / "f.csv"
    frame.to_csv(p, index=False)
    ds = load_dataset(cfg(p, split_column="fold", missing="median"))
    assert ds.split_indices == {"train": list(range(60)), "val": list(range(60, 80)), "test": list(range(80, 100))}
    train_v = frame.v[:60].dropna().to_numpy()
    col = ds.preprocessing["columns"][0]
    assert col["impute"]["value"] == pytest.approx(np.median(train_v))
    filled = frame.v[:60].fillna(np.median(train_v)).to_numpy()
    assert col["scale"]["mean"] == pytest.approx(filled.mean()) and col["scale"]["std"] == pytest.approx(filled.std())
    assert ds.preprocessing["columns"][1]["categories"] == ["a", "b"]
    assert abs(float(ds.x_train[:, 0].mean())) < 1e-5            # train is standardised ...
    assert float(ds.x_val[:, 0].mean()) > 5                       # ... with train statistics, val is not
    assert ds.x_test[:, 1:].sum() == 0                            # an unseen category: all-zero one-hot


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_imputation(tmp_path, strategy):
    frame = pd.DataFrame({"v": [1.0, 2.0, 2.0, 9.0, np.nan] * 8, "label": [0, 1] * 20})
    p = tmp_path / "i.csv"
    frame.to_csv(p, index=False)
    ds = load_dataset(cfg(p, missing=strategy, scale="none", split_column=None))
    tr = frame.v.to_numpy()[ds.split_indices["train"]]
    present = tr[~np.isnan(tr)]
    want = {"mean": present.mean(), "median": np.median(present),
            "most_frequent": pd.Series(present).mode().min()}[strategy]
    assert ds.preprocessing["columns"][0]["impute"]["value"] == pytest.approx(want)
    filled = frame.v.to_numpy()[ds.split_indices["train"]]
    assert np.allclose(ds.x_train[:, 0].numpy(), np.where(np.isnan(filled), want, filled))


def test_missing_drop_removes_rows_before_the_split(mixed):
    ds = load_dataset(cfg(mixed, missing="drop"))
    frame = pd.read_csv(mixed)
    assert sum(ds.split_sizes.values()) == int(frame[["age", "color"]].notna().all(axis=1).sum())
    assert ds.source_info["rows_dropped_missing"] == 25 - int((frame.age.isna() & frame.color.isna()).sum())
    only_age = load_dataset(cfg(mixed, impute={"age": "drop"}))
    assert sum(only_age.split_sizes.values()) == int(frame.age.notna().sum())


def test_categorical_encodings(tmp_path):
    frame = pd.DataFrame({"size": ["S", "M", "L", "M"] * 10, "code": [3, 1, 2, 1] * 10, "label": [0, 1] * 20})
    p = tmp_path / "c.csv"
    frame.to_csv(p, index=False)
    auto = load_dataset(cfg(p))
    assert auto.feature_names == ["size=L", "size=M", "size=S", "code"]       # integer code column is numeric
    forced = load_dataset(cfg(p, categorical=["code"]))
    assert forced.feature_names == ["size=L", "size=M", "size=S", "code=1", "code=2", "code=3"]
    ordinal = load_dataset(cfg(p, categorical_encoding="ordinal", scale="none"))
    assert ordinal.feature_names == ["size", "code"]
    assert set(ordinal.x_train[:, 0].tolist()) == {0.0, 1.0, 2.0}
    mixed_enc = load_dataset(cfg(p, encodings={"size": "ordinal"}, categorical=["code"]))
    assert mixed_enc.feature_names == ["size", "code=1", "code=2", "code=3"]


def test_text_column_of_mostly_numbers_is_numeric_and_na_values(tmp_path):
    rows = "\n".join(f"{i},{i % 2}" for i in range(30))
    p = write(tmp_path, "v,label\n" + rows + "\n?,1\n")
    e = err(cfg(p))
    assert e.line == 32 and e.column == "v" and "'?'" in str(e)
    ds = load_dataset(cfg(p, na_values=["?"]))
    assert ds.feature_names == ["v"] and torch.isfinite(ds.x_train).all()


@pytest.mark.parametrize("scale", ["standard", "minmax", "none"])
def test_scaling(tmp_path, scale):
    frame = pd.DataFrame({"v": np.linspace(10, 20, 60), "label": [0, 1, 2] * 20})
    p = tmp_path / "s.csv"
    frame.to_csv(p, index=False)
    ds = load_dataset(cfg(p, scale=scale))
    v = ds.x_train[:, 0]
    if scale == "standard":
        assert abs(float(v.mean())) < 1e-5 and abs(float(v.std(unbiased=False)) - 1) < 1e-4
    elif scale == "minmax":
        assert float(v.min()) == pytest.approx(0) and float(v.max()) == pytest.approx(1)
    else:
        assert float(v.min()) >= 10 and float(v.max()) <= 20


def test_test_file_is_honoured(tmp_path, mixed):
    frame = pd.read_csv(mixed)
    frame.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[150:].to_csv(tmp_path / "test.csv", index=False)
    ds = load_dataset(cfg(tmp_path / "train.csv", test_path=str(tmp_path / "test.csv"),
                          split={"val": 0.2, "test": 0.15}))
    assert ds.split_sizes == {"train": 120, "val": 30, "test": 50}
    assert ds.split_indices["test"] == list(range(50))
    assert ds.source_info["split"]["own_test_set"]


def test_prepare_features_reapplies_the_saved_preparation(mixed):
    ds = load_dataset(cfg(mixed, drop=["id"]))
    prep = json.loads(json.dumps(ds.preprocessing))
    frame = read_table(mixed)
    x = prepare_features(frame.drop(columns=["id"]), prep)
    assert x.dtype == torch.float32 and x.shape == (200, 5)
    assert torch.allclose(x[ds.split_indices["test"]], ds.x_test, atol=1e-6)
    with pytest.raises(NetkilnError, match="'id'"):
        prepare_features(frame, prep)                          # an extra column
    assert torch.allclose(prepare_features(frame, prep, allow_extra=True), x)
    with pytest.raises(NetkilnError, match="lacks the column 'colour'|lacks the column 'color'") as e:
        prepare_features(frame.rename(columns={"color": "colour"}), prep, allow_extra=True)
    assert "Did you mean 'colour'" in str(e.value)
    one = prepare_features([{"age": 40, "color": "red", "score": 0.5}], prep)
    assert one.shape == (1, 5) and one[0, 3] == 1.0
    with pytest.raises(NetkilnError, match="non-numeric value 'old'"):
        prepare_features([{"age": "old", "color": "red", "score": 0.5}], prep)


# ----------------------------------------------------------------------------------------------- bad input
def test_missing_file_did_you_mean(tmp_path, mixed):
    e = err(cfg(tmp_path / "mixd.csv"))
    assert e.key == "data.path" and "not found" in str(e) and "Did you mean 'mixed.csv'" in str(e)
    assert err(cfg(tmp_path / "nope" / "x.csv")).key == "data.path"
    assert "folder" in str(err(cfg(tmp_path)))


def test_empty_file_and_header_only(tmp_path):
    e = err(cfg(write(tmp_path, "")))
    assert "empty" in str(e) and e.file.endswith("t.csv")
    e = err(cfg(write(tmp_path, "a,label\n", "h.csv")))
    assert "no data rows" in str(e)


def test_unknown_target_and_feature_columns(mixed):
    e = err({**cfg(mixed), "target": "lable"})
    assert e.key == "data.target" and "Did you mean 'label'" in str(e) and "mixed.csv" in str(e)
    e = err(cfg(mixed, features=["age", "colour"]))
    assert e.key == "data.features" and "Did you mean 'color'" in str(e)
    assert err(cfg(mixed, drop=["idd"])).key == "data.drop"
    assert err(cfg(mixed, categorical=["colr"])).key == "data.categorical"
    assert "Did you mean 'score'" in str(err(cfg(mixed, filter="scor > 0")))
    assert err(cfg(mixed, filter="score >")).key == "data.filter"
    assert "keeps none" in str(err(cfg(mixed, filter="score > 100")))


def test_non_numeric_value_names_file_line_and_column(tmp_path):
    rows = [f"{i * 0.5},{i % 3},{'a' if i % 2 else 'b'}" for i in range(40)]
    rows[16] = "oops,1,a"                  # data row 16 → line 18 (header is line 1)
    text = "height,label,kind\n" + "\n".join(rows[:10]) + "\n\n" + "\n".join(rows[10:]) + "\n"   # a blank line
    e = err(cfg(write(tmp_path, text)))
    assert e.file.endswith("t.csv") and e.line == 19 and e.column == "height"
    assert "non-numeric value 'oops'" in str(e) and "line 19" in str(e)
    e = err(cfg(write(tmp_path, "height,label\n1,a\n2,b\n3,a\n", "f.csv"), numeric=["label"]))
    assert e.key in ("data.numeric", "data.target")


def test_quoted_newlines_keep_line_numbers(tmp_path):
    rows = ['1,"two\nlines",0', '2,x,1', 'bad,y,0'] + [f"{i},z,{i % 2}" for i in range(20)]
    e = err({"name": "csv", "path": str(write(tmp_path, "v,t,label\n" + "\n".join(rows) + "\n")), "target": "label"})
    assert e.line == 5 and e.column == "v"


def test_malformed_row_names_the_line(tmp_path):
    e = err(cfg(write(tmp_path, "a,label\n1,0\n2,1,7\n3,0\n")))
    assert e.line == 3 and "fields" in str(e)


def test_single_class_target(tmp_path):
    e = err(cfg(write(tmp_path, "a,label\n" + "".join(f"{i},yes\n" for i in range(20)))))
    assert "single class ('yes')" in str(e) and e.column == "label"


def test_nans_left_after_preparation(mixed):
    e = err(cfg(mixed, missing="none"))
    assert "left after preparation" in str(e) and e.column in ("age", "color") and e.line is not None
    frame = pd.read_csv(mixed)
    col = e.column
    assert pd.isna(frame[col].iloc[e.line - 2])


def test_split_that_leaves_a_split_empty(mixed, tmp_path):
    assert err(cfg(mixed, split={"val": 0.001})).key == "data.split.val"
    assert err(cfg(mixed, split={"val": 0.5, "test": 0.5})).key == "data.split.val"
    frame = pd.read_csv(mixed)
    frame["fold"] = "train"
    frame.loc[:20, "fold"] = "test"
    frame.to_csv(tmp_path / "f.csv", index=False)
    e = err(cfg(tmp_path / "f.csv", split_column="fold"))
    assert "no 'val' rows" in str(e)
    frame.loc[30, "fold"] = "holdout"
    frame.to_csv(tmp_path / "f.csv", index=False)
    e = err(cfg(tmp_path / "f.csv", split_column="fold"))
    assert e.line == 32 and "'holdout'" in str(e)


def test_identifier_like_text_column(tmp_path):
    frame = pd.DataFrame({"name": [f"person{i}" for i in range(80)], "v": range(80), "label": [0, 1] * 40})
    frame.to_csv(tmp_path / "n.csv", index=False)
    e = err(cfg(tmp_path / "n.csv"))
    assert e.column == "name" and "identifier" in str(e)
    assert load_dataset(cfg(tmp_path / "n.csv", drop=["name"])).feature_names == ["v"]


def test_config_mistakes(mixed):
    assert err(cfg(mixed, missing="avg")).key == "data.missing"
    assert err(cfg(mixed, scale="zscore")).key == "data.scale"
    assert err(cfg(mixed, standardize=True)).key == "data.standardize"
    assert "Did you mean 'categorical'" in str(err(cfg(mixed, categorial=["color"])))
    assert err(cfg(mixed, impute={"age": "avg"})).key == "data.impute.age"
    assert err(cfg(mixed, task="binary", target="color")).key == "data.task"     # 3 classes
    assert err({"name": "csv", "path": str(mixed)}).key == "data.target"


def test_cli_bad_csv_exits_2_without_traceback(tmp_path, mixed, capsys):
    from netkiln.cli import main

    run = tmp_path / "run"
    rc = main(["train", "data=csv", f"data.path={mixed}", "data.target=lable", "model=mlp",
               f"hydra.run.dir={run}"])
    err_text = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err_text and "Did you mean 'label'" in err_text
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert not (run / "summary.txt").exists()
    assert not (run / "checkpoints").exists()


def test_train_end_to_end_on_a_csv(tmp_path):
    """Mixed numeric and categorical columns, some values missing: the MLP learns it."""
    from netkiln.cli import main

    p = tmp_path / "people.csv"
    mixed_frame(n=500, seed=7).to_csv(p, index=False)
    run = tmp_path / "run"
    rc = main(["train", "data=csv", f"data.path={p}", "data.target=label", "data.drop=[id]", "model=mlp",
               "trainer.max_epochs=8", "trainer.enable_progress_bar=false", "batch_size=32", "optimizer.lr=0.003",
               f"hydra.run.dir={run}"])
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"]["class_names"] == ["no", "yes"]
    assert metrics["test"]["acc"] > 0.85, metrics["test"]


def test_parquet_errors_name_the_row(tmp_path):
    frame = pd.DataFrame({"v": [str(i) for i in range(30)], "label": [0, 1] * 15})
    frame.loc[12, "v"] = "twelve"
    frame.to_parquet(tmp_path / "p.parquet")
    e = err(cfg(tmp_path / "p.parquet"))
    assert e.line is None and "data row 12" in str(e)
    assert e.file.endswith("p.parquet") and e.column == "v" and "'twelve'" in str(e)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nonsense")
    assert "not a readable Parquet file" in str(err(cfg(tmp_path / "bad.parquet")))
