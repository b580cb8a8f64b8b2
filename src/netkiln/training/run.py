"""`netkiln train`: compose → build data → compile model → fit → evaluate → write the run directory."""
from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netkiln import launch
from netkiln.config_values import positive_int
from netkiln.errors import NetkilnError, did_you_mean
from netkiln.io.files import write_json_atomic, write_text_atomic

log = logging.getLogger("netkiln")


def _clip_value(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise NetkilnError(f"must be a number >= 0 (or null for no clipping), not {value!r}.",
                           key="gradient_clip_val")
    return float(value)


_COMPILE_ARGS = ("mode", "backend", "fullgraph", "dynamic", "options")


def _compile_args(value) -> dict | None:
    """`compile`: false, true, or a mapping of torch.compile's arguments."""
    from netkiln.config_values import to_container

    value = to_container(value)
    if value is False or value is None:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        for key in value:
            if key not in _COMPILE_ARGS:
                raise NetkilnError(f"torch.compile has no argument '{key}'; use {', '.join(_COMPILE_ARGS)}."
                                   + did_you_mean(key, _COMPILE_ARGS), key=f"compile.{key}")
        return value
    raise NetkilnError(f"must be true, false or a mapping of torch.compile arguments, not {value!r}.", key="compile")


def _validates_once_per_epoch(trainer_kwargs: dict) -> bool:
    """The trainer's validation schedule is Lightning's default: every batch, once at each epoch's end."""
    defaults = {"val_check_interval": (None, 1.0), "check_val_every_n_epoch": (1,), "limit_val_batches": (None, 1.0)}
    return all(trainer_kwargs.get(key, allowed[0]) in allowed for key, allowed in defaults.items())


def _record_interrupt(run_dir: Path, trainer, monitor: str, mode: str, seconds: float) -> None:
    """metrics.json for a run stopped with Ctrl-C: how far it got and how to continue."""
    last = run_dir / "checkpoints" / "last.ckpt"
    # The run's saved config supplies the rest (commands/resume.py); quoted so a shell takes the path whole.
    resume = f"netkiln train resume=true {shlex.quote(f'hydra.run.dir={run_dir}')}"
    saved = getattr(trainer.checkpoint_callback, "last_saved_epoch", None)
    write_json_atomic(run_dir / "metrics.json", {
        "status": "interrupted", "monitor": monitor, "mode": mode, "epochs": trainer.current_epoch,
        "steps": trainer.global_step, "seconds": round(seconds, 3),
        "checkpoint": str(last) if last.exists() else None, "checkpoint_epoch": saved,
        "resume": resume if last.exists() else None})
    if last.exists():
        # Checkpoints are written at most every few seconds: last.ckpt can be a few epochs behind.
        held = f"epoch {saved}" if saved is not None else "a finished epoch"
        log.warning("interrupted in epoch %d: checkpoints/last.ckpt holds %s; continue with: %s",
                    trainer.current_epoch, held, resume)
    else:
        log.warning("interrupted before the first epoch finished: there is no checkpoint to resume from")


def _bring_back_progress(trainer) -> None:
    """Under ddp_spawn, hand the trained epochs, steps and best score back to this (the main) process."""
    from netkiln.compat import replace_spawn_launcher
    from netkiln.training.ddp_spawn_launcher import SpawnLauncher
    replace_spawn_launcher(trainer, SpawnLauncher)


def train(cfg, run_dir: Path, *, extra_callbacks=()) -> dict:
    """Train the configured model; return the metrics written to `metrics.json`.

    `extra_callbacks` are added to the Trainer's (benchmarks/bench_training.py times epochs with one).
    Four steps, each checked before the next starts: set up (settings, data, model), build the Lightning module and
    Trainer, fit, finish (best weights, evaluation, the run directory).
    """
    from netkiln.training.cross_validation import cross_validate, cv_settings
    cv = cv_settings(cfg)
    if cv is not None:              # cv.folds=K: a run of runs, one per fold (training/cross_validation.py)
        return cross_validate(cfg, run_dir, cv, extra_callbacks=extra_callbacks)
    run = set_up(cfg, run_dir)
    module, trainer = build_trainer(run, extra_callbacks)
    seconds = fit(run, module, trainer)
    return finish(run, module, trainer, seconds)


@dataclass
class RunSetup:
    """What `set_up` checked and built: the settings, the data and the network of one training run."""
    cfg: Any
    run_dir: Path
    seed: int
    batch_size: int
    chunk: int                      # steps_per_execution
    clip: float | None
    compile_args: dict | None
    cuda_graphs: bool
    trainer_kwargs: dict
    loggers: list
    user_callbacks: list
    data_files: Any
    dataset: Any
    network: Any
    loss_name: str
    loss_fn: Any
    target_scale: Any
    monitor: str
    mode: str
    has_val: bool
    ckpt_path: str | None           # resume=true: the last.ckpt to continue from


def set_up(cfg, run_dir: Path) -> RunSetup:
    """Check the settings, build the data and the network (init_from/freeze applied) and write summary.txt; every
    config error surfaces here, before Lightning starts."""
    import pytorch_lightning as pl

    from netkiln.auto_model import record_picked_model
    from netkiln.compiler import summary_table
    from netkiln.data.fingerprint import pin_data_files
    from netkiln.data.target_scale import TargetScale
    from netkiln.data_and_model import build_data_and_model, seed_of
    from netkiln.interpolation import refuse_env_values
    from netkiln.training.finetune import apply_finetune, use_bundle_config
    from netkiln.training.losses import make_loss
    from netkiln.training.metrics import resolve_monitor
    from netkiln.training.threads import set_threads
    from netkiln.training.tracking import make_loggers
    from netkiln.training.trainer_settings import make_extra_callbacks, trainer_kwargs

    seed = seed_of(cfg)
    refuse_env_values(cfg)         # the bundle records model/data/loss resolved: no environment value may be in them
    batch_size = positive_int(cfg.batch_size, "batch_size")
    chunk = positive_int(cfg.steps_per_execution, "steps_per_execution")
    clip = _clip_value(cfg.get("gradient_clip_val"))
    compile_args = _compile_args(cfg.get("compile", False))
    cuda_graphs = cfg.get("cuda_graphs", False)
    if not isinstance(cuda_graphs, bool):
        raise NetkilnError(f"must be true or false, not {cuda_graphs!r}.", key="cuda_graphs")
    kwargs = trainer_kwargs(cfg.trainer)
    loggers = make_loggers(cfg.get("logger"), run_dir)     # before the data: a missing package is a config error
    user_callbacks = make_extra_callbacks((cfg.get("callbacks") or {}).get("extra"), has_logger=bool(loggers),
                                          allow_targets=bool(cfg.get("allow_targets", False)))
    pl.seed_everything(seed, workers=True, verbose=False)

    from_bundle = use_bundle_config(cfg)     # init_from=RUN: the bundle's model and data unless others are named
    data_files = pin_data_files(cfg.data)     # absolute paths and fingerprints of the files about to be read
    dataset, network = build_data_and_model(cfg, training=True)
    example = dataset.floats(dataset.x_train[:1])        # a row as the network sees it (uint8 pixels scaled)
    set_threads(cfg.get("threads"), network, example, batch_size)    # `auto`: from the model's size
    record_picked_model(cfg, run_dir, changed=bool(from_bundle))       # model=auto: .hydra/config.yaml shows the layers used
    task = dataset.task
    loss_name, loss_fn = make_loss(cfg.loss, task, train_targets=dataset.y_train)
    target_scale = TargetScale.of(dataset.preprocessing)       # regression: trained on the scaled target
    monitor, mode = resolve_monitor(cfg.monitor, cfg.mode, task)
    has_val = len(dataset.x_val) > 0 and kwargs.get("limit_val_batches", None) not in (0, 0.0)
    if monitor.startswith("val/") and not has_val:
        raise NetkilnError(f"'{monitor}' needs validation, but the validation split is empty or "
                           "trainer.limit_val_batches is 0; set data.split.val > 0 or monitor=train/loss.",
                           key="monitor")
    log.info("%s", dataset.describe())
    if dataset.streamed is not None:        # a streamed table: the budget must hold at least one batch
        from netkiln.training.streaming_batches import check_batch_fits, row_bytes
        check_batch_fits(dataset.source_info["streaming"]["budget_bytes"], batch_size, row_bytes(dataset))

    ckpt_path = _resume_checkpoint(run_dir) if cfg.resume else None

    apply_finetune(cfg, network)            # init_from=RUN, freeze=[...]: before the summary shows frozen params
    summary = summary_table(network)
    if not (cfg.resume and (run_dir / "summary.txt").exists()):     # a resume keeps the run's record
        write_text_atomic(run_dir / "summary.txt", summary + "\n")
    return RunSetup(cfg=cfg, run_dir=run_dir, seed=seed, batch_size=batch_size, chunk=chunk, clip=clip,
                    compile_args=compile_args, cuda_graphs=cuda_graphs, trainer_kwargs=kwargs, loggers=loggers, user_callbacks=user_callbacks,
                    data_files=data_files, dataset=dataset, network=network, loss_name=loss_name, loss_fn=loss_fn,
                    target_scale=target_scale, monitor=monitor, mode=mode, has_val=has_val, ckpt_path=ckpt_path)


def _resume_checkpoint(run_dir: Path) -> str:
    """resume=true: the run's last.ckpt (temporary files of a killed write removed)."""
    checkpoint_dir = run_dir / "checkpoints"
    last = checkpoint_dir / "last.ckpt"
    # last.ckpt holds the full training state of a finished epoch; best.ckpt only weights (see RunCheckpoints).
    if not last.is_file():
        hint = (" (best.ckpt holds the best weights only, not a training state to continue)"
                if (checkpoint_dir / "best.ckpt").is_file() else "")
        raise NetkilnError(f"resume=true but there is no checkpoint at {last}{hint}; point hydra.run.dir at the "
                           "run to continue.", key="resume")
    # A write killed half-way leaves its temporary file (never a torn file under a final name): drop them.
    for stale in [*run_dir.glob(".*.tmp"), *checkpoint_dir.glob(".*.tmp")]:
        stale.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted write", stale)
    return str(last)


def build_trainer(run: RunSetup, extra_callbacks=()):
    """The Lightning module (optimizer and scheduler built once, so their config errors surface now) and the
    Trainer with netkiln's callbacks, the user's and `extra_callbacks`."""
    import pytorch_lightning as pl

    from netkiln.data.augment import training_inputs
    from netkiln.data.image_stream import ImageRows
    from netkiln.training.batches import EvalBatches, TrainChunks
    from netkiln.training.callbacks import progress_bar_callbacks
    from netkiln.training.checkpoints import AtomicCheckpointIO
    from netkiln.training.metrics import logged_metrics
    from netkiln.training.module import NetkilnModule
    from netkiln.training.trainer_settings import fast_path_hooks, make_callbacks

    cfg, dataset, kwargs, target_scale, chunk = run.cfg, run.dataset, run.trainer_kwargs, run.target_scale, run.chunk
    hooked = fast_path_hooks(run.user_callbacks)
    if hooked:
        # Lightning calls these per batch, per optimizer step, per validation epoch; the fast path would not.
        log.info("callbacks.extra override %s: steps_per_execution=1, Lightning's optimizer step and validation "
                 "loop for this run", ", ".join(hooked))
        chunk = 1
    module = NetkilnModule(
        run.network, dataset.task, run.loss_fn, optimizer_cfg=cfg.optimizer, scheduler_cfg=cfg.get("scheduler"),
        train_batches=TrainChunks(dataset.x_train, dataset.y_train if target_scale is None
                                  else target_scale.scale(dataset.y_train), run.batch_size, chunk, run.seed,
                                  inputs=training_inputs(dataset, run.seed)),
        val_batches=EvalBatches(dataset.x_val, dataset.y_val, max(1024, run.batch_size),
                                inputs=dataset.pixels) if run.has_val else None,
        batch_size=run.batch_size, max_epochs=int(kwargs.get("max_epochs") or 1000),
        max_steps=int(kwargs.get("max_steps") or -1), mode=run.mode, monitor=run.monitor,
        gradient_clip_val=run.clip, allow_targets=bool(cfg.get("allow_targets", False)),
        fused_validation=_validates_once_per_epoch(kwargs) and not hooked, compile_args=run.compile_args,
        target_scale=target_scale, per_step_hooks=bool(hooked), cuda_graphs=run.cuda_graphs)
    if dataset.streamed is not None:
        # A streamed table: batches read from its prepared files within data.memory_budget (the same fast loop).
        from netkiln.training.streaming_batches import streamed_batches
        module.train_batches, module.val_batches = streamed_batches(dataset, module.train_batches, module.val_batches)
    elif isinstance(dataset.x_train, ImageRows):
        # A streamed image folder: batches decoded by DataLoader workers (the same fast loop).
        from netkiln.training.image_batches import streamed_image_batches
        module.train_batches, module.val_batches = streamed_image_batches(dataset, module.train_batches,
                                                                          module.val_batches)
    # Build optimizer and scheduler once now, so their config errors surface before Lightning starts.
    module.configure_optimizers()

    if module.fused_validation:
        # The module validates inside its last training step and hands Lightning's loop no batches.
        warnings.filterwarnings("ignore", message="Total length of `list` across ranks is zero")
    callbacks = make_callbacks(cfg.get("callbacks"), run_dir=run.run_dir, monitor=run.monitor, mode=run.mode,
                               history_metrics=logged_metrics(dataset.task)) + progress_bar_callbacks(kwargs) \
        + list(extra_callbacks) + run.user_callbacks
    from pytorch_lightning.utilities.exceptions import MisconfigurationException   # an Exception, not a ValueError
    try:
        trainer = pl.Trainer(**kwargs, callbacks=callbacks, logger=run.loggers or False,
                             default_root_dir=str(run.run_dir), plugins=[AtomicCheckpointIO()])
    except (ValueError, TypeError, MisconfigurationException, ImportError) as err:   # tpu: torch_xla not installed
        raise NetkilnError(f"the Trainer rejected the settings: {err}{_accelerator_hint(kwargs)}",
                           key="trainer") from None
    _bring_back_progress(trainer)
    return module, trainer


def _accelerator_hint(trainer_kwargs: dict) -> str:
    """trainer=gpu on a machine where torch sees no CUDA GPU: say which setting asked for one."""
    import torch

    if str(trainer_kwargs.get("accelerator")) not in ("gpu", "cuda") or torch.cuda.is_available():
        return ""
    return (f" (trainer.accelerator={trainer_kwargs['accelerator']}, but torch sees no CUDA GPU here; trainer=default "
            "takes the GPU when there is one, trainer=cpu the CPU)")


def fit(run: RunSetup, module, trainer) -> float:
    """trainer.fit, from last.ckpt under resume=true; Ctrl-C is recorded in metrics.json and re-raised as
    KeyboardInterrupt. Returns the seconds fit took."""
    started = time.perf_counter()
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    saved_argv = sys.argv
    if launch.ARGV is not None:
        sys.argv = launch.ARGV      # hydra_app rewrote it for Hydra; `ddp` re-runs it for the other ranks
    try:
        trainer.fit(module, ckpt_path=run.ckpt_path)
    except SystemExit:
        # Lightning catches Ctrl-C inside fit: it runs the callbacks' on_exception and its teardown (pending
        # checkpoint and history writes are finished there), then calls exit(1). Record it; exit 130.
        if not trainer.interrupted:
            raise
        _record_interrupt(run.run_dir, trainer, run.monitor, run.mode, time.perf_counter() - started)
        raise KeyboardInterrupt from None
    finally:
        sys.argv = saved_argv
        for batches in (module.train_batches, module.val_batches):     # a streamed image folder's workers
            if hasattr(batches, "close"):
                batches.close()
        if main_thread and sigint is not None:
            signal.signal(signal.SIGINT, sigint)        # Lightning leaves Ctrl-C ignored after handling one
    return time.perf_counter() - started


def finish(run: RunSetup, module, trainer, seconds: float, *, splits=("val", "test"), bundle: bool = True,
           restore_best: bool = True) -> dict:
    """Restore the best weights, evaluate them on val and test, and (rank 0) write the bundle, then metrics.json:
    the run's last file. Returns the metrics.

    Cross-validation's runs: a fold evaluates only `splits=("val",)` (the test split is the refit's) and writes no
    bundle; the refit keeps its last epoch's weights (`restore_best=False`: it has no validation rows)."""
    from netkiln.compiler import count_params
    from netkiln.training.evaluate import evaluate_split
    from netkiln.training.latency import latency_batch, latency_ms_per_row
    from netkiln.training.losses import resolved_loss_config
    from netkiln.training.tracking import log_run_end

    cfg, dataset, network, monitor, mode = run.cfg, run.dataset, run.network, run.monitor, run.mode
    task = dataset.task
    best_path = run.run_dir / "checkpoints" / "best.ckpt"
    best_epoch = None
    if best_path.exists() and restore_best:
        from netkiln.training.checkpoints import load_checkpoint_file
        best = load_checkpoint_file(best_path)
        module.load_state_dict(best["state_dict"])
        best_epoch = best.get("epoch")
        from netkiln.training.selection import tie_breaker_for
        tie_key = tie_breaker_for(monitor)
        log.info("restored the weights of epoch %s, the best by %s (%s); ties go to %sthe later epoch", best_epoch,
                 monitor, mode, f"the lower {tie_key}, then " if tie_key else "")
    network.cpu()
    evaluations = {split: evaluate_split(network, task, run.loss_fn, getattr(dataset, f"x_{split}"),
                                         getattr(dataset, f"y_{split}"), target_scale=run.target_scale,
                                         inputs=dataset.pixels)
                   if split in splits else {} for split in ("val", "test")}
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    split, name = monitor.split("/", 1)
    monitored = evaluations.get(split, {}).get(name, float(best_score) if best_score is not None else None)
    metrics = {
        "status": "ok",
        "monitor": monitor,
        "mode": mode,
        "monitored": monitored,
        "val": evaluations["val"],
        "test": evaluations["test"],
        "epochs": trainer.current_epoch,
        "best_epoch": best_epoch,
        "steps": trainer.global_step,
        "seconds": round(seconds, 3),
        "params": count_params(network),
        "loss": run.loss_name,
        "data": dataset.name,
        "task": task.to_dict(),
    }
    # The run record says how the loss was computed: on the scaled target; with these class weights.
    if run.target_scale is not None:
        metrics["target_scale"] = run.target_scale.stats["method"]
    loss_record = resolved_loss_config(cfg.loss, task, dataset.y_train)
    if loss_record.get("class_weight"):
        metrics["class_weight"] = loss_record["class_weight"]
    batch = latency_batch(dataset)
    if batch is not None:           # a sweep objective or constraint (sweep/objectives.py); cheap, so always
        metrics["latency_ms"] = round(latency_ms_per_row(network, batch), 6)
    if trainer.global_rank != 0:    # `ddp`: the other ranks re-ran this command; rank 0 writes the run directory
        return metrics
    from netkiln.artifacts.bundle import save_bundle
    # model/: what evaluate etc. load
    if bundle:
        save_bundle(run.run_dir, cfg, dataset, network, metrics, data_files=run.data_files, loss=loss_record)
    # Last: a run with metrics.json is finished (a kill before this leaves checkpoints, and resume=true ends it).
    write_json_atomic(run.run_dir / "metrics.json", metrics)
    log_run_end(run.loggers, cfg, metrics)      # the config as hyperparameters, with the final metrics
    return metrics
