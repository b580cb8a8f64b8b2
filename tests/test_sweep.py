"""Model selection: grid and Optuna sweeps, failure tolerance, pruning, resume, launchers, leaderboard."""
import csv
import json
import os
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl

from netkiln.cli import main
from conftest import tiny_run

TINY = tiny_run(240, epochs=None, model=None)


def sweep(tmp_path, *overrides, name="sweep"):
    sweep_dir = tmp_path / name
    rc = main(["train", "-m", *TINY, f"hydra.sweep.dir={sweep_dir}", *overrides])
    return rc, sweep_dir


def leaderboard(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))


def test_grid_sweep_ranks_trials_and_points_at_the_best(tmp_path):
    rc, out = sweep(tmp_path, "model=mlp,perceptron", "trainer.max_epochs=4", "optimizer.lr=0.02")
    assert rc == 0
    rows = leaderboard(out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [r["rank"] for r in rows] == ["1", "2"]
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)           # val/acc: higher is better
    assert {r["overrides"] for r in rows} == {"model=mlp", "model=perceptron"}
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == rows[0]["trial"] and best["monitor"] == "val/acc"
    assert (out / "best").resolve() == (out / best["trial"]).resolve() or \
        (out / "best").resolve() == (out / best["trial"] / "model").resolve()
    assert "| rank |" in (out / "leaderboard.md").read_text()


def test_model_family_sweep_on_mnist1d_is_ranked(tmp_path):
    sweep_dir = tmp_path / "sweep"
    rc = main(["train", "-m", "model=mlp,cnn,gru", "data=mnist1d", "data.generator.num_samples=1000",
               "trainer=debug", "trainer.max_epochs=1",
               "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep_dir}"])
    assert rc == 0
    rows = leaderboard(sweep_dir)
    assert sorted(r["overrides"] for r in rows) == ["model=cnn", "model=gru", "model=mlp"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    # cnn needs sequences: it fails on flat data; the NaN trial fails in training.
    rc, out = sweep(tmp_path, "model=mlp,cnn", "optimizer=sgd", "optimizer.lr=0.01,1e30")
    assert rc == 3
    rows = leaderboard(out)
    assert len(rows) == 4
    by_status = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    assert len(by_status["ok"]) == 1 and len(by_status["failed"]) == 3
    assert rows[0]["status"] == "ok"
    errors = " ".join(r["error"] for r in by_status["failed"])
    assert "conv1d" in errors and "learning rate" in errors


def test_leaderboard_command_rebuilds_an_interrupted_sweep(tmp_path, capsys):
    rc, out = sweep(tmp_path, "model=mlp,perceptron", "trainer.max_epochs=2")
    assert rc == 0
    (out / "1" / "metrics.json").unlink()                   # as if trial 1 had been killed
    (out / "leaderboard.csv").unlink()
    assert main(["leaderboard", str(out)]) == 0
    rows = leaderboard(out)
    assert [r["status"] for r in rows] == ["ok", "incomplete"]
    assert "Leaderboard" in capsys.readouterr().out


def test_leaderboard_of_a_folder_that_is_no_sweep(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no trials found" in capsys.readouterr().err


OPTUNA = ["hydra/sweeper=optuna", "hydra.sweeper.seed=0", "model=mlp", "trainer.max_epochs=3",
          "optimizer.lr=tag(log,interval(1e-4,1e-1))"]


def test_optuna_sweep_stores_the_study_and_resumes(tmp_path):
    import optuna

    rc, out = sweep(tmp_path, *OPTUNA, "hydra.sweeper.n_trials=2")
    assert rc == 0
    storage = f"sqlite:///{out / 'optuna.db'}"
    study = optuna.load_study(study_name="netkiln", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.direction.name == "MAXIMIZE"                   # monitor val/acc
    # A sweep killed mid-trial leaves a RUNNING trial behind.
    study.ask()
    # Without resume=true the stored study is not touched.
    rc, _ = sweep(tmp_path, *OPTUNA, "hydra.sweeper.n_trials=4")
    assert rc == 2
    rc, _ = sweep(tmp_path, *OPTUNA, "hydra.sweeper.n_trials=4", "hydra.sweeper.resume=true")
    assert rc == 0
    study = optuna.load_study(study_name="netkiln", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].user_attrs["interrupted"] is True
    lrs = [t.params["optimizer.lr"] for t in study.trials if t.state.name == "COMPLETE"]
    assert len(set(lrs)) == 4                                  # the resumed sampler does not replay
    rows = leaderboard(out)
    assert sum(r["status"] == "ok" for r in rows) == 4


def test_optuna_pruner_stops_bad_trials(tmp_path):
    # val/acc can never exceed 1.01: the threshold pruner prunes every trial after its first epoch.
    rc, out = sweep(tmp_path, *OPTUNA, "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=threshold",
                    "+hydra.sweeper.pruner_args.lower=1.01", "trainer.max_epochs=5")
    assert rc == 0
    rows = leaderboard(out)
    assert [r["status"] for r in rows] == ["pruned", "pruned"]
    assert all(r["epochs"] == "1" for r in rows)
    import optuna
    study = optuna.load_study(study_name="netkiln", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]


def test_optuna_grid_sampler_over_choices(tmp_path):
    rc, out = sweep(tmp_path, "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2",
                    "model=mlp,perceptron", "trainer.max_epochs=2")
    assert rc == 0
    assert {r["overrides"] for r in leaderboard(out)} == {"model=mlp", "model=perceptron"}


class Rendezvous(pl.Callback):
    """At its start, each trial waits until `trials` trials have started: trials that run one after another never
    all arrive, and the first one fails after `seconds`."""

    def __init__(self, folder: str, trials: int, seconds: float = 120):
        self.folder, self.trials, self.seconds = Path(folder), trials, seconds

    def on_fit_start(self, trainer, pl_module):
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{os.getpid()}-{time.monotonic_ns()}").touch()
        deadline = time.monotonic() + self.seconds
        while len(list(self.folder.iterdir())) < self.trials:
            if time.monotonic() > deadline:
                raise RuntimeError("no other trial started while this one waited: the trials did not run in parallel")
            time.sleep(0.05)


def test_joblib_launcher_runs_trials_in_parallel(tmp_path):
    arrived = tmp_path / "arrived"
    rc, out = sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=mlp,perceptron",
                    "trainer.max_epochs=2", "allow_targets=true",
                    f"callbacks.extra=[{{_target_: test_sweep.Rendezvous, folder: '{arrived}', trials: 2}}]")
    assert rc == 0
    assert [r["status"] for r in leaderboard(out)] == ["ok", "ok"]
    # Both trials were running at once, each in a worker process of its own (not this one).
    pids = {name.split("-")[0] for name in os.listdir(arrived)}
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_optuna_with_joblib_batches(tmp_path):
    rc, out = sweep(tmp_path, *OPTUNA, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                    "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.pruner=none")
    assert rc == 0
    assert [r["status"] for r in leaderboard(out)] == ["ok", "ok"]


@pytest.mark.slow          # a child process (~11-16 s on a busy machine); run by .ci/run
def test_submitit_local_launcher(tmp_path):
    rc, out = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "model=perceptron",
                    "trainer.max_epochs=2")
    assert rc == 0
    assert [r["status"] for r in leaderboard(out)] == ["ok"]


def test_a_sweep_directory_in_use_is_refused(tmp_path, capsys):
    import json
    import subprocess
    import sys

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (sweep_dir / ".sweep.lock").write_text(json.dumps({"pid": holder.pid, "host": __import__("socket").gethostname()}))
        rc, _ = sweep(tmp_path, "model=perceptron", "trainer.max_epochs=1")
        assert rc == 2
        assert "another sweep" in capsys.readouterr().err
        assert not (sweep_dir / "0").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale and the next sweep takes over.
    rc, _ = sweep(tmp_path, "model=perceptron", "trainer.max_epochs=1")
    assert rc == 0
    assert not (sweep_dir / ".sweep.lock").exists()


def test_the_terminal_leaderboard_prints_overrides_and_errors_with_brackets_as_written(tmp_path, capsys):
    # rich markup would swallow "[id]" (a user saw "data.drop= trainer.max_epochs=3" in the best line)
    from netkiln.sweep.leaderboard import Leaderboard, Trial, print_leaderboard

    best = Trial("0", tmp_path / "0", ["data.drop=[id]", "model=mlp"], "ok",
                 {"monitor": "val/acc", "mode": "max", "monitored": 0.9})
    rows = [{"rank": 1, "trial": "0", "status": "ok", "overrides": "data.drop=[id] model=mlp", "value": 0.9},
            {"rank": None, "trial": "1", "status": "failed", "overrides": "data.drop=[id] model=cnn",
             "error": "add `reshape: [14, 1]`"}]
    print_leaderboard(Leaderboard(tmp_path / "[sweep]", rows, best))
    out = capsys.readouterr().out
    assert "best: trial 0 (data.drop=[id] model=mlp)" in out
    assert "[14, 1]" in out and "[sweep]" in out and out.count("data.drop=[id]") == 3


def _wide_board(tmp_path):
    """A leaderboard with more columns than 120 characters hold (cv spread, Pareto, constraints, latency)."""
    from netkiln.sweep.leaderboard import Leaderboard, Trial
    from netkiln.sweep.objectives import Objective

    best = Trial("0", tmp_path / "0", ["model.vars.width=16", "optimizer.lr=0.05421977611448919"], "ok",
                 {"monitor": "val/acc", "mode": "max", "monitored": 0.8109})
    row = {"rank": 1, "trial": "0", "status": "ok", "overrides": " ".join(best.overrides), "monitor": "val/acc",
           "value": 0.8109, "pareto": "yes", "constraints": "ok", "val/acc": 0.8109, "val/acc ±std": 0.0244,
           "test/acc": 0.7961, "test/f1": 0.7712, "params": 403, "latency_ms": 0.0011, "epochs": 4,
           "seconds": 0.208, "error": ""}
    return Leaderboard(tmp_path, [row], best, rule="best: the top of val/acc:max among the Pareto front of "
                       "val/acc:max, latency_ms:min: trial 0.",
                       basis="the top of val/acc:max among the Pareto front of val/acc:max, latency_ms:min",
                       objectives=(Objective("val/acc", "max"), Objective("latency_ms", "min")))


PRINTED = ["rank", "trial", "status", "overrides", "val/acc", "val/acc ±std", "pareto", "constraints", "latency_ms",
           "test/acc", "test/f1", "params", "epochs", "seconds"]


def test_the_leaderboard_printed_to_a_pipe_has_every_column_and_one_best_line(tmp_path):
    import io

    from rich.console import Console

    from netkiln.sweep.leaderboard import print_leaderboard

    console = Console(file=io.StringIO(), width=80)             # not a terminal: as in a pipe, a file, CI
    print_leaderboard(_wide_board(tmp_path), console)
    out = console.file.getvalue()
    header = next(line for line in out.splitlines() if "rank" in line)
    assert [cell.strip() for cell in header.strip("┃").split("┃")] == PRINTED
    assert "0.2080" in out and "0.0011" in out                  # the last columns' cells, too
    assert "optimizer.lr=0.05421977611448919" in out             # on one line: nothing folded
    best_lines = [line for line in out.splitlines() if line.startswith("best")]
    assert len(best_lines) == 1 and "trial 0" in best_lines[0] and "the top of val/acc:max" in best_lines[0]


@pytest.mark.parametrize("width", [60, 100, 130])
def test_a_narrow_terminal_names_the_columns_it_leaves_out(tmp_path, width):
    import io

    from rich.console import Console

    from netkiln.sweep.leaderboard import print_leaderboard

    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    print_leaderboard(_wide_board(tmp_path), console)
    out = console.file.getvalue()
    assert max(len(line) for line in out.splitlines()) <= width         # nothing runs past the terminal's edge
    header = next(line for line in out.splitlines() if "rank" in line)
    shown = [cell.strip() for cell in header.strip("┃").split("┃")]
    note = " ".join(out[out.index("not shown"):].split()) if "not shown" in out else ""
    left_out = note.split(": ", 1)[1].split(" (every")[0].split(", ") if note else []
    assert shown + left_out == PRINTED                                   # every column: shown, or named
    assert width == 130 or left_out                                      # 60 and 100 are too narrow for all
    assert not note or "leaderboard.csv" in note
    assert sum(line.startswith("best") for line in out.splitlines()) == 1
