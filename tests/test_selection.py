"""Ties in the monitored value: early stopping, the best checkpoint and the leaderboard break them by val/loss."""
from types import SimpleNamespace

import pytest
import torch

from netkiln.training.callbacks import NetkilnEarlyStopping
from netkiln.training.checkpoints import RunCheckpoints
from netkiln.training.selection import compare, tie_breaker_for


def test_compare_breaks_ties_by_the_lower_tie_breaker():
    assert compare(0.9, 0.8, "max") == 1 and compare(0.7, 0.8, "max") == -1
    assert compare(0.1, 0.2, "min") == 1 and compare(0.3, 0.2, "min") == -1
    assert compare(0.9, None, "max") == 1 and compare(float("nan"), 0.5, "max") == -1
    assert compare(0.9, 0.9, "max", tie=0.3, best_tie=0.5) == 1          # same accuracy, lower val/loss
    assert compare(0.9, 0.9, "max", tie=0.6, best_tie=0.5) == -1
    assert compare(0.9, 0.9, "max", tie=0.5, best_tie=0.5) == 0
    assert compare(0.9, 0.9, "max", tie=0.5, best_tie=None) == 1         # a known loss beats none
    assert compare(0.9, 0.9, "max", tie=float("nan"), best_tie=0.5) == -1
    # min_delta: a strict improvement must clear it; a smaller change is no improvement, a tie still a tie
    assert compare(0.905, 0.9, "max", min_delta=0.01) == -1 and compare(0.92, 0.9, "max", min_delta=0.01) == 1
    assert compare(0.9, 0.9, "max", tie=0.1, best_tie=0.5, min_delta=0.01) == 1
    assert tie_breaker_for("val/acc") == "val/loss" and tie_breaker_for("val/loss") is None


class Trainer(SimpleNamespace):
    """Just what the callbacks read: the epoch's metrics."""


def _epochs(accuracies, losses):
    for epoch, (acc, loss) in enumerate(zip(accuracies, losses)):
        yield epoch, {"val/acc": torch.tensor(acc), "val/loss": torch.tensor(loss)}


def test_the_best_checkpoint_takes_the_tied_epoch_with_the_lower_loss_then_the_later_one(tmp_path):
    callback = RunCheckpoints(tmp_path, monitor="val/acc", mode="max")
    chosen = []
    for epoch, metrics in _epochs([0.5, 0.9, 0.9, 0.9, 0.9, 0.8], [1.0, 0.5, 0.3, 0.4, 0.3, 0.1]):
        if callback._update_best(Trainer(callback_metrics=metrics, current_epoch=epoch)):
            chosen.append(epoch)
    assert chosen == [0, 1, 2, 4]           # epoch 3 ties the accuracy with a higher loss; epoch 4 ties fully
    assert callback.best_epoch == 4 and callback.best_tie == pytest.approx(0.3)
    assert callback.state_dict()["best_tie"] == pytest.approx(0.3)


def test_early_stopping_counts_a_tie_with_a_lower_loss_as_an_improvement():
    stopper = NetkilnEarlyStopping(monitor="val/acc", mode="max", patience=2)
    stops = []
    for epoch, metrics in _epochs([0.9, 0.9, 0.9, 0.9, 0.9, 0.9], [0.5, 0.4, 0.3, 0.3, 0.3, 0.2]):
        stopper._tie = float(metrics["val/loss"])
        stop, _ = stopper._evaluate_stopping_criteria(metrics["val/acc"])
        stops.append(stop)
    # epochs 1 and 2 improve the loss at the same accuracy; 3 and 4 don't: patience 2 runs out at epoch 4;
    # epoch 5's lower loss would have reset it
    assert stops == [False, False, False, False, True, False]
    assert stopper.best_tie == pytest.approx(0.2) and stopper.wait_count == 0
    restored = NetkilnEarlyStopping(monitor="val/acc", mode="max", patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert restored.best_tie == pytest.approx(0.2)


def test_the_leaderboard_ranks_tied_trials_by_val_loss_then_parameters(tmp_path):
    from netkiln.sweep.leaderboard import Trial, rank

    def trial(name, acc, loss, params):
        return Trial(name, tmp_path / name, [], "ok", {"monitor": "val/acc", "mode": "max", "monitored": acc,
                                                       "val": {"acc": acc, "loss": loss}, "params": {"total": params}})
    trials = [trial("a", 0.9, 0.40, 100), trial("b", 0.9, 0.30, 900), trial("c", 0.9, 0.30, 500),
              trial("d", 0.95, 0.90, 10), trial("e", 0.9, None, 1)]
    assert [t.name for t in rank(trials)] == ["d", "c", "b", "a", "e"]
    # monitoring the loss itself: ties go to the cheaper trial
    for t in trials:
        t.metrics.update(monitor="val/loss", mode="min", monitored=0.5)
    assert [t.name for t in rank(trials)] == ["e", "d", "a", "c", "b"]


@pytest.mark.parametrize("monitor, said", [("val/acc", "ties go to the lower val/loss, then the later epoch"),
                                           ("val/loss", "ties go to the later epoch")])
def test_the_log_names_the_tie_breaker_only_when_there_is_one(tmp_path, monitor, said):
    from conftest import TINY
    from netkiln.cli import main

    assert main(["train", *TINY, f"monitor={monitor}", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    line = next(x for x in (tmp_path / "run" / "train.log").read_text().splitlines() if "restored the weights" in x)
    assert line.endswith(said) and f"the best by {monitor}" in line
