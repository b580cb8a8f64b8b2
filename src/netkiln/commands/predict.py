"""`netkiln predict run=DIR input=FILE output=FILE`: predictions for new raw rows from a run's bundle."""
from __future__ import annotations

import logging

from netkiln.commands.hydra_app import run_hydra
from netkiln.config_values import positive_int

log = logging.getLogger("netkiln")


def _task(cfg) -> None:
    from omegaconf import OmegaConf

    from netkiln.artifacts.bundle import load_bundle
    from netkiln.artifacts.inputs import for_images, for_model, open_input
    from netkiln.artifacts.predictions import output_format, predict_file

    chunk_rows = positive_int(cfg.chunk_rows, "chunk_rows")
    output_format(cfg.output)                       # check the output name before any work
    file = open_input(cfg.input, format=cfg.input_format, npz_key=cfg.npz_key)
    bundle = load_bundle(cfg.run, allow_targets=bool(cfg.allow_targets))
    file = for_images(for_model(file, bundle.preparer.reads_lines, cfg.input_format), bundle.preparer.reads_images,
                      cfg.input_format)
    keep = OmegaConf.to_container(cfg.keep_columns) if OmegaConf.is_config(cfg.keep_columns) else cfg.keep_columns
    if isinstance(keep, str):
        keep = [keep]
    stats = predict_file(bundle, file, cfg.output, chunk_rows=chunk_rows, allow_extra=bool(cfg.allow_extra),
                         keep_columns=[str(k) for k in (keep or [])], progress=cfg.progress,
                         unknown_categories=cfg.get("unknown_categories"), flag_unknown=bool(cfg.get("flag_unknown")))
    log.info("predicted %d rows of %s into %s", stats["rows"], file.path, stats["output"])


def run(command: str, argv: list[str]) -> int:
    return run_hydra(command, argv, _task)
