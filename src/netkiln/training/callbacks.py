"""Callbacks and plugins that write the run directory: per-epoch history and atomic checkpoints."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from netkiln.artifacts.files import write_atomic, write_text_atomic


class HistoryWriter(pl.Callback):
    """Writes `history.csv`: one row per epoch with every logged metric, the LR and the time."""

    def __init__(self, path: Path, metric_names: list[str]):
        self.path = Path(path)
        self.metric_names = metric_names
        self.rows: list[dict] = []

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
        write_text_atomic(self.path, buffer.getvalue())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints to a temporary name and renames them: a kill never leaves a torn .ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        # Checkpoints hold plain tensors and containers: never unpickle arbitrary objects.
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
