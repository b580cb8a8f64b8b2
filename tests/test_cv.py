"""Cross-validation as the objective (issue #16): cv.folds, the folds' mean ± std, pruning per fold, cv.refit."""
import csv
import json
import statistics

import numpy as np
import pytest

from netkiln.cli import main
from netkiln.data import load_dataset
from conftest import tiny_run

IRIS = {"name": "iris", "split": {"val": 0.15, "test": 0.15, "seed": 0}}


def fold_of(k, of=5, seed=3, node=IRIS):
    return load_dataset({**node, "split": {**node["split"], "fold": {"index": k, "of": of, "seed": seed}}})


# ----------------------------------------------------------------------------------------------------- the folds
def test_folds_partition_train_and_val_and_leave_the_test_rows_alone():
    plain = load_dataset(IRIS)
    pool = sorted(plain.split_indices["train"] + plain.split_indices["val"])
    folds = [fold_of(k) for k in range(5)]
    vals = [f.split_indices["val"] for f in folds]
    assert sorted(sum(vals, [])) == pool                        # every train+val row validates exactly once
    for fold, val in zip(folds, vals):
        assert sorted(fold.split_indices["train"] + val) == pool
        assert not set(fold.split_indices["train"]) & set(val)
        assert sorted(fold.split_indices["test"]) == sorted(plain.split_indices["test"])    # same test rows
        assert len(fold.x_test) == len(plain.x_test)
    # Stratified: each fold holds each class's share of train + val, to within one row.
    pool_counts = np.bincount(np.concatenate([plain.y_train.numpy(), plain.y_val.numpy()]))
    for fold in folds:
        counts = np.bincount(fold.y_val.numpy(), minlength=3)
        assert np.all(np.abs(counts - pool_counts / 5) < 1)
    assert [f.split_indices["val"] for f in [fold_of(k) for k in range(5)]] == vals       # seeded
    assert fold_of(0, seed=4).split_indices["val"] != vals[0]


def test_each_folds_standardisation_is_fitted_on_its_training_rows_only():
    from sklearn.datasets import load_iris
    raw = load_iris().data
    means = []
    for k in range(3):
        fold = fold_of(k, of=3)
        mean = np.asarray(fold.preprocessing["standardize"]["mean"])
        assert np.allclose(mean, raw[fold.split_indices["train"]].mean(0), atol=1e-5)
        assert not np.allclose(mean, raw[fold.split_indices["train"] + fold.split_indices["val"]].mean(0), atol=1e-5)
        means.append(mean)
    assert not np.allclose(means[0], means[1])


def test_regression_uses_plain_k_fold_and_refit_pools_train_and_val():
    node = {"name": "diabetes", "split": {"val": 0.15, "test": 0.15, "seed": 0}}
    plain = load_dataset(node)
    pool = sorted(plain.split_indices["train"] + plain.split_indices["val"])
    vals = [fold_of(k, of=4, node=node).split_indices["val"] for k in range(4)]
    assert sorted(sum(vals, [])) == pool and max(map(len, vals)) - min(map(len, vals)) <= 1
    refit = load_dataset({**node, "split": {**node["split"], "fold": "refit"}})
    assert sorted(refit.split_indices["train"]) == pool and len(refit.x_val) == 0
    assert sorted(refit.split_indices["test"]) == sorted(plain.split_indices["test"])


def test_too_many_folds_for_the_smallest_class_names_cv_folds():
    from netkiln.errors import NetkilnError
    with pytest.raises(NetkilnError) as err:
        fold_of(0, of=50)
    assert err.value.key == "cv.folds" and "setosa" in str(err.value)


# ------------------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("override, key", [
    ("cv.folds=1", "cv.folds"), ("cv.folds=-3", "cv.folds"), ("cv.folds=two", "cv.folds"),
    ("cv.refit=maybe", "cv.refit"), ("+cv.foldz=3", "cv.foldz"), ("cv.folds=100", "cv.folds"),
    ("cv.refit=true", "cv.refit"),                    # refit without folds
])
def test_bad_cv_values_exit_2_naming_the_key(tmp_path, capsys, override, key):
    rc = main(["train", *tiny_run(), override, f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert rc == 2 and key in err and "Traceback" not in err, err
    assert not list((tmp_path / "run").glob("fold-*"))      # no empty fold-0/ left by a refused run


# -------------------------------------------------------------------------------------------------- a cv run
def test_a_cv_run_records_each_fold_and_their_mean_and_std(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *tiny_run(epochs=3), "cv.folds=3", f"hydra.run.dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    folds = [json.loads((run / f"fold-{k}" / "metrics.json").read_text()) for k in range(3)]
    for k in range(3):
        assert (run / f"fold-{k}" / "history.csv").is_file() and (run / f"fold-{k}" / "checkpoints").is_dir()
        assert folds[k]["test"] == {}                          # the test split is not touched per fold
    for name, mean in metrics["val"].items():
        values = [f["val"][name] for f in folds]
        assert mean == pytest.approx(statistics.fmean(values))
        assert metrics["cv"]["std"]["val"][name] == pytest.approx(statistics.stdev(values))
        assert [f["val"][name] for f in metrics["cv"]["per_fold"]] == values
    assert metrics["monitored"] == pytest.approx(statistics.fmean(f["monitored"] for f in folds))
    assert metrics["test"] == {} and metrics["cv"]["folds"] == 3 and not (run / "model").exists()
    assert metrics["params"] == folds[0]["params"] and metrics["task"] == folds[0]["task"]
    # A number every run records (a sweep objective may read it): the folds' mean.
    assert metrics["latency_ms"] == pytest.approx(statistics.fmean(f["latency_ms"] for f in folds))
    capsys.readouterr()
    assert main(["evaluate", f"run={run}"]) == 2          # no refit: no model, and evaluate says why
    assert "cross-validation without a refit" in capsys.readouterr().err


def test_refit_trains_for_the_folds_best_epoch_count_and_is_the_runs_model(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *tiny_run(epochs=4), "cv.folds=2", "cv.refit=true", f"hydra.run.dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    best = [f["best_epoch"] for f in metrics["cv"]["per_fold"]]
    epochs = int(np.floor(np.mean(best) + 1 + 0.5))
    refit = metrics["cv"]["refit"]
    assert refit["status"] == "ok" and refit["epochs"] == epochs
    history = list(csv.DictReader(open(run / "refit" / "history.csv")))
    assert len(history) == epochs
    plain = load_dataset({"name": "synthetic", "n_samples": 120, "n_features": 8})
    assert refit["rows"] == len(plain.x_train) + len(plain.x_val)
    assert set(metrics["test"]) >= {"loss", "acc"} and metrics["test"] == refit["test"]
    # The run's model/ is the refit's: evaluate rebuilds its data (train + val, the same test rows) and agrees.
    assert main(["evaluate", f"run={run}", "plots=false"]) == 0
    evaluation = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert evaluation["metrics"]["acc"] == pytest.approx(metrics["test"]["acc"])
    assert evaluation["split"] == "test" and evaluation["rows"] == len(plain.x_test)


# ------------------------------------------------------------------------------------------------------ sweeps
def _rows(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))


def test_a_grid_sweep_of_cv_trials_shows_mean_and_spread_and_refits_the_best(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["train", "-m", *tiny_run(240, epochs=3, model=None), "model=mlp,perceptron", "cv.folds=2",
               "cv.refit=true", f"hydra.sweep.dir={out}"])
    assert rc == 0
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row in rows:
        trial = json.loads((out / row["trial"] / "metrics.json").read_text())
        assert float(row["val/acc"]) == pytest.approx(trial["val"]["acc"])
        assert float(row["val/acc ±std"]) == pytest.approx(trial["cv"]["std"]["val"]["acc"])
    best, other = rows
    assert best["test/acc"] != "" and other["test/acc"] == ""            # only the best trial is refitted
    assert (out / "best").resolve() == (out / best["trial"] / "model").resolve()
    assert not (out / other["trial"] / "model").exists()
    record = json.loads((out / best["trial"] / "metrics.json").read_text())["cv"]["refit"]
    assert record["status"] == "ok" and (out / best["trial"] / "refit" / "history.csv").is_file()
    assert f"Trial {best['trial']}: best/ is this trial's refit" in (out / "leaderboard.md").read_text()
    printed = capsys.readouterr().out
    assert "val/acc ±std" in printed and "best/ is this trial's refit on train + val" in printed
    # The refit runs from Hydra's sweep callback, yet its lines look like the trials' (not "[HYDRA] cv.refit: ...")
    lines = printed.splitlines()
    # Each trial's last line says why its test split is untouched: the sweep refits its best trial at the end
    done = [line for line in lines if "] - done in" in line]
    assert len(done) == 2 and all("test: (untouched until the sweep ends: cv.refit retrains only the best trial"
                                  in line for line in done), done
    start = next(i for i, line in enumerate(lines) if "cv.refit: retraining the best trial" in line)
    end = next(i for i, line in enumerate(lines) if "cv.refit: " in line and "bundle in" in line)
    refit_lines = [line for line in lines[start:end + 1] if line.startswith("[")]
    assert len(refit_lines) >= 4 and not any("[HYDRA]" in line for line in refit_lines)
    assert all(line.split("] - ", 1)[0].endswith("[INFO") for line in refit_lines)
    assert "][netkiln.data][INFO] - data " in "\n".join(refit_lines)
    # ... and they go to the trial's train.log, after its folds' lines
    trial_log = (out / best["trial"] / "train.log").read_text()
    assert trial_log.index("cv: fold 2 of 2") < trial_log.index("][netkiln][INFO] - cv.refit: training on train + val")


def test_an_optuna_pruner_sees_every_folds_epochs(tmp_path):
    import optuna
    out = tmp_path / "sweep"
    rc = main(["train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median",
               *tiny_run(epochs=2), "optimizer.lr=interval(0.001, 0.1)", "cv.folds=2", f"hydra.sweep.dir={out}"])
    assert rc == 0
    study = optuna.load_study(study_name="netkiln", storage=f"sqlite:///{out}/optuna.db")
    for trial in study.trials:
        # fold k's epoch e is step k * max_epochs + e: both folds' epochs reach the pruner
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3]
        metrics = json.loads((out / str(trial.number) / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["monitored"])            # Optuna and the leaderboard agree


def test_a_stopped_cv_run_resumes_at_its_unfinished_fold(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", *tiny_run(epochs=2), "cv.folds=3"]
    assert main([*args, f"hydra.run.dir={run}"]) == 0
    whole = json.loads((run / "metrics.json").read_text())
    # As a stop in the last fold leaves it: folds 0-1 finished, fold 2 with checkpoints only, no run record.
    (run / "metrics.json").unlink()
    (run / "fold-2" / "metrics.json").unlink()
    finished = (run / "fold-0" / "metrics.json").stat().st_mtime_ns
    hydra_record = (run / ".hydra" / "config.yaml").stat().st_mtime_ns
    assert main([*args, f"hydra.run.dir={run}"]) == 2              # not trained over without resume=true
    assert "resume=true" in capsys.readouterr().err
    # refused before Hydra writes anything: the run's record is as the stop left it
    assert (run / ".hydra" / "config.yaml").stat().st_mtime_ns == hydra_record
    assert not (run / "metrics.json").exists()
    assert main(["train", "resume=true", f"hydra.run.dir={run}"]) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["monitored"] == whole["monitored"] and resumed["val"] == whole["val"]
    assert (run / "fold-0" / "metrics.json").stat().st_mtime_ns == finished        # a finished fold is kept


def test_a_refit_that_fails_after_a_sweep_is_recorded_and_the_sweep_stands(tmp_path):
    from netkiln.sweep.leaderboard import collect_trials, write_leaderboard
    from netkiln.sweep.refit import refit_best
    trial = tmp_path / "0"
    (trial / ".hydra").mkdir(parents=True)
    (trial / ".hydra" / "overrides.yaml").write_text("- cv.folds=2\n")
    (trial / ".hydra" / "config.yaml").write_text("data: [unclosed\n")          # unreadable: the refit fails
    metrics = {"status": "ok", "monitor": "val/acc", "mode": "max", "monitored": 0.9, "val": {"acc": 0.9},
               "test": {}, "cv": {"folds": 2, "refit": {"status": "pending"}, "std": {"val": {"acc": 0.01}}}}
    (trial / "metrics.json").write_text(json.dumps(metrics))
    [best] = collect_trials(tmp_path)
    import os
    import socket
    lock = trial / ".run.lock"        # another worker of a shared study is refitting it: this one leaves it
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    assert refit_best(best) is False and json.loads((trial / "metrics.json").read_text()) == metrics
    lock.unlink()
    assert refit_best(best) is True
    record = json.loads((trial / "metrics.json").read_text())
    assert record["cv"]["refit"]["status"] == "failed" and record["cv"]["refit"]["error"]
    assert record["monitored"] == 0.9                            # the trial's result is kept
    board = write_leaderboard(tmp_path)
    assert board.best.name == "0" and "the refit failed" in (tmp_path / "leaderboard.md").read_text()
    assert refit_best(collect_trials(tmp_path)[0]) is False      # not retried on a rebuild


def test_a_tables_preparation_is_fitted_on_the_folds_training_rows(tmp_path):
    import pandas as pd
    from conftest import ROOT
    path = ROOT / "examples" / "wine.csv"
    frame = pd.read_csv(path)
    node = {"name": "csv", "path": str(path), "target": "cultivar", "split": {"val": 0.15, "test": 0.15, "seed": 0}}
    for k in range(2):
        fold = load_dataset({**node, "split": {**node["split"], "fold": {"index": k, "of": 3, "seed": 0}}})
        scale = fold.preprocessing["columns"][0]["scale"]                  # alcohol, standardised
        assert scale["mean"] == pytest.approx(frame["alcohol"].iloc[fold.split_indices["train"]].mean())
        rows = fold.split_indices["train"] + fold.split_indices["val"]
        assert scale["mean"] != pytest.approx(frame["alcohol"].iloc[rows].mean())
