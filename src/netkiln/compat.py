"""Every private API of Lightning, Hydra and Optuna that netkiln uses, in one place.

Checked against pytorch-lightning 2.6.6, hydra-core 1.3.8 and optuna 5.0.0 (the ranges pyproject.toml pins).
tests/test_contract.py asserts that each private name below still exists on the installed versions, so an upgrade
that drops one fails in CI instead of at run time. Imports stay inside the functions: importing this module loads
none of these libraries.

Private names netkiln relies on that cannot move behind a wrapper here (subclass overrides and base classes):
- pytorch_lightning.callbacks.EarlyStopping._run_early_stopping_check and ._evaluate_stopping_criteria
  (training/callbacks.py, NetkilnEarlyStopping overrides both): the only hooks where Lightning reads the monitored
  value and decides to stop; netkiln compares floats there and breaks ties by val/loss. _evaluate_stopping_criteria
  returns (should_stop, reason) with `reason` a message string in 2.6.
- pytorch_lightning.strategies.launchers.multiprocessing._MultiProcessingLauncher (training/ddp_spawn_launcher.py subclasses it
  via multiprocessing_launcher_class()): ddp_spawn's launcher, the one place to send rank 0's loop state back.
- hydra._internal.core_plugins.basic_sweeper.BasicSweeper (hydra_plugins/netkiln_basic_sweeper subclasses it via
  basic_sweeper_class()): Hydra's grid sweeper, reused whole except for one composition per trial; the subclass
  also sets the `hydra_context` attributes BasicSweeper.setup and BasicLauncher.setup create.
"""
from __future__ import annotations


def basic_sweeper_class():
    """Hydra's BasicSweeper. Hydra exports no public grid sweeper class to subclass (hydra-core 1.3.8)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper


def multiprocessing_launcher_class():
    """Lightning's ddp_spawn launcher class; private in pytorch-lightning 2.6.6, with no public alias."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return _MultiProcessingLauncher


def replace_spawn_launcher(trainer, launcher_cls) -> None:
    """Swap the trainer's ddp_spawn launcher for `launcher_cls` (same start method). Lightning builds the launcher
    inside the strategy (`strategy._launcher`) and offers no public setter (pytorch-lightning 2.6.6)."""
    launcher = getattr(trainer.strategy, "_launcher", None)
    if type(launcher) is multiprocessing_launcher_class():
        trainer.strategy._launcher = launcher_cls(trainer.strategy, start_method=launcher._start_method)


def dump_checkpoint(trainer) -> dict:
    """The full checkpoint dict Lightning would save (weights, optimizer, loops, callbacks). netkiln writes it
    itself (atomically, on its own schedule); Lightning's only builder is the private checkpoint connector
    (pytorch-lightning 2.6.6: trainer.save_checkpoint builds and writes in one call)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def optimizer_step_progress(trainer):
    """The progress counter Lightning reads `global_step` from under manual optimization. netkiln's plain optimizer
    steps (several per Lightning step) advance it themselves; Lightning offers no public way to (pytorch-lightning
    2.6.6: only LightningOptimizer.step advances it, with its per-step hooks)."""
    return trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress


def optuna_trial(study, trial_number: int):
    """A live optuna.trial.Trial for `trial_number` of `study`, to report to and prune from inside the trial's own
    process. Optuna maps a number to a trial id only through its storage (optuna 5.0.0: study._storage,
    study._study_id); the Trial constructor itself is public."""
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
    return optuna.trial.Trial(study, trial_id)
