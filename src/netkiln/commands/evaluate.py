"""`netkiln evaluate run=DIR`: metrics, per-class table and plots of a trained run's model."""
from __future__ import annotations

from netkiln.commands.hydra_app import run_hydra


def _task(cfg) -> None:
    from netkiln.artifacts.bundle import load_bundle
    from netkiln.config_values import positive_int
    from netkiln.training.bundle_evaluation import evaluate_bundle, format_report

    batch_size = positive_int(cfg.batch_size, "batch_size")
    bundle = load_bundle(cfg.run, allow_targets=bool(cfg.allow_targets))
    report = evaluate_bundle(bundle, data_cfg=cfg.get("data"), split=str(cfg.split), out=cfg.out,
                             plots=bool(cfg.plots), batch_size=batch_size)
    print(format_report(report))


def run(command: str, argv: list[str]) -> int:
    return run_hydra(command, argv, _task)
