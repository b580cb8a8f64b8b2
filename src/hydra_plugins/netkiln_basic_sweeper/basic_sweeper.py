"""Hydra's BasicSweeper with one config composition per trial instead of two.

BasicSweeper composes every trial's config before launching the batch (to report a bad override before any
trial runs), then the launcher composes it again to run it: ~0.13 s each for netkiln's train config, the largest
part of a trial's overhead beyond its training. Here the launcher gets the config the check composed; the check
itself, the grid, batching and launchers are Hydra's.
"""
from hydra.types import HydraContext

from netkiln.compat import basic_sweeper_class


class _ComposeOnce:
    """A config loader that hands each composed sweep config out twice: to the check, then to the launch.

    A grid may list a configuration twice (model=mlp,mlp): the check composes one config per trial, queued by its
    overrides, and each launch takes the next one of its queue, never one a launch has already run (Hydra makes a
    run's config read-only)."""

    MAX_KEPT = 512          # configs kept between the check and the launch (beyond that: composed again)

    def __init__(self, loader):
        self._loader = loader
        self._kept: dict[tuple, list] = {}
        self.checking = False           # set by the sweeper while it checks a batch

    def load_sweep_config(self, master_config, sweep_overrides):
        key = tuple(sweep_overrides)
        if not self.checking and self._kept.get(key):
            config = self._kept[key].pop(0)         # the launch takes what the check composed
            if not self._kept[key]:
                del self._kept[key]
            return config
        config = self._loader.load_sweep_config(master_config, list(sweep_overrides))
        if self.checking and sum(map(len, self._kept.values())) < self.MAX_KEPT:
            self._kept.setdefault(key, []).append(config)
        return config

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_loader", "_kept", "checking"):     # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self._loader, name)


class NetkilnBasicSweeper(basic_sweeper_class()):
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # Only the in-process basic launcher shares the check's configs; others (joblib, submitit) compose in
        # their own processes and get Hydra's context untouched.
        if type(self.launcher).__name__ == "BasicLauncher" and getattr(self.launcher, "hydra_context", None):
            shared = HydraContext(config_loader=_ComposeOnce(hydra_context.config_loader),
                                  callbacks=hydra_context.callbacks)
            self.hydra_context = self.launcher.hydra_context = shared

    def validate_batch_is_legal(self, batch) -> None:
        loader = self.hydra_context.config_loader if getattr(self, "hydra_context", None) else None
        if not isinstance(loader, _ComposeOnce):
            return super().validate_batch_is_legal(batch)
        loader.checking = True          # the check composes every trial's config, duplicates included
        try:
            super().validate_batch_is_legal(batch)
        finally:
            loader.checking = False
