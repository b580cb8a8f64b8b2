"""Optuna objects shared by the sweeper (main process) and the trials (which report for pruning)."""
from __future__ import annotations

from pathlib import Path

from netkiln.errors import NetkilnError, did_you_mean

PRUNERS = {"median": "MedianPruner", "percentile": "PercentilePruner", "hyperband": "HyperbandPruner",
           "threshold": "ThresholdPruner", "none": "NopPruner"}
SAMPLERS = ("auto", "tpe", "nsga2", "random", "grid")
_MEDIAN_DEFAULTS = {"n_startup_trials": 3, "n_warmup_steps": 2}


def storage_url(settings, sweep_dir: str | Path) -> str:
    return settings.get("storage") or f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def is_shared(settings) -> bool:
    """A storage given explicitly (a journal file or a database URL) may hold a study that several worker
    processes share; the default SQLite file in the sweep directory belongs to one sweep process."""
    return bool(settings.get("storage"))


def make_storage(url: str):
    import optuna

    if url.startswith("journal://"):
        # Optuna's journal file: an append-only log on a shared file system, no server needed.
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal://"):]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:"):
        # Parallel trials write to one SQLite file: wait for the lock instead of failing at once.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


def make_pruner(settings):
    import optuna

    name = str(settings.get("pruner") or "none")
    if name not in PRUNERS:
        raise NetkilnError(f"unknown pruner '{name}'; known: {', '.join(PRUNERS)}." + did_you_mean(name, PRUNERS),
                           key="hydra.sweeper.pruner")
    args = dict(settings.get("pruner_args") or {}) if name != "none" else {}
    if name == "median":
        args = {**_MEDIAN_DEFAULTS, **args}
    cls = getattr(optuna.pruners, PRUNERS[name])
    try:
        return cls(**args)
    except TypeError as err:
        raise NetkilnError(f"{cls.__name__} rejected pruner_args {args}: {err}",
                           key="hydra.sweeper.pruner_args") from None


def load_study(settings, sweep_dir: str | Path):
    import optuna

    return optuna.load_study(study_name=settings.get("study_name", "netkiln"),
                             storage=make_storage(storage_url(settings, sweep_dir)), pruner=make_pruner(settings))
