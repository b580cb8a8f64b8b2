"""The Trainer's arguments and callbacks from the `trainer/` and `callbacks/` config groups, checked (the Trainer
itself is built in netkiln.training.run)."""
from __future__ import annotations

import inspect
from pathlib import Path

from netkiln.config_values import to_container
from netkiln.errors import NetkilnError, did_you_mean

# Trainer arguments netkiln handles itself, because training uses manual optimization.
_MOVED = {
    "gradient_clip_val": "set the top-level gradient_clip_val instead of trainer.gradient_clip_val",
    "accumulate_grad_batches": "raise batch_size instead (netkiln steps once per batch)",
}
_CALLBACK_KEYS = {"early_stopping": {"patience", "min_delta"}, "checkpoint": {"save_last"}, "extra": set()}
# Hooks the fast path (steps_per_execution chunks, plain optimizer steps, fused validation) does not call per batch,
# per optimizer step or per validation epoch as Lightning documents them.
FAST_PATH_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
                   "on_before_optimizer_step", "on_before_zero_grad", "on_validation_start", "on_validation_end",
                   "on_validation_epoch_start", "on_validation_epoch_end", "on_validation_batch_start",
                   "on_validation_batch_end")


def trainer_kwargs(trainer_cfg) -> dict:
    import pytorch_lightning as pl

    kwargs = dict(to_container(trainer_cfg) or {})
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "callbacks", "logger",
                                                                          "plugins", "default_root_dir"}
    for key, value in kwargs.items():
        if key in _MOVED and value not in (None, 0, 1, 0.0):
            raise NetkilnError(f"not supported here: {_MOVED[key]}.", key=f"trainer.{key}")
        if key not in accepted and key not in _MOVED:
            raise NetkilnError(f"the Trainer has no argument '{key}'." + did_you_mean(key, accepted),
                               key=f"trainer.{key}")
    max_epochs = kwargs.get("max_epochs")
    if max_epochs is not None and not (isinstance(max_epochs, int) and (max_epochs > 0 or max_epochs == -1)):
        raise NetkilnError(f"max_epochs must be a positive integer (or -1 for no limit), not {max_epochs!r}.",
                           key="trainer.max_epochs")
    return {k: v for k, v in kwargs.items() if k not in _MOVED}


def make_callbacks(callbacks_cfg, *, run_dir: Path, monitor: str, mode: str, history_metrics: list[str]):
    from netkiln.training.callbacks import HistoryWriter, NetkilnEarlyStopping
    from netkiln.training.checkpoints import RunCheckpoints

    cfg = dict(to_container(callbacks_cfg) or {})
    for name, value in cfg.items():
        if name not in _CALLBACK_KEYS:
            raise NetkilnError(f"unknown callback '{name}'." + did_you_mean(name, _CALLBACK_KEYS),
                               key=f"callbacks.{name}")
        for arg in (value or {}) if name != "extra" else ():
            if arg not in _CALLBACK_KEYS[name]:
                raise NetkilnError(f"callback '{name}' has no setting '{arg}'." +
                                   did_you_mean(arg, _CALLBACK_KEYS[name]), key=f"callbacks.{name}.{arg}")
    checkpoint_cfg = cfg.get("checkpoint") or {}
    # best.ckpt and last.ckpt (the latter for resume=true), one callback for both: writes coalesced in time.
    callbacks = [
        HistoryWriter(run_dir / "history.csv", history_metrics),
        RunCheckpoints(run_dir / "checkpoints", monitor=monitor, mode=mode,
                       save_last=bool(checkpoint_cfg.get("save_last", True))),
    ]
    early = cfg.get("early_stopping")
    if early:
        patience = early.get("patience", 10)
        if not isinstance(patience, int) or patience < 1:
            raise NetkilnError(f"patience must be a positive integer, not {patience!r}.",
                               key="callbacks.early_stopping.patience")
        callbacks.append(NetkilnEarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                              min_delta=float(early.get("min_delta", 0.0))))
    return callbacks


def make_extra_callbacks(extra_cfg, *, allow_targets: bool, has_logger: bool) -> list:
    """`callbacks.extra`: the user's own callbacks, `{_target_: CLASS, ARG: VALUE}` each. Lightning's callbacks are
    trusted; any other class needs allow_targets=true (training/optim.py holds the rule)."""
    from netkiln.training.optim import check_args, resolve_class

    entries = to_container(extra_cfg) or []
    if not isinstance(entries, list):
        raise NetkilnError("must be a list of {_target_: CLASS, ...} entries.", key="callbacks.extra")
    callbacks = []
    for i, entry in enumerate(entries):
        key = f"callbacks.extra[{i}]"
        if not isinstance(entry, dict) or "_target_" not in entry:
            raise NetkilnError("needs a _target_, e.g. {_target_: pytorch_lightning.callbacks.LearningRateMonitor}.",
                               key=key)
        cls = resolve_class(entry["_target_"], key, "callback", allow_targets)
        args = {k: v for k, v in entry.items() if k != "_target_"}
        check_args(cls, args, key, skip=0)
        try:
            callback = cls(**args)
        except Exception as err:  # noqa: BLE001 - any constructor complaint is a config error here
            raise NetkilnError(f"{cls.__name__}({args}) failed: {err}", key=key) from None
        if _logs(callback) and not has_logger:
            raise NetkilnError(f"{cls.__name__} logs through a Lightning logger; add logger=tensorboard or "
                               "logger=mlflow.", key=f"{key}._target_")
        callbacks.append(callback)
    return callbacks


def _logs(callback) -> bool:
    """Lightning's callbacks that refuse to run without a logger."""
    from pytorch_lightning.callbacks import DeviceStatsMonitor, LearningRateMonitor
    return isinstance(callback, (DeviceStatsMonitor, LearningRateMonitor))


def fast_path_hooks(callbacks) -> list[str]:
    """The per-batch / per-step / validation hooks these callbacks' classes override (`Class.hook` names)."""
    import pytorch_lightning as pl
    return [f"{type(cb).__name__}.{hook}" for cb in callbacks for hook in FAST_PATH_HOOKS
            if getattr(type(cb), hook) is not getattr(pl.Callback, hook)]
