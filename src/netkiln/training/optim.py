"""Optimizer and LR scheduler from the `optimizer/` and `scheduler/` config groups."""
from __future__ import annotations

import importlib
import inspect

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.config_values import to_container
from netkiln.trust import TRUSTED_MODULES, is_trusted_target

_META_KEYS = {"_target_", "_partial_"}
# Keys netkiln reads itself; they never reach the scheduler's constructor.
_SCHEDULER_KEYS = {"interval"}


# The base class each kind's target must extend (named in errors); netkiln.trust holds which modules are trusted.
_BASE_NAMES = {
    "optimizer": "torch.optim.Optimizer",
    "scheduler": "torch.optim.lr_scheduler.LRScheduler",
    "callback": "pytorch_lightning.Callback",
}


def _base_classes(kind: str) -> tuple:
    """(classes a target must extend, abstract bases that are no answer themselves)."""
    import torch

    if kind == "optimizer":
        return (torch.optim.Optimizer,), (torch.optim.Optimizer,)
    if kind == "callback":
        import pytorch_lightning as pl
        return (pl.Callback,), (pl.Callback,)
    from torch.optim import lr_scheduler
    abstract = (lr_scheduler.LRScheduler, getattr(lr_scheduler, "_LRScheduler", lr_scheduler.LRScheduler))
    return (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau), abstract


def _is_kind(cls, kind: str) -> bool:
    bases, abstract = _base_classes(kind)
    return isinstance(cls, type) and issubclass(cls, bases) and cls not in abstract


def _known_classes(kind: str) -> list[str]:
    module_name = TRUSTED_MODULES[kind][0]
    module = importlib.import_module(module_name)
    return [f"{module_name}.{n}" for n in dir(module) if not n.startswith("_") and _is_kind(getattr(module, n), kind)]


def resolve_class(target, key: str, kind: str, allow_targets: bool = False):
    """The class named by `<key>._target_`: an optimizer, LR scheduler or Lightning callback class, from its trusted
    modules (torch.optim, pytorch_lightning.callbacks) unless allow_targets."""
    where = f"{key}._target_"
    target = str(target)
    module_name, _, attr = target.rpartition(".")
    allowed_module = TRUSTED_MODULES[kind][0]
    if not allow_targets and not is_trusted_target(target, kind):
        raise NetkilnError(f"'{target}' is not a {allowed_module} {kind} class. A config may only name "
                           f"{allowed_module} classes here (netkiln does not import other code named in a config); "
                           "if you trust this config, pass allow_targets=true.", key=where)
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise NetkilnError(f"cannot find {kind} class '{target}'.{did_you_mean(target, _known_classes(kind))}",
                           key=where) from None
    if not _is_kind(cls, kind):
        raise NetkilnError(f"'{target}' is not {'an' if kind == 'optimizer' else 'a'} {kind} (a subclass of "
                           f"{_BASE_NAMES[kind]}).{did_you_mean(target, _known_classes(kind))}", key=where)
    return cls


def check_args(cls, args: dict, key: str, skip: int) -> None:
    """Reject arguments the class does not take (with a did-you-mean) and required ones that are missing or null
    (skip = leading positional args)."""
    try:
        params = list(inspect.signature(cls).parameters.values())[skip:]
    except (TypeError, ValueError):       # no introspectable signature: let the constructor judge
        return
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for p in named:
        if p.default is p.empty and args.get(p.name) is None:
            raise NetkilnError(f"{cls.__name__} needs a value for '{p.name}'; set {key}.{p.name}=... "
                               f"({'it is null' if p.name in args else 'it is not given'}).", key=f"{key}.{p.name}")
        numeric = isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
        if numeric and p.name in args and (isinstance(args[p.name], (str, bool)) or args[p.name] is None):
            raise NetkilnError(f"{cls.__name__}'s '{p.name}' must be a number, not {args[p.name]!r}.",
                               key=f"{key}.{p.name}")
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in named]
    for arg in args:
        if arg not in names:
            raise NetkilnError(f"{cls.__name__} has no argument '{arg}'." + did_you_mean(arg, names),
                               key=f"{key}.{arg}")


def _plain(cfg) -> dict:
    return to_container(cfg) or {}


def build_optimizer(optimizer_cfg, params, *, allow_targets: bool = False):
    cfg = _plain(optimizer_cfg)
    if "_target_" not in cfg:
        raise NetkilnError("the optimizer config needs a _target_ (pick one with optimizer=adam|adamw|sgd|rmsprop).",
                           key="optimizer")
    cls = resolve_class(cfg["_target_"], "optimizer", "optimizer", allow_targets)
    args = {k: v for k, v in cfg.items() if k not in _META_KEYS}
    check_args(cls, args, "optimizer", skip=1)
    try:
        return cls(params, **args)
    except (ValueError, TypeError) as err:
        raise NetkilnError(f"{cls.__name__} rejected its arguments {args}: {err}", key="optimizer") from None


def scheduler_interval(scheduler_cfg) -> str | None:
    cfg = _plain(scheduler_cfg)
    if "_target_" not in cfg:
        return None
    interval = cfg.get("interval", "epoch")
    if interval not in ("epoch", "step"):
        raise NetkilnError(f"interval must be 'epoch' or 'step', not '{interval}'.", key="scheduler.interval")
    return interval


def build_scheduler(scheduler_cfg, optimizer, *, max_epochs: int, steps_per_epoch: int, max_steps: int,
                    mode: str, allow_targets: bool = False):
    """Instantiate the scheduler, filling `auto` values from the run; None for `scheduler=none`."""
    cfg = _plain(scheduler_cfg)
    if "_target_" not in cfg:
        if cfg:
            raise NetkilnError(f"scheduler settings {sorted(cfg)} given without a _target_; pick one with "
                               "scheduler=cosine|plateau|onecycle|step.", key="scheduler")
        return None
    cls = resolve_class(cfg["_target_"], "scheduler", "scheduler", allow_targets)
    interval = scheduler_interval(cfg)
    args = {k: v for k, v in cfg.items() if k not in _META_KEYS | _SCHEDULER_KEYS}
    total_steps = steps_per_epoch * max_epochs
    if max_steps and max_steps > 0:
        total_steps = min(total_steps, max_steps) if max_epochs > 0 else max_steps
    auto_values = {
        "T_max": max_epochs if interval == "epoch" else total_steps,
        "total_steps": total_steps,
        "max_lr": optimizer.param_groups[0]["lr"],
        "mode": mode,
    }
    for name, value in args.items():
        if value == "auto":
            if name not in auto_values:
                raise NetkilnError(f"'{name}' cannot be auto.", key=f"scheduler.{name}")
            args[name] = auto_values[name]
    check_args(cls, args, "scheduler", skip=1)
    try:
        return cls(optimizer, **args)
    except (ValueError, TypeError) as err:
        raise NetkilnError(f"{cls.__name__} rejected its arguments {args}: {err}", key="scheduler") from None
