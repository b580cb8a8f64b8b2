"""The one LightningModule: wraps a compiled network with its loss, metrics, optimizer and schedule.

Training uses manual optimization over chunks of batches (see batches.TrainChunks): one
Lightning step runs `steps_per_execution` optimizer steps, which keeps Lightning's per-step
cost off the hot path. Each batch still gets exactly one optimizer step, `global_step`
counts optimizer steps (and stops exactly at `max_steps`), and per-step schedulers step per batch.

Validation runs at the end of each epoch's last chunk, inside the module ("fused"), when the
trainer validates once per epoch over all validation batches (the default): Lightning's
validation loop costs ~1.5 ms an epoch in hooks and mode switches, 5% of a small model's epoch.
Its results reach callbacks, the progress bar and (through HistoryWriter) loggers where Lightning's would (in
`trainer.callback_metrics` before any `on_train_epoch_end`). Any other validation schedule
(`val_check_interval`, `check_val_every_n_epoch`, `limit_val_batches`) uses Lightning's loop
with the same per-batch code.
"""
from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from netkiln.compat import optimizer_step_progress
from netkiln.errors import NetkilnError
from netkiln.task import Task
from netkiln.training.batches import EvalBatches, TrainChunks
from netkiln.training.metrics import make_metrics, metric_inputs
from netkiln.training.optim import build_optimizer, build_scheduler, scheduler_interval
from netkiln.training.step_graph import count_correct

log = logging.getLogger("netkiln")


class NonFiniteLoss(NetkilnError):
    """Training produced a NaN or infinite loss."""


class NetkilnModule(pl.LightningModule):
    def __init__(self, network: torch.nn.Module, task: Task, loss_fn, *, optimizer_cfg, scheduler_cfg,
                 train_batches: TrainChunks, val_batches: EvalBatches | None, batch_size: int,
                 max_epochs: int, max_steps: int, mode: str, monitor: str,
                 gradient_clip_val: float | None = None, allow_targets: bool = False,
                 fused_validation: bool = True, compile_args: dict | None = None, target_scale=None,
                 per_step_hooks: bool = False, cuda_graphs: bool = False):
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.task = task
        self.loss_fn = loss_fn
        self.val_metrics = make_metrics(task)
        self.optimizer_cfg, self.scheduler_cfg = optimizer_cfg, scheduler_cfg
        self.allow_targets = allow_targets          # optimizer/scheduler _target_ outside torch.optim
        self.train_batches, self.val_batches = train_batches, val_batches
        self.batch_size = batch_size
        self.max_epochs, self.max_steps = max_epochs, max_steps
        self.mode, self.monitor = mode, monitor
        self.gradient_clip_val = gradient_clip_val
        self._interval = scheduler_interval(scheduler_cfg)
        self.fused_validation = fused_validation and val_batches is not None
        self.compile_args = compile_args
        # A user callback needs on_before_backward / on_after_backward / on_before_optimizer_step: Lightning's step.
        self.per_step_hooks = per_step_hooks
        self.cuda_graphs = cuda_graphs          # replay chunks of steps as CUDA graphs where the run allows it
        self._graphed = None
        # Regression trained on a scaled target (train batches hold it scaled, validation batches in the target's
        # units): the validation loss scales y as training did; the metrics see predictions in the target's units.
        self.target_scale = target_scale
        self.validated_epoch: int | None = None      # the last epoch whose validation ran
        self._set_train_forward(network)

    def _set_train_forward(self, forward) -> None:
        # Kept out of nn.Module's registry: a compiled wrapper would repeat every weight in the state_dict.
        self.__dict__["_train_forward"] = forward

    def forward(self, x):
        return self.network(x)

    # --- data -------------------------------------------------------------------------------
    def setup(self, stage):
        # Before configure_optimizers, so per-step schedules count this process's batches.
        self.train_batches.shard(self.trainer.global_rank, self.trainer.world_size)
        # Across processes, metrics are averaged by Lightning's logging: validate in its loop there.
        self.fused_validation = self.fused_validation and self.trainer.world_size == 1

    def train_dataloader(self):
        self.train_batches.epoch = self._epoch_now
        return self.train_batches.to(self.device)

    def _epoch_now(self) -> int:
        return self.current_epoch

    def val_dataloader(self):
        if self.val_batches is None or self.fused_validation:
            return []
        return self.val_batches.to(self.device)

    # --- optimizer ----------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.optimizer_cfg, [p for p in self.parameters() if p.requires_grad],
                                    allow_targets=self.allow_targets)
        scheduler = build_scheduler(self.scheduler_cfg, optimizer, max_epochs=self.max_epochs,
                                    steps_per_epoch=self.train_batches.num_batches, max_steps=self.max_steps,
                                    mode=self.mode, allow_targets=self.allow_targets)
        if scheduler is None:
            return optimizer
        # Returned so Lightning saves its state in checkpoints; stepped by hand (manual optimization).
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self._interval}}

    def _scheduler(self):
        schedulers = self.lr_schedulers()
        return schedulers[0] if isinstance(schedulers, list) else schedulers

    # --- training -----------------------------------------------------------------------------
    def on_train_epoch_start(self):
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._train_rows = 0
        self._train_logged = False

    def _plain_step_ok(self) -> bool:
        """A plain torch optimizer step is exact on one device without a precision plugin's scaler."""
        from pytorch_lightning.strategies import SingleDeviceStrategy
        return (isinstance(self.trainer.strategy, SingleDeviceStrategy)
                and str(self.trainer.precision) in ("32-true", "64-true", "bf16-true", "16-true", "32", "64"))

    def on_train_start(self):
        if self.compile_args is not None:
            self._set_train_forward(torch.compile(self.network, **self.compile_args))
        self._plain_step = self._plain_step_ok() and not self.per_step_hooks
        self._progress = optimizer_step_progress(self.trainer)
        self._graphed = self._graphed_steps() if self.cuda_graphs else None

    def _graphed_steps(self):
        """The chunk runner that replays CUDA graphs, or None (logged why) when this run cannot be captured."""
        from netkiln.training import step_graph

        optimizer = self.optimizers().optimizer
        reason = step_graph.graph_obstacle(
            device=self.device, plain_step=self._plain_step, batches=self.train_batches, optimizer=optimizer,
            step_scheduler=self._interval == "step", scheduler=self._scheduler() if self._interval else None,
            compiled=self.compile_args is not None, network=self.network)
        if reason is not None:
            log.info("cuda_graphs: training eagerly, because %s", reason)
            return None
        step_graph.make_capturable(optimizer, self.device)
        log.info("cuda_graphs: each chunk of training steps is replayed as one CUDA graph (captured in epoch 2)")
        return step_graph.GraphedSteps(self.train_batches, self._train_forward, self.loss_fn, optimizer,
                                       kind=self.task.kind, clip=self.gradient_clip_val, device=self.device)

    def training_step(self, chunk, chunk_idx):
        progress = self._progress
        full_chunk = len(chunk)
        if self.trainer.max_steps >= 0:     # Lightning checks max_steps between its steps only: stop inside
            chunk = chunk[:max(0, self.trainer.max_steps - progress.total.completed) * self.batch_size]
        if self._graphed is not None and len(chunk):
            step_losses, weighted, right, rows = self._graphed.run(chunk)
            for _ in range(len(step_losses)):
                progress.increment_ready()
                progress.increment_completed()
            step_losses = step_losses.clone()       # the next replay overwrites them
            self._train_loss_sum += weighted
            self._train_correct += right
        else:
            step_losses, rows = self._eager_steps(chunk)
        self._train_rows += rows
        # One host sync per chunk, not per step: find the first bad step only when needed.
        if len(step_losses) and not torch.isfinite(self._train_loss_sum):
            self._raise_non_finite(step_losses, chunk_idx)
        last_chunk = chunk_idx == len(self.train_batches) - 1
        if self.fused_validation and last_chunk and rows >= full_chunk:
            self._validate_fused()
        elif last_chunk or 0 <= self.trainer.max_steps <= progress.total.completed:
            # Now, not in on_train_epoch_end: callbacks' epoch-end hooks (history.csv) run before the module's.
            self._log_train_metrics()

    def _eager_steps(self, chunk) -> tuple[torch.Tensor, int]:
        """One optimizer step per batch of the chunk, launched from Python: (each step's loss, rows)."""
        lightning_opt = self.optimizers()
        optimizer = lightning_opt.optimizer
        scheduler = self._scheduler() if self._interval == "step" else None
        # Locals on the hot path: attribute writes on an nn.Module go through its slow __setattr__.
        network, loss_fn, batches, batch_size, progress = (self._train_forward, self.loss_fn, self.train_batches,
                                                           self.batch_size, self._progress)
        kind, plain_step, clip = self.task.kind, self._plain_step, self.gradient_clip_val
        loss_sum, correct, rows = self._train_loss_sum, self._train_correct, 0      # summed in place
        step_losses = []
        for start in range(0, len(chunk), batch_size):
            xb, yb = batches.batch(chunk[start:start + batch_size])
            out = network(xb)
            loss = loss_fn(out, yb)
            if plain_step:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    self._clip(optimizer)
                optimizer.step()
                progress.increment_ready()
                progress.increment_completed()
            else:
                lightning_opt.zero_grad()
                self.manual_backward(loss)
                if clip:
                    self._clip(optimizer)
                lightning_opt.step()
            if scheduler is not None:
                scheduler.step()
            loss = loss.detach()
            step_losses.append(loss)
            loss_sum += loss * len(xb)
            right = count_correct(kind, out, yb)
            if right is not None:
                correct += right
            rows += len(xb)
        return (torch.stack(step_losses) if step_losses else torch.zeros(0)), rows

    def _clip(self, optimizer):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, float(self.gradient_clip_val))

    def _raise_non_finite(self, losses: torch.Tensor, chunk_idx: int):
        """losses: each step's loss in this chunk."""
        bad = int((~torch.isfinite(losses)).nonzero()[0])
        steps_per_chunk = self.train_batches.chunk_rows // self.batch_size
        batch = chunk_idx * steps_per_chunk + bad
        step = self.global_step - len(losses) + bad + 1
        lr = float(self.optimizers().optimizer.param_groups[0]["lr"])
        raise NonFiniteLoss(
            f"the training loss became {float(losses[bad])} at epoch {self.current_epoch}, batch {batch} "
            f"(optimizer step {step}); training stopped and the checkpoints of earlier epochs were kept. "
            f"Try a lower learning rate (optimizer.lr is {lr:g}), gradient_clip_val=1.0, or check the data for "
            f"NaN values.", key="optimizer.lr")

    def _train_metrics(self) -> dict[str, torch.Tensor]:
        metrics = {"train/loss": self._train_loss_sum / self._train_rows}
        if self.task.is_classification:
            metrics["train/acc"] = self._train_correct.float() / self._train_rows
        return metrics

    def _log_train_metrics(self):
        if self._train_logged or self._train_rows == 0:
            return
        self._publish(self._train_metrics())
        self._train_logged = True

    def _publish(self, values: dict[str, torch.Tensor]):
        """Hand per-epoch metrics to the callbacks (early stopping, checkpoints, history), and the progress bar.

        On one process they go straight into `trainer.callback_metrics` / `progress_bar_metrics`, with one host
        sync: `self.log` costs ~0.3 ms a key (Lightning moves its whole result structure on every call), a tenth
        of a small model's epoch. Across processes `self.log_dict(sync_dist=True)` averages them over ranks.
        Loggers get them once an epoch from HistoryWriter (training/tracking.py), at step = epoch.
        """
        trainer = self.trainer
        if trainer.world_size > 1:
            self.log_dict(values, prog_bar=True, sync_dist=True, logger=False)
            return
        stacked = torch.stack([value.detach().reshape(()).float() for value in values.values()]).cpu()
        callback_metrics, bar_metrics = trainer.callback_metrics, trainer.progress_bar_metrics
        for name, value in zip(values, stacked.unbind()):
            callback_metrics[name] = value
            bar_metrics[name] = value.item()

    def on_train_epoch_end(self):
        self._log_train_metrics()
        if self._interval == "epoch":
            scheduler = self._scheduler()
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                value = self.trainer.callback_metrics.get(self.monitor)
                if value is not None:
                    scheduler.step(value)
            else:
                scheduler.step()

    # --- checkpoints ----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint):
        # Dropout draws from the global RNG; saving it makes a resumed run match an uninterrupted one.
        checkpoint["netkiln_rng"] = {"torch": torch.get_rng_state()}
        if self._graphed is not None:       # the optimizer's device-side settings back to the config's numbers
            from netkiln.training.step_graph import portable_optimizer_state
            portable_optimizer_state(checkpoint)
        if torch.cuda.is_available():
            checkpoint["netkiln_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint):
        rng = checkpoint.get("netkiln_rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    # --- validation ---------------------------------------------------------------------------
    def _validate_fused(self):
        """The whole validation pass at the end of the epoch's last chunk; publishes train and val metrics."""
        was_training = self.network.training
        self.network.eval()
        self.on_validation_epoch_start()
        with torch.no_grad():
            for batch_idx, batch in enumerate(self.val_batches.to(self.device)):
                self.validation_step(batch, batch_idx)
        self.network.train(was_training)
        self._publish({**self._train_metrics(), **self._val_metrics()})
        self._train_logged = True

    def on_validation_epoch_start(self):
        self._val_loss_sum = torch.zeros((), device=self.device)
        self._val_rows = 0

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self._train_forward(x)
        scale = self.target_scale
        self._val_loss_sum += self.loss_fn(out, y if scale is None else scale.scale(y)) * len(x)
        self._val_rows += len(x)
        self.val_metrics.update(*metric_inputs(self.task, out if scale is None else scale.unscale(out), y))

    def _val_metrics(self) -> dict[str, torch.Tensor]:
        if not self.trainer.sanity_checking:
            self.validated_epoch = self.current_epoch      # history.csv leaves val/* empty in other epochs
        values = {f"val/{name}": value for name, value in self.val_metrics.compute().items()}
        self.val_metrics.reset()
        values["val/loss"] = self._val_loss_sum / self._val_rows
        return values

    def on_validation_epoch_end(self):        # Lightning's validation loop (not the fused pass)
        if self._val_rows == 0:
            return
        self._publish(self._val_metrics())
        # Validation runs at the end of the training epoch: log train metrics now, so callbacks that
        # react to validation (early stopping, checkpoints) can monitor train/* too.
        if not self.trainer.sanity_checking:
            self._log_train_metrics()
