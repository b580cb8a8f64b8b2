"""Callbacks that write the run directory (per-epoch history, through the writer thread they share with
netkiln.training.checkpoints: netkiln.io.background) and the progress bar."""
from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, RichProgressBar
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason
from rich.progress import ProgressColumn
from rich.text import Text

from netkiln.io.background import BackgroundWriter
from netkiln.io.files import write_bytes_atomic
from netkiln.training.selection import compare, tie_breaker_for



def is_last_epoch(trainer) -> bool:
    """Whether fit ends after this epoch (as far as known at its end: max_epochs, max_steps, a stop request)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (trainer.should_stop or (max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs)
            or (max_steps not in (None, -1) and trainer.global_step >= max_steps))


class HistoryWriter(pl.Callback):
    """Writes `history.csv`: one row per epoch with every logged metric, the LR and the time; hands the same
    metrics to the Trainer's loggers (training/tracking.py)."""

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
        for logger in trainer.loggers:      # start each logger's run here, not in the writer thread (no race)
            logger.experiment
        if self.path.exists() and trainer.current_epoch > 0:      # resumed: keep the epochs already done
            with open(self.path, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if int(row["epoch"]) < trainer.current_epoch]
            self._lines += [self._csv_line(row.get(column, "") for column in self.columns) for row in kept]

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:      # DDP: rank 0 writes the run directory
            return
        metrics = trainer.callback_metrics
        row = [trainer.current_epoch, trainer.global_step,
               float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else None,  # cuda_graphs: a tensor
               round(time.perf_counter() - self._start, 3)]
        # Epochs without validation (check_val_every_n_epoch) keep the last val/* values shown: not written here.
        validated = getattr(pl_module, "validated_epoch", trainer.current_epoch) == trainer.current_epoch
        for name in self.metric_names:
            value = metrics.get(name) if validated or not name.startswith("val/") else None
            row.append(float(value) if value is not None else "")
        # One new line per epoch; the whole file is rewritten atomically (in the background).
        self._lines.append(self._csv_line(row))
        self._writer.submit(write_bytes_atomic, self.path, "".join(self._lines).encode("utf-8"))
        if trainer.loggers:
            # logger=tensorboard / mlflow: the same values at step = epoch, also in the writer thread (an MLflow
            # write to SQLite took ~50 ms here, more than a small model's epoch).
            logged = {name: value for name, value in zip(["lr", *self.metric_names], row[2:3] + row[4:])
                      if value not in ("", None)}
            for logger in trainer.loggers:
                self._writer.submit(logger.log_metrics, logged, trainer.current_epoch)

    def teardown(self, trainer, pl_module, stage):
        self._writer.close()

    def on_exception(self, trainer, pl_module, exception):
        self._writer.close_quietly()


class NetkilnEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping (same settings, state and messages), comparing Python floats, and counting an epoch
    that ties the best monitored value with a lower validation loss as an improvement (`training/selection.py`).
    Overrides two private methods of Lightning's (netkiln/compat.py lists them, with the versions checked).

    Lightning compares tensors and formats an improvement message with them every improved epoch, ~0.4 ms
    an epoch in all (1.5% of a small model's epoch). Thresholds and non-finite values take Lightning's path.
    """

    best_tie: float | None = None       # the tie-breaker's value (val/loss) at the best epoch
    _tie: float | None = None           # ... at this epoch

    def _run_early_stopping_check(self, trainer):
        tie_key = tie_breaker_for(self.monitor)
        metrics = trainer.callback_metrics
        self._tie = float(metrics[tie_key]) if tie_key in metrics else None
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current):
        value = float(current)
        best = float(self.best_score)
        verdict = compare(value, best, self.mode, self._tie, self.best_tie, min_delta=float(self.min_delta))
        if verdict > 0 and value == best:       # a tie won by the validation loss: no stopping condition can fire
            self.best_score, self.best_tie, self.wait_count = current, self._tie, 0
            return False, None
        if (not math.isfinite(value) or self.stopping_threshold is not None
                or self.divergence_threshold is not None or self.verbose):
            should_stop, reason = super()._evaluate_stopping_criteria(current)
            if self.wait_count == 0:            # Lightning took it as an improvement
                self.best_tie = self._tie
            return should_stop, reason
        if verdict > 0:
            self.best_score, self.best_tie, self.wait_count = current, self._tie, 0
            return False, None
        self.wait_count += 1
        if self.wait_count < self.patience:
            return False, None
        return self._exhausted(best)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_tie": self.best_tie}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.best_tie = state_dict.get("best_tie")

    def _exhausted(self, best: float):
        self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
        return True, (f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} records. "
                      f"Best score: {best:.3f}. Signaling Trainer to stop.")


class NetkilnProgressBar(RichProgressBar):
    """Lightning's Rich bar, brought up to date at most 10 times a second, and without a validation bar when
    validation is a single batch.

    Lightning redraws the bar at every epoch start, chunk and epoch end (~0.3 ms each, with Rich's table
    layout): 3% of a small model's 30 ms epoch, for frames nobody can see. Here a training hook within 0.1 s of
    the last update returns at once; the next one shows the current epoch, batch and metrics, and the last epoch
    is always shown (at train end, once early stopping has decided).
    """

    def __init__(self):
        super().__init__(refresh_rate=10)
        self._last_update = -float("inf")
        self._shown_epoch: int | None = None

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_update < 1 / self.refresh_rate:
            return False
        self._last_update = now
        return True

    def _show_epoch(self, trainer, pl_module) -> None:
        """Point the bar at the current epoch (what Lightning does at every epoch start)."""
        if self._shown_epoch != trainer.current_epoch or self.train_progress_bar_id is None:
            super().on_train_epoch_start(trainer, pl_module)
            self._shown_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if self._due():
            self._show_epoch(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning's batch here is a chunk of steps_per_execution batches; the bar counts batches, as Keras does.
        if self._due():
            self._show_epoch(trainer, pl_module)
            done = (batch_idx + 1) * getattr(pl_module.train_batches, "batches_per_chunk", 1)
            self._update(self.train_progress_bar_id, min(done, self.total_train_batches))
            self._update_metrics(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._due() or is_last_epoch(trainer):
            self._show_epoch(trainer, pl_module)
            self._update(self.train_progress_bar_id, self.total_train_batches)
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        """The last frame shows the epoch the run ended on. The epoch-end hook cannot always tell: early stopping
        decides after it (Lightning calls monitoring callbacks last), so a fast last epoch could go unshown."""
        if self.progress is not None and self.train_progress_bar_id is not None:
            last = max(trainer.current_epoch - 1, 0)        # by now current_epoch counts the finished epochs
            self.progress.update(self.train_progress_bar_id, description=self._get_train_description(last),
                                 completed=self.total_train_batches, visible=True)
            self._shown_epoch = last
            self._update_metrics(trainer, pl_module)
            self.refresh(hard=True)
        super().on_train_end(trainer, pl_module)

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

    @property
    def total_train_batches(self):
        batches = getattr(self.trainer.lightning_module, "train_batches", None)
        return batches.num_batches if batches is not None else super().total_train_batches

    def configure_columns(self, trainer) -> list:
        # Rich's speed needs several updates per epoch; show optimizer steps per second over the run instead.
        columns = super().configure_columns(trainer)
        return columns[:-1] + [_StepsPerSecond(trainer, self.theme.processing_speed)]


class _StepsPerSecond(ProgressColumn):
    def __init__(self, trainer, style):
        super().__init__()
        self.trainer, self.style, self.start = trainer, style, time.monotonic()
        self.first_step = trainer.global_step

    def render(self, task) -> Text:
        seconds = time.monotonic() - self.start
        rate = (self.trainer.global_step - self.first_step) / seconds if seconds > 0 else 0.0
        return Text(f"{rate:.0f}it/s", style=self.style)     # it: an optimizer step (one batch)


def progress_bar_callbacks(trainer_kwargs: dict) -> list:
    """netkiln's progress bar when the trainer shows one and Rich is installed (else Lightning's default bar)."""
    if not trainer_kwargs.get("enable_progress_bar", True):
        return []
    try:
        import rich  # noqa: F401
    except ImportError:
        return []
    return [NetkilnProgressBar()]
