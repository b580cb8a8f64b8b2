"""A sweep's objectives and constraints: `hydra.sweeper.objectives=[val/acc:max, params:min]`, `max_params`,
`max_latency_ms`.

An objective is "metric:direction": a metric as metrics.json names it (`val/acc`, `test/loss`, ...), or `params`
(the parameter count), `latency_ms` (prediction latency on the CPU, ms per row; training/latency.py) or `seconds`
(training time); the direction is max or min (left out: min for losses, errors and costs, max for scores). The first
objective is the primary one: the leaderboard ranks by it, and `best` is its top among the Pareto front. The sweeper
tells the study every objective's value, read from the trial's metrics.json (the leaderboard reads the same file).
Without `objectives` a sweep has one objective, the monitored metric, as before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from netkiln.errors import NetkilnError, did_you_mean

KEY = "hydra.sweeper.objectives"
COSTS = ("params", "latency_ms", "seconds")             # lower is better
SPLIT_METRICS = ("loss", "acc", "f1", "auroc", "mse", "mae", "r2")
KNOWN = [*(f"{split}/{name}" for split in ("val", "test") for name in SPLIT_METRICS), *COSTS]
_DIRECTIONS = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}
STUDY_ATTR = "objectives"                               # study user attr: the objectives it was created with
CONSTRAINTS_ATTR = "constraints"                        # study user attr: {"params": max_params, "latency_ms": ...}


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str                                           # max | min

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"

    @property
    def direction(self) -> str:                         # Optuna's word
        return "maximize" if self.mode == "max" else "minimize"


@dataclass(frozen=True)
class Constraints:
    max_params: float | None = None
    max_latency_ms: float | None = None

    def __bool__(self) -> bool:
        return bool(self.limits())

    def limits(self) -> dict[str, float]:
        """metric -> its upper limit, for the limits that are set."""
        return {name: limit for name, limit in (("params", self.max_params), ("latency_ms", self.max_latency_ms))
                if limit is not None}

    def violations(self, metrics: dict) -> list[str]:
        """What a trial's metrics break (an unknown value breaks the limit: nothing vouches for it)."""
        broken = []
        for name, limit in self.limits().items():
            value = metric_value(metrics, name)
            if value is None or value > limit:
                broken.append(f"{name} {'unknown' if value is None else f'{value:g}'} > {limit:g}")
        return broken

    def describe(self) -> str:
        return ", ".join(f"{name} <= {limit:g}" for name, limit in self.limits().items())


def parse_objectives(setting) -> list[Objective]:
    """The objectives of `hydra.sweeper.objectives` (a list of "metric:direction"); [] when not given."""
    if setting is None or setting == [] or setting == "":
        return []
    if isinstance(setting, str):
        setting = [setting]
    if not isinstance(setting, (list, tuple)):
        raise NetkilnError(f"objectives must be a list such as [val/acc:max, params:min], not {setting!r}.", key=KEY)
    objectives = []
    for entry in setting:
        metric, _, mode = (part.strip() for part in str(entry).partition(":"))
        if metric not in KNOWN:
            raise NetkilnError(f"unknown objective metric '{metric}'; known: {', '.join(KNOWN)}."
                               + did_you_mean(metric, KNOWN), key=KEY)
        mode = mode.lower()
        if mode and mode not in _DIRECTIONS:
            raise NetkilnError(f"objective '{entry}': the direction must be max or min, not '{mode}'.", key=KEY)
        objectives.append(Objective(metric, _DIRECTIONS[mode] if mode else _default_mode(metric)))
    if len({o.metric for o in objectives}) != len(objectives):
        raise NetkilnError(f"an objective is named twice in {[str(o) for o in objectives]}.", key=KEY)
    return objectives


def _default_mode(metric: str) -> str:
    from netkiln.training.metrics import monitor_mode

    return "min" if metric in COSTS else monitor_mode(metric)


def check_task(objectives: list[Objective], task) -> None:
    """Every split metric an objective names is one the task's runs record."""
    from netkiln.training.metrics import metric_names

    recorded = [f"{split}/{name}" for split in ("val", "test") for name in metric_names(task)]
    for objective in objectives:
        if objective.metric not in COSTS and objective.metric not in recorded:
            raise NetkilnError(f"a {task.kind} run records no '{objective.metric}'; it records "
                               f"{', '.join(recorded + list(COSTS))}." + did_you_mean(objective.metric, recorded),
                               key=KEY)


def parse_constraints(settings) -> Constraints:
    limits = {}
    for name in ("max_params", "max_latency_ms"):
        value = settings.get(name)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
            raise NetkilnError(f"{name} must be a positive number, not {value!r}.", key=f"hydra.sweeper.{name}")
        limits[name] = number
    return Constraints(**limits)


def metric_value(metrics: dict, metric: str) -> float | None:
    """The value of `metric` in a trial's metrics.json (a finite number), or None."""
    if metric == "params":
        part = metrics.get("params")
        value = part.get("total") if isinstance(part, dict) else None
    elif "/" in metric:
        split, name = metric.split("/", 1)
        part = metrics.get(split)
        value = part.get(name) if isinstance(part, dict) else None
    else:
        value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def objective_values(metrics: dict, objectives: list[Objective]) -> list[float] | None:
    """Every objective's value, or None when one is missing."""
    values = [metric_value(metrics, o.metric) for o in objectives]
    return None if any(v is None for v in values) else values


def sweep_settings(sweep_dir: str | Path) -> dict:
    """The sweeper settings a sweep ran with (its multirun.yaml), {} where there is none or it is unreadable."""
    import yaml

    from netkiln.safe_yaml import safe_load_file

    try:
        config = safe_load_file(Path(sweep_dir) / "multirun.yaml")
    except (OSError, yaml.YAMLError):
        return {}
    sweeper = ((config or {}).get("hydra") or {}).get("sweeper") if isinstance(config, dict) else None
    return sweeper if isinstance(sweeper, dict) else {}


def sweep_objectives(sweep_dir: str | Path) -> tuple[list[Objective], Constraints]:
    """The objectives and constraints recorded in a sweep's multirun.yaml; ([], no constraints) if none or unusable
    (the leaderboard of such a sweep ranks by the monitored metric)."""
    settings = sweep_settings(sweep_dir)
    try:
        return parse_objectives(settings.get("objectives")), parse_constraints(settings)
    except NetkilnError:
        return [], Constraints()


def sweep_objectives_setting(settings, config) -> list[Objective]:
    """The validated objectives of a sweep about to run ([] when not given); checked against the task's metrics."""
    objectives = parse_objectives(settings.get("objectives"))
    if not objectives:
        return []
    if settings.get("direction", "auto") != "auto":
        raise NetkilnError("with objectives, each one carries its direction (val/acc:max); leave "
                           "hydra.sweeper.direction at auto.", key=KEY)
    if any(o.metric not in COSTS for o in objectives):
        check_task(objectives, _task(config))
    return objectives


def _task(config):
    from netkiln.data import load_dataset

    return load_dataset(config.data, seed=int(config.seed)).task


def prunable(objectives: list[Objective], config) -> bool:
    """Whether the trials may report their monitored metric to a pruner: Optuna prunes single-objective studies
    only, and the pruner judges the reports by the study's direction, so the one objective must be the monitor."""
    if not objectives:
        return True
    if len(objectives) > 1 or objectives[0].metric in COSTS:
        return False
    from netkiln.training.metrics import auto_monitor, monitor_mode

    monitor = str(config.get("monitor", "auto"))
    if monitor == "auto":
        monitor = auto_monitor(_task(config))
    mode = config.get("mode", "auto")
    return objectives[0].metric == monitor and objectives[0].mode == (mode if mode in ("min", "max")
                                                                        else monitor_mode(monitor))


def remember(study, objectives: list[Objective], constraints: Constraints) -> None:
    """Record the objectives and constraints in the study; a resumed or shared study with other objectives is
    refused (constraints may change: they steer the search and pick `best`, and the newest ones apply)."""
    names = [str(o) for o in objectives]
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None and not study.get_trials(deepcopy=False):
        if names:
            study.set_user_attr(STUDY_ATTR, names)
    elif (stored or []) != names:
        default = "(the monitored metric)"
        raise NetkilnError(f"study '{study.study_name}' was created with objectives {stored or default}, this sweep "
                           f"asks for {names or default}; use the same objectives, or another hydra.sweep.dir or "
                           "study_name.", key=KEY)
    limits = constraints.limits()
    if limits != (study.user_attrs.get(CONSTRAINTS_ATTR) or {}):
        study.set_user_attr(CONSTRAINTS_ATTR, limits)


def of_study(study) -> list[Objective]:
    """The objectives a study was created with ([]: the monitored metric)."""
    return parse_objectives(study.user_attrs.get(STUDY_ATTR))


def sampler_name(settings) -> str:
    """`sampler: auto` is TPE for one objective and NSGA-II for several."""
    name = str(settings.get("sampler") or "auto")
    if name == "auto":
        return "nsga2" if len(parse_objectives(settings.get("objectives"))) > 1 else "tpe"
    return name


def record_constraints(study, trial_number: int, trial_dir: str | Path) -> None:
    """Give the study a finished trial's constraint values (Optuna's Trial.set_constraint: <= 0 where it meets the
    limit; the excess over it, relative to it; 1 when unknown), read from its metrics.json, before the study is told
    its result: TPE and NSGA-II then lean toward trials that meet max_params / max_latency_ms."""
    import json

    limits = study.user_attrs.get(CONSTRAINTS_ATTR)
    if not limits:
        return
    try:
        metrics = json.loads((Path(trial_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    metrics = metrics if isinstance(metrics, dict) else {}
    from netkiln.compat import optuna_trial

    trial = optuna_trial(study, trial_number)
    for name, limit in limits.items():
        value = metric_value(metrics, name)
        try:
            trial.set_constraint(name, 1.0 if value is None else (value - limit) / limit)
        except RuntimeError:        # told meanwhile (by another worker): its constraints are that worker's to set
            return


def monitored_objective(trials) -> list[Objective]:
    """[the monitored metric as an objective] for constraints on a sweep without `objectives`; [] if unknown."""
    for trial in trials:
        monitor, mode = trial.metrics.get("monitor"), trial.metrics.get("mode")
        if isinstance(monitor, str) and mode in ("max", "min"):
            return [Objective(monitor, mode)]
    return []
