"""Tracking: the `logger` config group (history.csv, TensorBoard, MLflow) and a sweep's MLflow parent run.

The loggers are Lightning's own (TensorBoardLogger, MLFlowLogger). Per-epoch metrics reach them from HistoryWriter
(training/callbacks.py) with the one host sync history.csv already pays, at step = epoch; `self.log` per step would
cost ~0.3 ms a key. At the end of a run they get its flattened config as hyperparameters, with the final metrics.

In a sweep with `logger=mlflow`, the sweep is one MLflow run and each trial a child run of it (tag
`mlflow.parentRunId`): the sweep callback starts the parent and records its id in `<sweep dir>/mlflow_parent.json`,
which the trials read; at the sweep's end the best trial's bundle is logged as the parent's artifact.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from netkiln.errors import NetkilnError, did_you_mean

log = logging.getLogger("netkiln")

# Each option of the `logger` group and the settings it takes (conf/logger/*.yaml).
_SETTINGS = {
    "csv": set(),                   # history.csv, always written: the run's own record
    "tensorboard": {"log_dir"},
    "mlflow": {"tracking_uri", "experiment_name", "run_name", "artifact_location"},
}
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
PARENT_FILE = "mlflow_parent.json"
_HIDDEN_OVERRIDES = ("hydra.", "+hydra.", "hydra/", "optuna_trial=")


def logger_settings(logger_cfg) -> dict[str, dict]:
    """{logger name: its settings} from the `logger` node, checked; a one-line error for an unknown name or setting,
    or a tracking package that is not installed."""
    from netkiln.config_values import to_container

    cfg = to_container(logger_cfg) or {}
    if not isinstance(cfg, dict):
        raise NetkilnError(f"pick loggers with logger=csv|tensorboard|mlflow or logger='[csv,tensorboard]', "
                           f"not {cfg!r}.", key="logger")
    for name, settings in cfg.items():
        if name not in _SETTINGS:
            raise NetkilnError(f"unknown logger '{name}'; use {', '.join(_SETTINGS)}." + did_you_mean(name, _SETTINGS),
                               key=f"logger.{name}")
        for arg in settings or {}:
            if arg not in _SETTINGS[name]:
                raise NetkilnError(f"logger '{name}' has no setting '{arg}'." + did_you_mean(arg, _SETTINGS[name]),
                                   key=f"logger.{name}.{arg}")
        package = _PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise NetkilnError(f"logger={name} needs {package}: pip install 'netkiln[tracking]'", key="logger")
    return {name: settings or {} for name, settings in cfg.items()}


def resolve_tracking_uri(uri: str) -> str:
    """A relative SQLite path is made absolute against the working directory now (trials of a sweep and the sweep
    itself then agree), and its folder is created."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix):])
    path = path if path.is_absolute() else (Path.cwd() / path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def _artifact_location(settings: dict, tracking_uri: str) -> str | None:
    """Artifacts of a new experiment: beside a SQLite store (mlartifacts/), not in the working directory's mlruns/."""
    if settings.get("artifact_location"):
        return settings["artifact_location"]
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def _hydra_runtime():
    """(overrides of this run, sweep dir or None); (None, None) outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None
    hydra_cfg = HydraConfig.get()
    overrides = [str(o) for o in hydra_cfg.overrides.task if not str(o).startswith(_HIDDEN_OVERRIDES)]
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    return overrides, sweep_dir


def _read_parent(sweep_dir: Path | None, tracking_uri: str) -> dict | None:
    if sweep_dir is None or not (sweep_dir / PARENT_FILE).is_file():
        return None
    parent = json.loads((sweep_dir / PARENT_FILE).read_text())
    return parent if parent.get("tracking_uri") == tracking_uri else None


def make_loggers(logger_cfg, run_dir: Path) -> list:
    """The Lightning loggers selected by the `logger` group (csv alone: none, history.csv is always written)."""
    settings = logger_settings(logger_cfg)
    loggers = []
    if "tensorboard" in settings:
        from pytorch_lightning.loggers import TensorBoardLogger
        log_dir = Path(settings["tensorboard"].get("log_dir") or run_dir / "tensorboard")
        # name="" and version="": events go straight into log_dir; hp_metric off, the final metrics are logged.
        loggers.append(TensorBoardLogger(save_dir=str(log_dir), name="", version="", default_hp_metric=False))
    if "mlflow" in settings:
        from pytorch_lightning.loggers import MLFlowLogger
        mlflow_cfg = settings["mlflow"]
        uri = resolve_tracking_uri(str(mlflow_cfg.get("tracking_uri") or "sqlite:///outputs/mlflow.db"))
        overrides, sweep_dir = _hydra_runtime()
        parent = _read_parent(sweep_dir, uri)
        tags = {"netkiln.run_dir": str(run_dir)}
        if parent:
            tags["mlflow.parentRunId"] = parent["run_id"]
        run_name = mlflow_cfg.get("run_name") or (f"{run_dir.name}: {' '.join(overrides)}" if parent
                                                  else run_dir.name)
        experiment = mlflow_cfg.get("experiment_name") or "netkiln"
        if parent:
            experiment = parent["experiment_name"]      # children live in their parent's experiment
        loggers.append(MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri, tags=tags,
                                    artifact_location=_artifact_location(mlflow_cfg, uri),
                                    # MLflow's own queue: a synchronous write to SQLite took 50+ ms an epoch here
                                    synchronous=False))
    if loggers:
        import warnings
        # Lightning warns when an epoch has fewer steps than log_every_n_steps; netkiln logs once an epoch.
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval")
    return loggers


def flat_params(cfg, overrides: list[str]) -> dict:
    """The run's config flattened to dotted keys (lists as text), and each override as `override.KEY`."""
    from netkiln.config_values import to_container

    flat: dict = {}

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, (int, float, str, bool)) else json.dumps(node)

    walk(to_container(cfg) or {}, "")
    for override in overrides:
        key, _, value = override.partition("=")
        flat["override." + key.lstrip("+~")] = value
    return flat


def log_run_end(loggers: list, cfg, metrics: dict) -> None:
    """Hyperparameters (the flattened config) with the final metrics; TensorBoard's HParams view compares trials
    by them. Final metrics are named final/<split>/<metric>, apart from the per-epoch curves."""
    if not loggers:
        return
    overrides, _ = _hydra_runtime()
    params = flat_params(cfg, overrides)
    final = {f"final/{split}/{name}": float(value) for split in ("val", "test")
             for name, value in (metrics.get(split) or {}).items() if isinstance(value, (int, float))}
    if metrics.get("monitored") is not None:
        final["final/monitored"] = float(metrics["monitored"])
    if any(type(logger).__name__ == "MLFlowLogger" for logger in loggers):
        import mlflow
        mlflow.flush_async_logging()        # the epochs' metrics are in the store before the run ends
    for logger in loggers:
        if type(logger).__name__ == "TensorBoardLogger":
            logger.log_hyperparams(params, final)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(final, step=metrics.get("epochs") or 0)
        logger.finalize("success")


# --- a sweep's parent run (called by sweep/callback.py) ---------------------------------------------------------
def _sweep_mlflow(config):
    """(mlflow settings, resolved tracking uri) when the sweep's config selects the mlflow logger, else None."""
    logger_cfg = config.get("logger")
    if not logger_cfg or "mlflow" not in logger_cfg:
        return None
    settings = logger_settings(logger_cfg)["mlflow"]
    return settings, resolve_tracking_uri(str(settings.get("tracking_uri") or "sqlite:///outputs/mlflow.db"))


def start_sweep_run(config) -> None:
    """Start the sweep's parent run (or find the one a resumed sweep started) and record it for the trials."""
    found = _sweep_mlflow(config)
    if found is None:
        return
    settings, uri = found
    sweep_dir = Path(config.hydra.sweep.dir)
    if _read_parent(sweep_dir, uri):
        return
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    name = settings.get("experiment_name") or "netkiln"
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, artifact_location=_artifact_location(settings, uri))
    run = client.create_run(experiment_id, run_name=settings.get("run_name") or f"sweep {sweep_dir}",
                            tags={"netkiln.sweep_dir": str(sweep_dir.resolve())})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    from netkiln.io.files import write_json_atomic
    write_json_atomic(sweep_dir / PARENT_FILE, {"run_id": run.info.run_id, "tracking_uri": uri,
                                                "experiment_name": name})
    log.info("MLflow: sweep run %s in experiment '%s' (%s)", run.info.run_id, name, uri)


def finish_sweep_run(config, board) -> None:
    """Log the leaderboard and the best trial's bundle as the parent run's artifacts, and end it."""
    found = _sweep_mlflow(config)
    parent = _read_parent(Path(config.hydra.sweep.dir), found[1]) if found else None
    if parent is None:
        return
    from mlflow.tracking import MlflowClient
    client = MlflowClient(parent["tracking_uri"])
    run_id = parent["run_id"]
    for name in ("leaderboard.csv", "leaderboard.md", "best.json"):
        if (board.sweep_dir / name).is_file():
            client.log_artifact(run_id, str(board.sweep_dir / name))
    if board.best is not None:
        bundle = board.best.path / "model"
        if bundle.is_dir():
            client.log_artifacts(run_id, str(bundle), artifact_path="best_model")
        client.set_tag(run_id, "netkiln.best_trial", board.best.name)
        if board.best.value is not None:
            client.log_metric(run_id, "best/monitored", float(board.best.value))
    client.set_terminated(run_id, "FINISHED")
