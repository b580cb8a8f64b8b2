"""Hydra callback of `netkiln train`: one process per run directory, and no new run replacing an earlier one.

Hydra calls on_run_start before it creates the run directory's `.hydra/` and `train.log`, so a refused run writes
nothing there.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


def _secondary_rank() -> bool:
    """A DDP rank other than 0 re-running the command line (Lightning's `ddp`, torchrun): rank 0 holds the lock
    and writes the run directory."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in ("LOCAL_RANK", "RANK"))


def earlier_run(run_dir: Path) -> str | None:
    """'a finished run' / 'an unfinished run' when the folder holds a training record, else None."""
    metrics = run_dir / "metrics.json"
    checkpoints = run_dir / "checkpoints"
    try:
        status = json.loads(metrics.read_text()).get("status") if metrics.exists() else None
    except (OSError, ValueError, AttributeError):
        status = "damaged"
    trained = (run_dir / "model").exists() or (checkpoints.is_dir() and any(checkpoints.iterdir()))
    # A cross-validation run keeps its checkpoints per fold (fold-K/checkpoints/) and writes the top-level
    # metrics.json only when every fold is done.
    trained = trained or any(run_dir.glob("fold-*/checkpoints/*")) or any(run_dir.glob("fold-*/metrics.json"))
    if not trained and status in (None, "failed"):
        return None         # empty, or a run that failed on bad input (.hydra/, train.log, a `failed` metrics.json)
    return "a finished run" if status == "ok" else "an unfinished run"


class RunDirCallback(Callback):
    def on_run_start(self, config, **kwargs: Any) -> None:
        from netkiln.io.lock import acquire, release
        from netkiln.errors import NetkilnError, UserErrorAbort

        if _secondary_rank():
            return
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        try:
            acquire(run_dir, "run")
            found = earlier_run(run_dir)
            if found and not config.get("resume"):
                release(run_dir, "run")
                raise NetkilnError(f"this folder holds {found} (metrics.json, checkpoints/ or model/); a new run "
                                   "here would replace its record. Choose a new hydra.run.dir, or add resume=true "
                                   "to continue that run.", key="hydra.run.dir", file=str(run_dir))
        except NetkilnError as err:
            raise UserErrorAbort(err) from None     # Hydra's callback runner only warns about an Exception

    def on_run_end(self, config, **kwargs: Any) -> None:
        from netkiln.io.lock import release

        release(Path(str(config.hydra.run.dir)).absolute(), "run")
