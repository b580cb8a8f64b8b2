"""Kill-and-resume (SIGKILL mid-run) and fine-tuning from a bundle with frozen layers."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from netkiln.cli import main
from conftest import tiny_run

TINY = tiny_run(300, epochs=None)


def read_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def history_rows(run_dir):
    try:
        return max(0, len((run_dir / "history.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    epochs = 12
    args = [*TINY, f"trainer.max_epochs={epochs}", "callbacks=none"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "netkiln.cli", "train", *args, f"hydra.run.dir={run}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while history_rows(run) < 3 or not (run / "checkpoints" / "last.ckpt").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists() and not (run / "model").exists(), "killed before the end"
    killed_at = history_rows(run)
    assert 3 <= killed_at < epochs

    assert main(["train", *args, f"hydra.run.dir={run}", "resume=true"]) == 0
    assert main(["train", *args, f"hydra.run.dir={tmp_path / 'straight'}"]) == 0
    resumed, straight = read_metrics(run), read_metrics(tmp_path / "straight")
    print(f"killed after {killed_at} epochs; resumed to {resumed['epochs']}")
    assert resumed["steps"] == straight["steps"] and resumed["epochs"] == straight["epochs"] == epochs
    for split in ("val", "test"):
        for key, value in straight[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-6), (split, key)
    assert history_rows(run) == epochs
    assert (run / "model" / "weights.safetensors").exists()
    a = load_file(str(run / "model" / "weights.safetensors"))
    b = load_file(str(tmp_path / "straight" / "model" / "weights.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_finetune_with_frozen_layers(tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={base}"]) == 0
    tuned = tmp_path / "tuned"
    assert main(["train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={tuned}", f"init_from={base}",
                 "freeze=[dense]", "optimizer.lr=0.05"]) == 0
    summary = (tuned / "summary.txt").read_text()
    frozen_params = 8 * 128 + 128          # the first dense layer
    assert f"Non-trainable params: {frozen_params:,}" in summary
    metrics = read_metrics(tuned)
    assert metrics["params"]["non_trainable"] == frozen_params
    assert metrics["params"]["trainable"] == metrics["params"]["total"] - frozen_params
    before = load_file(str(base / "model" / "weights.safetensors"))
    after = load_file(str(tuned / "model" / "weights.safetensors"))
    frozen = [k for k in before if k.startswith("layers.1.")]          # model.layers[1], the first dense
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if not k.startswith("layers.1.") and not torch.equal(before[k], after[k])]
    assert trained, "the unfrozen layers kept training"
    meta = json.loads((tuned / "model" / "meta.json").read_text())
    assert meta["init_from"] == str(base) and meta["freeze"] == ["dense"]

    # A new head for 4 classes: the body comes from the bundle, the head starts fresh.
    assert main(["train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'four'}", f"init_from={base}",
                 "data.n_classes=4", "freeze=[dense, dense_1]"]) == 0
    assert read_metrics(tmp_path / "four")["params"]["non_trainable"] == frozen_params + 128 * 128 + 128

    capsys.readouterr()
    rc = main(["train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'bad'}", "freeze=[dense_5]"])
    err = capsys.readouterr().err
    assert rc == 2 and "freeze[0]" in err and "dense_1" in err
    rc = main(["train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'bad2'}",
               f"init_from={tmp_path / 'nothing'}"])
    assert rc == 2 and "init_from" in capsys.readouterr().err
