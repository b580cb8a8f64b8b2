"""Records are never mixed or lost: one process per run/sweep directory, no run or sweep replacing an earlier one,
evaluations written whole, the study and the leaderboard agreeing, the training data recorded by absolute path and
fingerprint, per_class.csv quoted."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from netkiln.cli import main
from conftest import TINY



def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes (a hidden lock file included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------------ run directory
@pytest.mark.slow          # a child process (~11-16 s on a busy machine); run by .ci/run
def test_a_second_train_in_a_busy_run_directory_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "netkiln.cli", "train", *TINY, "trainer.max_epochs=3",
                              f"hydra.run.dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / ".hydra" / "config.yaml").is_file() and (run / "train.log").is_file()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)         # the first run holds the directory while the second starts
        try:
            before = snapshot(run)
            second = run_cli("train", *TINY, "seed=7", f"hydra.run.dir={run}")
            after = snapshot(run)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert str(run) in lines[0] and f"another netkiln process (pid {first.pid}" in lines[0]
        assert after == before, "the refused run wrote into the busy directory"
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    assert "seed=7" not in (run / ".hydra" / "overrides.yaml").read_text()
    assert (run / "train.log").read_text().count("run directory:") == 1
    assert not (run / ".run.lock").exists(), "the lock is released at the end"


def test_a_finished_run_is_not_replaced_and_resume_takes_over_a_dead_lock(tmp_path, capsys):
    run = tmp_path / "run"
    # A run that failed on bad input leaves no record: the fixed command runs in the same folder.
    assert main(["train", *TINY, "batch_size=0", f"hydra.run.dir={run}"]) == 2
    assert main(["train", *TINY, f"hydra.run.dir={run}"]) == 0
    before = snapshot(run)
    capsys.readouterr()

    assert main(["train", *TINY, "seed=5", f"hydra.run.dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run) in err
    assert "finished run" in err and "resume=true" in err and "new hydra.run.dir" in err
    assert snapshot(run) == before, "the refused run changed the finished run's files"

    # A lock left by a killed process does not block the resume of its run.
    (run / ".run.lock").write_text(json.dumps({"pid": dead_pid(), "host": __import__("socket").gethostname()}))
    assert main(["train", *TINY, "resume=true", f"hydra.run.dir={run}"]) == 0
    assert not (run / ".run.lock").exists()
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


# ------------------------------------------------------------------------------------------------ evaluate
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("records") / "run"
    assert main(["train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run}"]) == 0
    return run


def test_an_interrupted_evaluate_leaves_the_previous_evaluation_whole(run, monkeypatch, capsys):
    import netkiln.artifacts.plots as plots

    assert main(["evaluate", f"run={run}"]) == 0
    before = snapshot(run / "evaluation")
    assert json.loads(before["evaluation.json"])["split"] == "test"

    def interrupted(*args, **kwargs):           # Ctrl-C after per_class.csv and the confusion matrix
        raise KeyboardInterrupt
    monkeypatch.setattr(plots, "learning_curves", interrupted)
    assert main(["evaluate", f"run={run}", "split=val"]) == 130
    assert snapshot(run / "evaluation") == before, "files of the val split beside the test split's"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".evaluation")], "no staging folder left"

    monkeypatch.undo()
    assert main(["evaluate", f"run={run}", "split=val", "plots=false"]) == 0
    after = snapshot(run / "evaluation")
    assert json.loads(after["evaluation.json"])["split"] == "val"
    assert set(after) == {"evaluation.json", "per_class.csv"}, "no plot of the earlier evaluation is left beside it"


def test_evaluate_refuses_an_out_folder_holding_other_files(run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["evaluate", f"run={run}", f"out={mine}"]) == 2
    err = capsys.readouterr().err
    assert "out" in err and str(mine) in err and "not an evaluation folder" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # A folder an earlier evaluate wrote is replaced whole.
    assert main(["evaluate", f"run={run}", f"out={tmp_path}/ev"]) == 0
    assert main(["evaluate", f"run={run}", f"out={tmp_path}/ev", "split=val", "plots=false"]) == 0
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["evaluation.json", "per_class.csv"]


def test_evaluate_on_other_data_writes_a_new_numbered_folder(run, capsys):
    assert main(["evaluate", f"run={run}"]) == 0
    own = snapshot(run / "evaluation")
    other = ["data=synthetic", "data.n_samples=90", "data.n_features=8", "data.generator_seed=3"]
    capsys.readouterr()
    assert main(["evaluate", f"run={run}", *other]) == 0
    assert f"written to {run / 'evaluation-2'}" in capsys.readouterr().out
    assert main(["evaluate", f"run={run}", *other, "plots=false"]) == 0
    assert snapshot(run / "evaluation") == own, "the run's own evaluation is never replaced by other data's"
    for folder in ("evaluation-2", "evaluation-3"):
        report = json.loads((run / folder / "evaluation.json").read_text())
        assert report["split"] == "all" and report["rows"] == 90
        assert report["files"]["evaluation"] == str(run / folder / "evaluation.json")


# ------------------------------------------------------------------------------------------------ data files
CLASSES = ["north, east", 'the "west"', "south"]


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A run trained on a CSV given by a relative path, with class names holding a comma and quotes."""
    root = tmp_path_factory.mktemp("csvrun")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 150)
    frame = pd.DataFrame(rng.normal(size=(150, 4)) + labels[:, None] * 2.0, columns=[f"x{i}" for i in range(4)])
    frame["label"] = [CLASSES[i] for i in labels]
    (root / "train").mkdir()
    frame.to_csv(root / "train" / "data.csv", index=False)
    cwd = os.getcwd()
    os.chdir(root / "train")
    try:
        assert main(["train", "data=csv", "data.path=data.csv", "data.target=label", "model=mlp", "trainer=debug",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=2", f"hydra.run.dir={root}/run"]) == 0
    finally:
        os.chdir(cwd)
    return root / "run", root / "train" / "data.csv"


def test_per_class_csv_quotes_class_names(csv_run):
    run, _ = csv_run
    assert main(["evaluate", f"run={run}", "plots=false"]) == 0
    with open(run / "evaluation" / "per_class.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["class", "precision", "recall", "f1", "support"]
    assert all(len(row) == 5 for row in rows)
    assert sorted(row[0] for row in rows[1:]) == sorted(CLASSES)


def test_evaluate_reads_the_file_training_read_and_says_when_it_changed_or_is_gone(csv_run, tmp_path, monkeypatch,
                                                                                   capsys):
    import yaml

    run, data = csv_run
    config = yaml.safe_load((run / "model" / "config.yaml").read_text())
    assert config["data"]["path"] == str(data)
    record = config["data_files"]["path"]
    assert record["path"] == str(data) and record["size"] == data.stat().st_size and len(record["sha256"]) == 64

    # Another data.csv in the working folder is not the run's data.
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"x0": [0.0], "label": ["south"]}).to_csv(tmp_path / "data.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", f"run={run}", f"out={tmp_path}/a", "plots=false"]) == 0
    assert "changed since" not in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "evaluation.json").read_text())["rows"] > 1

    original = data.read_bytes()
    try:
        data.write_bytes(original.replace(b"\n", b"\n", 1) + original.splitlines(keepends=True)[1])   # one row more
        assert main(["evaluate", f"run={run}", f"out={tmp_path}/b", "plots=false"]) == 0
        out = capsys.readouterr().out
        assert "changed since the run was trained" in out and str(data) in out

        data.unlink()
        assert main(["evaluate", f"run={run}", f"out={tmp_path}/c"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "data.path" in err and str(data) in err and "gone" in err
        assert not (tmp_path / "c").exists()
    finally:
        data.write_bytes(original)


# ------------------------------------------------------------------------------------------------ sweeps
SWEEP = ["data=synthetic", "data.n_samples=120", "data.n_features=8", "trainer=debug",
         "trainer.enable_progress_bar=false", "batch_size=32", "trainer.max_epochs=1"]


def leaderboard(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))


def test_a_new_sweep_in_a_folder_holding_another_sweeps_trials_is_refused(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    assert main(["train", "-m", *SWEEP, "model=perceptron", f"hydra.sweep.dir={sweep_dir}"]) == 0
    before = snapshot(sweep_dir)
    capsys.readouterr()
    assert main(["train", "-m", *SWEEP, "model=mlp,perceptron", f"hydra.sweep.dir={sweep_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(sweep_dir) in err and "earlier sweep" in err
    assert snapshot(sweep_dir) == before, "the older sweep's trials and leaderboard are untouched"
    # Resuming an Optuna study here is refused too: the trials are not the study's.
    assert main(["train", "-m", *SWEEP, "hydra/sweeper=optuna", "hydra.sweeper.resume=true",
                 "hydra.sweeper.n_trials=1", "model=mlp", "optimizer.lr=interval(1e-3,1e-1)",
                 f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert "not in study" in capsys.readouterr().err
    assert snapshot(sweep_dir) == before


def test_a_trial_that_finished_before_its_sweep_was_killed_counts_in_study_and_leaderboard(tmp_path):
    import optuna

    sweep_dir = tmp_path / "sweep"
    optuna_args = ["hydra/sweeper=optuna", "hydra.sweeper.seed=0", "model=mlp", "optimizer.lr=interval(1e-3,1e-1)",
                   f"hydra.sweep.dir={sweep_dir}"]
    assert main(["train", "-m", *SWEEP, *optuna_args, "hydra.sweeper.n_trials=1"]) == 0
    # Killed after trial 1 wrote its metrics.json, before the sweeper told the study.
    study = optuna.load_study(study_name="netkiln", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert study.ask().number == 1
    shutil.copytree(sweep_dir / "0", sweep_dir / "1", symlinks=True)
    value = json.loads((sweep_dir / "1" / "metrics.json").read_text())["monitored"]

    assert main(["train", "-m", *SWEEP, *optuna_args, "hydra.sweeper.n_trials=2", "hydra.sweeper.resume=true"]) == 0
    study = optuna.load_study(study_name="netkiln", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"], "trial 1 counts; no third trial"
    assert study.trials[1].value == pytest.approx(value)
    assert [r["status"] for r in leaderboard(sweep_dir)] == ["ok", "ok"]
    assert not (sweep_dir / "2").exists()


def test_a_job_that_died_is_recorded_as_the_study_is_told(tmp_path):
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    from netkiln.sweep.leaderboard import collect_trials
    from netkiln.sweep.optuna_search import _outcome

    def job(folder, status, returned):
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text("- model=mlp\n")
        cfg = SimpleNamespace(hydra=SimpleNamespace(runtime=SimpleNamespace(output_dir=str(folder))))
        return SimpleNamespace(status=status, return_value=returned, hydra_cfg=cfg)

    # Its result written, then the job died on the way back: the result counts.
    done = job(tmp_path / "0", JobStatus.FAILED, RuntimeError("worker died"))
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"status": "ok", "monitored": 0.75}))
    assert _outcome(done) == (TrialState.COMPLETE, 0.75)
    # Died without a result: failed on disk too, so the leaderboard counts it as the study does.
    died = job(tmp_path / "1", JobStatus.FAILED, RuntimeError("worker died"))
    assert _outcome(died) == (TrialState.FAIL, None)
    trials = {t.name: t for t in collect_trials(tmp_path)}
    assert trials["0"].status == "ok" and trials["1"].status == "failed"
    assert "worker died" in trials["1"].metrics["error"]
