"""Faults during a run: NaN loss, Ctrl-C, SIGKILL inside a checkpoint or bundle write, a full disk.

Whatever happens, no file under a final name is torn, what finished is kept, and `resume=true` ends the run with the
same result as an uninterrupted one. The kills land inside the writes deterministically: the child process patches
`os.replace` to tear the temporary file and SIGKILL itself just before the rename. (A failed trial in a sweep, NaN
included, is tested in test_sweep.py; the sweep lock there too.) The two SIGKILL tests are marked slow: `pytest -m slow`.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from netkiln.cli import main

EPOCHS = 5
ARGS = ["data=synthetic", "data.n_samples=300", "data.n_features=8", "model=mlp", "trainer=debug",
        "trainer.enable_progress_bar=false", "batch_size=32", f"trainer.max_epochs={EPOCHS}", "callbacks=none"]

# Run in the child before netkiln: checkpoints are written every epoch (not coalesced over 5 s), so the
# N-th write of last.ckpt is the N-th epoch's.
CHILD = """
import os, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)     # also when the test runner ignores Ctrl-C
import netkiln.training.checkpoints as ck
ck.RunCheckpoints.write_interval = 0.0
{patch}
from netkiln.cli import main
sys.exit(main(sys.argv[1:]))
"""

# Tear the temporary file and SIGKILL this process just before the `nth` rename onto a file named `name`.
KILL_IN_WRITE = """
_replace, _seen = os.replace, []
def replace(src, dst, *args, **kwargs):
    if Path(dst).name == {name!r}:
        _seen.append(dst)
        if len(_seen) == {nth}:
            data = Path(src).read_bytes()
            Path(src).write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
"""

# Ctrl-C from the OS in the middle of epoch `epoch` (a real SIGINT, raised at a known point).
SIGINT_IN_EPOCH = """
import netkiln.training.module as m
_step = m.NetkilnModule.training_step
def training_step(self, chunk, chunk_idx):
    if self.current_epoch == {epoch}:
        os.kill(os.getpid(), signal.SIGINT)
    return _step(self, chunk, chunk_idx)
m.NetkilnModule.training_step = training_step
"""


def child(run: Path, patch: str, *extra: str) -> subprocess.CompletedProcess:
    code = CHILD.format(patch=textwrap.dedent(patch))
    return subprocess.run([sys.executable, "-c", code, "train", *ARGS, *extra, f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=300)


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def history_epochs(run: Path) -> list[int]:
    import csv
    return [int(row["epoch"]) for row in csv.DictReader(open(run / "history.csv"))]


def temp_files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name)


def checkpoint_epoch(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    return state["epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one must end equal to."""
    run = tmp_path_factory.mktemp("faults") / "straight"
    assert main(["train", *ARGS, f"hydra.run.dir={run}"]) == 0
    return metrics(run)


def assert_same_result(run: Path, straight: dict) -> None:
    resumed = metrics(run)
    assert resumed["status"] == "ok" and resumed["epochs"] == straight["epochs"] == EPOCHS
    assert resumed["steps"] == straight["steps"]
    for split in ("val", "test"):
        for key, value in straight[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-6), (split, key)
    assert history_epochs(run) == list(range(EPOCHS))
    assert not temp_files(run), temp_files(run)


# ------------------------------------------------------------------------------------------------ Ctrl-C
@pytest.mark.slow          # a child process (~10-19 s on a busy machine); run by .ci/run
def test_ctrl_c_keeps_the_last_epoch_writes_what_it_has_and_exits_130(tmp_path, straight):
    run = tmp_path / "run"
    result = child(run, SIGINT_IN_EPOCH.format(epoch=3))
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "netkiln train: interrupted" in result.stderr
    info = metrics(run)
    assert info["status"] == "interrupted" and info["epochs"] == 3 and info["checkpoint_epoch"] == 2
    assert "resume=true" in info["resume"] and "resume=true" in result.stdout
    assert history_epochs(run) == [0, 1, 2]
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == 2          # the last finished epoch
    assert not (run / "model").exists() and not temp_files(run)

    assert main(["train", *ARGS, f"hydra.run.dir={run}", "resume=true"]) == 0
    assert_same_result(run, straight)


# ------------------------------------------------------------------------------------------------ SIGKILL
@pytest.mark.slow          # a child process each (~15 s on a busy machine); run by .ci/run
def test_sigkill_inside_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, straight):
    run = tmp_path / "run"
    result = child(run, KILL_IN_WRITE.format(name="last.ckpt", nth=3))
    assert result.returncode == -signal.SIGKILL, result.stderr
    torn = [p for p in temp_files(run) if p.startswith("checkpoints/.last.ckpt.")]
    assert torn, "the kill landed inside the write of last.ckpt"
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == 1            # the 2nd write, intact
    assert not (run / "metrics.json").exists() and not (run / "model").exists()

    assert main(["train", *ARGS, f"hydra.run.dir={run}", "resume=true"]) == 0
    assert_same_result(run, straight)


@pytest.mark.slow          # a child process each (~15 s on a busy machine); run by .ci/run
def test_sigkill_inside_the_bundle_write_leaves_no_bundle_and_resume_finishes(tmp_path, straight, capsys):
    run = tmp_path / "run"
    result = child(run, KILL_IN_WRITE.format(name="weights.safetensors", nth=1))
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not (run / "model").exists(), "no bundle under its final name"
    assert list(run.glob(".model.tmp-*")), "the kill landed inside the staged bundle"
    assert not (run / "metrics.json").exists()
    capsys.readouterr()
    assert main(["evaluate", f"run={run}"]) == 2
    assert "did not finish" in capsys.readouterr().err

    assert main(["train", *ARGS, f"hydra.run.dir={run}", "resume=true"]) == 0
    assert_same_result(run, straight)
    assert not list(run.glob(".model*")), "the dead writer's staging folder is gone"
    assert main(["evaluate", f"run={run}", f"out={tmp_path}/eval"]) == 0


# ------------------------------------------------------------------------------------------------ disk full
def _disk_full_on(monkeypatch, name: str, nth: int = 1) -> None:
    """The `nth` atomic write of a file named `name` hits a full disk half-way."""
    import netkiln.io.files as files

    real = files.write_atomic
    seen = []

    def write_atomic(path, write):
        if Path(path).name == name:
            seen.append(path)
            if len(seen) == nth:
                def full(tmp):
                    Path(tmp).write_bytes(b"\0" * 100)
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(path, full)
        return real(path, write)
    monkeypatch.setattr(files, "write_atomic", write_atomic)
    import netkiln.artifacts.bundle as bundle
    import netkiln.training.checkpoints as checkpoints
    monkeypatch.setattr(bundle, "write_atomic", write_atomic)       # the checkpoints' and history's go via files
    monkeypatch.setattr(checkpoints.RunCheckpoints, "write_interval", 0.0)     # a write every epoch


def test_disk_full_writing_a_checkpoint(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _disk_full_on(monkeypatch, "last.ckpt", nth=3)
    rc = main(["train", *ARGS, f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip().splitlines()[-1]
    assert "last.ckpt" in line and "disk is full" in line and "Traceback" not in err
    # Intact: epoch 1 (the write before), or a later epoch when the failure was noticed only after the next
    # epoch's write had gone through (writes run beside training; on a loaded machine the failed one finishes late).
    held = checkpoint_epoch(run / "checkpoints" / "last.ckpt")
    assert len(history_epochs(run)) >= 3                  # history.csv is kept too
    assert 1 <= held < len(history_epochs(run))
    assert not temp_files(run) and metrics(run)["status"] == "failed" and not (run / "model").exists()


def test_disk_full_writing_the_bundle_then_resume(tmp_path, monkeypatch, capsys, straight):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _disk_full_on(patch, "weights.safetensors")
        rc = main(["train", *ARGS, f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = err.strip().splitlines()[-1]
    assert "weights.safetensors" in line and "disk is full" in line and "intact" in line
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == EPOCHS - 1
    assert history_epochs(run) == list(range(EPOCHS)) and (run / "summary.txt").is_file()
    assert not (run / "model").exists() and not list(run.glob(".model*")) and not temp_files(run)
    # Space freed: the same command with resume=true finishes the run from its checkpoints.
    assert main(["train", *ARGS, f"hydra.run.dir={run}", "resume=true"]) == 0
    assert_same_result(run, straight)


# ------------------------------------------------------------------------------------------------ NaN
def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    import netkiln.training.checkpoints as checkpoints
    monkeypatch.setattr(checkpoints.RunCheckpoints, "write_interval", 0.0)     # a write every epoch
    run = tmp_path / "run"
    # A sane first epoch, then the learning rate jumps by 1e12: the loss explodes in epoch 1.
    rc = main(["train", *ARGS, "optimizer=sgd", "optimizer.lr=0.05", "scheduler=step", "scheduler.step_size=1",
               "scheduler.gamma=1e12", f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "at epoch 1" in line and "optimizer step" in line and "lower learning rate" in line
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == 0            # finite weights of epoch 0
    assert history_epochs(run) == [0]
    assert metrics(run)["status"] == "failed" and not (run / "model").exists() and not temp_files(run)
