"""Checkpoints: AtomicCheckpointIO writes at once, atomically; RunCheckpoints decides what is built and written when.

The policy tests drive RunCheckpoints with a stand-in trainer (counting the checkpoints it builds, with a clock the
test moves); the Lightning tests run a tiny model through a real Trainer: hooks, callback state, resume.
"""
import math
from collections import OrderedDict
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.trainer.states import TrainerFn

import netkiln.training.checkpoints as checkpoints
from netkiln.errors import NetkilnError
from netkiln.training.checkpoints import AtomicCheckpointIO, RunCheckpoints, load_checkpoint_file


# ------------------------------------------------------------------------------------------------ AtomicCheckpointIO
def test_io_serializes_at_once_and_writes_atomically(tmp_path):
    io = AtomicCheckpointIO()
    weights = torch.zeros(3)
    state = OrderedDict(w=weights)
    state._metadata = {"": {"version": 1}}
    io.save_checkpoint({"state_dict": state, "epoch": 0}, tmp_path / "last.ckpt")
    weights += 1                                            # training goes on: the bytes were taken at the save
    io.teardown()
    saved_state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved_state["epoch"] == 0 and torch.equal(saved_state["state_dict"]["w"], torch.zeros(3))
    assert saved_state["state_dict"]._metadata == {"": {"version": 1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]     # no temporary files left


def test_io_load_waits_for_writes_and_remove_keeps_order(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 0}, tmp_path / "a.ckpt")
    io.save_checkpoint({"epoch": 1}, tmp_path / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "a.ckpt")["epoch"] == 1
    io.save_checkpoint({"epoch": 2}, tmp_path / "b.ckpt")
    io.remove_checkpoint(tmp_path / "b.ckpt")
    io.teardown()
    assert not (tmp_path / "b.ckpt").exists()


# ------------------------------------------------------------------------------------------------ RunCheckpoints policy
class FakeStrategy:
    is_global_zero = True
    save_checkpoint = Strategy.save_checkpoint          # Lightning's: rank 0 hands it to the CheckpointIO
    reduce_boolean_decision = Strategy.reduce_boolean_decision

    def __init__(self, trainer):
        self.trainer = trainer
        self.checkpoint_io = trainer.io

    def lightning_module_state_dict(self):
        return {"w": self.trainer.weights}


class FakeTrainer:
    """What RunCheckpoints reads of a Trainer; `dumps` counts the full training states built."""

    def __init__(self, max_epochs=100):
        self.weights = torch.zeros(2)
        self.io = AtomicCheckpointIO()
        self.strategy = FakeStrategy(self)
        self._checkpoint_connector = SimpleNamespace(dump_checkpoint=self._dump)
        self.state = SimpleNamespace(fn=TrainerFn.FITTING)
        self.sanity_checking, self.fast_dev_run, self.should_stop = False, False, False
        self.max_epochs, self.max_steps, self.global_step = max_epochs, -1, 0
        self.current_epoch, self.callback_metrics, self.dumps = 0, {}, 0
        self.callback = None

    def _dump(self, weights_only=False):
        self.dumps += 1
        return {"epoch": self.current_epoch, "state_dict": {"w": self.weights}, "optimizer_states": [],
                "callbacks": {self.callback.state_key: self.callback.state_dict()}}

    def epoch(self, epoch, value):
        """Train epoch `epoch` (the weights become epoch + 1) and end it with the monitored `value`."""
        self.current_epoch = epoch
        self.global_step += 10
        self.weights += 1
        self.callback_metrics = {"val/loss": torch.tensor(value), "train/loss": torch.tensor(0.0)}
        self.callback.on_train_epoch_end(self, None)


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(checkpoints, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def fake_run(tmp_path, write_interval=60.0, save_last=True, **kwargs):
    trainer = FakeTrainer(**kwargs)
    trainer.callback = RunCheckpoints(tmp_path, monitor="val/loss", mode="min", save_last=save_last,
                                      write_interval=write_interval)
    return trainer, trainer.callback


def saved(path) -> tuple[int, float]:
    checkpoint = load_checkpoint_file(path)
    return checkpoint["epoch"], float(checkpoint["state_dict"]["w"][0])


def test_first_epoch_is_written_at_once_then_not_improved_epochs_build_nothing(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    trainer.epoch(0, 1.0)                                   # first save of both files: written at once
    trainer.io.flush()
    assert trainer.dumps == 1 and saved(tmp_path / "best.ckpt") == saved(tmp_path / "last.ckpt") == (0, 1.0)
    clock[0] = 1.0
    trainer.epoch(1, 2.0)                                   # worse, and no write due: nothing built or copied
    assert trainer.dumps == 1 and callback._best is None
    assert float(callback.best_model_score) == 1.0 and callback.best_epoch == 0
    assert callback.best_model_path == str(tmp_path / "best.ckpt")
    trainer.io.teardown()


def test_best_ckpt_holds_the_weights_only_and_last_ckpt_the_training_state(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    trainer.epoch(0, 1.0)
    trainer.io.flush()
    best, last = load_checkpoint_file(tmp_path / "best.ckpt"), load_checkpoint_file(tmp_path / "last.ckpt")
    assert set(best) == {"pytorch-lightning_version", "epoch", "global_step", "state_dict"}
    assert best["global_step"] == 10 and "optimizer_states" in last
    assert float(last["callbacks"]["RunCheckpoints"]["best_model_score"]) == 1.0     # the updated best
    trainer.io.teardown()


def test_an_improved_epoch_copies_the_weights_and_they_are_written_later(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    trainer.epoch(0, 1.0)
    clock[0] = 1.0
    trainer.epoch(1, 0.5)                                   # better: weights copied, nothing written yet
    trainer.io.flush()
    assert trainer.dumps == 1 and saved(tmp_path / "best.ckpt") == (0, 1.0)
    trainer.weights += 100                                  # training goes on after the copy
    clock[0] = 61.0
    trainer.epoch(2, 0.7)                                   # due: best.ckpt gets the copy, last.ckpt epoch 2
    trainer.io.flush()
    assert saved(tmp_path / "best.ckpt") == (1, 2.0) and saved(tmp_path / "last.ckpt") == (2, 103.0)
    assert callback._best is None and trainer.dumps == 2
    trainer.io.teardown()


def test_weights_too_large_to_copy_are_written_at_once(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    callback.snapshot_limit_bytes = 4
    trainer.epoch(0, 1.0)
    clock[0] = 1.0
    trainer.epoch(1, 0.5)
    trainer.io.flush()
    assert callback._best is None and saved(tmp_path / "best.ckpt") == saved(tmp_path / "last.ckpt") == (1, 2.0)
    trainer.io.teardown()


def test_the_last_epoch_is_written_at_its_end(tmp_path, clock):
    trainer, callback = fake_run(tmp_path, max_epochs=3)
    for epoch, value in enumerate([1.0, 2.0, 3.0]):
        clock[0] = epoch
        trainer.epoch(epoch, value)
    callback.on_train_end(trainer, None)
    trainer.io.teardown()
    assert saved(tmp_path / "last.ckpt") == (2, 3.0) and saved(tmp_path / "best.ckpt") == (0, 1.0)
    assert trainer.dumps == 2


def test_an_error_writes_the_best_weights_never_the_epoch_in_progress(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    trainer.epoch(0, 1.0)
    clock[0] = 1.0
    trainer.epoch(1, 0.5)
    clock[0] = 2.0
    trainer.epoch(2, 0.9)                                   # not improved, no write due
    trainer.weights.fill_(math.nan)                         # epoch 3 goes wrong half-way
    callback.on_exception(trainer, None, RuntimeError("loss is NaN"))
    trainer.io.teardown()
    assert saved(tmp_path / "best.ckpt") == (1, 2.0)        # the copy taken at epoch 1's end
    assert saved(tmp_path / "last.ckpt") == (0, 1.0)        # as last written
    assert trainer.dumps == 1


def test_without_save_last_only_best_is_written(tmp_path, clock):
    trainer, callback = fake_run(tmp_path, save_last=False)
    trainer.epoch(0, 1.0)
    clock[0] = 1.0
    trainer.epoch(1, 0.5)
    callback.on_train_end(trainer, None)
    trainer.io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"] and saved(tmp_path / "best.ckpt") == (1, 2.0)
    assert trainer.dumps == 0


def test_nan_never_improves_and_max_mode(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    callback.mode = "max"
    for epoch, value in enumerate([1.0, math.nan, 3.0, 2.0]):
        clock[0] = epoch
        trainer.epoch(epoch, value)
    assert float(callback.best_model_score) == 3.0 and callback.best_epoch == 2
    trainer.io.teardown()


def test_an_epoch_without_the_monitored_metric_improves_nothing(tmp_path, clock):
    trainer, callback = fake_run(tmp_path)
    trainer.epoch(0, 1.0)
    trainer.current_epoch, trainer.callback_metrics = 1, {"train/loss": torch.tensor(0.1)}    # no validation
    callback.on_train_epoch_end(trainer, None)
    assert float(callback.best_model_score) == 1.0 and callback.best_epoch == 0 and callback._best is None
    trainer.io.teardown()


# ------------------------------------------------------------------------------------------------ with Lightning
class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(2, 1)
        self.x, self.y = torch.randn(32, 2), torch.randn(32, 1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=8)

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def lightning_fit(tmp_path, max_epochs, ckpt_path=None):
    callback = RunCheckpoints(tmp_path / "checkpoints", monitor="train/loss", mode="min", write_interval=3600)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[callback], plugins=[AtomicCheckpointIO()], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         default_root_dir=tmp_path)
    trainer.fit(Tiny(), ckpt_path=ckpt_path)
    return trainer, callback


def test_lightning_run_writes_best_and_last_and_resume_keeps_the_best(tmp_path):
    trainer, callback = lightning_fit(tmp_path, max_epochs=3)
    assert trainer.checkpoint_callback is callback and len(trainer.checkpoint_callbacks) == 1   # no default one
    last, best = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "best.ckpt"
    assert load_checkpoint_file(last)["epoch"] == 2                          # the last epoch, written at its end
    state = load_checkpoint_file(last)["callbacks"]["RunCheckpoints"]
    assert callback.best_model_path == str(best) and callback.best_epoch == state["best_epoch"]
    assert load_checkpoint_file(best)["epoch"] == callback.best_epoch
    assert torch.equal(callback.best_model_score, state["best_model_score"])
    best_score = callback.best_model_score

    mtime = last.stat().st_mtime_ns
    _, resumed = lightning_fit(tmp_path, max_epochs=3, ckpt_path=last)       # finished already: restores only
    assert torch.equal(resumed.best_model_score, best_score) and resumed.best_epoch == callback.best_epoch
    assert last.stat().st_mtime_ns == mtime                                  # and rewrites nothing

    _, resumed = lightning_fit(tmp_path, max_epochs=5, ckpt_path=last)       # goes on from the restored best
    assert resumed.best_model_score <= best_score
    assert load_checkpoint_file(last)["epoch"] == 4
