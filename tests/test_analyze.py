"""`netkiln analyze`: the report (rich tables), analysis.json and the PNG; bad input leaves nothing behind."""
import json

import numpy as np
import pandas as pd
import pytest

from netkiln.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def analyze(tmp_path, capsys, *overrides, name="report"):
    out = tmp_path / name
    rc = main(["analyze", *overrides, f"hydra.run.dir={out}"])
    captured = capsys.readouterr()
    return rc, out, captured.out, captured.err


@pytest.fixture
def messy_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({
        "x": rng.normal(size=n).round(3),
        "x_copy": None,
        "const": 7,
        "city": rng.choice(["Oslo", "Lima", "Pune"], n),
        "label": np.where(np.arange(n) < 100, "common", "rare"),      # 100 vs 20: imbalanced
    })
    frame["x_copy"] = frame["x"]
    frame.loc[[1, 2, 3], "x"] = np.nan
    frame.loc[[1, 2, 3], "x_copy"] = np.nan
    frame.loc[[5, 9], "city"] = None
    frame = pd.concat([frame, frame.iloc[[10, 11, 12, 13]]], ignore_index=True)    # 4 duplicate rows
    p = tmp_path / "messy.csv"
    frame.to_csv(p, index=False)
    return p, frame


def test_analyze_csv_report(tmp_path, capsys, messy_csv):
    p, frame = messy_csv
    rc, out, stdout, _ = analyze(tmp_path, capsys, "data=csv", f"data.path={p}", "data.target=label")
    assert rc == 0
    assert (out / "analysis.png").read_bytes()[:8] == PNG
    report = json.loads((out / "analysis.json").read_text())
    assert report["rows"] == len(frame) and sum(report["splits"].values()) == len(frame)
    assert report["task"]["kind"] == "binary" and report["task"]["inferred"]
    cols = {c["name"]: c for c in report["columns"]}
    assert cols["x"]["missing"] == 3 and cols["city"]["missing"] == 2 and cols["label"]["role"] == "target"
    assert cols["city"]["kind"] == "categorical" and cols["x"]["kind"] == "numeric"
    assert cols["x"]["mean"] == pytest.approx(frame["x"].mean(), rel=1e-4)
    assert cols["const"].get("constant") and cols["x_copy"].get("duplicate_of") == "x"
    classes = {c["class"]: c for c in report["target"]["classes"]}
    assert classes["common"]["count"] == 104 and classes["rare"]["count"] == 20
    assert report["target"]["imbalance_ratio"] == pytest.approx(5.2)
    assert report["duplicates"]["duplicate_rows"] == int(frame.duplicated().sum()) >= 4
    shared = report["duplicates"]["shared_between_splits"]
    assert sum(shared.values()) >= 1            # 4 duplicated rows spread over 3 splits: some land in two
    text = " ".join(report["warnings"])
    for needle in ("class imbalance", "constant", "duplicates column 'x'", "duplicate row", "missing value"):
        assert needle in text, needle
    for needle in ("target distribution", "common", "columns", "warning:", "binary (inferred)"):
        assert needle in stdout, needle
    assert report["config"]["data"]["path"] == str(p)


def test_analyze_same_split_as_train(tmp_path, capsys, messy_csv):
    from netkiln.data import load_dataset

    p, _ = messy_csv
    _, out, _, _ = analyze(tmp_path, capsys, "data=csv", f"data.path={p}", "data.target=label", "seed=5")
    report = json.loads((out / "analysis.json").read_text())
    ds = load_dataset({"name": "csv", "path": str(p), "target": "label"}, seed=5)
    assert report["splits"] == ds.split_sizes
    per_split = {s: sum(c[s] for c in report["target"]["classes"]) for s in ("train", "val", "test")}
    assert per_split == ds.split_sizes


def test_analyze_builtin_and_regression(tmp_path, capsys):
    rc, out, stdout, _ = analyze(tmp_path, capsys, "data=diabetes")
    assert rc == 0 and "regression" in stdout
    report = json.loads((out / "analysis.json").read_text())
    assert report["target"]["kind"] == "values" and len(report["features"]) == 10
    assert (out / "analysis.png").exists()


def test_analyze_names_a_tables_regression_target(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "region": rng.choice(["N", "S", "E"], 60)})
    frame["cost_usd"] = 1000 + 500 * frame["x"]
    frame.to_csv(tmp_path / "costs.csv", index=False)
    rc, out, stdout, _ = analyze(tmp_path, capsys, "data=csv", f"data.path={tmp_path / 'costs.csv'}",
                                 "data.target=cost_usd")
    assert rc == 0 and "cost_usd │" in stdout            # the column's name, not the index 0
    assert json.loads((out / "analysis.json").read_text())["target"]["targets"][0]["name"] == "cost_usd"


def test_analyze_sequences_and_images(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "seq.npz", x=rng.normal(size=(60, 16, 2)), y=np.arange(60) % 3)
    rc, out, _, _ = analyze(tmp_path, capsys, "data=npz", f"data.path={tmp_path / 'seq.npz'}", name="seq")
    assert rc == 0 and (out / "analysis.png").read_bytes()[:8] == PNG
    report = json.loads((out / "analysis.json").read_text())
    assert report["layout"] == "sequence" and [f["name"] for f in report["features"]][0].startswith("feature 0")

    from test_data_npz_images import make_images
    root = make_images(tmp_path / "shapes", per_class=6)
    rc, out, stdout, _ = analyze(tmp_path, capsys, "data=images", f"data.path={root}", "data.image_size=[8,8]",
                                 name="img")
    assert rc == 0 and (out / "analysis.png").read_bytes()[:8] == PNG
    report = json.loads((out / "analysis.json").read_text())
    assert report["input_shape"] == [3, 8, 8] and len(report["features"]) == 3
    assert "files" not in report["source"]


def test_analyze_bad_input_leaves_nothing(tmp_path, capsys, messy_csv):
    p, _ = messy_csv
    rc, out, _, err = analyze(tmp_path, capsys, "data=csv", f"data.path={p}", "data.target=labl")
    assert rc == 2 and "Did you mean 'label'" in err and "Traceback" not in err
    assert not out.exists()


def test_analyze_a_streamed_image_folder_reads_it_a_batch_at_a_time(tmp_path, capsys, monkeypatch):
    """data.streaming on data=images: the exact numbers of the in-memory analysis (class counts, per-channel
    statistics, duplicates) from one pass that decodes a few images at a time, never the folder; the figures come
    from a sample, and the report says so."""
    import shutil

    from netkiln.data import analyze as an
    from netkiln.data import analyze_images
    from netkiln.data.image_stream import ImageRows
    from test_data_npz_images import make_images

    root = make_images(tmp_path / "shapes", per_class=15)
    shutil.copy(root / "circle" / "001.png", root / "circle" / "zz_same.png")        # a duplicate
    shutil.copy(root / "circle" / "003.png", root / "square" / "zz_other.png")       # same pixels, other class
    node = {"name": "images", "path": str(root), "image_size": [8, 8], "split": {"val": 0.2, "test": 0.2}}
    memory, _ = an.analyze_data({**node, "streaming": False})

    decoded: list[int] = []
    decode = ImageRows.decode

    def spy(self, rows):
        decoded.append(len(np.asarray(rows).reshape(-1)))
        return decode(self, rows)

    def whole(*args, **kwargs):
        raise AssertionError("the streamed folder was read whole")

    monkeypatch.setattr(ImageRows, "decode", spy)
    monkeypatch.setattr(an, "_array_features", whole)
    monkeypatch.setattr(an, "_row_hashes", whole)
    monkeypatch.setattr(analyze_images, "BATCH_IMAGES", 5)
    # the folder (32 images of 8x8x3) is larger than the budget: streamed, decoded in this process (workers=0)
    streamed, context = an.analyze_data({**node, "memory_budget": 1000, "workers": 0})
    assert isinstance(context["dataset"].x_train, ImageRows)
    assert sum(decoded) >= 32 and max(decoded) <= 5             # every image, never more than a batch at a time
    assert streamed["target"] == memory["target"] and streamed["rows"] == memory["rows"] == 32
    assert streamed["input_shape"] == memory["input_shape"] == [3, 8, 8]
    assert streamed["duplicates"] == memory["duplicates"] and memory["duplicates"]["duplicate_rows"] == 1
    assert memory["duplicates"]["conflicting_feature_rows"] == 1
    assert len(streamed["features"]) == 3
    for m, s in zip(memory["features"], streamed["features"]):
        assert m["name"] == s["name"]
        for k in ("mean", "std", "min", "max"):
            assert s[k] == pytest.approx(m[k], abs=2e-6), (m["name"], k)
    assert "sample" not in memory and streamed["sample"]["images_plotted"] == 8
    assert "first 4 training images of each class (8 images)" in streamed["sample"]["note"]   # 2 classes: all shown

    # the command: every figure drawn (augment samples too), the sampling said in its output
    monkeypatch.undo()
    rc, out, stdout, err = analyze(tmp_path, capsys, "data=images", f"data.path={root}", "data.image_size=[8,8]",
                                   "data.streaming=true", "data.workers=1", "data.augment=[random_flip]")
    assert rc == 0, err
    assert (out / "analysis.png").read_bytes()[:8] == PNG and (out / "augment_samples.png").read_bytes()[:8] == PNG
    report = json.loads((out / "analysis.json").read_text())
    assert "augment_samples.png the first 6" in report["sample"]["note"]
    assert "sampled:" in stdout and "one pass over every image" in stdout
