"""The trials an Optuna sweep's storage knows that have no trial folder to read.

The leaderboard reads trial folders (.hydra/overrides.yaml, metrics.json). A worker killed between asking for a
trial and Hydra writing that trial's .hydra/ leaves a trial only the study knows; so do trials whose folder was
deleted. They are listed from the study: overrides from the trial's parameters (plus the overrides every listed trial
shares), status from its state: a failed trial that was retried is `retried`, one a stopped one-process sweep left
running `incomplete` (as its folder would show it), a running one whose worker stopped beating for longer than the
grace period `failed`, one still beating `running`. Trials that never ran (skipped in a race for the last place, or
queued retries not started yet) are not listed.

The study is found from the sweep folder alone: a shared study's `.sweep.study` (storage and study name), else the
sweep's multirun.yaml (hydra.sweeper.storage / study_name), else the default `optuna.db` in the folder.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("netkiln")


def study_location(sweep_dir: Path) -> tuple[str, str, dict] | None:
    """(storage url, study name, sweeper settings) of the sweep's Optuna study, or None where there is none."""
    from netkiln.sweep.objectives import sweep_settings

    settings = sweep_settings(sweep_dir)
    try:
        marker = json.loads((sweep_dir / ".sweep.study").read_text())
    except (OSError, ValueError):
        marker = None
    if isinstance(marker, dict) and isinstance(marker.get("storage"), str):
        url, name = marker["storage"], str(marker.get("study_name") or "netkiln")
    elif str(settings.get("_target_", "")).startswith("hydra_plugins.netkiln_optuna_sweeper") or \
            (sweep_dir / "optuna.db").is_file():
        url = settings.get("storage") or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        name = str(settings.get("study_name") or "netkiln")
    else:
        return None
    if not isinstance(url, str):
        return None
    # Never create a storage by looking: a file storage must exist already.
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix) and not Path(url[len(prefix):]).expanduser().is_file():
            return None
    return url, name, settings


def _study_trials(url: str, name: str) -> list:
    import optuna

    from netkiln.sweep.optuna_study import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url)
    if name not in optuna.study.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _folder_record(trial_dir: Path) -> dict | None:
    """The metrics.json a trial folder without .hydra/ may hold (a stale trial failed by another worker)."""
    try:
        record = json.loads((trial_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("status"), str) else None


def _status(trial, retried: set, grace: float, now: float) -> tuple[str, str]:
    from netkiln.sweep.optuna_workers import HEARTBEAT, WORKER

    state = trial.state.name
    worker = trial.user_attrs.get(WORKER, "?")
    if state == "FAIL" and trial.number in retried:
        return "retried", f"its worker ({worker}) stopped before the trial folder was written; its parameters ran " \
                          "again as a new trial"
    if state == "FAIL" and trial.user_attrs.get("interrupted"):     # as its folder would show it: no result
        return "incomplete", "the sweep was stopped before this trial wrote its folder"
    if state == "FAIL":
        return "failed", f"the trial failed before its folder was written (worker {worker})"
    if state == "PRUNED":
        return "pruned", "pruned (the study's record; no trial folder)"
    if state == "COMPLETE":
        return "damaged", f"the study holds its result {trial.values} but the sweep folder holds no trial folder"
    beat = trial.user_attrs.get(HEARTBEAT)
    last = float(beat) if isinstance(beat, (int, float)) else \
        (trial.datetime_start.timestamp() if trial.datetime_start else now)
    if now - last >= grace:
        return "failed", f"its worker ({worker}) stopped: no heartbeat for {now - last:.0f} s"
    return "running", f"running on worker {worker}"


def with_storage_trials(sweep_dir: Path, trials: list) -> list:
    """`trials` (read from the folders) and the trials only the sweep's study knows, in trial order."""
    from netkiln.sweep.leaderboard import Trial
    from netkiln.sweep.optuna_search import _format
    from netkiln.sweep.optuna_workers import RETRY_OF, SKIPPED

    location = study_location(Path(sweep_dir))
    if location is None:
        return trials
    url, name, settings = location
    try:
        known = _study_trials(url, name)
    except Exception as err:        # an unreachable database or a damaged file: the folders still make a board
        log.warning("the leaderboard lists the trial folders only: study '%s' in %s could not be read (%s: %s)",
                    name, url, type(err).__name__, err)
        return trials
    listed = {t.name for t in trials}
    retried = {t.user_attrs.get(RETRY_OF) for t in known if not t.user_attrs.get(SKIPPED)}    # queued ones too
    ran = [t for t in known if not t.user_attrs.get(SKIPPED) and t.state.name != "WAITING"]
    interval = float(settings.get("heartbeat_interval") or 60)
    grace, now = float(settings.get("grace_period") or 2 * interval), time.time()
    param_keys = {key for t in known for key in t.params}
    shared = set.intersection(*(set(t.overrides) for t in trials)) if trials else set()
    fixed = sorted(o for o in shared if o.partition("=")[0].lstrip("+~") not in param_keys)
    extra = []
    for trial in ran:
        if str(trial.number) in listed:
            continue
        folder = Path(sweep_dir) / str(trial.number)
        status, error = _status(trial, retried, grace, now)
        record = _folder_record(folder)
        if record is not None:                  # what the worker that failed it wrote there
            status, error = record["status"], str(record.get("error", error))
        overrides = fixed + [f"{key}={_format(value)}" for key, value in trial.params.items()]
        extra.append(Trial(str(trial.number), folder, overrides, status, {"error": error}))
    return sorted(trials + extra, key=lambda t: (len(t.name), t.name))
