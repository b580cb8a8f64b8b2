"""Checkpoints of a run: `RunCheckpoints` decides what to save and when; `AtomicCheckpointIO` writes them.

A small model's epoch takes ~30 ms; building a checkpoint (~0.3 ms), copying it (~0.5 ms) and serializing it cost a
few percent of that each, and Lightning's ModelCheckpoint also deep-copies the logged metrics every epoch (~0.4 ms).
`RunCheckpoints` builds a checkpoint only in an epoch that writes one or improves best.ckpt, and writes at most once
every `write_interval` seconds (the first save of each file and the last epoch at once).
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
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.trainer.states import TrainerFn

from netkiln.artifacts.files import write_atomic
from netkiln.errors import NetkilnError
from netkiln.training.callbacks import BackgroundWriter

log = logging.getLogger("netkiln")


class RunCheckpoints(Checkpoint):
    """best.ckpt (the best `monitor` value so far) and last.ckpt (with `save_last`) in `dirpath`.

    Both hold the full training state at an epoch's end (resume continues from either). At an epoch's end:

    * a write is due (`write_interval` seconds since the last one, the first save of a file, or the last epoch):
      the pending snapshot, if any, is written, then this epoch's state to best.ckpt (if it improved) and
      last.ckpt, serialized once;
    * else, if the monitored value improved: a snapshot (tensors cloned) is kept, written at the next write;
    * else nothing: last.ckpt on disk is then at most `write_interval` seconds (plus an epoch) old.

    At the end of fit everything is written. After an error, Ctrl-C or a kill, only what was written or pending
    is there, never the state of the epoch in progress: a checkpoint always holds a finished epoch, and resume
    redoes at most the last `write_interval` seconds. Checkpoints larger than `snapshot_limit_bytes` are never
    copied: an improved epoch writes at once. `best_model_score`, `best_model_path` and the best epoch are saved in
    the checkpoints (`state_dict`), so they survive resume.
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
        self._pending: tuple[dict, list[Path]] | None = None    # a snapshot and the files it is due for
        self._written: set[Path] = set()
        self._last_write = -math.inf
        self._last_stale = False        # last.ckpt (written or pending) is older than the last finished epoch
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
                "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        # A best score of another metric (or direction) is no bar for this run's.
        if state_dict.get("monitor") == self.monitor and state_dict.get("mode") == self.mode:
            self.best_model_score = state_dict.get("best_model_score")
            self.best_epoch = state_dict.get("best_epoch")

    @staticmethod
    def _skip(trainer) -> bool:
        return trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or bool(trainer.fast_dev_run)

    def on_train_epoch_end(self, trainer, pl_module):
        # A monitoring callback: Lightning calls it after the module's on_train_epoch_end, with this epoch's metrics.
        if self._skip(trainer):
            return
        improved = self._update_best(trainer)     # first: the checkpoint built below carries the new best
        paths = ([self.best_path] if improved else []) + ([self.last_path] if self.save_last else [])
        due = (time.monotonic() - self._last_write >= self.write_interval or _last_epoch(trainer)
               or not self._written.issuperset(paths))    # first saves at once: a kill early leaves a last.ckpt
        # Every rank builds the checkpoint when one does (building can be collective); rank 0 alone writes.
        due = trainer.strategy.reduce_boolean_decision(due, all=False)
        checkpoint = None
        if improved or (due and paths):
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            # A copy of a large model costs memory (and its epochs are long anyway): written at once instead.
            due = due or _tensor_bytes(checkpoint) > self.snapshot_limit_bytes
        if due:
            self._write_pending(trainer, superseded=paths)
            if checkpoint is not None:
                self._save(trainer, checkpoint, paths)
        elif checkpoint is not None:
            self._pending = (_snapshot(checkpoint), paths)
        self._last_stale = self.save_last and checkpoint is None

    def on_train_end(self, trainer, pl_module):
        if self._skip(trainer):
            return
        final = [self.last_path] if self._last_stale else []
        self._write_pending(trainer, superseded=final)
        if final:   # only when the last epoch was not recognized as such at its end (see _last_epoch)
            self._save(trainer, trainer._checkpoint_connector.dump_checkpoint(weights_only=False), final)

    def on_exception(self, trainer, pl_module, exception):
        # The epoch in progress is half done (after a NaN loss its weights are not even finite): pending only.
        try:
            self._write_pending(trainer)
        except Exception as err:  # noqa: BLE001 (the exception on its way matters more; don't mask it)
            log.error("could not write a checkpoint: %s", err)

    def _update_best(self, trainer) -> bool:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise NetkilnError(f"the monitored metric '{self.monitor}' was not logged; the logged metrics are: "
                               f"{', '.join(sorted(metrics)) or 'none'}.", key="monitor")
        # Python floats: the few tensor ops this takes measured ~0.2 ms an epoch in training (probably waiting for
        # the GIL beside the writer threads), float() ~10 us.
        value = float(metrics[self.monitor])
        best = None if self.best_model_score is None else float(self.best_model_score)
        if math.isnan(value) or (best is not None and not (value < best if self.mode == "min" else value > best)):
            return False
        self.best_model_score, self.best_epoch = torch.tensor(value), trainer.current_epoch
        return True

    def _write_pending(self, trainer, superseded=()) -> None:
        """Write the pending snapshot, except to files about to get a newer checkpoint."""
        pending, self._pending = self._pending, None
        if pending is not None:
            checkpoint, paths = pending
            paths = [path for path in paths if path not in superseded]
            if paths:
                self._save(trainer, checkpoint, paths)

    def _save(self, trainer, checkpoint: dict, paths: list[Path]) -> None:
        strategy = trainer.strategy
        # Through the strategy: only global rank 0 writes. AtomicCheckpointIO serializes once for several files;
        # strategies with their own save_checkpoint (FSDP, DeepSpeed) get one call a file.
        if isinstance(strategy.checkpoint_io, AtomicCheckpointIO) \
                and type(strategy).save_checkpoint is Strategy.save_checkpoint:
            strategy.save_checkpoint(checkpoint, paths)
        else:
            for path in paths:
                strategy.save_checkpoint(checkpoint, path)
        self._written.update(paths)
        self._last_write = time.monotonic()
        if self.last_path in paths:
            self.last_saved_epoch = checkpoint.get("epoch")


def _last_epoch(trainer) -> bool:
    """Whether fit ends after this epoch (as far as known at its end: max_epochs, max_steps, a stop request)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (trainer.should_stop or (max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs)
            or (max_steps not in (None, -1) and trainer.global_step >= max_steps))


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
        """Save `checkpoint` to `path`, or to each path of a list (serialized once, the same bytes to each)."""
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        for one in (path if isinstance(path, (list, tuple)) else [path]):
            self._writer.submit(_write_bytes, Path(one), data)

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


def _write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def load_checkpoint_file(path, map_location=None) -> dict:
    """torch.load with weights_only=True: checkpoints hold plain tensors and containers, and loading one never
    unpickles arbitrary objects. A file that is torn, corrupt or holds anything else is a NetkilnError."""
    import pickle
    import re

    from netkiln.errors import NetkilnError
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
