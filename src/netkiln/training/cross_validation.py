"""`netkiln train cv.folds=K`: k-fold cross-validation, a run of runs (issue #16).

Each fold trains as a normal run in `<run>/fold-k/` (summary.txt, history.csv, checkpoints/, metrics.json; no
bundle) on the data config with `data.split.fold` set (netkiln/data/folds.py: fold k of train + val validates, the
test split is untouched, the preparation is fitted on the fold's training rows). The run's own metrics.json holds the
folds' mean of every validation metric (`val`), their standard deviation (`cv.std`), each fold's figures
(`cv.per_fold`) and the mean monitored value as `monitored`, the objective a sweep reads. No test metrics: the test
split is touched once, by the refit.

`cv.refit=true`: after the folds, the same config trains on train + val (`data.split.fold: refit`, no validation
rows, no early stopping) for the folds' best epoch count, is evaluated on the test split, and its bundle becomes the
run's `model/`. In a sweep every trial only cross-validates; the best trial is refitted after the sweep
(sweep/refit.py). Without refit a cv run has no model/ (evaluate/predict/export say so).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from netkiln.config_values import is_int, to_container
from netkiln.errors import NetkilnError, did_you_mean
from netkiln.io.files import write_json_atomic

log = logging.getLogger("netkiln")

CV_KEYS = ("folds", "refit", "seed")
REFIT_DIR = "refit"


@dataclass(frozen=True)
class CvSettings:
    folds: int
    refit: bool
    seed: int


def cv_settings(cfg) -> CvSettings | None:
    """The checked `cv` node; None when cross-validation is off (`cv.folds=0`, the default)."""
    node = to_container(cfg.get("cv"))
    if node is None:
        return None
    if not isinstance(node, dict):
        raise NetkilnError(f"expected a mapping with keys {', '.join(CV_KEYS)}, not {node!r}.", key="cv")
    for key in node:
        if key not in CV_KEYS:
            raise NetkilnError(f"unknown key '{key}'.{did_you_mean(key, CV_KEYS)} Valid keys: {', '.join(CV_KEYS)}.",
                               key=f"cv.{key}")
    folds, refit, seed = node.get("folds", 0), node.get("refit", False), node.get("seed", cfg.get("seed", 0))
    if not is_int(folds) or folds < 0 or folds == 1:
        raise NetkilnError(f"must be 0 (no cross-validation) or a number of folds >= 2, not {folds!r}.",
                           key="cv.folds")
    if not isinstance(refit, bool):
        raise NetkilnError(f"must be true or false, not {refit!r}.", key="cv.refit")
    if not is_int(seed):
        raise NetkilnError(f"must be an integer, not {seed!r}.", key="cv.seed")
    if folds == 0:
        if refit:
            raise NetkilnError("cv.refit=true retrains after cross-validation; set cv.folds too (e.g. cv.folds=5).",
                               key="cv.refit")
        return None
    split = (to_container(cfg.data) or {}).get("split") or {}
    if isinstance(split, dict) and split.get("fold") is not None:
        raise NetkilnError("cv.folds sets each fold's data.split.fold itself; leave data.split.fold unset.",
                           key="data.split.fold")
    return CvSettings(folds, refit, seed)


def with_fold(cfg, fold):
    """A copy of the config whose data split is `fold` ({index, of, seed} or "refit")."""
    from omegaconf import open_dict

    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        if fold_cfg.data.get("split") is None:
            fold_cfg.data.split = {}
        fold_cfg.data.split.fold = fold
    return fold_cfg


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _finished(fold_dir: Path) -> dict | None:
    """A fold's metrics.json when it finished (resume=true skips it)."""
    try:
        metrics = json.loads((fold_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "ok" else None


def _run_fold(fold_cfg, fold_dir: Path, extra_callbacks, fold: int, folds: int) -> dict:
    from netkiln.training.run import build_trainer, finish, fit, set_up

    run = set_up(fold_cfg, fold_dir)
    module, trainer = build_trainer(run, extra_callbacks)
    # Pruning (sweep/pruning.py) reports fold k's epoch e at step k * max_epochs + e: another trial's value at the
    # same step is the same fold's, at the same epoch, so the pruner compares like with like.
    module.cv_step_offset = fold * int(run.trainer_kwargs.get("max_epochs") or 1000)
    log.info("cv: fold %d of %d in %s", fold + 1, folds, fold_dir)
    seconds = fit(run, module, trainer)
    return finish(run, module, trainer, seconds, splits=("val",), bundle=False)


def cross_validate(cfg, run_dir: Path, cv: CvSettings, *, extra_callbacks=()) -> dict:
    """Train one model per fold, write the run's metrics.json (mean, std, per fold), refit when asked."""
    from omegaconf import open_dict

    from netkiln.auto_model import record_picked_model

    records, fold_cfg = [], cfg
    for k in range(cv.folds):
        fold_dir = run_dir / f"fold-{k}"
        done = _finished(fold_dir) if cfg.get("resume") else None
        if done is not None:
            records.append(done)
            continue
        fold_cfg = with_fold(cfg, {"index": k, "of": cv.folds, "seed": cv.seed})
        resumable = (fold_dir / "checkpoints" / "last.ckpt").is_file()
        if not cfg.get("resume") and (resumable or (fold_dir / "metrics.json").exists()):
            raise NetkilnError(f"{fold_dir} holds a fold's run; continue it with resume=true or choose a new "
                               "hydra.run.dir.", key="hydra.run.dir")
        with open_dict(fold_cfg):
            fold_cfg.resume = bool(cfg.get("resume")) and resumable    # continue the fold a stop cut short
        new_dir = not fold_dir.exists()
        fold_dir.mkdir(parents=True, exist_ok=True)
        try:
            records.append(_run_fold(fold_cfg, fold_dir, extra_callbacks, k, cv.folds))
        except NetkilnError:
            if new_dir and not any(fold_dir.iterdir()):     # refused before the fold wrote anything: no trace
                fold_dir.rmdir()
            raise
    if fold_cfg is not cfg and cfg.model.get("description") != fold_cfg.model.get("description"):
        with open_dict(cfg):
            cfg.model = fold_cfg.model          # model=auto: the pick, recorded in the run's .hydra/config.yaml
        record_picked_model(cfg, run_dir)
    metrics = summarize(records, cv)
    log.info("cv: %s = %s over %d folds", metrics["monitor"], _mean_std(metrics["monitored"],
                                                                         metrics["cv"]["std"]["monitored"]), cv.folds)
    if cv.refit and _in_sweep():
        metrics["cv"]["refit"] = {"status": "pending"}        # the sweep refits its best trial when it ends
    write_json_atomic(run_dir / "metrics.json", metrics)
    if cv.refit and not _in_sweep():
        metrics = refit(cfg, run_dir, metrics)
    return metrics


def _mean_std(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def _mean(values: list):
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def _std(values: list):
    """The sample standard deviation (n - 1) of the folds' values: the spread of a fold's estimate."""
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.stdev(values) if len(values) > 1 else None


def summarize(records: list[dict], cv: CvSettings) -> dict:
    """The cv run's metrics.json from its folds' records."""
    first = records[0]
    names = list(first.get("val") or {})
    per_fold = [{"fold": k, "monitored": r.get("monitored"), "val": r.get("val"), "best_epoch": r.get("best_epoch"),
                 "epochs": r.get("epochs"), "seconds": r.get("seconds")} for k, r in enumerate(records)]
    column = {name: [(r.get("val") or {}).get(name) for r in records] for name in names}
    monitored = [r.get("monitored") for r in records]
    best_epochs = [r.get("best_epoch") for r in records]
    metrics = {
        "status": "ok",
        "monitor": first.get("monitor"),
        "mode": first.get("mode"),
        "monitored": _mean(monitored),          # the objective: the folds' mean (sweep/optuna_search reads it)
        "val": {name: _mean(values) for name, values in column.items()},
        "test": {},                             # touched only by the refit
        "epochs": sum(r.get("epochs") or 0 for r in records),
        "best_epoch": _mean(best_epochs),
        "steps": sum(r.get("steps") or 0 for r in records),
        "seconds": round(sum(r.get("seconds") or 0 for r in records), 3),
        "params": first.get("params"),
        "loss": first.get("loss"),
        "data": first.get("data"),
        "task": first.get("task"),
        "cv": {
            "folds": cv.folds, "seed": cv.seed, "refit": False,
            "std": {"monitored": _std(monitored), "val": {name: _std(values) for name, values in column.items()},
                    "best_epoch": _std(best_epochs)},
            "per_fold": per_fold,
        },
    }
    for key, value in first.items():       # what else a run records (latency_ms, target_scale, class_weight, ...)
        if key not in metrics:
            values = [r.get(key) for r in records]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            metrics[key] = _mean(values) if numeric else value       # a number: the folds' mean
    return metrics


def refit_epochs(metrics: dict) -> int:
    """The folds' best epoch count: the mean of their best epochs (0-based) + 1, rounded half up, at least 1."""
    best = [f.get("best_epoch") for f in metrics["cv"]["per_fold"] if is_int(f.get("best_epoch"))]
    if not best:
        raise NetkilnError("cv.refit=true needs the folds' best epochs, but no fold recorded one (no best "
                           "checkpoint: callbacks or a monitor without validation?).", key="cv.refit")
    return max(1, math.floor(statistics.fmean(best) + 1 + 0.5))


def refit(cfg, run_dir: Path, metrics: dict) -> dict:
    """Train cfg on train + val for the folds' best epoch count in <run>/refit/, evaluate it on the test split,
    move its bundle to <run>/model/ and record it in <run>/metrics.json (returned)."""
    from omegaconf import open_dict

    from netkiln.training.run import build_trainer, finish, fit, set_up

    epochs = refit_epochs(metrics)
    refit_cfg = with_fold(cfg, "refit")
    with open_dict(refit_cfg):
        refit_cfg.trainer.max_epochs = epochs
        refit_cfg.monitor, refit_cfg.mode = "train/loss", "min"    # no validation rows: nothing else to watch
        if refit_cfg.get("callbacks") is not None:
            refit_cfg.callbacks.early_stopping = None
        refit_cfg.resume = False
    refit_dir = run_dir / REFIT_DIR
    if refit_dir.exists():          # an earlier refit that did not finish (this one replaces it whole)
        shutil.rmtree(refit_dir)
    refit_dir.mkdir(parents=True)
    log.info("cv.refit: training on train + val for %d epochs (the folds' best epoch count) in %s", epochs, refit_dir)
    run = set_up(refit_cfg, refit_dir)
    module, trainer = build_trainer(run)
    seconds = fit(run, module, trainer)
    result = finish(run, module, trainer, seconds, splits=("test",), restore_best=False)
    if trainer.global_rank != 0:
        return metrics
    bundle = run_dir / "model"
    if bundle.exists():
        shutil.rmtree(bundle)
    os.replace(refit_dir / "model", bundle)       # the run's model: evaluate, predict and export use it
    metrics = {**metrics, "test": result["test"],
               "cv": {**metrics["cv"], "refit": {"status": "ok", "epochs": epochs, "rows": len(run.dataset.x_train),
                                                  "seconds": result["seconds"], "test": result["test"],
                                                  "path": REFIT_DIR}}}
    write_json_atomic(run_dir / "metrics.json", metrics)
    test = ", ".join(f"{k}={v:.4f}" for k, v in result["test"].items())
    log.info("cv.refit: %d epochs on %d rows; test: %s; bundle in %s", epochs, len(run.dataset.x_train),
             test or "(no test split)", bundle)
    return metrics
