"""logger=tensorboard / mlflow: what a run and a sweep log, read back with each tool's own reader."""
import csv
import json

import pytest

from netkiln.cli import main
from conftest import tiny_run

TINY = tiny_run(300, epochs=None)


def _client(db):
    from mlflow.tracking import MlflowClient
    return MlflowClient(f"sqlite:///{db}")


def test_mlflow_run_logs_config_and_one_point_an_epoch(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'netkiln[tracking]'")
    monkeypatch.chdir(tmp_path)         # the default store sqlite:///outputs/mlflow.db is relative to it
    rc = main(["train", *TINY, "trainer.max_epochs=3", "optimizer.lr=0.003", "logger=mlflow",
               f"hydra.run.dir={tmp_path / 'run'}"])
    assert rc == 0
    client = _client(tmp_path / "outputs" / "mlflow.db")
    experiment = client.get_experiment_by_name("netkiln")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert "mlflow.parentRunId" not in run.data.tags
    params = run.data.params
    assert params["optimizer.lr"] == "0.003" and params["override.optimizer.lr"] == "0.003"
    assert params["batch_size"] == "32" and params["optimizer._target_"] == "torch.optim.Adam"
    for name in ("train/loss", "val/loss", "val/acc", "lr"):
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [0, 1, 2], name
    history = {int(row["epoch"]): float(row["val/acc"]) for row in csv.DictReader(open(tmp_path / "run/history.csv"))}
    assert {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/acc")} == \
        pytest.approx(history)
    assert "final/test/acc" in run.data.metrics
    assert experiment.artifact_location == (tmp_path / "outputs" / "mlartifacts").resolve().as_uri()


def test_tensorboard_event_files_hold_epoch_scalars_and_hparams(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracking extra: pip install 'netkiln[tracking]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "run"
    rc = main(["train", *TINY, "trainer.max_epochs=3", "logger=[csv,tensorboard]", f"hydra.run.dir={run_dir}"])
    assert rc == 0
    assert (run_dir / "history.csv").is_file()
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2], tag
    hparams = {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
               for tag, content in events.PluginTagToContent("hparams").items()}
    session = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert session["batch_size"].number_value == 32 and session["model.vars.width"].number_value == 128
    assert session["override.model"].string_value == "mlp"
    declared = [m.name.tag for m in hparams["_hparams_/experiment"].experiment.metric_infos]
    assert "final/val/acc" in declared and "final/test/loss" in declared
    assert len(events.Scalars("final/val/acc")) == 1


def test_mlflow_sweep_is_a_parent_run_with_a_child_per_trial(tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'netkiln[tracking]'")
    db = tmp_path / "store" / "mlflow.db"
    sweep_dir = tmp_path / "sweep"
    rc = main(["train", "-m", *TINY, "trainer.max_epochs=2", "optimizer.lr=0.01,0.02", "logger=mlflow",
               f"logger.mlflow.tracking_uri=sqlite:///{db}", "logger.mlflow.experiment_name=sweeps",
               f"hydra.sweep.dir={sweep_dir}"])
    assert rc == 0
    client = _client(db)
    experiment = client.get_experiment_by_name("sweeps")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert sorted(c.data.params["override.optimizer.lr"] for c in children) == ["0.01", "0.02"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(client.get_metric_history(child.info.run_id, "val/acc")) == 2
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["netkiln.best_trial"] in {"0", "1"}
    bundle = {a.path for a in client.list_artifacts(parent.info.run_id, "best_model")}
    assert "best_model/weights.safetensors" in bundle and "best_model/config.yaml" in bundle
    assert "leaderboard.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.parametrize("overrides, words", [
    (["logger=mlflow", "logger.mlflow.tracking_url=x"], ["logger.mlflow.tracking_url", "tracking_uri"]),
    (["+logger.wandb={}"], ["logger.wandb", "unknown logger"]),
])
def test_logger_config_errors_name_the_key(tmp_path, capsys, overrides, words):
    rc = main(["train", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words) and "Traceback" not in err


def test_missing_tracking_package_says_what_to_install(tmp_path, capsys, monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else find_spec(name, *a))
    rc = main(["train", *TINY, "logger=tensorboard", f"hydra.run.dir={tmp_path / 'run'}"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'netkiln[tracking]'" in err[0] and "logger" in err[0]
    # A failed run's record: its metrics.json says so, and nothing was trained.
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "checkpoints").exists()
