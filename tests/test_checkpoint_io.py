"""AtomicCheckpointIO: snapshots at save time, deferred writes, everything on disk after teardown."""
from collections import OrderedDict

import torch

from netkiln.training.callbacks import AtomicCheckpointIO, HistoryWriter  # noqa: F401 (import check)


def test_deferred_save_is_a_snapshot_and_written_at_teardown(tmp_path):
    io = AtomicCheckpointIO(write_interval=3600)
    weights = torch.zeros(3)
    state = OrderedDict(w=weights)
    state._metadata = {"": {"version": 1}}
    io.save_checkpoint({"state_dict": state, "epoch": 0}, tmp_path / "last.ckpt")      # first save: written
    weights += 1                                                                       # training goes on
    io.save_checkpoint({"state_dict": state, "epoch": 1}, tmp_path / "last.ckpt")      # deferred snapshot
    io.save_checkpoint({"state_dict": state, "epoch": 1}, tmp_path / "best.ckpt")
    weights += 1                                                                       # after the snapshot
    io.teardown()
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and torch.equal(last["state_dict"]["w"], torch.ones(3))
    assert last["state_dict"]._metadata == {"": {"version": 1}}
    assert torch.equal(torch.load(tmp_path / "best.ckpt", weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]     # no temporary files left


def test_load_and_remove_see_pending_saves(tmp_path):
    io = AtomicCheckpointIO(write_interval=3600)
    io.save_checkpoint({"epoch": 0}, tmp_path / "a.ckpt")
    io.save_checkpoint({"epoch": 1}, tmp_path / "a.ckpt")
    assert io.load_checkpoint(tmp_path / "a.ckpt")["epoch"] == 1
    io.save_checkpoint({"epoch": 2}, tmp_path / "b.ckpt")
    io.remove_checkpoint(tmp_path / "b.ckpt")
    io.teardown()
    assert not (tmp_path / "b.ckpt").exists()


def test_every_save_is_written_when_the_interval_is_zero(tmp_path):
    io = AtomicCheckpointIO(write_interval=0)
    io.save_checkpoint({"epoch": 0}, tmp_path / "a.ckpt")
    io.save_checkpoint({"epoch": 1}, tmp_path / "a.ckpt")
    io.flush()
    assert torch.load(tmp_path / "a.ckpt", weights_only=True)["epoch"] == 1
    io.teardown()
