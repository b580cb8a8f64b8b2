"""The progress bar in a real terminal: `netkiln train` under a pseudo-terminal, its output read as a user sees it."""
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest

from netkiln.training.callbacks import NetkilnProgressBar, _StepsPerSecond

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


# A fast machine, where every epoch after the first ends within the bar's 0.1 s throttle window: the bar is drawn
# once by the training hooks, then only by what does not depend on the clock.
FAST_MACHINE = """
import sys
from netkiln.training.callbacks import NetkilnProgressBar
calls = []
NetkilnProgressBar._due = lambda self: calls.append(1) or len(calls) == 1
from netkiln.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_in_terminal(args: list[str], cwd, timeout: float = 240) -> str:
    """Run `netkiln ARGS` (on a simulated fast machine) with a pty of 120 columns as its stdin/stdout/stderr;
    return everything it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "LINES", "CI")}
    env.update(TERM="xterm-256color", HYDRA_FULL_ERROR="1")
    proc = subprocess.Popen([sys.executable, "-c", FAST_MACHINE, *args], cwd=cwd, env=env,
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                raise AssertionError("netkiln train wrote nothing for too long:\n" + b"".join(chunks).decode())
            try:
                data = os.read(leader, 65536)
            except OSError:          # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        proc.wait(timeout=timeout)
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    return text


@pytest.mark.slow          # a child process (~11-16 s on a busy machine); run by .ci/run
def test_last_frame_shows_the_last_epoch_after_early_stopping(tmp_path):
    # Early stopping decides after the bar's epoch-end hook: the bar learns that the run ended only at train end.
    run = tmp_path / "run"
    out = run_in_terminal(["train", "data=synthetic", "data.n_samples=200", "data.n_features=4", "model=mlp",
                           "trainer.max_epochs=60", "callbacks.early_stopping.patience=2", "optimizer.lr=0.3",
                           "trainer.accelerator=cpu", f"hydra.run.dir={run}"], cwd=tmp_path)
    epochs = json.loads((run / "metrics.json").read_text())["epochs"]
    assert epochs < 60, "the test needs early stopping to end the run"
    shown = re.findall(r"Epoch (\d+)/59", ANSI.sub("", out))
    assert shown, out
    assert int(shown[-1]) == epochs - 1, (shown[-5:], epochs)


def test_single_batch_validation_hooks_belong_to_the_bar():
    for hook in ("on_validation_batch_start", "on_validation_batch_end", "on_validation_epoch_end"):
        assert hook in vars(NetkilnProgressBar), hook
        assert hook not in vars(_StepsPerSecond), hook


@pytest.mark.parametrize("batches,sanity,skipped", [([1], False, True), ([3], False, False), ([1], True, False)])
def test_single_batch_validation_draws_no_validation_bar(batches, sanity, skipped, monkeypatch):
    from pytorch_lightning.callbacks import RichProgressBar

    calls = []
    monkeypatch.setattr(RichProgressBar, "on_validation_batch_start", lambda *a, **k: calls.append("start"))
    trainer = type("T", (), {"sanity_checking": sanity, "num_val_batches": batches})()
    NetkilnProgressBar().on_validation_batch_start(trainer, None, None, 0)
    assert (calls == []) == skipped
