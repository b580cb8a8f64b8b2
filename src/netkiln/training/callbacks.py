"""Callbacks that write the run directory (per-epoch history), the writer thread they share with checkpoints
(netkiln.training.checkpoints), and the progress bar.

Files are written in a background thread (`BackgroundWriter`): the bytes are produced on the training
thread (so they are a snapshot of that moment), and the atomic write (temporary file, fsync,
rename) runs beside training instead of stalling it: on a local disk each write waits milliseconds
for the device, as long as a small model's epoch. Writes keep their order; every pending write is
finished, and its error raised, before `fit` returns.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

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
        self.columns = ["epoch", "step", "lr", "seconds", *metric_names]
        self._lines = [self._csv_line(self.columns)]       # the file's text, one CSV line per epoch
        self._writer = BackgroundWriter()

    @staticmethod
    def _csv_line(values) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(values)
        return buffer.getvalue()

    def on_train_start(self, trainer, pl_module):   # after a checkpoint is restored
        self._start = time.perf_counter()
        if self.path.exists() and trainer.current_epoch > 0:      # resumed: keep the epochs already done
            with open(self.path, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row["epoch"]) < trainer.current_epoch]
            self._lines += [self._csv_line(row.get(column, "") for column in self.columns) for row in kept]

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:      # DDP: rank 0 writes the run directory
            return
        metrics = trainer.callback_metrics
        row = [trainer.current_epoch, trainer.global_step,
               trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
               round(time.perf_counter() - self._start, 3)]
        for name in self.metric_names:
            value = metrics.get(name)
            row.append(float(value) if value is not None else "")
        # One new line per epoch; the whole file is rewritten atomically (in the background).
        self._lines.append(self._csv_line(row))
        self._writer.submit(_write_bytes_atomic, self.path, "".join(self._lines).encode("utf-8"))

    def teardown(self, trainer, pl_module, stage):
        self._writer.close()

    def on_exception(self, trainer, pl_module, exception):
        self._writer.close_quietly()


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
