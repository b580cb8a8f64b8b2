"""Lightning Trainer construction from the `trainer/` and `callbacks/` config groups."""
from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import OmegaConf

from netkiln.errors import NetkilnError, did_you_mean

# Trainer arguments netkiln handles itself, because training uses manual optimization.
_MOVED = {
    "gradient_clip_val": "set the top-level gradient_clip_val instead of trainer.gradient_clip_val",
    "accumulate_grad_batches": "raise batch_size instead (netkiln steps once per batch)",
}
_CALLBACK_KEYS = {"early_stopping": {"patience", "min_delta"}, "checkpoint": {"save_last"}}


def trainer_kwargs(trainer_cfg) -> dict:
    import pytorch_lightning as pl

    kwargs = OmegaConf.to_container(trainer_cfg, resolve=True) if OmegaConf.is_config(trainer_cfg) \
        else dict(trainer_cfg or {})
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

    cfg = OmegaConf.to_container(callbacks_cfg, resolve=True) if OmegaConf.is_config(callbacks_cfg) \
        else dict(callbacks_cfg or {})
    for name, value in cfg.items():
        if name not in _CALLBACK_KEYS:
            raise NetkilnError(f"unknown callback '{name}'." + did_you_mean(name, _CALLBACK_KEYS),
                               key=f"callbacks.{name}")
        for arg in (value or {}):
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
