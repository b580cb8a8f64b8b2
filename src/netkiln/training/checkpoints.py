"""Checkpoints of a run: `RunCheckpoints` decides what to save and when; `AtomicCheckpointIO` writes them.

A small model's epoch takes ~30 ms; building a full checkpoint (~0.5 ms), copying it (~0.5 ms) and serializing it
cost a few percent of that each, and Lightning's ModelCheckpoint also deep-copies the logged metrics every epoch.
`RunCheckpoints` copies only the weights when the monitored value improves, builds the full training state only when
it writes last.ckpt, and writes at most once every `write_interval` seconds (the first and the last epoch at once).
"""
from __future__ import annotations

import copy
import io
import logging
import math
import os
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn

from netkiln.compat import dump_checkpoint
from netkiln.errors import NetkilnError
from netkiln.io.background import BackgroundWriter
from netkiln.io.files import write_bytes_atomic
from netkiln.training.callbacks import is_last_epoch
from netkiln.training.selection import compare, tie_breaker_for

log = logging.getLogger("netkiln")


class RunCheckpoints(Checkpoint):
    """best.ckpt: the weights of the epoch with the best `monitor` value; last.ckpt (with `save_last`): the full
    training state of a finished epoch (optimizers, loops, callbacks, RNG), what `resume=true` continues from.

    At an epoch's end:

    * if the monitored value improved, the weights are copied in memory (tensors cloned);
    * if a write is due (`write_interval` seconds since the last one, the first epoch, or the last epoch), the best
      weights go to best.ckpt and this epoch's full state to last.ckpt;
    * else nothing is written: last.ckpt is then at most `write_interval` seconds (plus an epoch) old.

    best.ckpt is a weights-only checkpoint (Lightning's `save_weights_only` layout: state_dict, epoch, global_step),
    loadable by `Trainer.test(ckpt_path=...)` and `load_state_dict`; it cannot be resumed from, and need not be:
    last.ckpt is never older than the last write. After an error, Ctrl-C or a kill, only what was written is on
    disk (and the best weights, written on the way out), never the state of the epoch in progress. Weights larger
    than `snapshot_limit_bytes` are not copied: an improved epoch writes best.ckpt at once. The best score and epoch
    are saved in last.ckpt (`state_dict`), so they survive resume.
    """

    write_interval = 5.0        # seconds between writes; 0 writes every epoch (tests set it on the class)
    snapshot_limit_bytes = 256 * 2**20

    def __init__(self, dirpath, monitor: str, mode: str = "min", save_last: bool = True,
                 write_interval: float | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.dirpath = Path(dirpath)
        self.monitor, self.mode, self.save_last = monitor, mode, save_last
        if write_interval is not None:
            self.write_interval = float(write_interval)
        self.best_model_score: torch.Tensor | None = None
        self.best_epoch: int | None = None
        self.best_tie: float | None = None      # the tie-breaker's value (val/loss) at the best epoch
        self._best: dict | None = None          # best.ckpt not yet written: the weights, epoch and step
        self._written: set[Path] = set()
        self._last_write = -math.inf
        self._last_stale = False                # last.ckpt is older than the last finished epoch
        self.last_saved_epoch: int | None = None     # the epoch last.ckpt holds (written or being written)

    @property
    def state_key(self) -> str:
        return "RunCheckpoints"         # the key of this callback's state in a checkpoint: keep it stable

    @property
    def best_path(self) -> Path:
        return self.dirpath / "best.ckpt"

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    @property
    def best_model_path(self) -> str:
        return str(self.best_path) if self.best_model_score is not None else ""

    @best_model_path.setter
    def best_model_path(self, value) -> None:
        # Lightning's spawn launcher hands rank 0's path back to the main process: always best_path here.
        pass

    def state_dict(self) -> dict:
        return {"monitor": self.monitor, "mode": self.mode, "best_model_score": self.best_model_score,
                "best_epoch": self.best_epoch, "best_tie": self.best_tie}

    def load_state_dict(self, state_dict: dict) -> None:
        # A best score of another metric (or direction) is no bar for this run's.
        if state_dict.get("monitor") == self.monitor and state_dict.get("mode") == self.mode:
            self.best_model_score = state_dict.get("best_model_score")
            self.best_epoch = state_dict.get("best_epoch")
            self.best_tie = state_dict.get("best_tie")

    @staticmethod
    def _skip(trainer) -> bool:
        return trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or bool(trainer.fast_dev_run)

    def on_train_epoch_end(self, trainer, pl_module):
        # A monitoring callback: Lightning calls it after the module's on_train_epoch_end, with this epoch's metrics.
        if self._skip(trainer):
            return
        improved = self._update_best(trainer)     # first: last.ckpt built below carries the new best
        uncopied = improved and not self._keep_best_weights(trainer)
        first = ((self.save_last and self.last_path not in self._written)      # a kill early leaves a last.ckpt
                 or (improved and self.best_path not in self._written))
        due = (uncopied or first or is_last_epoch(trainer)
               or time.monotonic() - self._last_write >= self.write_interval)
        # Every rank builds the checkpoint when one does (building can be collective); rank 0 alone writes.
        due = trainer.strategy.reduce_boolean_decision(due, all=False)
        if due:
            self._write_best(trainer)
            if self.save_last:
                self._save(trainer, dump_checkpoint(trainer),
                           [self.last_path])
        self._last_stale = self.save_last and not due

    def on_train_end(self, trainer, pl_module):
        if self._skip(trainer):
            return
        self._write_best(trainer)
        if self._last_stale:    # only when the last epoch was not recognized as such at its end (see is_last_epoch)
            self._save(trainer, dump_checkpoint(trainer), [self.last_path])
            self._last_stale = False

    def on_exception(self, trainer, pl_module, exception):
        # The epoch in progress is half done (after a NaN loss its weights are not even finite): the best weights
        # were copied at an epoch's end, so they are written; last.ckpt stays as it was.
        try:
            self._write_best(trainer)
        except Exception as err:  # noqa: BLE001 (the exception on its way matters more; don't mask it)
            log.error("could not write a checkpoint: %s", err)

    def _update_best(self, trainer) -> bool:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:     # no validation in this epoch (check_val_every_n_epoch > 1)
            return False
        # Python floats: the few tensor ops this takes measured ~0.2 ms an epoch in training (probably waiting for
        # the GIL beside the writer threads), float() ~10 us.
        value = float(metrics[self.monitor])
        tie_key = tie_breaker_for(self.monitor)
        tie = float(metrics[tie_key]) if tie_key in metrics else None
        best = None if self.best_model_score is None else float(self.best_model_score)
        # A full tie (same value, same tie-breaker) goes to the later epoch: more training for the same result.
        if compare(value, best, self.mode, tie, self.best_tie) < 0:
            return False
        self.best_model_score, self.best_epoch, self.best_tie = torch.tensor(value), trainer.current_epoch, tie
        return True

    def _keep_best_weights(self, trainer) -> bool:
        """Hold this epoch's weights for best.ckpt; False when they are too large to copy (write them now)."""
        state = trainer.strategy.lightning_module_state_dict()
        copied = _tensor_bytes(state) <= self.snapshot_limit_bytes
        self._best = {"epoch": trainer.current_epoch, "global_step": trainer.global_step,
                      "state_dict": _snapshot(state) if copied else state}
        return copied

    def _write_best(self, trainer) -> None:
        best, self._best = self._best, None
        if best is not None:
            import pytorch_lightning as pl
            self._save(trainer, {"pytorch-lightning_version": pl.__version__, **best}, [self.best_path])

    def _save(self, trainer, checkpoint: dict, paths: list[Path]) -> None:
        # Through the strategy: only global rank 0 writes.
        for path in paths:
            trainer.strategy.save_checkpoint(checkpoint, path)
        self._written.update(paths)
        self._last_write = time.monotonic()
        if self.last_path in paths:
            self.last_saved_epoch = checkpoint.get("epoch")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary name and renames them: a kill never leaves a torn .ckpt.

    `save_checkpoint` serializes at once (the bytes are the checkpoint of that moment); the atomic write (temporary
    file, fsync, rename) runs in a background thread (`BackgroundWriter`), beside training. Writes keep their order;
    `flush` and `teardown` (end of fit, also after an error) wait for them and raise the first error.
    """

    def __init__(self):
        super().__init__()
        self._writer = BackgroundWriter()

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self._writer.submit(write_bytes_atomic, Path(path), buffer.getvalue())

    def remove_checkpoint(self, path):
        self._writer.submit(_remove, Path(path))

    def flush(self) -> None:
        """Wait for every pending write; raise the first error."""
        self._writer.flush()

    def teardown(self):
        self._writer.close()

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        self.flush()
        return load_checkpoint_file(path, map_location)


def load_checkpoint_file(path, map_location=None) -> dict:
    """torch.load with weights_only=True: checkpoints hold plain tensors and containers, and loading one never
    unpickles arbitrary objects. A file that is torn, corrupt or holds anything else is a NetkilnError."""
    import pickle
    import re

    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        text = str(err).strip()
        named = re.search(r"GLOBAL ([\w.]+)", text)
        if isinstance(err, pickle.UnpicklingError) or named:
            reason = (f"it holds a Python object ({named.group(1) if named else 'not a tensor'}) that netkiln will not "
                      "unpickle: checkpoints are loaded with weights_only=True")
        else:
            reason = f"it is truncated or corrupt ({text.splitlines()[0] if text else type(err).__name__})"
        raise NetkilnError(f"cannot load the checkpoint: {reason}. Delete it to start the run over.",
                           file=str(path)) from None


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _snapshot(obj):
    """A copy of a checkpoint that later training cannot change: tensors cloned, containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        new = copy.copy(obj)            # keeps the type and attributes (a state_dict's _metadata)
        for key, value in obj.items():
            new[key] = _snapshot(value)
        return new
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        values = [_snapshot(v) for v in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else tuple(values)
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, complex)):
        return obj
    return copy.deepcopy(obj)


def _remove(path: Path) -> None:
    if path.is_file() or path.is_symlink():
        os.remove(path)
