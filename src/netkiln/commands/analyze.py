"""`netkiln analyze`: report on the configured data (rich tables) and write analysis.json + analysis.png."""
from __future__ import annotations

import logging
from pathlib import Path

from netkiln.commands.hydra_app import run_hydra

log = logging.getLogger("netkiln")


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from netkiln.io.files import write_json_atomic
    from netkiln.data.analyze import analyze_data, plot_report, print_report
    from netkiln.config_values import to_container
    from netkiln.interpolation import refuse_env_values

    from netkiln.data_and_model import seed_of

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        refuse_env_values(cfg, ("data",), "analysis.json")     # it records the data config resolved
        report, context = analyze_data(cfg.data, seed=seed_of(cfg))   # every check, before anything is written
    except BaseException:
        _remove_if_empty(out_dir)
        raise
    report["config"] = {"data": to_container(cfg.data), "seed": seed_of(cfg)}
    print_report(report)
    plot_report(report, context, out_dir / "analysis.png")
    if context["dataset"].augment:          # data.augment: a few training images as the network will see them
        from netkiln.data.analyze import plot_augment_samples
        plot_augment_samples(context["dataset"], seed_of(cfg), out_dir / "augment_samples.png")
        print(f"wrote {out_dir / 'augment_samples.png'}: training images, original then augmented (data.augment)")
    write_json_atomic(out_dir / "analysis.json", report)
    print(f"wrote {out_dir / 'analysis.json'} and {out_dir / 'analysis.png'}")


def _remove_if_empty(path: Path) -> None:
    """A failed analysis leaves no folder behind (Hydra creates it before the task runs)."""
    try:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    except OSError:
        pass


def run(command: str, argv: list[str]) -> int:
    return run_hydra(command, argv, _task)
