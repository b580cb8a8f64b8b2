"""callbacks.extra: a user's callback sees its hooks as Lightning documents them, whatever the fast path does."""
from collections import Counter

import pytest
import pytorch_lightning as pl

from netkiln.cli import main
from conftest import tiny_run

TINY = tiny_run(300, epochs=2) + ["trainer.num_sanity_val_steps=0"]
BATCHES, EPOCHS = 7, 2          # 210 training rows / 32


class Recorder(pl.Callback):
    """Counts the hooks Lightning calls per batch, per optimizer step and per validation epoch."""
    counts: Counter = Counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.counts["on_train_batch_end"] += 1

    def on_before_backward(self, trainer, pl_module, loss):
        self.counts["on_before_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.counts["on_before_optimizer_step"] += 1

    def on_validation_epoch_end(self, trainer, pl_module):
        self.counts["on_validation_epoch_end"] += 1


def _counts(tmp_path, name, *overrides):
    Recorder.counts = Counter()
    rc = main(["train", *TINY, "allow_targets=true", "callbacks.extra=[{_target_: test_callback_hooks.Recorder}]",
               f"hydra.run.dir={tmp_path / name}", *overrides])
    assert rc == 0
    return dict(Recorder.counts)


def test_hooks_fire_per_batch_step_and_validation_epoch_as_in_plain_lightning(tmp_path):
    defaults = _counts(tmp_path, "defaults")
    # The fast path was switched off, and the log says so.
    assert "Recorder.on_train_batch_end" in (tmp_path / "defaults" / "train.log").read_text()
    # Plain Lightning settings: one batch per Lightning step, Lightning's validation loop (limit_val_batches as an
    # integer takes the fused pass off).
    plain = _counts(tmp_path, "plain", "steps_per_execution=1", "+trainer.limit_val_batches=100")
    expected = {"on_train_batch_end": BATCHES * EPOCHS, "on_before_backward": BATCHES * EPOCHS,
                "on_before_optimizer_step": BATCHES * EPOCHS, "on_validation_epoch_end": EPOCHS}
    assert defaults == plain == expected


def test_lightning_callbacks_are_trusted_others_need_allow_targets(tmp_path, capsys):
    rc = main(["train", *TINY, "callbacks.extra=[{_target_: pytorch_lightning.callbacks.Timer}]",
               f"hydra.run.dir={tmp_path / 'timer'}"])
    assert rc == 0
    rc = main(["train", *TINY, "callbacks.extra=[{_target_: test_callback_hooks.Recorder}]",
               f"hydra.run.dir={tmp_path / 'refused'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "callbacks.extra[0]._target_" in err and "allow_targets=true" in err
    assert not (tmp_path / "refused" / "summary.txt").exists()     # refused before anything was built


@pytest.mark.parametrize("entry, words", [
    ("{_target_: pytorch_lightning.callbacks.LearningRateMonitr}", ["callbacks.extra[0]._target_",
                                                                    "LearningRateMonitor"]),
    ("{_target_: pytorch_lightning.callbacks.Timer, duraton: 5}", ["callbacks.extra[0].duraton", "duration"]),
    ("{_target_: pytorch_lightning.callbacks.LearningRateMonitor}", ["callbacks.extra[0]._target_",
                                                                     "logger=tensorboard"]),
])
def test_callback_config_errors_name_the_key(tmp_path, capsys, entry, words):
    rc = main(["train", *TINY, f"callbacks.extra=[{entry}]", f"hydra.run.dir={tmp_path / 'run'}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words) and "Traceback" not in err
