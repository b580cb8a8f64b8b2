"""Per-epoch metrics and the monitored metric's default.

Multiclass accuracy and macro F1 come from per-class counts (`MulticlassStats`): the values
torchmetrics gives, for a fraction of its per-epoch cost. Binary and regression use torchmetrics.
"""
from __future__ import annotations

import torch

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.task import Task


def make_metrics(task: Task):
    """Metrics with update/compute/reset, computed as {short name: value} (acc, f1, ...); logged as `val/acc`."""
    if task.kind == "multiclass":
        return MulticlassStats(task.num_outputs)
    import torchmetrics as tm

    if task.kind == "binary":
        metrics = {"acc": tm.Accuracy(task="binary"), "f1": tm.F1Score(task="binary"),
                   "auroc": tm.AUROC(task="binary")}
    else:
        # MSE/MAE over every target value (one number, like Keras); R2 averaged over targets.
        metrics = {"mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError(),
                   "r2": tm.R2Score(multioutput="uniform_average")}
    return tm.MetricCollection(metrics)


class MulticlassStats(torch.nn.Module):
    """Accuracy and macro F1 over an epoch, from per-class counts kept on the device.

    Same numbers (same float32 operations) as torchmetrics' `Accuracy(task="multiclass")` and
    `F1Score(task="multiclass", average="macro")`: macro F1 averages the classes that occur in the
    targets or predictions, 0/0 counts as 0. Three counts per class (rows of each target, rows
    predicted as it, rows right), not a classes x classes confusion matrix (3.2 GB at 20,000 classes);
    one scatter-add per update, no argument checks and no host sync; summed across processes when
    torch.distributed is initialized, like torchmetrics.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        # [targets per class | predictions per class | right per class]
        self.register_buffer("counts", torch.zeros(3 * num_classes, dtype=torch.long), persistent=False)

    def update(self, outputs: torch.Tensor, target: torch.Tensor) -> None:
        preds = (outputs.argmax(1) if outputs.is_floating_point() else outputs).reshape(-1)
        target = target.reshape(-1).long()
        n = self.num_classes
        cells = torch.cat([target, preds + n, target + 2 * n])
        ones = torch.ones_like(target)
        self.counts.scatter_add_(0, cells, torch.cat([ones, ones, (preds == target).long()]))

    def reset(self) -> None:
        self.counts.zero_()

    def compute(self) -> dict[str, torch.Tensor]:
        counts = self.counts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.clone()
            torch.distributed.all_reduce(counts)
        targets, predicted, tp = counts.reshape(3, self.num_classes)
        fp = predicted - tp
        fn = targets - tp
        acc = _safe_divide(tp.sum(), (tp + fn).sum())
        f1 = _safe_divide(2.0 * tp, 2.0 * tp + 1.0 * fn + fp)
        weights = (tp + fp + fn != 0).to(f1.dtype)
        f1 = _safe_divide(weights * f1, weights.sum(-1, keepdim=True)).sum(-1)
        return {"acc": acc, "f1": f1}


def _safe_divide(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    num = num if num.is_floating_point() else num.float()
    denom = denom if denom.is_floating_point() else denom.float()
    return torch.where(denom != 0, num / denom, torch.zeros((), dtype=num.dtype, device=num.device))


def metric_inputs(task: Task, outputs: torch.Tensor, y: torch.Tensor):
    """Map raw network outputs to what the metrics expect (probabilities, flattened targets)."""
    if task.kind == "binary":
        return torch.sigmoid(outputs.reshape(-1)), y
    if task.kind == "regression" and task.num_outputs == 1:
        return outputs.reshape(-1), y.reshape(-1)
    return outputs, y


def metric_names(task: Task) -> list[str]:
    names = {"multiclass": ["acc", "f1"], "binary": ["acc", "f1", "auroc"], "regression": ["mse", "mae", "r2"]}
    return ["loss"] + names[task.kind]


def logged_metrics(task: Task) -> list[str]:
    """Every per-epoch metric a run logs (and writes to history.csv)."""
    train = ["train/loss", "train/acc"] if task.is_classification else ["train/loss"]
    return train + [f"val/{name}" for name in metric_names(task)]


_LOWER_IS_BETTER = {"loss", "mse", "mae"}


def auto_monitor(task: Task) -> str:
    """`monitor: auto`: accuracy for classifiers, the loss for regression."""
    return "val/acc" if task.is_classification else "val/loss"


def monitor_mode(monitor: str) -> str:
    """`mode: auto`: min for a loss or an error, max for a score."""
    return "min" if monitor.split("/")[-1] in _LOWER_IS_BETTER else "max"


def resolve_monitor(monitor: str, mode: str, task: Task) -> tuple[str, str]:
    """Resolve `monitor: auto` / `mode: auto` and check that the metric is one netkiln logs."""
    if monitor in (None, "auto"):
        monitor = auto_monitor(task)
    logged = logged_metrics(task)
    if monitor not in logged:
        raise NetkilnError(f"'{monitor}' is not a metric netkiln logs for a {task.kind} task; logged: "
                           f"{', '.join(logged)}." + did_you_mean(monitor, logged), key="monitor")
    if mode in (None, "auto"):
        mode = monitor_mode(monitor)
    if mode not in ("min", "max"):
        raise NetkilnError(f"mode must be min, max or auto, not '{mode}'.", key="mode")
    return monitor, mode
