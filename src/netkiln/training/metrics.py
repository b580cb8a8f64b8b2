"""Per-epoch metrics (torchmetrics) and the monitored metric's default."""
from __future__ import annotations

import torch

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.task import Task


def make_metrics(task: Task):
    """A MetricCollection keyed by short names (acc, f1, ...); logged as `val/acc`, `test/acc`."""
    import torchmetrics as tm

    if task.kind == "multiclass":
        n = task.num_outputs
        metrics = {"acc": tm.Accuracy(task="multiclass", num_classes=n),
                   "f1": tm.F1Score(task="multiclass", num_classes=n, average="macro")}
    elif task.kind == "binary":
        metrics = {"acc": tm.Accuracy(task="binary"), "f1": tm.F1Score(task="binary"),
                   "auroc": tm.AUROC(task="binary")}
    else:
        # MSE/MAE over every target value (one number, like Keras); R2 averaged over targets.
        metrics = {"mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError(),
                   "r2": tm.R2Score(multioutput="uniform_average")}
    return tm.MetricCollection(metrics)


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


def resolve_monitor(monitor: str, mode: str, task: Task) -> tuple[str, str]:
    """Resolve `monitor: auto` / `mode: auto` and check that the metric is one netkiln logs."""
    if monitor in (None, "auto"):
        monitor = "val/acc" if task.is_classification else "val/loss"
    logged = logged_metrics(task)
    if monitor not in logged:
        raise NetkilnError(f"'{monitor}' is not a metric netkiln logs for a {task.kind} task; logged: "
                           f"{', '.join(logged)}." + did_you_mean(monitor, logged), key="monitor")
    if mode in (None, "auto"):
        mode = "min" if monitor.split("/")[-1] in _LOWER_IS_BETTER else "max"
    if mode not in ("min", "max"):
        raise NetkilnError(f"mode must be min, max or auto, not '{mode}'.", key="mode")
    return monitor, mode
