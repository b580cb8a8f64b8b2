"""`netkiln export run=DIR format=onnx|torch_export|torchscript`: the run's model for serving outside netkiln."""
from __future__ import annotations

from netkiln.commands.hydra_app import run_hydra


def _task(cfg) -> None:
    from netkiln.artifacts.bundle import load_bundle
    from netkiln.artifacts.export import FORMATS, export_bundle
    from netkiln.errors import NetkilnError, did_you_mean

    fmt = str(cfg.format).lower()
    if fmt not in FORMATS:        # before loading anything
        raise NetkilnError(f"unknown export format {cfg.format!r}.{did_you_mean(fmt, FORMATS)} Choose one of: "
                           f"{', '.join(FORMATS)}.", key="format")
    opset = cfg.opset
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 7:
        raise NetkilnError(f"must be an ONNX opset number (e.g. 17), not {opset!r}.", key="opset")
    bundle = load_bundle(cfg.run, allow_targets=bool(cfg.allow_targets))
    info = export_bundle(bundle, fmt, cfg.output, opset=opset,
                         embed_preparation=bool(cfg.embed_preparation), probabilities=bool(cfg.probabilities),
                         check=bool(cfg.check))
    values = ("int64 token ids" if info["input"]["dtype"] == "int64" else
              f"{'raw' if not info['input']['prepared'] else 'prepared'} values")
    print(f"exported {fmt} to {info['path']} (input {tuple(info['input']['shape'])}, {values}; see {info['sidecar']} "
          "for the preparation)")
    check = info.get("check")
    if check and "max_abs_diff" in check:
        print(f"check: max abs difference from PyTorch on {check['rows']} rows: {check['max_abs_diff']:.3g}")
    elif check:
        print(f"check: {check['skipped']}")


def run(command: str, argv: list[str]) -> int:
    return run_hydra(command, argv, _task)
