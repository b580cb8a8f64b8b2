"""Tables larger than memory (data.streaming, data.memory_budget): the streamed path fits the same statistics and
splits the same rows as the in-memory path, shuffles every epoch over the whole file, and trains alike."""
import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from netkiln.cli import main
from netkiln.data import load_dataset
from netkiln.errors import NetkilnError
from netkiln.memory import parse_budget
from netkiln.training.streaming_batches import DiskTrainChunks


def table(n=600, seed=0):
    """A learnable table with missing values, a categorical and an integer column."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    logit = 2 * a - b + np.where(color == "red", 1.5, -0.5)
    frame = pd.DataFrame({"a": a, "b": b, "count": rng.integers(0, 9, n).astype(float), "color": color,
                          "size": rng.choice(["S", "M", "L"], n), "label": np.where(logit > 0, "yes", "no")})
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame.loc[rng.random(n) < 0.1, "count"] = np.nan
    frame.loc[rng.random(n) < 0.1, "color"] = None
    return frame


@pytest.fixture(params=["csv", "parquet"])
def table_file(request, tmp_path):
    path = tmp_path / f"t.{request.param}"
    frame = table()
    if request.param == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, row_group_size=100)
    return path


def node(path, **kw):
    return {"name": "csv", "path": str(path), "target": "label", "split": {"val": 0.2, "test": 0.2, "seed": 3},
            **kw}


def both(path, **kw):
    memory = load_dataset(node(path, streaming=False, **kw))
    streamed = load_dataset(node(path, streaming=True, chunk_rows=70, **kw))
    return memory, streamed


def assert_same_numbers(a, b, where="preprocessing"):
    """Equal JSON, floats to rounding (a streamed mean is merged chunk by chunk)."""
    if isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-15), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            assert_same_numbers(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_numbers(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("settings", [
    {}, {"missing": "median"}, {"missing": "most_frequent", "encodings": {"size": "ordinal"}},
    {"scale": "minmax", "impute": {"count": "drop"}}, {"categorical": ["count"]}])
def test_streamed_fit_and_split_equal_the_in_memory_ones(table_file, settings):
    memory, streamed = both(table_file, **settings)
    assert_same_numbers(memory.preprocessing, streamed.preprocessing)
    assert streamed.preprocessing["columns"][0]["scale"]["method"] in ("standard", "minmax")
    for split in ("train", "val", "test"):
        rows = np.asarray(memory.split_indices[split])
        order = np.argsort(rows)        # streamed splits keep the file's row order
        assert np.array_equal(rows[order], np.asarray(streamed.split_indices[split])), split
        x_memory, x_streamed = getattr(memory, f"x_{split}"), getattr(streamed, f"x_{split}")
        assert torch.allclose(x_memory[order], x_streamed, atol=1e-6), split
        assert torch.equal(getattr(memory, f"y_{split}")[order], getattr(streamed, f"y_{split}")), split
    assert streamed.streamed is not None and memory.streamed is None


def test_streamed_split_column(tmp_path):
    frame = table(300)
    frame["part"] = np.random.default_rng(1).choice(["train", "val", "test"], 300, p=[0.6, 0.2, 0.2])
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    memory, streamed = both(path, split_column="part")
    for split in ("train", "val", "test"):
        assert sorted(memory.split_indices[split]) == list(streamed.split_indices[split])
    assert_same_numbers(memory.preprocessing, streamed.preprocessing)


def test_a_column_that_turns_to_text_late_in_the_file(tmp_path):
    """Chunks see a column as numbers, then as text: the kind is decided over the whole column as in memory, and
    a stray word in a numeric column is refused at its line."""
    frame = table(400)
    frame["count"] = frame["count"].astype(object)
    frame.loc[390:, "count"] = "many"             # 10 words in 400 values: still a numeric column
    path = tmp_path / "late.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(NetkilnError) as memory_err:
        load_dataset(node(path, streaming=False))
    with pytest.raises(NetkilnError) as streamed_err:
        load_dataset(node(path, streaming=True, chunk_rows=50))
    assert streamed_err.value.file == str(path) and "many" in streamed_err.value.message
    assert streamed_err.value.line == memory_err.value.line == 392
    frame.loc[200:, "count"] = "many"             # half words: a categorical column either way
    frame.to_csv(path, index=False)
    memory, streamed = both(path)
    assert memory.source_info["columns"]["count"] == streamed.source_info["columns"]["count"] == "categorical"
    assert_same_numbers(memory.preprocessing, streamed.preprocessing)


def test_auto_keeps_small_tables_in_memory_and_streams_over_the_budget(table_file, caplog):
    with caplog.at_level(logging.INFO, logger="netkiln"):
        small = load_dataset(node(table_file))
    assert small.streamed is None
    assert "in memory, data.streaming=auto" in caplog.text and "within data.memory_budget" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="netkiln"):
        big = load_dataset(node(table_file, memory_budget="20KB"))
    assert big.streamed is not None
    assert "streamed from disk" in caplog.text and "more than data.memory_budget=19.5 KiB" in caplog.text


@pytest.mark.parametrize("value, ok", [("256MB", 256_000_000), ("1GiB", 2 ** 30), (4096, 4096), ("2 gb", 2e9)])
def test_budget_values(value, ok):
    assert parse_budget(value) == ok


@pytest.mark.parametrize("settings, key", [({"memory_budget": "lots"}, "data.memory_budget"),
                                           ({"memory_budget": -1}, "data.memory_budget"),
                                           ({"memory_budget": 1.5}, "data.memory_budget"),     # not 1 byte
                                           ({"streaming": "sometimes"}, "data.streaming"),
                                           ({"streaming": True, "test_path": "x.csv"}, "data.test_path"),
                                           ({"streaming": True, "test_path": "x.csv", "split_column": "size"},
                                            "data.test_path")])
def test_bad_streaming_settings(table_file, settings, key):
    with pytest.raises(NetkilnError) as e:
        load_dataset(node(table_file, **settings))
    assert e.value.key == key


# ----------------------------------------------------------------------------------------------- the shuffle
def chunks(ds, budget, seed=0, epoch=0, batch_size=8, per_chunk=2):
    batches = DiskTrainChunks(ds.streamed["train"], ds.y_train, batch_size, per_chunk, seed, budget,
                              epoch=lambda: epoch)
    return batches, list(batches)


def test_each_epoch_visits_every_training_row_once_in_a_seeded_order(table_file):
    ds = load_dataset(node(table_file, streaming=True, chunk_rows=64))
    budget = 2000            # a window of ~1000 bytes: 40 of the 360 training rows (several windows an epoch)
    batches, epoch0 = chunks(ds, budget)
    assert batches.window_blocks * batches.block_rows < batches.rows and batches.window_blocks > 1
    assert len(epoch0) == len(batches) and all(len(c) == batches.chunk_rows for c in epoch0[:-1])
    x0 = torch.cat([c.x for c in epoch0])
    rows = {r.tobytes(): i for i, r in enumerate(ds.x_train.numpy())}
    order0 = [rows[r.tobytes()] for r in x0.numpy()]
    assert sorted(order0) == list(range(len(ds.x_train)))                  # every row exactly once
    assert order0 == list(batches.row_order(0))
    y0 = torch.cat([c.y for c in epoch0])
    assert torch.equal(y0, ds.y_train[order0])                              # rows keep their targets
    order1 = [rows[r.tobytes()] for r in torch.cat([c.x for c in chunks(ds, budget, epoch=1)[1]]).numpy()]
    again = [rows[r.tobytes()] for r in torch.cat([c.x for c in chunks(ds, budget)[1]]).numpy()]
    assert order1 != order0 and again == order0                             # differs by epoch, same per seed
    # not just within a block: the first batch draws rows from more than one block
    assert len({i // batches.block_rows for i in order0[:8]}) > 1


def test_budget_holding_every_row_gives_a_full_permutation(table_file):
    ds = load_dataset(node(table_file, streaming=True, chunk_rows=64))
    batches, _ = chunks(ds, budget=10 ** 7)
    assert batches.window_blocks * batches.block_rows >= batches.rows
    assert sorted(batches.row_order(4)) == list(range(batches.rows))


# ----------------------------------------------------------------------------------------------- end to end
TRAIN = ["data=csv", "data.target=label", "trainer=debug", "trainer.enable_progress_bar=false", "batch_size=32",
         "model=mlp", "callbacks=none"]


def train(tmp_path, path, *overrides, name="run"):
    run = tmp_path / name
    rc = main(["train", *TRAIN, f"data.path={path}", f"hydra.run.dir={run}", *overrides])
    return rc, run


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_streamed_training_writes_a_run(tmp_path):
    path = tmp_path / "t.csv"
    table(300).to_csv(path, index=False)
    rc, run = train(tmp_path, path, "trainer.max_epochs=1", "data.streaming=true", "data.memory_budget=20KB")
    assert rc == 0
    m = metrics(run)
    assert m["status"] == "ok" and m["steps"] == 7 and set(m["test"]) >= {"acc", "loss"}   # 210 rows / 32
    assert (run / "model" / "weights.safetensors").exists()


@pytest.mark.slow
def test_streamed_training_learns_like_in_memory(tmp_path):
    path = tmp_path / "t.parquet"
    table(1200).to_parquet(path, row_group_size=200)
    rc, memory = train(tmp_path, path, "trainer.max_epochs=6", "data.streaming=false", name="memory")
    assert rc == 0
    rc, streamed = train(tmp_path, path, "trainer.max_epochs=6", "data.memory_budget=40KB", name="streamed")
    assert rc == 0
    m, s = metrics(memory), metrics(streamed)
    assert m["steps"] == s["steps"] == 6 * 27            # 840 training rows / 32
    assert m["test"]["acc"] > 0.85 and s["test"]["acc"] > 0.85
    assert abs(m["test"]["acc"] - s["test"]["acc"]) < 0.05
    assert "streamed from disk" in (streamed / "train.log").read_text()


@pytest.mark.slow
def test_resumed_streamed_run_repeats_the_epoch_order(tmp_path):
    path = tmp_path / "t.csv"
    table(400).to_csv(path, index=False)
    stream = ["data.streaming=true", "data.memory_budget=8KB", "data.chunk_rows=50"]
    rc, run = train(tmp_path, path, "trainer.max_epochs=2", *stream)
    assert rc == 0
    rc = main(["train", *TRAIN, f"data.path={path}", f"hydra.run.dir={run}", "trainer.max_epochs=4", *stream,
               "resume=true"])
    assert rc == 0
    rc, straight = train(tmp_path, path, "trainer.max_epochs=4", *stream, name="straight")
    assert rc == 0
    resumed, direct = metrics(run), metrics(straight)
    assert resumed["steps"] == direct["steps"]
    assert resumed["val"]["loss"] == pytest.approx(direct["val"]["loss"], abs=1e-6)


def test_budget_smaller_than_one_batch_is_refused(tmp_path, capsys):
    path = tmp_path / "t.csv"
    table(200).to_csv(path, index=False)
    rc, run = train(tmp_path, path, "data.memory_budget=1KB", "trainer.max_epochs=1")
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "data.memory_budget" in err and "smaller than one batch" in err and "Traceback" not in err
    assert not (run / "model").exists() and not (run / "checkpoints").exists()
    assert not (run / "summary.txt").exists()


# ----------------------------------------------------------------------------------------------- analyze
def test_analyze_of_a_table_streamed_by_choice_does_not_blame_the_budget(tmp_path):
    from netkiln.data import analyze

    path = tmp_path / "t.csv"
    table(300).to_csv(path, index=False)
    streamed, _ = analyze.analyze_data(node(path, streaming=True, chunk_rows=64))
    note = streamed["sample"]["note"]
    assert "data.streaming" in note and "memory_budget" not in note and "sample of 300 rows" in note


def test_analyze_streams_a_table_over_the_budget(tmp_path, monkeypatch):
    """Statistics by passes (exact), samples for the rest; the same numbers as the in-memory analysis."""
    from netkiln.data import analyze, streaming

    path = tmp_path / "t.parquet"
    table(500).to_parquet(path, row_group_size=100)
    monkeypatch.setattr(streaming, "SAMPLE_ROWS", 200)
    memory, _ = analyze.analyze_data(node(path, streaming=False))
    streamed, context = analyze.analyze_data(node(path, memory_budget="10KB", chunk_rows=64))
    assert context["dataset"].streamed is not None and len(context["raw"].table["frame"]) == 200
    assert streamed["sample"]["rows"] == 200 and "sample" not in memory
    assert "a seeded sample of 200 rows" in streamed["sample"]["note"]      # the printout says how many
    assert streamed["rows"] == memory["rows"] and streamed["target"] == memory["target"]
    for m, s in zip(memory["columns"], streamed["columns"]):
        assert m["name"] == s["name"] and m["missing"] == s["missing"] and m["kind"] == s["kind"]
        for k in ("mean", "std", "min", "max"):
            if k in m:
                assert s[k] == pytest.approx(m[k], rel=1e-5), (m["name"], k)
    out = tmp_path / "report"
    rc = main(["analyze", "data=csv", f"data.path={path}", "data.target=label", "data.memory_budget=10KB",
               f"hydra.run.dir={out}"])
    assert rc == 0 and json.loads((out / "analysis.json").read_text())["sample"]["rows"] == 200
    assert (out / "analysis.png").exists()


# ----------------------------------------------------------------------------------------------- Parquet folders
def parts(tmp_path, frames):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, frame in enumerate(frames):
        frame.to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def test_a_folder_of_parquet_files_is_one_table(tmp_path):
    frame = table(300)
    folder = parts(tmp_path, [frame.iloc[:100], frame.iloc[100:250], frame.iloc[250:]])
    single = tmp_path / "t.parquet"
    frame.to_parquet(single, index=False)
    memory, streamed = both(folder)
    whole = load_dataset(node(single))
    assert_same_numbers(whole.preprocessing, memory.preprocessing)
    assert_same_numbers(whole.preprocessing, streamed.preprocessing)
    assert sorted(whole.split_indices["test"]) == list(streamed.split_indices["test"])


def test_parquet_parts_whose_column_types_differ_are_refused(tmp_path, capsys):
    """The schema changing between the row groups of a table (here its files): exit 2 naming the file."""
    frame = table(300)
    late = frame.iloc[200:].copy()
    late["count"] = late["count"].map(lambda v: None if v != v else f"{v:g}")      # numbers written as text
    folder = parts(tmp_path, [frame.iloc[:200], late])
    for streaming in ("true", "false"):
        rc = main(["train", *TRAIN, f"data.path={folder}", f"data.streaming={streaming}",
                   f"hydra.run.dir={tmp_path / streaming}"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "part-1.parquet" in err and "column 'count' is " in err and "string here, double there" in err
        assert "not a readable" not in err
        assert not (tmp_path / streaming / "model").exists()


def test_moments_merge_is_numerically_stable():
    """Chan's merge of per-chunk means and squared deviations: a std of 1 around 1e9 survives (a sum of squares
    would lose it to cancellation)."""
    from netkiln.data.streaming_stats import Moments

    values = 1e9 + np.random.default_rng(0).normal(size=10_000)
    m = Moments()
    for chunk in np.array_split(values, 37):
        m.add(chunk)
    m.add_repeated(1e9, 0)
    scale = m.scale("standard")
    assert scale["mean"] == pytest.approx(values.mean(), rel=1e-15)
    assert scale["std"] == pytest.approx(values.std(), rel=1e-9)
    assert m.scale("minmax") == {"method": "minmax", "min": values.min(), "max": values.max()}


def test_too_many_categories_is_refused_alike_streamed_and_in_memory(tmp_path):
    path = tmp_path / "ids.csv"
    pd.DataFrame({"id": [f"u{i}" for i in range(200)], "x": np.arange(200.0), "label": np.arange(200) % 2}
                 ).to_csv(path, index=False)
    messages = []
    for streaming in ("false", "true"):
        node = {"name": "csv", "path": str(path), "target": "label", "streaming": streaming, "max_categories": 20}
        with pytest.raises(NetkilnError) as err:
            load_dataset(node, seed=0)
        assert err.value.key == "data.max_categories" and "'id' has 140 distinct values" in str(err.value)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


# ----------------------------------------------------------------------------------------------- own test file
def own_test_file(tmp_path, suffix, n=250, seed=5):
    """A separate test file like table()'s: a row without a label (dropped), a colour training never saw (warned)."""
    frame = table(n, seed)
    frame.loc[3, "label"] = None
    frame.loc[7, "color"] = "purple"
    path = tmp_path / f"test{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path, row_group_size=60)
    return path


def test_a_streamed_test_file_is_prepared_as_in_memory(table_file, tmp_path):
    """data.test_path streamed: read by chunks, cleaned, encoded and prepared with the training rows' fit into a
    float32 memory map; the same rows, targets and values as the in-memory path."""
    test_path = own_test_file(tmp_path, table_file.suffix)
    memory, streamed = both(table_file, test_path=str(test_path))
    assert memory.split_sizes == streamed.split_sizes and streamed.split_sizes["test"] == 249
    assert_same_numbers(json.loads(json.dumps(memory.preprocessing)), json.loads(json.dumps(streamed.preprocessing)))
    assert streamed.split_indices["test"].tolist() == memory.split_indices["test"] and 3 not in memory.split_indices[
        "test"]
    assert torch.equal(memory.y_test, streamed.y_test)
    assert isinstance(streamed.x_test.numpy().base, np.memmap) or streamed.x_test.numpy().base is not None
    torch.testing.assert_close(streamed.x_test, memory.x_test, rtol=1e-6, atol=1e-6)
    for key in ("test_file", "test_rows_after_filter", "test_rows_dropped_no_target", "rows"):
        assert streamed.source_info[key] == memory.source_info[key], key
    # analyze counts the test file's rows too (missing values and moments over both files, as in memory)
    from netkiln.data import analyze
    m = analyze.analyze_data(node(table_file, streaming=False, test_path=str(test_path)))[0]
    s = analyze.analyze_data(node(table_file, streaming=True, chunk_rows=70, test_path=str(test_path)))[0]
    assert s["rows"] == m["rows"] == 849 and s["target"] == m["target"]
    for a, b in zip(m["columns"], s["columns"]):
        assert a["missing"] == b["missing"] and (a.get("mean") is None) == (b.get("mean") is None), a["name"]
        if a.get("mean") is not None:
            assert b["mean"] == pytest.approx(a["mean"], rel=1e-5), a["name"]


def test_a_streamed_run_evaluates_its_test_file_as_in_memory(tmp_path):
    """The metrics of the end-of-training evaluation on the streamed test file equal those of the same weights on
    the file read whole and prepared in memory with the saved preparation (netkiln evaluate on other data)."""
    path = tmp_path / "t.parquet"
    table(400).to_parquet(path, row_group_size=50)
    test_path = own_test_file(tmp_path, ".csv")
    rc, run = train(tmp_path, path, "trainer.max_epochs=2", "data.streaming=true", "data.chunk_rows=64",
                    f"data.test_path={test_path}")
    assert rc == 0
    streamed = metrics(run)["test"]
    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", "data=csv", f"data.path={test_path}", "data.target=label",
                 f"out={out}"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["rows"] == 249
    assert set(report["metrics"]) == set(streamed) and report["metrics"]
    for name, value in report["metrics"].items():
        assert streamed[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_a_streamed_test_file_without_a_training_column_is_refused(tmp_path, capsys):
    path = tmp_path / "t.csv"
    table(300).to_csv(path, index=False)
    bad = tmp_path / "renamed.csv"
    table(100, 2).rename(columns={"count": "counts"}).to_csv(bad, index=False)
    capsys.readouterr()
    rc, run = train(tmp_path, path, "data.streaming=true", f"data.test_path={bad}")
    err = capsys.readouterr().err
    assert rc == 2 and "renamed.csv" in err and "'count'" in err and "counts" in err and "data.test_path" in err
    assert not (run / "model").exists() and metrics(run)["status"] == "failed"
