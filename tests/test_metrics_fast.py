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


def test_many_classes_keep_three_counts_per_class_not_a_confusion_matrix():
    """20,000 classes: a classes x classes table would take 3.2 GB; the counts take 3 x 20,000 integers. Checked
    against accuracy and macro F1 counted here class by class (torchmetrics itself builds the k x k table, and
    under torch's deterministic mode, which a Lightning run with deterministic=True leaves on, a rows x k^2 one)."""
    import numpy as np

    k = 20_000
    ours = MulticlassStats(k)
    assert sum(buffer.numel() for buffer in ours.buffers()) == 3 * k
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 50, (400,), generator=gen)        # a few classes occur: macro F1 skips the rest
    preds = torch.where(torch.rand(400, generator=gen) < 0.7, target, torch.randint(0, 60, (400,), generator=gen))
    ours.update(preds[:150], target[:150])
    ours.update(preds[150:], target[150:])
    got = ours.compute()
    t, p = target.numpy(), preds.numpy()
    f1 = []
    for c in sorted(set(t) | set(p)):
        tp, fp, fn = np.sum((p == c) & (t == c)), np.sum((p == c) & (t != c)), np.sum((p != c) & (t == c))
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert float(got["acc"]) == pytest.approx(np.mean(p == t), abs=1e-7)
    assert float(got["f1"]) == pytest.approx(np.mean(f1), abs=1e-6)
