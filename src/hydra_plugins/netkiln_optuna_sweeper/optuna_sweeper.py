"""The Hydra Sweeper class; the search itself lives in netkiln.sweep.optuna_search."""
from __future__ import annotations

from typing import Any, List

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = settings

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from netkiln.sweep.optuna_search import run_search

        return run_search(self.settings, self.config, self.hydra_context, self.launcher, arguments)
