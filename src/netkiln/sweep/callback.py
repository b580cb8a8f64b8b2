"""Hydra callback: at the end of every multirun, write and print the sweep's leaderboard."""
from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("netkiln")

# The last leaderboard built in this process: `netkiln train -m` reads it for its exit code.
last_leaderboard = None


class LeaderboardCallback(Callback):
    def on_multirun_start(self, config, **kwargs: Any) -> None:
        from netkiln.errors import NetkilnError, UserErrorAbort
        from netkiln.sweep.lock import acquire

        try:
            acquire(config.hydra.sweep.dir)
        except NetkilnError as err:
            raise UserErrorAbort(err) from None

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        global last_leaderboard
        from netkiln.errors import NetkilnError
        from netkiln.sweep.leaderboard import print_leaderboard, write_leaderboard
        from netkiln.sweep.lock import release

        release(config.hydra.sweep.dir)

        try:
            last_leaderboard = write_leaderboard(config.hydra.sweep.dir)
        except NetkilnError as err:
            log.warning("no leaderboard: %s", err)
            return
        print_leaderboard(last_leaderboard)
