"""`cv.refit=true` in a sweep: when it ends, the best trial's configuration is retrained on train + val.

Every trial only cross-validates (its folds' mean is the objective); the refit costs one training, for the trial the
leaderboard ranks first. It runs in the sweeping process, in that trial's folder (training/cross_validation.py's
`refit`: `refit/` holds its run, `model/` its bundle, which `best/` then points at), and adds the test metrics and
the refit's record to the trial's metrics.json. A trial refitted already (a resumed Optuna sweep) is not refitted
again; a refit that fails is recorded there and leaves the leaderboard as it was.
"""
from __future__ import annotations

import logging

from netkiln.errors import NetkilnError
from netkiln.io.files import write_json_atomic

log = logging.getLogger("netkiln")


def refit_best(best) -> bool:
    """Refit the sweep's best trial (a leaderboard Trial) when it asks for it; True when it was refitted."""
    cv = best.metrics.get("cv") if best is not None else None
    refit = cv.get("refit") if isinstance(cv, dict) else None
    if not isinstance(refit, dict) or refit.get("status") != "pending":
        return False
    from omegaconf import OmegaConf

    from netkiln.training.cross_validation import refit as refit_run

    log.info("cv.refit: retraining the best trial %s (%s) on train + val", best.name, " ".join(best.overrides))
    try:
        cfg = OmegaConf.load(best.path / ".hydra" / "config.yaml")     # the trial's composed config
        refit_run(cfg, best.path, best.metrics)
    except Exception as err:  # noqa: BLE001 - the sweep's results stand; the failed refit is recorded with them
        message = str(err) if isinstance(err, NetkilnError) else f"{type(err).__name__}: {err}"
        log.error("cv.refit of trial %s failed: %s", best.name, message)
        write_json_atomic(best.path / "metrics.json",
                          {**best.metrics, "cv": {**cv, "refit": {"status": "failed", "error": message}}})
    return True
