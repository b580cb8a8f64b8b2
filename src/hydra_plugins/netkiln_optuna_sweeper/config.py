"""The `hydra/sweeper=optuna` config node (kept import-light: Hydra imports it at every start).

No `from __future__ import annotations`: Hydra execs plugin modules outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.netkiln_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # Trials in all, counting those a resumed study already finished.
    n_trials: int = 20
    # Trials asked for at once and handed to the launcher as one batch (joblib runs them in parallel).
    n_jobs: int = 1
    # maximize | minimize | auto (from `mode` / `monitor` of the train config)
    direction: str = "auto"
    # Several objectives, "metric:direction", the first one primary: [val/acc:max, params:min] (metrics.json's names,
    # params, latency_ms, seconds; netkiln.sweep.objectives). Empty: the monitored metric, in `direction`.
    objectives: List[str] = field(default_factory=list)
    # Constraints on `best` (the top of the primary objective among the Pareto front of the trials that meet them).
    max_params: Optional[int] = None
    max_latency_ms: Optional[float] = None
    # auto (tpe; nsga2 for several objectives) | tpe | nsga2 | random | grid (grid: choice/range parameters only)
    sampler: str = "auto"
    seed: Optional[int] = None
    # median | percentile | hyperband | threshold | none; pruner_args go to its constructor
    # (add one with +hydra.sweeper.pruner_args.lower=0.5). The median pruner's defaults: 3 trials
    # before it prunes anything, 2 epochs of warm-up in each trial.
    pruner: str = "median"
    pruner_args: Dict[str, Any] = field(default_factory=dict)
    # default: sqlite:///<sweep dir>/optuna.db. Given explicitly (journal:///path/study.log or a database URL),
    # the study may be shared: every process started with the same storage, study_name and hydra.sweep.dir joins it
    # as a worker, and n_trials counts the trials of all workers.
    storage: Optional[str] = None
    study_name: str = "netkiln"
    # Shared study: a worker's running trials beat every heartbeat_interval seconds; one silent for grace_period
    # seconds (default 2 x heartbeat_interval) is failed and retried once by another worker.
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None
    # Continue the study stored in the sweep directory (pass the same hydra.sweep.dir).
    resume: bool = False
    # Search space in Hydra's override grammar, e.g. {optimizer.lr: "tag(log, interval(1e-4, 1e-1))"}
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="netkiln")
