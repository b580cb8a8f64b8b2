"""Hostile or damaged input ends in one line, exit 2, in bounded time and memory (netkiln issue #12).

The cases that fit the bad-input catalogue (damaged bundle values, huge layers and datasets, decompression bombs,
infinite values, YAML aliases) are in tests/test_bad_inputs.py; here are the ones that need their own set-up or
check something else than the error line: the memory limit itself, time bounds, a leaderboard over damaged
trials, an evaluation with thousands of classes, JSON without NaN, write-error wording.
"""
import errno
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from netkiln.cli import main
from conftest import TINY

SUMMARY = ["data=synthetic", "data.n_samples=120", "data.n_features=8", "model=mlp"]     # TINY without training


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def memory(monkeypatch):
    """Set the memory netkiln believes is available (bytes)."""
    import netkiln.memory

    def limit(nbytes: int) -> None:
        monkeypatch.setattr(netkiln.memory, "available_bytes", lambda: nbytes)
    return limit


# ------------------------------------------------------------------------------------------------ memory
def test_available_memory_is_read_from_the_system():
    from netkiln.memory import available_bytes

    available = available_bytes()
    assert available is not None and 0 < available


def test_a_model_larger_than_memory_is_refused_naming_its_largest_layer(tmp_path, capsys, memory):
    memory(50 * 2**20)                                       # 50 MiB; width 5000: 25M weights = 100 MB
    rc = main(["summary", *SUMMARY, "model.vars.width=5000", f"hydra.run.dir={tmp_path}/run"])
    line = _error_line(capsys)
    assert rc == 2
    assert "model.layers[3] (dense_1)" in line and "25,005,000 parameters" in line
    assert "MiB of memory, more than the 50.0 MiB available" in line


def test_training_counts_gradients_and_optimizer_state(tmp_path, capsys, memory):
    memory(40 * 2**20)             # width 2000: 4M weights = 17 MB fit, 4 copies for training (68 MB) do not
    assert main(["summary", *SUMMARY, "model.vars.width=2000", f"hydra.run.dir={tmp_path}/summary"]) == 0
    capsys.readouterr()
    rc = main(["train", *TINY, "model.vars.width=2000", f"hydra.run.dir={tmp_path}/run"])
    line = _error_line(capsys)
    assert rc == 2 and "the weights, gradients and optimizer state would need" in line
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "model").exists()


def test_a_billion_samples_are_refused_before_generating(tmp_path, capsys, memory):
    memory(4 * 2**30)
    start = time.monotonic()
    rc = main(["summary", *SUMMARY, "data.n_samples=1000000000", f"hydra.run.dir={tmp_path}/run"])
    line = _error_line(capsys)
    assert rc == 2 and time.monotonic() - start < 30
    assert line.startswith("netkiln summary: error: data.n_samples: generating 1,000,000,000 rows of 8 values")
    assert "GiB of memory, more than the 4.0 GiB available" in line


# ------------------------------------------------------------------------------------------------ YAML
def _laughs(levels: int = 9) -> str:
    return "l0: &l0 [lol]\n" + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n"
                                       for i in range(1, levels + 1))


def test_safe_yaml_refuses_aliases_quickly():
    from netkiln.safe_yaml import UnsafeYAMLError, safe_load

    text = _laughs()
    assert len(text) < 1000                                  # under a kilobyte standing for 10^9 values
    start = time.monotonic()
    with pytest.raises(UnsafeYAMLError, match="anchors and aliases"):
        safe_load(text)
    with pytest.raises(yaml.YAMLError, match="aliases"):
        safe_load("base: &b {lr: 1}\nother:\n  <<: *b\n")
    assert time.monotonic() - start < 5


def test_safe_yaml_caps_depth_and_size(monkeypatch):
    import netkiln.safe_yaml as safe_yaml

    with pytest.raises(safe_yaml.UnsafeYAMLError, match="nested more than 100 levels"):
        safe_yaml.safe_load("[" * 50_000 + "]" * 50_000)
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 1000)
    with pytest.raises(safe_yaml.UnsafeYAMLError, match="larger than"):
        safe_yaml.safe_load("a: " + "x" * 2000)
    assert safe_yaml.safe_load("model: {layers: [flatten, {dense: 4}]}\nseed: 3\n") == {
        "model": {"layers": ["flatten", {"dense": 4}]}, "seed": 3}


def test_safe_dump_writes_shared_values_out():
    from netkiln.safe_yaml import safe_dump, safe_load

    shared = [1, 2]
    text = safe_dump({"a": shared, "b": shared})
    assert "&" not in text and "*" not in text
    assert safe_load(text) == {"a": [1, 2], "b": [1, 2]}


# ------------------------------------------------------------------------------------------------ leaderboard
def test_leaderboard_lists_damaged_trials_and_ranks_the_rest(tmp_path, capsys):
    good = {"status": "ok", "monitor": "val/acc", "mode": "max", "monitored": 0.8, "val": {"acc": 0.8},
            "test": {"acc": 0.7}, "params": {"total": 100}}
    trials = {"0": json.dumps(good), "1": "null", "2": "[1, 2]", "3": json.dumps({**good, "monitored": "high"}),
              "4": json.dumps({**good, "monitored": 0.99}), "5": json.dumps({**good, "monitored": 0.6})}
    for name, metrics in trials.items():
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr=0.{name}1\n")
        (tmp_path / name / "metrics.json").write_text(metrics)
    (tmp_path / "4" / ".hydra" / "overrides.yaml").write_text("- optimizer.lr: [0.0")      # torn by a crash

    assert main(["leaderboard", str(tmp_path)]) == 0
    capsys.readouterr()
    import csv
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    status = {r["trial"]: (r["rank"], r["status"], r["error"]) for r in rows}
    assert [r["trial"] for r in rows[:2]] == ["0", "5"] and status["0"][0] == "1" and status["5"][0] == "2"
    assert status["1"][1:] == ("damaged", "metrics.json holds null, not an object")
    assert status["2"][1:] == ("damaged", "metrics.json holds list, not an object")
    assert status["3"][1] == "damaged" and "monitored is 'high', not a number" in status["3"][2]
    assert status["4"][1] == "damaged" and "unreadable .hydra/overrides.yaml" in status["4"][2]
    assert json.loads((tmp_path / "best.json").read_text())["trial"] == "0"


def test_leaderboard_refuses_aliases_in_overrides(tmp_path, capsys):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text(_laughs())
    assert main(["leaderboard", str(tmp_path)]) == 0
    capsys.readouterr()
    assert "anchors and aliases" in (tmp_path / "leaderboard.csv").read_text()


# ------------------------------------------------------------------------------------------------ time
def _wide_csv(path: Path, columns: int, header: list[str] | None = None) -> Path:
    names = header or [f"c{i}" for i in range(columns)]
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.2f}" for v in rng.standard_normal(columns)) + f",{'xy'[r % 2]}" for r in range(6)]
    path.write_text(",".join(names) + ",label\n" + "\n".join(rows) + "\n")
    return path


def test_a_50000_column_csv_is_read_and_checked_in_linear_time(tmp_path):
    from netkiln.data.tables import check_columns, read_table
    from netkiln.errors import NetkilnError

    names = [f"c{i}" for i in range(50_000)]
    start = time.monotonic()
    frame = read_table(_wide_csv(tmp_path / "wide.csv", 50_000))
    check_columns(names, frame.columns, "data.features", "feature", None)       # 50,000 x 50,000 names
    assert frame.shape == (6, 50_001)
    duplicated = names[:-1] + ["c7 "]                     # the same name as c7 once stripped
    with pytest.raises(NetkilnError, match="the header names 'c7' more than once"):
        read_table(_wide_csv(tmp_path / "dup.csv", 50_000, duplicated))
    assert time.monotonic() - start < 30, "the per-column checks were quadratic (minutes for 50,000 columns)"


def test_infinite_values_are_refused_at_their_line_without_warnings(tmp_path, capsys):
    rows = [f"{i},{i * 2},{'xy'[i % 2]}" for i in range(30)]
    rows[12] = "1,-inf,x"                                 # a training row: it used to turn the column into NaN
    (tmp_path / "inf.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["train", "data=csv", f"data.path={tmp_path}/inf.csv", "data.target=label", "model=mlp",
                   "trainer=debug", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}/run"])
    line = _error_line(capsys)
    assert rc == 2 and "inf.csv, line 14, column 'b': infinite value -inf" in line
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluating_thousands_of_classes_keeps_the_per_class_table_only(tmp_path, capsys):
    k = 2000
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(k), 3)
    np.savez(tmp_path / "many.npz", x=rng.standard_normal((len(y), 4)).astype(np.float32),
             y=np.array([f"c{v}" for v in y]))
    run = tmp_path / "run"
    assert main(["train", "data=npz", f"data.path={tmp_path}/many.npz", "model=mlp", "trainer=debug",
                 "trainer.enable_progress_bar=false", "trainer.max_epochs=1", "data.split.stratify=false",
                 f"hydra.run.dir={run}"]) == 0
    capsys.readouterr()
    assert main(["evaluate", f"run={run}", "split=all"]) == 0
    out = capsys.readouterr().out
    assert f"precision, recall and F1 of the {k} classes: per_class.csv" in out
    assert len(out.splitlines()) < 20                      # not a table of 2000 lines
    folder = run / "evaluation"
    report = json.loads((folder / "evaluation.json").read_text())
    assert "confusion_matrix" not in report and len(report["per_class"]) == k
    assert sum(r["support"] for r in report["per_class"]) == len(y)
    assert not (folder / "confusion_matrix.png").exists()
    assert len((folder / "per_class.csv").read_text().splitlines()) == k + 1
    assert (folder / "evaluation.json").stat().st_size < 2 * 2**20      # k x k counts would be tens of MB


def test_the_confusion_matrix_plot_refuses_too_many_classes(tmp_path):
    from netkiln.artifacts.plots import CONFUSION_MAX_CLASSES, confusion_matrix

    k = CONFUSION_MAX_CLASSES + 1
    with pytest.raises(ValueError, match="unreadable"):
        confusion_matrix(np.zeros((k, k)), [str(i) for i in range(k)], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()


# ------------------------------------------------------------------------------------------------ small things
def test_json_files_never_hold_nan(tmp_path):
    import torch

    from netkiln.io.files import write_json_atomic

    path = write_json_atomic(tmp_path / "m.json", {"loss": float("nan"), "r2": np.float32("-inf"),
                                                   "n": np.int64(3), "t": torch.tensor(0.5), "v": [math.inf, 1.5]})

    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    assert json.loads(path.read_text(), parse_constant=refuse) == {"loss": None, "r2": None, "n": 3, "t": 0.5,
                                                                   "v": [None, 1.5]}


def test_write_errors_name_the_file_in_the_way_and_say_things_once(tmp_path):
    from netkiln.io.files import write_error, write_text_atomic
    from netkiln.errors import NetkilnError

    (tmp_path / "data.csv").write_text("a\n")
    with pytest.raises(NetkilnError) as caught:
        write_text_atomic(tmp_path / "data.csv" / "out" / "pred.csv", "x")
    assert str(caught.value).endswith(f"cannot write the file: {tmp_path / 'data.csv'} is a file, not a folder.")
    assert "File exists" not in str(caught.value)
    denied = str(write_error(tmp_path / "x", PermissionError(errno.EACCES, "Permission denied")))
    assert denied.endswith("cannot write the file: permission denied.")
    full = str(write_error(tmp_path / "x", OSError(errno.ENOSPC, "No space left on device")))
    assert "the disk is full (No space left on device)" in full


def test_error_messages_show_numbers_plainly():
    from netkiln.errors import NetkilnError

    err = NetkilnError(f"value {np.float64(np.inf)!r}, count {np.int64(3)!r}, flag {np.True_!r}", key="k")
    assert str(err) == "k: value inf, count 3, flag True"


def test_bundle_table_preparation_is_checked():
    from netkiln.artifacts.bundle_schema import check_preprocessing
    from netkiln.errors import NetkilnError

    column = {"name": "size", "kind": "categorical", "encoding": "onehot", "categories": ["S", "M"],
              "outputs": ["size=S", "size=M"], "impute": {"strategy": "none"}}
    prep = {"layout": "flat", "input_shape": [3], "preparation": {"kind": "table", "columns": [
        column, {"name": "age", "kind": "numeric", "outputs": ["age"], "impute": {"strategy": "mean", "value": 3.0},
                 "scale": {"method": "standard", "mean": 1.0, "std": 0.0}}]}}
    config = {"task": {"kind": "binary", "num_outputs": 1, "class_names": ["no", "yes"]}, "input_shape": [3]}
    with pytest.raises(NetkilnError, match=r"columns\[1\].scale.std: expected a positive finite number, got 0.0"):
        check_preprocessing(prep, config, Path("preprocessing.json"), "run")
    prep["preparation"]["columns"][1]["scale"]["std"] = 2.0
    check_preprocessing(prep, config, Path("preprocessing.json"), "run")
    column["outputs"] = ["size=S"]
    with pytest.raises(NetkilnError, match=r"columns\[0\].outputs: expected one output per category"):
        check_preprocessing(prep, config, Path("preprocessing.json"), "run")


def test_bundle_config_checks_types_not_ranges_the_trainer_allows():
    from netkiln.artifacts.bundle_schema import check_config
    from netkiln.errors import NetkilnError

    config = {"task": {"kind": "regression", "num_outputs": 1}, "input_shape": [4], "layout": "flat", "seed": -1}
    check_config(config, Path("config.yaml"), "run")                   # train accepts seed=-1
    with pytest.raises(NetkilnError, match='seed: expected an integer, got "1"'):
        check_config({**config, "seed": "1"}, Path("config.yaml"), "run")
