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
from contextlib import contextmanager
from pathlib import Path

from netkiln.errors import NetkilnError
from netkiln.io.files import write_json_atomic

log = logging.getLogger("netkiln")
# Hydra's job_logging format: what a trial's lines look like unless its config chose another.
_JOB_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


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
        with logged_as_the_trial(best.path):
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


def _job_logging(trial_dir: Path) -> tuple[str, Path | None]:
    """The format of the trial's log lines and its log file (None when it wrote none), from its .hydra/hydra.yaml."""
    from omegaconf import OmegaConf

    try:
        hydra = OmegaConf.to_container(OmegaConf.load(trial_dir / ".hydra" / "hydra.yaml").hydra, resolve=False)
        job_logging, job_name = hydra.get("job_logging") or {}, (hydra.get("job") or {}).get("name")
        handlers = job_logging.get("handlers") or {}
        on_root = [handlers.get(name) or {} for name in (job_logging.get("root") or {}).get("handlers") or []]
        formats = [(job_logging.get("formatters") or {}).get(h.get("formatter"), {}).get("format") for h in on_root]
        fmt = next((f for f in formats if isinstance(f, str)), _JOB_FORMAT)
        to_file = any(str(h.get("class", "")).endswith("FileHandler") for h in on_root)
    except Exception:  # noqa: BLE001 - a missing or odd hydra.yaml: Hydra's default look, no file
        return _JOB_FORMAT, None
    log_file = trial_dir / f"{job_name}.log" if to_file and isinstance(job_name, str) else None
    return fmt, log_file if log_file is not None and log_file.is_file() else None


@contextmanager
def logged_as_the_trial(trial_dir: Path):
    """Log as the trial did while the refit runs. It runs from Hydra's sweep callback, in the sweeping process, whose
    log handlers carry Hydra's own format ("[HYDRA] cv.refit: ..."): they take the trial's job format for the while,
    and the refit's lines are added to the trial's log file (train.log) beside its folds'."""
    fmt, log_file = _job_logging(Path(trial_dir))
    formatter = logging.Formatter(fmt)
    root = logging.getLogger()
    saved = [(handler, handler.formatter) for handler in root.handlers]
    for handler, _ in saved:
        handler.setFormatter(formatter)
    file_handler = None
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    try:
        yield
    finally:
        if file_handler is not None:
            root.removeHandler(file_handler)
            file_handler.close()
        for handler, previous in saved:
            handler.setFormatter(previous)
