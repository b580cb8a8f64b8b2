"""Loss functions chosen by the `loss/` config group, checked against the task."""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.task import Task

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Which loss fits which task; `auto` picks the first.
_LOSSES_FOR_TASK = {
    "multiclass": ("cross_entropy",),
    "binary": ("bce", "cross_entropy"),
    "regression": ("mse", "mae", "huber"),
}
_ARGS = {"cross_entropy": {"label_smoothing"}, "bce": {"pos_weight"}, "mse": set(), "mae": set(),
         "huber": {"delta"}}


def make_loss(loss_cfg, task: Task) -> tuple[str, LossFn]:
    """Return (name, fn(logits, y)). Errors name the `loss.*` key."""
    cfg = dict(loss_cfg or {})
    name = str(cfg.pop("name", "auto"))
    if name == "auto":
        name = _LOSSES_FOR_TASK[task.kind][0]
    if name not in _ARGS:
        raise NetkilnError(f"unknown loss '{name}'; known: auto, {', '.join(_ARGS)}." + did_you_mean(name, _ARGS),
                           key="loss.name")
    for arg in cfg:
        if arg not in _ARGS[name]:
            raise NetkilnError(f"loss '{name}' has no argument '{arg}'." + did_you_mean(arg, _ARGS[name]),
                               key=f"loss.{arg}")
    if name not in _LOSSES_FOR_TASK[task.kind]:
        raise NetkilnError(
            f"loss '{name}' does not fit a {task.kind} task; use one of "
            f"{', '.join(_LOSSES_FOR_TASK[task.kind])} (or loss=auto).", key="loss")
    if name == "cross_entropy" and task.kind == "binary":
        raise NetkilnError("cross_entropy needs one output per class, but a binary task has a single logit; "
                           "use loss=bce (or loss=auto).", key="loss")
    return name, _build(name, cfg)


# Module-level functions bound with functools.partial (not lambdas): the loss travels with the
# LightningModule when a strategy such as ddp_spawn pickles it into worker processes.
def _cross_entropy(logits, y, label_smoothing=0.0):
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def _bce(logits, y, pos_weight=None):
    weight = None if pos_weight is None else torch.tensor(float(pos_weight), device=logits.device)
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), y.to(logits.dtype), pos_weight=weight)


def _mse(pred, y):
    return F.mse_loss(pred, y.reshape(pred.shape))


def _mae(pred, y):
    return F.l1_loss(pred, y.reshape(pred.shape))


def _huber(pred, y, delta=1.0):
    return F.huber_loss(pred, y.reshape(pred.shape), delta=delta)


def _build(name: str, args: dict) -> LossFn:
    if name == "cross_entropy":
        return functools.partial(_cross_entropy, label_smoothing=float(args.get("label_smoothing", 0.0)))
    if name == "bce":
        return functools.partial(_bce, pos_weight=args.get("pos_weight"))
    if name == "huber":
        return functools.partial(_huber, delta=float(args.get("delta", 1.0)))
    return {"mse": _mse, "mae": _mae}[name]
