"""Inside a trial of an Optuna sweep: report the monitored metric each epoch and stop bad trials early."""
from __future__ import annotations

import pytorch_lightning as pl


class TrialPruned(Exception):
    """The sweep's pruner stopped this trial; the trial is recorded as pruned, not failed."""

    def __init__(self, epoch: int, value: float):
        self.epoch, self.value = epoch, value
        super().__init__(f"pruned at epoch {epoch} ({value:.6g})")


class OptunaPruning(pl.Callback):
    def __init__(self, study, trial_number: int):
        from netkiln.compat import optuna_trial

        self.trial = optuna_trial(study, trial_number)

    def on_train_epoch_end(self, trainer, pl_module):
        # The module validated inside the epoch's last training step (see NetkilnModule).
        if pl_module.fused_validation:
            self._report(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module):
        # Lightning's validation loop ran (a validation schedule other than once per epoch).
        if not trainer.sanity_checking:
            self._report(trainer, pl_module)

    def _report(self, trainer, pl_module):
        value = trainer.callback_metrics.get(pl_module.monitor)
        if value is None:
            return
        value = float(value)
        # A cross-validation trial (cv.folds) reports every fold's epochs: fold k's epoch e at step
        # k * max_epochs + e (training/cross_validation.py), so the pruner compares a fold's progress with the
        # same fold's in other trials and can stop a trial in any fold.
        self.trial.report(value, step=trainer.current_epoch + getattr(pl_module, "cv_step_offset", 0))
        if self.trial.should_prune():
            raise TrialPruned(trainer.current_epoch, value)


def pruning_callbacks(hydra_cfg) -> list:
    """The pruning callback when this job is a trial of netkiln's Optuna sweeper with a pruner."""
    sweeper = hydra_cfg.sweeper
    if not str(sweeper.get("_target_", "")).startswith("hydra_plugins.netkiln_optuna_sweeper"):
        return []
    if str(sweeper.get("pruner") or "none") == "none":
        return []
    from netkiln.sweep.optuna_study import load_study

    study = load_study(sweeper, hydra_cfg.sweep.dir)
    return [OptunaPruning(study, int(hydra_cfg.sweep.subdir))]     # the sweeper runs trial N in <sweep dir>/N
