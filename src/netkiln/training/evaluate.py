"""Metrics of a network on one split, in a plain no-grad loop (no Trainer needed)."""
from __future__ import annotations

import torch

from netkiln.task import Task
from netkiln.training.metrics import make_metrics, metric_inputs


@torch.no_grad()
def evaluate_split(network: torch.nn.Module, task: Task, loss_fn, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 1024, device: torch.device | str = "cpu",
                   target_scale=None, inputs=None) -> dict[str, float]:
    """Loss and every task metric over (x, y); empty dict for an empty split.

    y is in the target's own units. With a `target_scale` (netkiln.data.target_scale.TargetScale) the loss is the
    training loss, on the scaled target, and the metrics compare predictions turned back into the target's units.
    """
    if len(x) == 0:
        return {}
    was_training = network.training
    network.eval()
    metrics = make_metrics(task).to(device)
    loss_sum = torch.zeros((), device=device)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        if inputs is not None:          # uint8 pixels → float32 (Dataset.pixels)
            xb = inputs(xb)
        yb = y[start:start + batch_size].to(device)
        out = network(xb)
        if target_scale is not None:
            loss_sum += loss_fn(out, target_scale.scale(yb)) * len(xb)
            out = target_scale.unscale(out)
        else:
            loss_sum += loss_fn(out, yb) * len(xb)
        metrics.update(*metric_inputs(task, out, yb))
    network.train(was_training)
    result = {"loss": float(loss_sum / len(x))}
    result.update({name: float(value) for name, value in metrics.compute().items()})
    return result
