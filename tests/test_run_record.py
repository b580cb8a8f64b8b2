"""The run directory is the record: resume rebuilds the run from it, and a failed command never rewrites it.

- The resume line netkiln prints after Ctrl-C works verbatim for a non-default model (a GRU) and ends with the
  result of an uninterrupted run; the run's `.hydra/` and `summary.txt` stay as the run wrote them.
- A resume may not change the model or data (one error line listing the conflicts, nothing written); a resume
  that fails later puts its error in train.log and keeps the run's metrics.json.
- A run that fails on bad input leaves train.log with the error and metrics.json `"status": "failed"` (read as
  failed by the leaderboard) and may be rerun in place; a run refused by the run-directory lock writes nothing.
"""
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netkiln.cli import main
from test_faults import CHILD, SIGINT_IN_EPOCH
from conftest import TINY

EPOCHS = 4
GRU = ["data=synthetic", "data.n_samples=300", "data.layout=sequence", "data.shape=[6,4]", "model=gru",
       "model.layers.0.gru.units=8", "trainer=debug", "trainer.enable_progress_bar=false", "batch_size=32",
       f"trainer.max_epochs={EPOCHS}", "callbacks=none"]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def snapshot(run: Path) -> dict:
    """Every file's bytes (the lock file aside)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".run.lock"}


RECORD = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "summary.txt")


@pytest.fixture(scope="module")
def gru_runs(tmp_path_factory):
    """An uninterrupted GRU run, and the same run stopped by Ctrl-C in epoch 2 (in a child process)."""
    base = tmp_path_factory.mktemp("record")
    straight = base / "straight"
    assert main(["train", *GRU, f"hydra.run.dir={straight}"]) == 0
    stopped = base / "stopped"
    code = CHILD.format(patch=textwrap.dedent(SIGINT_IN_EPOCH.format(epoch=2)))
    result = subprocess.run([sys.executable, "-c", code, "train", *GRU, f"hydra.run.dir={stopped}"],
                            capture_output=True, text=True, timeout=300, cwd=base)
    assert result.returncode == 130, result.stderr
    return straight, stopped, result.stdout


@pytest.mark.slow          # a child process (~11-16 s on a busy machine); run by .ci/run
def test_the_printed_resume_line_continues_a_gru_run_and_keeps_its_record(gru_runs, tmp_path):
    straight, stopped, stdout = gru_runs
    printed = [line.split("continue with: ", 1)[1] for line in stdout.splitlines() if "continue with: " in line]
    assert len(printed) == 1, stdout
    info = metrics(stopped)
    assert info["status"] == "interrupted" and info["resume"] == printed[0]
    record = {name: (stopped / name).read_bytes() for name in RECORD}
    assert "- model=gru" in record[".hydra/overrides.yaml"].decode()

    args = shlex.split(printed[0])
    assert args[:2] == ["netkiln", "train"] and "model=gru" not in args
    # The same words, run by this environment's netkiln script from another working folder.
    netkiln = str(Path(sys.executable).with_name("netkiln"))
    result = subprocess.run([netkiln, *args[1:]], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    resumed, expected = metrics(stopped), metrics(straight)
    assert resumed["status"] == "ok" and resumed["epochs"] == expected["epochs"] == EPOCHS
    assert resumed["steps"] == expected["steps"]
    for split in ("val", "test"):
        for key, value in expected[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-6), (split, key)
    assert {name: (stopped / name).read_bytes() for name in RECORD} == record, "the run's record was rewritten"
    assert "resume=true" in (stopped / "train.log").read_text(), "the resume's log is appended to train.log"


def test_resume_refuses_to_change_the_model_or_data_and_writes_nothing(gru_runs, capsys):
    straight, _, _ = gru_runs
    before = snapshot(straight)
    capsys.readouterr()
    rc = main(["train", "resume=true", "model.layers.0.gru.units=16", "seed=3", "model=gru",
               "trainer.max_epochs=9", f"hydra.run.dir={straight}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("netkiln train: error: resume=true: model.layers.0.gru.units=16 differs from the run's "
                             "saved 8, seed=3 differs from the run's saved 0; resume cannot change the model or data")
    assert "model=gru differs" not in err[0] and "max_epochs" not in err[0]     # the same model; a free key
    rc = main(["train", "resume=true", "data=digits", f"hydra.run.dir={straight}"])
    assert rc == 2 and "data=digits differs from the run's saved synthetic" in capsys.readouterr().err
    assert snapshot(straight) == before


def test_a_failed_resume_keeps_the_runs_metrics_and_record(gru_runs, capsys):
    straight, _, _ = gru_runs
    before = snapshot(straight)
    # A key a resume may change, with a value the trainer refuses: the error is raised inside the run.
    rc = main(["train", "resume=true", "trainer.max_epochs=-3", f"hydra.run.dir={straight}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "trainer.max_epochs" in err[-1], err
    after = snapshot(straight)
    log = after.pop("train.log").decode()
    assert "run failed: trainer.max_epochs" in log
    assert log.startswith(before.pop("train.log").decode()), "train.log is appended to, not replaced"
    assert after == before                  # metrics.json, .hydra/, summary.txt, the bundle: as the run left them


def test_a_failed_run_records_its_error_and_can_be_rerun_in_place(tmp_path, capsys):
    from netkiln.sweep.leaderboard import collect_trials

    run = tmp_path / "sweep" / "0"
    rc = main(["train", *TINY, "batch_size=0", f"hydra.run.dir={run}"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and line == "netkiln train: error: batch_size: must be a positive integer, not 0."
    assert metrics(run) == {"status": "failed", "error": "batch_size: must be a positive integer, not 0."}
    assert "run failed: batch_size: must be a positive integer, not 0." in (run / "train.log").read_text()
    assert [t.status for t in collect_trials(run.parent)] == ["failed"]
    # No training record: the same folder takes a new run without resume=true.
    assert main(["train", *TINY, f"hydra.run.dir={run}"]) == 0
    assert metrics(run)["status"] == "ok"


def test_a_run_refused_by_the_lock_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        import socket
        (run / ".run.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        before = sorted(p.name for p in run.rglob("*"))
        rc = main(["train", *TINY, "batch_size=0", f"hydra.run.dir={run}"])
        assert rc == 2 and f"pid {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in run.rglob("*")) == before == [".run.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert not os.path.exists(run / "metrics.json")


# ------------------------------------------------------------------------------------------------ init_from
def test_init_from_takes_the_bundles_model_and_data(gru_runs, tmp_path, capsys):
    straight, _, _ = gru_runs
    tuned = tmp_path / "tuned"
    # As the README's example: no model= and no data=, so model=auto (the default) must not pick a CNN.
    assert main(["train", f"init_from={straight}", "freeze=[gru]", "optimizer.lr=1e-4", "trainer=debug",
                 "trainer.enable_progress_bar=false", "trainer.max_epochs=1", f"hydra.run.dir={tuned}"]) == 0
    info = metrics(tuned)
    assert info["data"] == "synthetic" and info["params"]["total"] == metrics(straight)["params"]["total"]
    assert info["params"]["non_trainable"] == 3 * (4 * 8 + 8 * 8 + 2 * 8)        # the GRU's weights, frozen
    assert "gru (GRU)" in (tuned / "summary.txt").read_text()
    assert "gru:" in (tuned / ".hydra" / "config.yaml").read_text(), "the saved config shows the layers used"
    # A model named on the command line wins (on the bundle's data).
    assert main(["train", f"init_from={straight}", "model=lstm", "trainer=debug", "trainer.max_epochs=1",
                 f"hydra.run.dir={tmp_path / 'lstm'}"]) == 0
    assert "lstm (LSTM)" in (tmp_path / "lstm" / "summary.txt").read_text()


@pytest.mark.parametrize("freeze, layer", [("[0]", "0 (flatten)"), ("[dense,dropout]", "2 (dropout)")])
def test_freezing_a_layer_without_weights_is_an_error(tmp_path, capsys, freeze, layer):
    rc = main(["train", *TINY, f"freeze={freeze}", f"hydra.run.dir={tmp_path / 'run'}"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and f"layer {layer} has no weights to freeze" in line
    assert "the layers with weights: 1 dense, 3 dense_1" in line       # what to write instead
    assert f"freeze[{0 if 'flatten' in layer else 1}]" in line
