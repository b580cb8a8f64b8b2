"""MulticlassStats gives torchmetrics' multiclass accuracy and macro F1, bit for bit."""
import pytest
import torch
import torchmetrics as tm

from netkiln.task import Task
from netkiln.training.metrics import MulticlassStats, make_metrics


@pytest.mark.parametrize("num_classes, absent", [(10, ()), (3, ()), (7, (2, 5)), (2, (1,))])
def test_matches_torchmetrics(num_classes, absent):
    gen = torch.Generator().manual_seed(num_classes)
    ours = MulticlassStats(num_classes)
    reference = tm.MetricCollection({"acc": tm.Accuracy(task="multiclass", num_classes=num_classes),
                                     "f1": tm.F1Score(task="multiclass", num_classes=num_classes, average="macro")})
    for rows in (100, 37, 1):
        logits = torch.randn(rows, num_classes, generator=gen)
        target = torch.randint(0, num_classes, (rows,), generator=gen)
        for cls in absent:                        # classes never predicted nor seen: left out of macro F1
            logits[:, cls] = -1e9
            target[target == cls] = (cls + 1) % num_classes
        ours.update(logits, target)
        reference.update(logits, target)
    got, want = ours.compute(), reference.compute()
    for name in ("acc", "f1"):
        assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), name
    ours.reset()
    assert ours.compute() == {"acc": torch.tensor(0.0), "f1": torch.tensor(0.0)}


def test_make_metrics_multiclass_uses_it_and_keeps_checkpoints_clean():
    metrics = make_metrics(Task("multiclass", 4, tuple("abcd")))
    assert isinstance(metrics, MulticlassStats)
    assert metrics.state_dict() == {}          # not part of checkpoints or bundles
