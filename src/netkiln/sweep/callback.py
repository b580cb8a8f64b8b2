"""Hydra callback: at the end of every multirun, write and print the sweep's leaderboard."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("netkiln")

# The last leaderboard built in this process: `netkiln train -m` reads it for its exit code.
last_leaderboard = None


class LeaderboardCallback(Callback):
    def on_multirun_start(self, config, **kwargs: Any) -> None:
        from netkiln.io.lock import acquire, release
        from netkiln.errors import NetkilnError, UserErrorAbort
        from netkiln.sweep.leaderboard import trial_folders
        from netkiln.sweep.optuna_study import is_shared, storage_url
        from netkiln.sweep.optuna_workers import claim_sweep_dir

        sweep_dir = config.hydra.sweep.dir
        try:
            sweeper = config.hydra.sweeper
            optuna = str(sweeper.get("_target_", "")).startswith("hydra_plugins.netkiln_optuna_sweeper")
            if optuna and is_shared(sweeper):
                # A worker of a shared study takes no lock: it shares the folder with the study's other workers
                # and is refused beside a one-process sweep or another study's workers.
                claim_sweep_dir(sweep_dir, storage_url(sweeper, sweep_dir), str(sweeper.get("study_name")))
            else:
                acquire(sweep_dir, "sweep")
                if (Path(sweep_dir) / ".sweep.study").exists():
                    release(sweep_dir, "sweep")
                    raise NetkilnError("this folder belongs to the workers of a shared Optuna study (.sweep.study); "
                                       "a one-process sweep needs a hydra.sweep.dir of its own.",
                                       key="hydra.sweep.dir", file=str(sweep_dir))
            # A resumed Optuna study continues its own trials (optuna_search checks they are the study's).
            resuming = optuna and (bool(sweeper.get("resume")) or is_shared(sweeper))
            trials = [] if resuming else trial_folders(sweep_dir)
            if trials:
                release(sweep_dir, "sweep")
                shown = ", ".join(t.name for t in trials[:5]) + (", ..." if len(trials) > 5 else "")
                raise NetkilnError(f"this folder holds the trials of an earlier sweep ({shown}); a new sweep here "
                                   "would overwrite them and mix them into its leaderboard. Choose a new "
                                   "hydra.sweep.dir (an Optuna sweep continues with hydra.sweeper.resume=true).",
                                   key="hydra.sweep.dir", file=str(sweep_dir))
            from netkiln.training.tracking import start_sweep_run
            start_sweep_run(config)         # logger=mlflow: the sweep's parent run, recorded for the trials
        except NetkilnError as err:
            raise UserErrorAbort(err) from None

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        global last_leaderboard
        from netkiln.errors import NetkilnError
        from netkiln.sweep.leaderboard import print_leaderboard, write_leaderboard
        from netkiln.io.lock import release

        release(config.hydra.sweep.dir, "sweep")

        try:
            last_leaderboard = write_leaderboard(config.hydra.sweep.dir)
            from netkiln.sweep.refit import refit_best
            if refit_best(last_leaderboard.best):       # cv.refit=true: best/ becomes the refitted model
                last_leaderboard = write_leaderboard(config.hydra.sweep.dir)
        except NetkilnError as err:
            log.warning("no leaderboard: %s", err)
            return
        print_leaderboard(last_leaderboard)
        from netkiln.training.tracking import finish_sweep_run
        finish_sweep_run(config, last_leaderboard)     # logger=mlflow: the best bundle as the parent's artifact
