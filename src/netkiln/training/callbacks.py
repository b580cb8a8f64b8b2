"""Callbacks and plugins that write the run directory: per-epoch history and atomic checkpoints.

Both write in a background thread (`BackgroundWriter`): the bytes are produced on the training
thread (so they are a snapshot of that moment), and the atomic write (temporary file, fsync,
rename) runs beside training instead of stalling it: on a local disk each write waits milliseconds
for the device, as long as a small model's epoch. Writes keep their order; every pending write is
finished, and its error raised, before `fit` returns.
"""
from __future__ import annotations

import copy
import csv
import io
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.plugins.io import TorchCheckpointIO

from netkiln.artifacts.files import write_atomic

log = logging.getLogger("netkiln")


class BackgroundWriter:
    """Runs file writes in one background thread, in submission order."""

    def __init__(self):
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, fn, *args) -> None:
        self._check(block=False)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netkiln-writer")
        self._pending.append(self._executor.submit(fn, *args))

    def _check(self, block: bool) -> None:
        """Drop finished writes; raise the first error. With block, wait for all of them."""
        pending, self._pending = self._pending, []
        error = None
        for future in pending:
            if not block and not future.done():
                self._pending.append(future)
            elif error is None and future.exception() is not None:
                error = future.exception()
        if error is not None:
            raise error

    def flush(self) -> None:
        """Wait for every pending write; raise the first error."""
        self._check(block=True)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def close_quietly(self) -> None:
        """Finish pending writes while another error is on its way (log, don't mask it)."""
        try:
            self.close()
        except Exception as err:  # noqa: BLE001
            log.error("could not write a file of the run directory: %s", err)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


class HistoryWriter(pl.Callback):
    """Writes `history.csv`: one row per epoch with every logged metric, the LR and the time."""

    def __init__(self, path: Path, metric_names: list[str]):
        self.path = Path(path)
        self.metric_names = metric_names
        self.rows: list[dict] = []
        self._writer = BackgroundWriter()

    def on_train_start(self, trainer, pl_module):   # after a checkpoint is restored
        self._start = time.perf_counter()
        if self.path.exists() and trainer.current_epoch > 0:      # resumed: keep the epochs already done
            with open(self.path, newline="") as fh:
                self.rows = [row for row in csv.DictReader(fh) if int(row["epoch"]) < trainer.current_epoch]

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
               "seconds": round(time.perf_counter() - self._start, 3)}
        for name in self.metric_names:
            value = metrics.get(name)
            row[name] = float(value) if value is not None else ""
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(row))
        writer.writeheader()
        writer.writerows(self.rows)
        self._writer.submit(_write_bytes_atomic, self.path, buffer.getvalue().encode("utf-8"))

    def teardown(self, trainer, pl_module, stage):
        self._writer.close()

    def on_exception(self, trainer, pl_module, exception):
        self._writer.close_quietly()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints to a temporary name and renames them: a kill never leaves a torn .ckpt.

    Every save takes a snapshot (tensors cloned) at once. Serializing and writing it is the costly
    part (~2 ms for a small model, twice an epoch when the best checkpoint improves), so it happens
    at most once every `write_interval` seconds: a save within that time of the last write only
    replaces the pending snapshot for its path. Pending snapshots are written at `teardown` (the end
    of fit, also after an error or Ctrl-C) and before any load, so files are never older than
    `write_interval` seconds plus one epoch, and exact at the end. Checkpoints larger than
    `snapshot_limit_bytes` (where a copy would cost memory, and epochs are long anyway) are
    serialized at every save. The file writes run in a background thread (`BackgroundWriter`).
    """

    def __init__(self, write_interval: float = 5.0, snapshot_limit_bytes: int = 256 * 2**20):
        super().__init__()
        self.write_interval = write_interval
        self.snapshot_limit_bytes = snapshot_limit_bytes
        self._writer = BackgroundWriter()
        self._pending: dict[Path, dict] = {}
        self._written: set[Path] = set()
        self._last_write = -float("inf")

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        self._pending.pop(path, None)
        due = time.monotonic() - self._last_write >= self.write_interval
        # A path's first checkpoint is written at once: after a kill in the first seconds, resume has a last.ckpt.
        first = path not in self._written
        self._written.add(path)
        if due or first or _tensor_bytes(checkpoint) > self.snapshot_limit_bytes:
            self._write_pending()
            self._write(checkpoint, path)
        else:
            self._pending[path] = _snapshot(checkpoint)

    def _write(self, checkpoint, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self._writer.submit(_write_bytes_atomic, path, buffer.getvalue())
        self._last_write = time.monotonic()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for path, checkpoint in pending.items():
            self._write(checkpoint, path)

    def remove_checkpoint(self, path):
        self._pending.pop(Path(path), None)
        self._writer.submit(_remove, Path(path))

    def flush(self) -> None:
        """Write every pending snapshot and wait for the writes."""
        self._write_pending()
        self._writer.flush()

    def teardown(self):
        try:
            self._write_pending()
        finally:
            self._writer.close()

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        self.flush()
        return load_checkpoint_file(path, map_location)


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



class NetkilnProgressBar(RichProgressBar):
    """Lightning's Rich bar, redrawn at most 10 times a second, and without a validation bar when validation is a
    single batch (Rich draws a new bar at once, every epoch: ~1 ms, 3% of a small model's epoch)."""

    def __init__(self):
        super().__init__(refresh_rate=10)

    @staticmethod
    def _one_batch_validation(trainer) -> bool:
        return not trainer.sanity_checking and sum(trainer.num_val_batches) <= 1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not self._one_batch_validation(trainer):
            super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self._one_batch_validation(trainer):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module):
        if not self._one_batch_validation(trainer):
            super().on_validation_epoch_end(trainer, pl_module)


def progress_bar_callbacks(trainer_kwargs: dict) -> list:
    """netkiln's progress bar when the trainer shows one and Rich is installed (else Lightning's default bar)."""
    if not trainer_kwargs.get("enable_progress_bar", True):
        return []
    try:
        import rich  # noqa: F401
    except ImportError:
        return []
    return [NetkilnProgressBar()]
