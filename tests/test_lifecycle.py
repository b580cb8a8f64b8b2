"""Model lifecycle: the model/ bundle, evaluate and predict (tiny models trained once per module)."""
import json
import pickle
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from netkiln.artifacts.bundle import load_bundle, read_bundle
from netkiln.artifacts.inputs import open_input
from netkiln.artifacts.predictions import predict_file
from netkiln.cli import main
from netkiln.errors import NetkilnError
from conftest import tiny_run

TINY = tiny_run(300, epochs=None)
FEATURES = [f"x{i}" for i in range(8)]


def train(run_dir, *overrides):
    rc = main(["train", *TINY, f"hydra.run.dir={run_dir}", *overrides])
    assert rc == 0
    return run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("lifecycle") / "run", "trainer.max_epochs=3")


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("lifecycle") / "reg", "trainer.max_epochs=2", "data.task=regression")


def raw_test_rows(run_dir):
    """The run's test rows before standardisation, and the run's dataset (rebuilt as training built it)."""
    from netkiln.data import load_dataset

    bundle = read_bundle(run_dir)
    node = dict(bundle.data_config, standardize=False)
    raw = load_dataset(node, seed=bundle.seed)
    prepared = load_dataset(bundle.data_config, seed=bundle.seed)
    return raw.x_test.numpy(), prepared


def copy_run(run_dir, dest):
    import shutil
    shutil.copytree(run_dir, dest)
    return dest


# ------------------------------------------------------------------------------------------------ bundle
def test_bundle_files(run):
    model = run / "model"
    assert sorted(p.name for p in model.iterdir()) == ["config.yaml", "meta.json", "preprocessing.json",
                                                       "weights.safetensors"]
    meta = json.loads((model / "meta.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert meta["bundle_format"] == 1 and meta["netkiln"] and meta["torch"] and meta["python"]
    assert meta["params"] == metrics["params"] and meta["metrics"]["test"] == metrics["test"]
    prep = json.loads((model / "preprocessing.json").read_text())
    assert prep["feature_names"] == FEATURES and prep["input_shape"] == [8] and "standardize" in prep["preparation"]
    config = yaml.safe_load((model / "config.yaml").read_text())
    assert config["task"]["kind"] == "multiclass" and config["data"]["split"]["seed"] == 0
    assert not list(run.glob(".model*")), "no staging folder left behind"


def test_bundle_round_trip_same_predictions(run, monkeypatch):
    from netkiln.compiler import compile_model
    from netkiln.task import Task

    # Loading never unpickles.
    def no_pickle(*args, **kwargs):
        raise AssertionError("the bundle loader must not unpickle")
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    bundle = load_bundle(run)
    monkeypatch.undo()

    _, dataset = raw_test_rows(run)
    state = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    original = compile_model(bundle.config["model"], (8,), Task.from_dict(bundle.config["task"]))
    original.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})
    original.eval()
    with torch.no_grad():
        assert torch.equal(bundle.network(dataset.x_test), original(dataset.x_test))
    assert not bundle.network.training


def test_bundle_refuses_arbitrary_target(run, tmp_path, capsys):
    copy = copy_run(run, tmp_path / "run")
    config_file = copy / "model" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["model"]["layers"][2] = {"_target_": "os.system", "command": "echo pwned"}
    config_file.write_text(yaml.safe_dump(config))
    with pytest.raises(NetkilnError, match="allow_targets=true") as info:
        load_bundle(copy)
    assert "os.system" in str(info.value)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8), dtype=np.float32))
    rc = main(["predict", f"run={copy}", f"input={tmp_path}/x.npz", f"output={tmp_path}/p.csv"])
    assert rc == 2 and "arbitrary class" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    # Even when trusted, a _target_ must name a torch.nn.Module: os.system is not one.
    with pytest.raises(NetkilnError, match="not a torch.nn.Module"):
        load_bundle(copy, allow_targets=True)
    # A trusted bundle with a real module loads (dropout -> Identity keeps the weight names).
    config["model"]["layers"][2] = {"_target_": "torch.nn.Identity"}
    config_file.write_text(yaml.safe_dump(config))
    assert load_bundle(copy, allow_targets=True).network is not None


def test_bundle_from_newer_netkiln_is_refused(run, tmp_path):
    copy = copy_run(run, tmp_path / "run")
    meta_file = copy / "model" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "netkiln": "99.0.0"}))
    with pytest.raises(NetkilnError, match="newer netkiln"):
        load_bundle(copy)
    meta_file.write_text(json.dumps({**meta, "bundle_format": 7}))
    with pytest.raises(NetkilnError, match="bundle format 7"):
        load_bundle(copy)


def test_commands_refuse_a_folder_that_is_not_a_run(tmp_path, capsys):
    for command in ("evaluate", "predict", "export"):
        extra = [f"input={tmp_path}/in.npz", f"output={tmp_path}/out.csv"] if command == "predict" else []
        if command == "predict":
            np.savez(tmp_path / "in.npz", x=np.zeros((1, 8), dtype=np.float32))
        rc = main([command, f"run={tmp_path}", *extra])
        err = capsys.readouterr().err
        assert rc == 2, command
        assert "not a netkiln run directory" in err and "Traceback" not in err
    rc = main(["evaluate", f"run={tmp_path}/nope"])
    assert rc == 2 and "no such directory" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------------------------------------ evaluate
def test_evaluate_classification(run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", f"run={run}"]) == 0
    out = capsys.readouterr().out
    assert "acc=" in out and "precision" in out
    report = json.loads((run / "evaluation" / "evaluation.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["split"] == "test" and report["rows"] == 45
    for key, value in metrics["test"].items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-6)
    assert len(report["per_class"]) == 3 and sum(r["support"] for r in report["per_class"]) == 45
    assert np.asarray(report["confusion_matrix"]).sum() == 45
    for name in ("confusion_matrix.png", "curves.png", "per_class.csv"):
        assert (run / "evaluation" / name).stat().st_size > 0, name
    assert list(tmp_path.iterdir()) == [], "evaluate leaves nothing in the working folder"

    assert main(["evaluate", f"run={run}", "split=val", f"out={tmp_path}/val", "plots=false"]) == 0
    val = json.loads((tmp_path / "val" / "evaluation.json").read_text())
    assert val["metrics"]["acc"] == pytest.approx(metrics["val"]["acc"], abs=1e-6)
    assert not (tmp_path / "val" / "confusion_matrix.png").exists()


def test_evaluate_regression_and_other_data(regression_run, tmp_path):
    assert main(["evaluate", f"run={regression_run}", f"out={tmp_path}/e"]) == 0
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert set(report["metrics"]) == {"loss", "mse", "mae", "r2"}
    assert (tmp_path / "e" / "residuals.png").stat().st_size > 0
    # Other data, prepared with the bundle's saved statistics: same generator, so the same rows.
    assert main(["evaluate", f"run={regression_run}", "data=synthetic", "data.task=regression",
                 "data.n_samples=300", "data.n_features=8", f"out={tmp_path}/o"]) == 0
    other = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert other["split"] == "all" and other["rows"] == 300


def test_evaluate_other_data_of_another_task_is_refused(run, capsys, tmp_path):
    rc = main(["evaluate", f"run={run}", "data=synthetic", "data.task=regression", "data.n_features=8",
               f"out={tmp_path}/o"])
    assert rc == 2 and "regression task" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ predict
def test_predict_npz_and_csv(run, tmp_path):
    x_raw, dataset = raw_test_rows(run)
    np.savez_compressed(tmp_path / "new.npz", x=x_raw)
    pd.DataFrame(x_raw, columns=FEATURES).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", f"run={run}", f"input={tmp_path}/new.npz", f"output={tmp_path}/p_npz.csv"]) == 0
    assert main(["predict", f"run={run}", f"input={tmp_path}/new.csv", f"output={tmp_path}/p_csv.parquet",
                 "chunk_rows=7"]) == 0
    from_npz = pd.read_csv(tmp_path / "p_npz.csv")
    from_csv = pd.read_parquet(tmp_path / "p_csv.parquet")
    assert list(from_npz.columns) == ["prediction", "prob_0", "prob_1", "prob_2"]
    assert len(from_npz) == len(from_csv) == len(x_raw)
    np.testing.assert_allclose(from_npz.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(from_npz.filter(like="prob_").to_numpy(), from_csv.filter(like="prob_").to_numpy(),
                               atol=1e-6)
    # The saved standardisation is applied: predictions match the network on the run's prepared test rows.
    bundle = load_bundle(run)
    with torch.no_grad():
        expected = torch.softmax(bundle.network(dataset.x_test), dim=1).numpy()
    np.testing.assert_allclose(from_csv.filter(like="prob_").to_numpy(), expected, atol=1e-5)
    assert (from_csv["prediction"].astype(str) == pd.Series(expected.argmax(1)).astype(str)).all()


def test_predict_checks_columns(run, tmp_path, capsys):
    frame = pd.DataFrame(np.zeros((4, 8)), columns=FEATURES)
    frame.drop(columns=["x3"]).to_csv(tmp_path / "missing.csv", index=False)
    frame.assign(id=range(4), extra=1).to_csv(tmp_path / "extra.csv", index=False)
    rc = main(["predict", f"run={run}", f"input={tmp_path}/missing.csv", f"output={tmp_path}/p.csv"])
    err = capsys.readouterr().err
    assert rc == 2 and "'x3'" in err and "missing.csv" in err
    rc = main(["predict", f"run={run}", f"input={tmp_path}/extra.csv", f"output={tmp_path}/p.csv"])
    assert rc == 2 and "allow_extra=true" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    assert main(["predict", f"run={run}", f"input={tmp_path}/extra.csv", f"output={tmp_path}/p.csv",
                 "allow_extra=true"]) == 0
    assert main(["predict", f"run={run}", f"input={tmp_path}/extra.csv", f"output={tmp_path}/k.csv",
                 "keep_columns=[id]", "allow_extra=true"]) == 0
    kept = pd.read_csv(tmp_path / "k.csv")
    assert list(kept.columns)[:2] == ["id", "prediction"] and kept["id"].tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5), dtype=np.float32))
    rc = main(["predict", f"run={run}", f"input={tmp_path}/bad.npz", f"output={tmp_path}/p.csv"])
    assert rc == 2 and "shape" in capsys.readouterr().err


def test_chunked_npz_reader_matches_numpy(tmp_path):
    x = np.random.default_rng(0).standard_normal((1003, 4, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.zeros(1003))
    np.savez(tmp_path / "u.npz", features=x)
    np.save(tmp_path / "a.npy", x)
    for name in ("c.npz", "u.npz", "a.npy"):
        file = open_input(tmp_path / name)
        chunks = list(file.chunks(100))
        assert [c.start for c in chunks] == list(range(0, 1003, 100))
        np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), x)
        assert file.rows() == 1003


def test_chunked_predict_bounded_memory(run, tmp_path):
    """A large CSV is predicted chunk by chunk: traced peak memory stays far below the size of the data."""
    import pyarrow.parquet  # noqa: F401 - imported before tracing: its import is not the predict's memory

    rows = 80_000
    frame = pd.DataFrame(np.random.default_rng(1).standard_normal((rows, 8)).astype(np.float32), columns=FEATURES)
    frame.to_csv(tmp_path / "big.csv", index=False, float_format="%.4f")
    whole_table = frame.astype(np.float64).memory_usage(index=False).sum()   # the input alone, as pandas reads it
    del frame
    bundle = load_bundle(run)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        stats = predict_file(bundle, open_input(tmp_path / "big.csv"), tmp_path / "out.parquet", chunk_rows=500,
                             progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    used = peak - base
    print(f"chunked predict of {rows} rows: traced peak {used / 2**20:.2f} MiB "
          f"(the input table alone is {whole_table / 2**20:.1f} MiB)")
    assert stats["rows"] == rows and stats["chunks"] == rows // 500
    assert used < 1.5 * 2**20 and used < whole_table / 3
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == rows


# ------------------------------------------------------------------------------------------------ export
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(run, tmp_path, fmt):
    """The exported file, run by onnxruntime / torch.jit, gives PyTorch's outputs (batch sizes vary)."""
    out = tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", f"run={run}", f"format={fmt}", f"output={out}"]) == 0
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["check"]["ok"] and sidecar["check"]["max_abs_diff"] <= 1e-5
    assert sidecar["input"]["prepared"] and "standardize" in sidecar["preparation"]
    assert sidecar["output"]["labels"] == ["0", "1", "2"]
    bundle = load_bundle(run)
    _, dataset = raw_test_rows(run)
    for x in (dataset.x_test, dataset.x_test[:1], torch.randn(300, 8)):
        with torch.no_grad():
            expected = bundle.network(x).numpy()
        if fmt == "onnx":
            import onnxruntime as ort
            got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        else:
            got = torch.jit.load(str(out)).eval()(x).detach().numpy()
        diff = float(np.abs(got - expected).max())
        print(f"{fmt}: max abs diff {diff:.3g} on {len(x)} rows")
        assert diff <= 1e-5


def test_export_with_embedded_preparation_takes_raw_rows(run, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "raw.onnx"
    assert main(["export", f"run={run}", f"output={out}", "embed_preparation=true", "probabilities=true"]) == 0
    x_raw, dataset = raw_test_rows(run)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x_raw})[0]
    with torch.no_grad():
        expected = torch.softmax(load_bundle(run).network(dataset.x_test), dim=1).numpy()
    assert np.abs(got - expected).max() <= 1e-5


def test_export_unknown_format(run, capsys):
    assert main(["export", f"run={run}", "format=onnnx"]) == 2
    assert "Did you mean 'onnx'" in capsys.readouterr().err


def test_table_model_predict_and_evaluate(tmp_path, capsys):
    """A model trained on a CSV: predict re-applies its column preparation and writes the original labels."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50, 10, n).round(2),
                          "city": rng.choice(["paris", "lyon", "nice"], n)})
    score = (frame.age - 50) / 10 + (frame.income - 50) / 10 + (frame.city == "paris") * 1.0
    frame["label"] = np.where(score > 0.5, "yes", "no")
    frame.to_csv(tmp_path / "people.csv", index=False)
    run = tmp_path / "run"
    assert main(["train", "data=csv", f"data.path={tmp_path}/people.csv", "data.target=label", "model=mlp",
                 "trainer=debug", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]) == 0
    # The training file itself: its target column is ignored.
    assert main(["predict", f"run={run}", f"input={tmp_path}/people.csv", f"output={tmp_path}/p.csv"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["prediction", "prob_no", "prob_yes"] and len(pred) == n
    assert set(pred["prediction"]) <= {"yes", "no"}
    new = frame.drop(columns=["label"]).head(20).assign(id=range(20))
    new.to_parquet(tmp_path / "new.parquet")
    assert main(["predict", f"run={run}", f"input={tmp_path}/new.parquet", f"output={tmp_path}/n.csv",
                 "keep_columns=[id]", "chunk_rows=6"]) == 0
    out = pd.read_csv(tmp_path / "n.csv")
    assert out["id"].tolist() == list(range(20))
    np.testing.assert_allclose(out[["prob_no", "prob_yes"]].to_numpy(), pred[["prob_no", "prob_yes"]].head(20),
                               atol=1e-6)
    capsys.readouterr()
    assert main(["predict", f"run={run}", f"input={tmp_path}/new.parquet", f"output={tmp_path}/x.csv"]) == 2
    assert "allow_extra=true" in capsys.readouterr().err
    # Evaluate on another labelled table, prepared with the saved statistics.
    assert main(["evaluate", f"run={run}", "data=csv", f"data.path={tmp_path}/people.csv", "data.target=label",
                 f"out={tmp_path}/ev"]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert report["rows"] == n and report["labels"] == ["no", "yes"]
