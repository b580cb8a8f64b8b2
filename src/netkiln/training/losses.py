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


def make_loss(loss_cfg, task: Task, *, train_targets: torch.Tensor | None = None) -> tuple[str, LossFn]:
    """Return (name, fn(logits, y)). Errors name the `loss.*` key.

    `train_targets` (the training rows' class indices) are what `class_weight: balanced` counts.
    """
    from netkiln.config_values import to_container

    cfg = dict(to_container(loss_cfg) or {})
    weights = class_weights(cfg.pop("class_weight", None), task, train_targets)
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
    if weights is not None and cfg.get("pos_weight") is not None:
        raise NetkilnError("give either loss.pos_weight or loss.class_weight, not both (pos_weight is the positive "
                           "class's weight relative to the negative one's).", key="loss.class_weight")
    return name, _build(name, cfg, weights)


def class_weights(value, task: Task, train_targets: torch.Tensor | None = None) -> list[float] | None:
    """`loss.class_weight` as one weight a class (index order), or None for no weighting.

    `balanced`: n_samples / (n_classes * count) over the training rows, as scikit-learn's compute_class_weight;
    a mapping by class name: the classes it leaves out weigh 1 (as Keras's class_weight).
    """
    if value is None:
        return None
    if not task.is_classification:
        raise NetkilnError(f"class weights apply to classification; this is a {task.kind} task. Remove "
                           "loss.class_weight.", key="loss.class_weight")
    k = task.num_classes
    names = _class_names(task)
    if value == "balanced":
        if train_targets is None:
            raise NetkilnError("class_weight=balanced counts the training rows' classes, which were not given; pass "
                               "a mapping of class name to weight instead.", key="loss.class_weight")
        counts = torch.bincount(train_targets.reshape(-1).long(), minlength=k)[:k].tolist()
        absent = [names[i] for i, c in enumerate(counts) if c == 0]
        if absent:
            raise NetkilnError(f"class_weight=balanced needs every class in the training rows, but "
                               f"{', '.join(repr(a) for a in absent)} has none; give weights by class name "
                               "instead.", key="loss.class_weight")
        return [sum(counts) / (k * c) for c in counts]
    if not isinstance(value, dict):
        raise NetkilnError(f"expected 'balanced' or a mapping of class name to weight, e.g. "
                           f"{{{names[-1]}: 3.0}}, got {value!r}.", key="loss.class_weight")
    weights = [1.0] * k
    for key, weight in value.items():
        if str(key) not in names:
            raise NetkilnError(f"unknown class {str(key)!r}.{did_you_mean(str(key), names)} Classes: "
                               f"{', '.join(names)}.", key=f"loss.class_weight.{key}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
            raise NetkilnError(f"a class weight must be a positive number, not {weight!r}.",
                               key=f"loss.class_weight.{key}")
        weights[names.index(str(key))] = float(weight)
    return weights


def resolved_loss_config(loss_cfg, task: Task, train_targets: torch.Tensor | None = None) -> dict:
    """The loss config as the run used it: `class_weight` as {class name: weight} (balanced resolved), so the run
    record and the bundle hold the weights themselves, not a recipe that needs the training rows."""
    from netkiln.config_values import to_container

    cfg = dict(to_container(loss_cfg) or {})
    weights = class_weights(cfg.get("class_weight"), task, train_targets)
    if weights is not None:
        cfg["class_weight"] = {name: round(w, 6) for name, w in zip(_class_names(task), weights)}
    return cfg


def _class_names(task: Task) -> list[str]:
    k = task.num_classes
    return list(task.class_names) if len(task.class_names) == k else [str(i) for i in range(k)]


class _ClassWeights:
    """One weight a class, as a tensor built once per device (not every step)."""

    def __init__(self, weights: list[float]):
        self.weights = tuple(weights)
        self._on: dict = {}

    def on(self, ref: torch.Tensor) -> torch.Tensor:
        key = (ref.device, ref.dtype)
        if key not in self._on:
            self._on[key] = torch.tensor(self.weights, dtype=ref.dtype, device=ref.device)
        return self._on[key]

    def __getstate__(self):                   # ddp_spawn pickles the loss: no device tensors
        return {"weights": self.weights, "_on": {}}


# Module-level functions bound with functools.partial (not lambdas): the loss travels with the
# LightningModule when a strategy such as ddp_spawn pickles it into worker processes.
# Class weights make both classification losses a weighted mean, sum(w[y_i] * loss_i) / sum(w[y_i]), as
# F.cross_entropy(weight=) computes it: the loss stays on the unweighted loss's scale.
def _cross_entropy(logits, y, label_smoothing=0.0, class_weight=None):
    weight = None if class_weight is None else class_weight.on(logits)
    return F.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)


def _bce(logits, y, pos_weight=None, class_weight=None):
    logits = logits.reshape(-1)
    target = y.to(logits.dtype)
    if class_weight is not None:
        per_row = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        w = class_weight.on(logits)[y.reshape(-1).long()]
        return (per_row * w).sum() / w.sum()
    weight = None if pos_weight is None else torch.tensor(float(pos_weight), device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def _mse(pred, y):
    return F.mse_loss(pred, y.reshape(pred.shape))


def _mae(pred, y):
    return F.l1_loss(pred, y.reshape(pred.shape))


def _huber(pred, y, delta=1.0):
    return F.huber_loss(pred, y.reshape(pred.shape), delta=delta)


def _build(name: str, args: dict, class_weight: list[float] | None = None) -> LossFn:
    weights = None if class_weight is None else _ClassWeights(class_weight)
    if name == "cross_entropy":
        return functools.partial(_cross_entropy, label_smoothing=float(args.get("label_smoothing", 0.0)),
                                 class_weight=weights)
    if name == "bce":
        return functools.partial(_bce, pos_weight=args.get("pos_weight"), class_weight=weights)
    if name == "huber":
        return functools.partial(_huber, delta=float(args.get("delta", 1.0)))
    return {"mse": _mse, "mae": _mae}[name]
