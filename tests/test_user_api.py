"""What users expect: netkiln.load() in Python, `--help` per command, the shipped recipes, the summary's labels."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import netkiln
from netkiln.cli import main
from netkiln.errors import NetkilnError


# ------------------------------------------------------------------------------------------------ summary
def test_summary_says_a_recurrent_layer_is_bidirectional(capsys):
    assert main(["summary", "model=birnn", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU, bidirectional)" in out
    assert main(["summary", "model=gru", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU)" in out and "bidirectional" not in out


# ------------------------------------------------------------------------------------------------ --help
def command_help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as done:        # Hydra ends a --help run with sys.exit(0)
        main(list(argv))
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def group_line(text: str, group: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.split()[:1] == [group])
    return line.split(None, 1)[1].split(", ")


def test_train_help_lists_groups_with_options_and_keys_with_their_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("layers:\n  - dense: {units: 8}\n")
    monkeypatch.chdir(tmp_path)
    out = command_help(capsys, "train", "--help")
    assert "mine" in group_line(out, "model") and "auto*" in group_line(out, "model")   # the user's conf/ too
    assert {"adam*", "sgd"} <= set(group_line(out, "optimizer"))
    assert "mnist1d*" in group_line(out, "data") and "ddp" in group_line(out, "trainer")
    assert "batch_size=100" in out and "Rows per batch; one optimizer step per batch." in out
    assert "steps_per_execution=64" in out and "(Keras's steps_per_execution)." in " ".join(out.split())
    assert "== Config ==" not in out and "optimizer:\n  _target_" not in out    # not the whole composed config


def test_help_of_predict_export_evaluate_shows_their_own_keys(capsys):
    predict = command_help(capsys, "predict", "--help")
    assert "Config groups" not in predict and "optimizer" not in predict
    assert "chunk_rows=10000" in predict and "rows read, prepared and predicted at a time" in predict
    assert "batch_size" not in predict and "seed" not in predict
    export = command_help(capsys, "export", "-h")
    assert "format=onnx" in export and "Config groups" not in export and "chunk_rows" not in export
    evaluate = command_help(capsys, "evaluate", "--help")
    groups = evaluate.split("Config groups", 1)[1].split("Keys", 1)[0]
    assert "data " in groups and "model " not in groups and "optimizer" not in groups
    assert "split=auto" in evaluate and "plots=true" in evaluate


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "summary", "analyze"])
def test_every_key_of_a_command_has_its_help_line(command):
    from netkiln.commands.hydra_app import CONF_DIR
    from netkiln.commands.help import key_descriptions

    written = yaml.safe_load((Path(CONF_DIR) / f"{command}.yaml").read_text())
    keys = key_descriptions(command)
    assert set(keys) == set(written) - {"defaults", "hydra"}
    assert all(text for _, text in keys.values()), [k for k, (_, text) in keys.items() if not text]


def test_train_help_imports_no_torch(tmp_path):
    code = ("import sys\nfrom netkiln.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------------ netkiln.load
TRAIN = ["model=mlp", "trainer=debug", "trainer.enable_progress_bar=false", "batch_size=32"]


def people(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n).round(2),
                          "city": rng.choice(["paris", "lyon", "nice"], n)})
    score = (frame.age - 50) / 10 + (frame.income - 50) / 10 + (frame.city == "paris") * 1.0
    frame["label"] = np.where(score > 0.5, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_api")
    people().to_csv(folder / "people.csv", index=False)
    assert main(["train", "data=csv", f"data.path={folder / 'people.csv'}", "data.target=label", *TRAIN,
                 f"hydra.run.dir={folder / 'run'}"]) == 0
    return folder / "run", folder / "people.csv"


@pytest.fixture(scope="module")
def array_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("user_api") / "arrays"
    assert main(["train", "data=synthetic", "data.n_samples=300", "data.n_features=6", "data.standardize=true",
                 *TRAIN, f"hydra.run.dir={run}"]) == 0
    return run


def test_import_netkiln_stays_light():
    code = "import sys, netkiln\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_predicts_a_frame_as_the_cli_does(csv_run, tmp_path):
    run, data = csv_run
    assert main(["predict", f"run={run}", f"input={data}", f"output={tmp_path / 'p.csv'}"]) == 0
    cli = pd.read_csv(tmp_path / "p.csv")
    model = netkiln.load(run)
    frame = pd.read_csv(data)                       # the target column is ignored, as by the CLI
    assert model.classes_ == ["no", "yes"] and model.task.kind == "binary"
    assert model.predict(frame).tolist() == cli["prediction"].tolist()
    np.testing.assert_allclose(model.predict_proba(frame), cli[["prob_no", "prob_yes"]].to_numpy(), atol=1e-6)
    pd.testing.assert_frame_equal(model.predict_frame(frame), cli, check_dtype=False, atol=1e-6)
    assert netkiln.load(run / "model").predict(frame.head(3)).tolist() == cli["prediction"].head(3).tolist()


def test_load_refuses_a_frame_missing_a_column(csv_run):
    run, data = csv_run
    with pytest.raises(NetkilnError, match="lacks the column 'age'"):
        netkiln.load(run).predict(pd.read_csv(data).drop(columns=["age"]))


def test_load_names_the_extra_column_and_the_python_keyword_that_allows_it(csv_run):
    run, data = csv_run
    frame = pd.read_csv(data).assign(row_id=1)
    with pytest.raises(NetkilnError, match=r"'row_id'; remove it,? or pass allow_extra=True to ignore extra columns"):
        netkiln.load(run).predict(frame)
    assert len(netkiln.load(run).predict(frame, allow_extra=True)) == len(frame)


def test_load_handles_unseen_categories_with_its_own_keyword(csv_run, tmp_path, caplog):
    """A category the training rows lacked: predict() warns, refuses or ignores it as its unknown_categories=
    keyword says, and its messages name that keyword, not the CLI's data.unknown_categories."""
    run, data = csv_run
    frame = pd.read_csv(data).head(8).drop(columns=["label"])
    frame.index = range(100, 108)
    frame.loc[[101, 104], "city"] = "rome"
    model = netkiln.load(run)
    with caplog.at_level("WARNING", logger="netkiln"):
        warned = model.predict(frame)
    assert "2 of 8 rows" in caplog.text and "'rome' (2 rows)" in caplog.text
    assert "unknown_categories='error' refuses such rows" in caplog.text and "data.unknown_categories" not in caplog.text
    with pytest.raises(NetkilnError) as err:
        model.predict(frame, unknown_categories="error")
    text = str(err.value)
    assert err.value.key == "unknown_categories" and err.value.column == "city" and "row 101: 'rome' (2 rows) in column 'city'" in text
    assert "pass unknown_categories='warn'" in text and "data.unknown_categories" not in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="netkiln"):
        ignored = model.predict_proba(frame, unknown_categories="ignore")
    assert "rome" not in caplog.text
    city = [i for i, name in enumerate(model.feature_names) if name.startswith("city=")]
    assert model.prepare(frame, unknown_categories="ignore")[[1, 4]][:, city].abs().sum() == 0    # no category
    frame.to_csv(tmp_path / "new.csv", index=False)                # the CLI's predictions of the same rows
    assert main(["predict", f"run={run}", f"input={tmp_path / 'new.csv'}", f"output={tmp_path / 'p.csv'}",
                 "unknown_categories=ignore"]) == 0
    cli = pd.read_csv(tmp_path / "p.csv")
    assert warned.tolist() == cli["prediction"].tolist()
    np.testing.assert_allclose(ignored, cli[["prob_no", "prob_yes"]].to_numpy(), atol=1e-6)
    with pytest.raises(NetkilnError, match="Did you mean 'error'") as err:
        model.predict(frame, unknown_categories="eror")
    assert err.value.key == "unknown_categories"
    labelled = frame.assign(label=["yes", "no"] * 4)
    with pytest.raises(NetkilnError, match="pass unknown_categories='warn'") as err:
        model.evaluate(labelled, unknown_categories="error")
    assert err.value.key == "unknown_categories" and "data.unknown_categories" not in str(err.value)


def test_load_predicts_arrays_and_tensors_raw_or_prepared(array_run, tmp_path):
    from netkiln.data import load_dataset

    model = netkiln.load(array_run)
    raw = load_dataset({**model.bundle.data_config, "standardize": False}, seed=model.bundle.seed).x_test.numpy()
    np.save(tmp_path / "x.npy", raw)
    assert main(["predict", f"run={array_run}", f"input={tmp_path / 'x.npy'}", f"output={tmp_path / 'p.csv'}"]) == 0
    cli = pd.read_csv(tmp_path / "p.csv")
    labels = model.predict(raw)
    assert [str(v) for v in labels] == [str(v) for v in cli["prediction"]]
    assert [str(v) for v in model.predict(torch.from_numpy(raw))] == [str(v) for v in labels]
    probs = model.predict_proba(raw)
    np.testing.assert_allclose(probs, cli[[f"prob_{c}" for c in model.classes_]].to_numpy(), atol=1e-6)
    # Rows already prepared (standardised) give the same answer through the network alone.
    with torch.no_grad():
        logits = model.network(model.prepare(raw))
    np.testing.assert_allclose(torch.softmax(logits, dim=1).numpy(), probs, atol=1e-6)


def test_prepare_features_takes_preprocessing_json_as_written(csv_run):
    from netkiln.data import prepare_features

    run, data = csv_run
    saved = json.loads((run / "model" / "preprocessing.json").read_text())
    frame = pd.read_csv(data).drop(columns=["label"])
    whole = prepare_features(frame, saved)                  # the file as json.load reads it
    steps = prepare_features(frame, saved["preparation"])  # the fitted steps alone (Dataset.preprocessing)
    assert whole.shape == (len(frame), 5) and torch.equal(whole, steps)
    assert torch.equal(whole, netkiln.load(run).prepare(frame))


def evaluation_json(folder) -> dict:
    return json.loads((folder / "evaluation.json").read_text())["metrics"]


def test_load_evaluates_as_the_cli_does(csv_run, tmp_path):
    from netkiln.data import load_dataset

    run, data = csv_run
    model = netkiln.load(run)
    assert main(["evaluate", f"run={run}", f"out={tmp_path / 'test'}", "plots=false"]) == 0
    cli_test = evaluation_json(tmp_path / "test")
    assert set(cli_test) >= {"loss", "acc", "f1"}
    assert model.evaluate() == pytest.approx(cli_test, abs=1e-6)           # the run's own test split
    # The same test rows given as a table: split indices are the file's data rows.
    rows = load_dataset(model.bundle.data_config, seed=model.bundle.seed).split_indices["test"]
    frame = pd.read_csv(data)
    assert model.evaluate(frame.iloc[rows]) == pytest.approx(cli_test, abs=1e-6)
    assert model.evaluate((frame.iloc[rows].drop(columns=["label"]), frame["label"].iloc[rows])) == \
        pytest.approx(cli_test, abs=1e-6)
    # Other labelled data, every row.
    assert main(["evaluate", f"run={run}", "data=csv", f"data.path={data}", "data.target=label",
                 f"out={tmp_path / 'all'}", "plots=false"]) == 0
    assert model.evaluate(frame) == pytest.approx(evaluation_json(tmp_path / "all"), abs=1e-6)
    assert model.evaluate(split="val") != model.evaluate()


def test_load_evaluates_arrays_with_their_labels(array_run, tmp_path):
    from netkiln.data import load_dataset

    model = netkiln.load(array_run)
    assert main(["evaluate", f"run={array_run}", f"out={tmp_path / 'ev'}", "plots=false"]) == 0
    raw = load_dataset({**model.bundle.data_config, "standardize": False}, seed=model.bundle.seed)
    labels = np.asarray(model.classes_, dtype=object)[raw.y_test.numpy()]
    assert model.evaluate((raw.x_test, labels)) == pytest.approx(evaluation_json(tmp_path / "ev"), abs=1e-6)
    assert model.evaluate(raw.x_test, labels) == model.evaluate((raw.x_test, labels))       # Keras's form
    with pytest.raises(NetkilnError, match="never saw: unicorn"):
        model.evaluate((raw.x_test[:2], ["unicorn", labels[0]]))
    with pytest.raises(NetkilnError, match="not trained on a table"):
        model.evaluate(pd.DataFrame(raw.x_test.numpy()))
    with pytest.raises(NetkilnError, match="3 rows but y has 2"):
        model.evaluate((raw.x_test[:3], labels[:2]))



# ------------------------------------------------------------------------------------------------ recipes
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("experiment,model_row", [
    ("keras_mnist_convnet", "conv2d_1 (Conv2D)"),
    ("digits_gru_rows", "image_rows (Reshape)"),
    ("wine_csv_mlp", "dense_1 (Dense)"),
])
def test_repository_recipes_compose_and_train(experiment, model_row, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)             # the repository's conf/ is found from the working directory
    run = tmp_path / experiment
    assert main(["train", f"experiment={experiment}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                 f"hydra.run.dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["test"]["acc"] > 0
    assert model_row in (run / "summary.txt").read_text()


def test_keras_convnet_recipe_has_the_keras_layers(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["summary", "model=keras_convnet", "data=digits"]) == 0
    out = capsys.readouterr().out
    # Keras's parameter counts: Conv2D 32 * (3*3*1 + 1), Conv2D 64 * (3*3*32 + 1), Dense 10 * (64*2*2 + 1).
    assert [line.split()[-1] for line in out.splitlines() if "(Conv2D)" in line or "(Dense)" in line] == \
        ["320", "18,496", "2,570"]


# ------------------------------------------------------------------------------------------------ threads
def test_auto_threads_one_for_small_models_more_for_large_ones_never_more_than_the_cores():
    from netkiln.training.threads import FLOPS_PER_THREAD, auto_threads

    assert auto_threads(6.3e6, 2) == 1                          # the default run's CNN at batch 100
    assert auto_threads(0.99 * FLOPS_PER_THREAD, 16) == 1
    assert auto_threads(2.5 * FLOPS_PER_THREAD, 16) == 2
    assert auto_threads(50 * FLOPS_PER_THREAD, 2) == 2 and auto_threads(50 * FLOPS_PER_THREAD, 8) == 8


def test_forward_flops_counts_a_batch_row_without_changing_the_network():
    from netkiln.training.threads import forward_flops

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert forward_flops(net, torch.zeros(1, 4)) == 2 * 4 * 3        # one row through BatchNorm: eval mode
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_threads_auto_is_the_default_and_logged(csv_run, monkeypatch):
    from netkiln.training.threads import set_threads

    run, _ = csv_run
    assert "threads: 1 (auto: a batch's forward pass is" in (run / "train.log").read_text()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    seen = []
    net = torch.nn.Linear(4, 3)
    assert set_threads("auto", net, torch.zeros(5, 4), 100) == 1 and seen == [1]
    assert set_threads(3, net, torch.zeros(5, 4), 100) == 3 and seen == [1, 3]
    with pytest.raises(NetkilnError, match="auto, a positive integer or null"):
        set_threads("many", net, torch.zeros(5, 4), 100)
