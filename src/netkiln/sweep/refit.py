"""`cv.refit=true` in a sweep: when it ends, the best trial's configuration is retrained on train + val.

Every trial only cross-validates (its folds' mean is the objective); the refit costs one training, for the trial the
leaderboard ranks first. It runs in the sweeping process, in that trial's folder (training/cross_validation.py's
`refit`: `refit/` holds its run, `model/` its bundle, which `best/` then points at), and adds the test metrics and
the refit's record to the trial's metrics.json. A trial refitted already (a resumed Optuna sweep) is not refitted
again; a refit that fails is recorded there and leaves the leaderboard as it was.
"""
from __future__ import annotations

import json
import logging

from netkiln.errors import NetkilnError
from netkiln.io.files import write_json_atomic

log = logging.getLogger("netkiln")


def refit_best(best) -> bool:
    """Refit the sweep's best trial (a leaderboard Trial) when it asks for it; True when its record changed."""
    if not _pending(best.metrics if best is not None else {}):
        return False
    from netkiln.io.lock import acquire, release

    try:
        acquire(best.path, "run")   # the workers of a shared study each end here: one of them refits
    except NetkilnError:
        log.info("cv.refit: another process is refitting trial %s", best.name)
        return False
    try:
        metrics = json.loads((best.path / "metrics.json").read_text())     # as now: a worker may have refitted it
        if not _pending(metrics):
            return False
        _refit(best, metrics)
        return True
    finally:
        release(best.path, "run")


def _pending(metrics: dict) -> bool:
    cv = metrics.get("cv") if isinstance(metrics, dict) else None
    refit = cv.get("refit") if isinstance(cv, dict) else None
    return isinstance(refit, dict) and refit.get("status") == "pending"


def _refit(best, metrics: dict) -> None:
    from omegaconf import OmegaConf

    from netkiln.training.cross_validation import refit

    log.info("cv.refit: retraining the best trial %s (%s) on train + val", best.name, " ".join(best.overrides))
    try:
        cfg = OmegaConf.load(best.path / ".hydra" / "config.yaml")     # the trial's composed config
        refit(cfg, best.path, metrics)
    except Exception as err:  # noqa: BLE001 - the sweep's results stand; the failed refit is recorded with them
        message = str(err) if isinstance(err, NetkilnError) else f"{type(err).__name__}: {err}"
        log.error("cv.refit of trial %s failed: %s", best.name, message)
        write_json_atomic(best.path / "metrics.json",
                          {**metrics, "cv": {**metrics["cv"], "refit": {"status": "failed", "error": message}}})
