"""Optimizer and LR scheduler from the `optimizer/` and `scheduler/` config groups."""
from __future__ import annotations

import importlib
import inspect

from omegaconf import OmegaConf

from netkiln.errors import NetkilnError, did_you_mean

_META_KEYS = {"_target_", "_partial_"}
# Keys netkiln reads itself; they never reach the scheduler's constructor.
_SCHEDULER_KEYS = {"interval"}


def _resolve_class(target: str, key: str, kind: str):
    module_name, _, attr = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise NetkilnError(f"cannot find {kind} class '{target}'.", key=f"{key}._target_") from None


def _check_args(cls, args: dict, key: str, skip: int) -> None:
    """Reject arguments the class does not take, with a did-you-mean (skip = leading positional args)."""
    params = list(inspect.signature(cls).parameters.values())[skip:]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return
    names = [p.name for p in params]
    for arg in args:
        if arg not in names:
            raise NetkilnError(f"{cls.__name__} has no argument '{arg}'." + did_you_mean(arg, names),
                               key=f"{key}.{arg}")


def _plain(cfg) -> dict:
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)


def build_optimizer(optimizer_cfg, params):
    cfg = _plain(optimizer_cfg)
    if "_target_" not in cfg:
        raise NetkilnError("the optimizer config needs a _target_ (pick one with optimizer=adam|adamw|sgd|rmsprop).",
                           key="optimizer")
    cls = _resolve_class(cfg["_target_"], "optimizer", "optimizer")
    args = {k: v for k, v in cfg.items() if k not in _META_KEYS}
    _check_args(cls, args, "optimizer", skip=1)
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
                    mode: str):
    """Instantiate the scheduler, filling `auto` values from the run; None for `scheduler=none`."""
    cfg = _plain(scheduler_cfg)
    if "_target_" not in cfg:
        if cfg:
            raise NetkilnError(f"scheduler settings {sorted(cfg)} given without a _target_; pick one with "
                               "scheduler=cosine|plateau|onecycle|step.", key="scheduler")
        return None
    cls = _resolve_class(cfg["_target_"], "scheduler", "scheduler")
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
    _check_args(cls, args, "scheduler", skip=1)
    try:
        return cls(optimizer, **args)
    except (ValueError, TypeError) as err:
        raise NetkilnError(f"{cls.__name__} rejected its arguments {args}: {err}", key="scheduler") from None
