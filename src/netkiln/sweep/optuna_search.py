"""An Optuna search driven through Hydra's launcher: ask a batch of trials, launch them, tell results.

Search spaces use Hydra's override grammar: `interval(a, b)` → float (int with `tag(int, ...)`),
`tag(log, interval(...))` → log scale, `choice(...)` or `a,b,c` → categorical, `range(a, b, step)` →
stepped ints/floats. The study lives in SQLite in the sweep directory, so a sweep resumes with
`hydra.sweeper.resume=true` and the same `hydra.sweep.dir`.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from omegaconf import OmegaConf

from netkiln.io.files import write_json_atomic, write_text_atomic
from netkiln.errors import NetkilnError
from netkiln.sweep.objectives import (objective_values, of_study, parse_constraints, prunable, remember,
                                      record_constraints, sampler_name, sweep_objectives_setting)
from netkiln.sweep.optuna_study import SAMPLERS, is_shared, make_pruner, make_storage, storage_url

log = logging.getLogger("netkiln")


def front_line(best_trials) -> str:
    """'Pareto front: trials 0, 3' with the same parameters proposed again counted once, as on the leaderboard."""
    distinct = []
    for trial in sorted(best_trials, key=lambda t: t.number):
        if all(trial.params != other.params for other in distinct):
            distinct.append(trial)
    repeats = len(best_trials) - len(distinct)
    return (f"Pareto front: trial{'s' * (len(distinct) != 1)} {', '.join(str(t.number) for t in distinct)}"
            + (f" ({repeats} later trial{'s' * (repeats != 1)} ran the same parameters)" if repeats else ""))


def _distribution(override):
    import optuna.distributions as d

    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    log_scale = "log" in tags
    if override.is_interval_sweep():
        if "int" in tags:
            return d.IntDistribution(int(sweep.start), int(sweep.end), log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(sweep.end), log=log_scale)
    if override.is_range_sweep():
        # Hydra's range(start, stop, step) is Python's: stop is left out, the last value is the last step below it.
        steps = math.ceil(round((sweep.stop - sweep.start) / sweep.step, 9))
        last = sweep.start + (steps - 1) * sweep.step
        if all(float(v).is_integer() for v in (sweep.start, sweep.stop, sweep.step)):
            return d.IntDistribution(int(sweep.start), int(last), step=int(sweep.step), log=log_scale)
        return d.FloatDistribution(float(sweep.start), float(last), step=float(sweep.step))
    return d.CategoricalDistribution(list(override.sweep_string_iterator()))


def split_search_space(overrides) -> tuple[dict, list[str]]:
    """(parameter name -> distribution, fixed overrides passed to every trial)."""
    space, fixed = {}, []
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def _direction(setting: str, config) -> str:
    if setting in ("maximize", "minimize"):
        return setting
    if setting != "auto":
        raise NetkilnError(f"direction must be maximize, minimize or auto, not '{setting}'.",
                           key="hydra.sweeper.direction")
    from netkiln.training.metrics import auto_monitor, monitor_mode

    mode, monitor = config.get("mode", "auto"), config.get("monitor", "auto")
    if mode not in ("min", "max"):
        if monitor == "auto":
            # monitor auto depends on the task (classification or regression), which only the data tells.
            from netkiln.data import load_dataset
            monitor = auto_monitor(load_dataset(config.data, seed=int(config.seed)).task)
        mode = monitor_mode(str(monitor))
    return "maximize" if mode == "max" else "minimize"


def _sampler(settings, space: dict, seed_offset: int = 0):
    import optuna

    name, seed = sampler_name(settings), settings.get("seed")
    if seed is not None:
        # A resumed study must not replay the samples it drew the first time.
        seed = int(seed) + seed_offset
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "grid":
        # The grid is enqueued by _enqueue_grid; this only draws parameters outside it (none).
        return optuna.samplers.RandomSampler(seed=seed)
    raise NetkilnError(f"unknown sampler '{name}'; known: {', '.join(SAMPLERS)}.", key="hydra.sweeper.sampler")


def _grid_points(space: dict) -> list[dict]:
    import itertools

    import optuna

    axes = {}
    for key, dist in space.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            axes[key] = list(dist.choices)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            axes[key] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise NetkilnError(f"the grid sampler needs choice or range values, but '{key}' is an interval.",
                               key="hydra.sweeper.sampler")
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def _enqueue_grid(study, space: dict) -> int:
    """Queue every grid point not tried yet (Optuna's GridSampler cannot stop an ask/tell loop)."""
    points = _grid_points(space)
    tried = [t.params for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    for point in points:
        if point not in tried:
            study.enqueue_trial(point, skip_if_exists=True)
    return len(points)


def _open_study(settings, sweep_dir: Path, directions: list[str], sampler):
    import optuna

    from netkiln.sweep.leaderboard import trial_folders

    url = storage_url(settings, sweep_dir)
    name = settings.get("study_name", "netkiln")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        _refuse_foreign_trials(trial_folders(sweep_dir), 0, name, sweep_dir)   # checked before the database exists
    storage = make_storage(url)
    exists = name in optuna.study.get_all_study_names(storage)
    if exists and not settings.get("resume") and not is_shared(settings):
        raise NetkilnError(f"study '{name}' already exists in {url}; pass hydra.sweeper.resume=true to continue "
                           "it, or choose another hydra.sweep.dir.", key="hydra.sweeper.resume")
    # Folders first, then the trials: another worker's trial gets its number before its folder.
    folders = trial_folders(sweep_dir)
    known = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)) if exists else 0
    _refuse_foreign_trials(folders, known, name, sweep_dir)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler,
                                pruner=make_pruner(settings), load_if_exists=True)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise NetkilnError(f"the stored study maximizes/minimizes differently ({', '.join(stored)}) "
                           f"from this sweep ({', '.join(directions)}).", key="hydra.sweeper.direction")
    return study


def _refuse_foreign_trials(folders: list[Path], known: int, name: str, sweep_dir: Path) -> None:
    """Trial N runs in <sweep dir>/N: folders beyond the study's trials belong to another sweep, and new
    trials would overwrite them."""
    foreign = [t.name for t in folders if t.name.isdigit() and int(t.name) >= known]
    if foreign:
        raise NetkilnError(f"this folder holds trials that are not in study '{name}' ({', '.join(foreign[:5])}), "
                           "left by another sweep; a resumed study would overwrite them. Choose a new "
                           "hydra.sweep.dir.", key="hydra.sweep.dir", file=str(sweep_dir))


def _counted(trial) -> bool:
    return trial.state.is_finished() and not trial.user_attrs.get("interrupted")


def _settle_unfinished(study, sweep_dir: Path) -> None:
    """Trials a killed sweep left RUNNING: one that wrote its metrics.json before the kill gets that result (so
    the study counts what the leaderboard shows); the others never will report: fail them, and don't count them."""
    from optuna.trial import TrialState

    from netkiln.compat import optuna_trial
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        recorded = recorded_outcome(sweep_dir / str(trial.number), of_study(study))
        if recorded is not None:
            state, value = recorded
            record_constraints(study, trial.number, sweep_dir / str(trial.number))
            study.tell(trial.number, value, state=None if value is not None else state, skip_if_finished=True)
            log.info("trial %d finished before the sweep stopped; its result is now in the study", trial.number)
            continue
        optuna_trial(study, trial.number).set_user_attr("interrupted", True)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        log.warning("trial %d was interrupted; marked failed, not counted", trial.number)


def recorded_outcome(trial_dir: Path, objectives=()):
    """(state, value) from a trial's metrics.json, the record the leaderboard reads too; None without one. With
    `objectives` (sweep/objectives.py) the value is the list of their values."""
    from optuna.trial import TrialState

    try:
        metrics = json.loads((trial_dir / "metrics.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return TrialState.FAIL, None
    status = metrics.get("status", "ok") if isinstance(metrics, dict) else "failed"
    if status == "pruned":
        return TrialState.PRUNED, None
    if objectives:
        values = objective_values(metrics, objectives) if status == "ok" else None
        return (TrialState.COMPLETE, values) if values is not None else (TrialState.FAIL, None)
    value = metrics.get("monitored") if status == "ok" else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return TrialState.FAIL, None
    return TrialState.COMPLETE, float(value)


def _outcome(result, objectives=()):
    """(state, value) of one finished job, from its metrics.json (the trial's own record): a job that wrote
    its result and then died still counts with it, and one that died without a result is recorded as failed
    on disk before the study is told."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    trial_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
    recorded = recorded_outcome(trial_dir, objectives)
    if recorded is not None:
        return recorded
    why = f"{type(result.return_value).__name__}: {result.return_value}" \
        if result.status == JobStatus.FAILED else "no metrics.json"
    if trial_dir.is_dir():
        write_json_atomic(trial_dir / "metrics.json",
                          {"status": "failed", "error": f"the trial ended without a result ({why})"})
    return TrialState.FAIL, None


def _format(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _launch(study, trials, fixed: list[str], launcher):
    """Run the trials as one launcher batch; trial N runs in <sweep dir>/N, whichever worker asked for it."""
    batch = [fixed + [f"{key}={_format(value)}" for key, value in t.params.items()]
             + [f"hydra.sweep.subdir={t.number}"] for t in trials]
    results = launcher.launch(batch, initial_job_idx=trials[0].number)
    objectives = of_study(study)
    for trial, result in zip(trials, results):
        state, value = _outcome(result, objectives)
        record_constraints(study, trial.number, Path(result.hydra_cfg.hydra.runtime.output_dir))
        study.tell(trial, value if value is not None else None, state=None if value is not None else state,
                   skip_if_finished=True)
    return results


def _run_alone(study, settings, space, fixed, launcher, sweep_dir: Path, n_trials: int, n_jobs: int) -> list:
    """The only process on this study (the sweep lock guarantees it)."""
    done = sum(1 for t in study.get_trials(deepcopy=False) if _counted(t))
    if done:
        log.info("resuming study '%s': %d of %d trials already finished", study.study_name, done, n_trials)
        study.sampler = _sampler(settings, space, seed_offset=len(study.get_trials(deepcopy=False)))
    returns = []
    while done < n_trials:
        trials = [study.ask(space) for _ in range(min(n_jobs, n_trials - done))]
        returns.append(_launch(study, trials, fixed, launcher))
        done += len(trials)
    return returns


def _run_worker(study, settings, space, fixed, launcher, sweep_dir: Path, n_trials: int, n_jobs: int) -> list:
    """One of several processes on a study in shared storage (see optuna_workers for the scheme)."""
    import os
    import time

    from optuna.trial import TrialState

    from netkiln.sweep import optuna_workers as workers

    interval = float(settings.get("heartbeat_interval") or 60)
    grace = float(settings.get("grace_period") or 2 * interval)
    # Workers with the same seed would draw the same parameters.
    study.sampler = _sampler(settings, space, seed_offset=len(study.get_trials(deepcopy=False)) + os.getpid())
    log.info("worker %s joins study '%s' (%d trials in all)", workers.worker_id(), study.study_name, n_trials)
    returns, open_states = [], (TrialState.RUNNING, TrialState.WAITING)
    while True:
        workers.settle_stale(study, sweep_dir, grace)
        counted = workers.counted_trials(study.get_trials(deepcopy=False))
        waiting = any(t.state == TrialState.WAITING for t in counted)
        if len(counted) >= n_trials and not waiting:
            if not any(t.state in open_states for t in counted):
                break
            time.sleep(interval)        # others' trials still run: stay to retry any whose worker stops
            continue
        trials = []
        for _ in range(max(1, min(n_jobs, n_trials - len(counted)))):
            trial = study.ask(space)
            if not workers.admitted(study, trial.number, n_trials):
                workers.skip(study, trial)
                break
            workers.claim(trial)
            trials.append(trial)
        if trials:
            with workers.Heartbeat(trials, interval):
                returns.append(_launch(study, trials, fixed, launcher))
    return returns


def run_search(settings, config, hydra_context, launcher, arguments: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    settings = OmegaConf.to_container(OmegaConf.create(dict(settings)), resolve=True)
    sweep_dir = Path(config.hydra.sweep.dir)

    parser = OverridesParser.create(config_loader=hydra_context.config_loader)
    params = [f"{key}={value}" for key, value in (settings.get("params") or {}).items()]
    space, fixed = split_search_space(parser.parse_overrides(params + list(arguments)))
    if not space:
        raise NetkilnError("nothing to search: give at least one parameter as a sweep, e.g. "
                           "'optimizer.lr=tag(log, interval(1e-4, 1e-1))' or model=mlp,cnn.",
                           key="hydra.sweeper.params")
    n_trials, n_jobs = int(settings.get("n_trials", 20)), int(settings.get("n_jobs", 1))
    if n_trials < 1 or n_jobs < 1:
        raise NetkilnError("n_trials and n_jobs must be positive.", key="hydra.sweeper.n_trials")

    objectives = sweep_objectives_setting(settings, config)
    directions = [o.direction for o in objectives] or [_direction(settings.get("direction", "auto"), config)]
    constraints = parse_constraints(settings)
    sweep_dir.mkdir(parents=True, exist_ok=True)      # only once the settings hold: a refused sweep leaves no folder
    study = _open_study(settings, sweep_dir, directions, _sampler(settings, space))
    remember(study, objectives, constraints)
    if not prunable(objectives, config) and str(settings.get("pruner") or "none") != "none":
        log.info("no pruning: Optuna prunes by one objective, the monitored metric, and this sweep has %s",
                 ", ".join(map(str, objectives)))
        fixed.append("hydra.sweeper.pruner=none")
    # After the checks: a refused sweep writes nothing. Atomic: the workers of a shared study all write it.
    write_text_atomic(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(config))
    if not is_shared(settings):
        _settle_unfinished(study, sweep_dir)
    if settings.get("sampler") == "grid":
        n_trials = min(n_trials, _enqueue_grid(study, space))
    if is_shared(settings):
        returns = _run_worker(study, settings, space, fixed, launcher, sweep_dir, n_trials, n_jobs)
    else:
        returns = _run_alone(study, settings, space, fixed, launcher, sweep_dir, n_trials, n_jobs)

    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if completed and len(directions) > 1:
        log.info("%s", front_line(study.best_trials))
    elif completed:
        best = study.best_trial
        log.info("best trial %d: value %.6g with %s", best.number, best.value, best.params)
    return returns
