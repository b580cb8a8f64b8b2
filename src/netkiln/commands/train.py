"""`netkiln train`: train one model (or, with -m, one trial of a sweep) and return the monitored value."""
from __future__ import annotations

import logging
import math
import traceback
from pathlib import Path

from netkiln.commands.hydra_app import run_hydra

log = logging.getLogger("netkiln")


class _DropAdverts(logging.Filter):
    """Lightning logs an advert for a cloud logger at every fit; users asked for training output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


# One instance: addFilter ignores a filter already attached, so trials of an in-process sweep don't stack copies.
_ADVERT_FILTER = _DropAdverts()


def _quiet_lightning() -> None:
    import warnings

    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_ADVERT_FILTER)
    # Raised inside Lightning itself against newer torch; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _task(cfg) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from netkiln.io.files import write_json_atomic
    from netkiln.training.run import train

    _quiet_lightning()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            metrics = train(cfg, run_dir)
        except Exception as err:
            _record_failure(cfg, run_dir, err)
            raise
        _report(metrics, run_dir)
        return metrics["monitored"]
    # In a sweep, one failing trial must not end the sweep: record it and move on.
    from netkiln.sweep.pruning import TrialPruned, pruning_callbacks
    try:
        metrics = train(cfg, run_dir, extra_callbacks=pruning_callbacks(hydra_cfg))
    except TrialPruned as pruned:
        log.info("trial %s", pruned)
        write_json_atomic(run_dir / "metrics.json", {"status": "pruned", "monitored": pruned.value,
                                                     "epochs": pruned.epoch + 1, "error": str(pruned)})
        return math.nan
    except Exception as err:  # noqa: BLE001 - any failure is this trial's, the sweep goes on
        from netkiln.commands.hydra_app import _user_error_message
        message = _user_error_message(err) or f"{type(err).__name__}: {err}"
        log.error("trial failed: %s", message)
        (run_dir / "error.txt").write_text(traceback.format_exc())
        write_json_atomic(run_dir / "metrics.json", {"status": "failed", "error": message})
        return math.nan
    _report(metrics, run_dir)
    return metrics["monitored"]


def _record_failure(cfg, run_dir: Path, err: Exception) -> None:
    """A run that failed: train.log holds the error and metrics.json says `failed` (as a failed sweep trial's),
    except where metrics.json is another record: a resumed run's own, kept as it was."""
    import json
    import sys

    from netkiln.io.files import write_json_atomic
    from netkiln.commands.hydra_app import _user_error_message
    from netkiln.commands.run_dir import _secondary_rank

    message = _user_error_message(err)
    # To train.log only: the CLI prints the error line on the terminal itself.
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed: %s",
                            (message or f"{type(err).__name__}: {err}",), None if message else sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    metrics = run_dir / "metrics.json"
    try:
        earlier = json.loads(metrics.read_text()).get("status") if metrics.exists() else "failed"
    except (OSError, ValueError, AttributeError):
        earlier = None
    if cfg.get("resume") or earlier != "failed" or _secondary_rank():
        return
    try:
        write_json_atomic(metrics, {"status": "failed", "error": message or f"{type(err).__name__}: {err}"})
    except OSError:
        pass        # a full disk: the error line says so, and train.log holds it where it could be written


def _report(metrics: dict, run_dir: Path) -> None:
    test = ", ".join(f"{k}={v:.4f}" for k, v in metrics["test"].items())
    spread = ((metrics.get("cv") or {}).get("std") or {}).get("val") or {}     # cv.folds: the folds' mean ± std
    val = ", ".join(f"{k}={v:.4f}" + (f" ± {spread[k]:.4f}" if spread.get(k) is not None else "")
                    for k, v in metrics["val"].items() if v is not None)
    log.info("done in %.1fs, %d epoch%s; val: %s; test: %s", metrics["seconds"], metrics["epochs"],
             "" if metrics["epochs"] == 1 else "s", val,
             test or _no_test_reason(metrics))
    log.info("run directory: %s", run_dir)


def _no_test_reason(metrics: dict) -> str:
    cv = metrics.get("cv")
    if cv is None:
        return "(no test split)"
    if isinstance(cv.get("refit"), dict) and cv["refit"].get("status") == "pending":     # cv.refit in a sweep
        return "(untouched until the sweep ends: cv.refit retrains only the best trial, then tests it)"
    return "(untouched: cross-validation without cv.refit)"


# Exit code of a sweep that finished but had failed trials (they are in the leaderboard).
EXIT_TRIALS_FAILED = 3


def run(command: str, argv: list[str]) -> int:
    from netkiln.io.lock import release_all
    from netkiln.sweep import callback

    callback.last_leaderboard = None
    from netkiln.commands.hydra_app import EXIT_BAD_INPUT
    from netkiln.commands.resume import resume_argv
    from netkiln.errors import NetkilnError
    try:
        argv = resume_argv(argv)        # resume=true: the run's own saved overrides first
    except NetkilnError as err:
        import sys
        sys.stderr.write(f"netkiln {command}: error: {err}\n")
        return EXIT_BAD_INPUT
    try:
        code = run_hydra(command, argv, _task)
    finally:
        release_all()
    board = callback.last_leaderboard
    if code == 0 and board is not None and board.failed:
        log.error("%d of %d trials failed; see %s", board.failed, len(board.rows), board.sweep_dir / "leaderboard.md")
        return EXIT_TRIALS_FAILED
    return code
