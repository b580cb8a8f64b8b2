"""`netkiln export`: a bundle's network as ONNX, a torch.export program (.pt2) or TorchScript (deprecated by torch),
with a JSON sidecar documenting its preparation.

The exported graph takes prepared input (as the network saw it in training; a text model's int64 token ids, with
the vocabulary beside it in model.vocab.json) unless `embed_preparation` bakes the saved standardisation into it, and
returns logits unless `probabilities` appends softmax (sigmoid for binary).
After writing, the file is loaded back (onnxruntime / torch.export.load / torch.jit.load) and its outputs are compared with PyTorch's
on the same inputs; the largest absolute difference goes into the sidecar.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netkiln.artifacts.bundle import Bundle
from netkiln.io.files import write_atomic, write_bytes_atomic, write_json_atomic
from netkiln.errors import NetkilnError, did_you_mean

log = logging.getLogger("netkiln")

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2", "torchscript": ".pt"}
TOLERANCE = 1e-5


class ExportModule(nn.Module):
    """The network, optionally with the saved standardisation before it and probabilities after it; a regression
    network trained on a scaled target gets the inverse scaling after it, so the graph outputs the target's units."""

    def __init__(self, network: nn.Module, task_kind: str, standardize: dict | None = None,
                 probabilities: bool = False, input_shape: tuple = (), target_scale: dict | None = None):
        super().__init__()
        self.network = network
        self.task_kind = task_kind
        self.probabilities = probabilities
        self.unscale = task_kind == "regression" and target_scale is not None
        if self.unscale:
            from netkiln.data.target_scale import TargetScale
            scale = TargetScale(target_scale)
            self.register_buffer("target_offset", torch.tensor(scale.offset, dtype=torch.float32))
            self.register_buffer("target_factor", torch.tensor(scale.factor, dtype=torch.float32))
        self.standardize = standardize is not None
        if standardize is not None:
            axis = int(standardize["feature_axis"])
            shape = [1] * len(input_shape)
            shape[axis] = -1
            mean = torch.tensor(standardize["mean"], dtype=torch.float32).reshape(1, *shape)
            std = torch.tensor(standardize["std"], dtype=torch.float32).reshape(1, *shape)
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

    def forward(self, x):
        if self.standardize:
            x = (x - self.mean) / self.std
        y = self.network(x)
        if self.unscale:
            y = y * self.target_factor + self.target_offset
        if self.probabilities:
            y = torch.sigmoid(y) if self.task_kind == "binary" else torch.softmax(y, dim=-1)
        return y


def example_inputs(bundle: Bundle, n: int, seed: int = 0, raw: bool = False) -> torch.Tensor:
    """Deterministic inputs shaped like the model's (see the preparation's `example_inputs`)."""
    return bundle.preparer.example_inputs(n, seed, raw)


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # the TorchScript-based exporter's deprecation notice
            torch.onnx.export(module, (example,), tmp, dynamo=False, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=opset)
    try:
        write_atomic(path, write)
    except NetkilnError:
        raise
    except Exception as err:  # noqa: BLE001 - the exporter raises many types for unsupported operators
        if "onnx is not installed" in str(err) or isinstance(err, ImportError):
            raise NetkilnError("ONNX export needs the onnx package: pip install 'netkiln[export]' (onnx and "
                               "onnxruntime), or use format=torchscript", key="format") from None
        raise NetkilnError(f"ONNX export failed: {type(err).__name__}: {' '.join(str(err).split())[:400]}",
                           key="format") from None


def _write_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(module, (example,), check_trace=True)
        except Exception as err:  # noqa: BLE001
            raise NetkilnError(f"TorchScript tracing failed: {type(err).__name__}: "
                               f"{' '.join(str(err).split())[:400]}", key="format") from None
    write_atomic(path, lambda tmp: torch.jit.save(traced, tmp))


def _write_torch_export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.export's program with a dynamic batch axis (torch.jit.save is deprecated in torch 2.13). Checked on
    MLP, CNN, GRU, LSTM (bidirectional too) and batchnorm models with torch 2.13."""
    import io

    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        except Exception as err:  # noqa: BLE001 - the tracer raises many types for code it cannot capture
            raise NetkilnError(f"torch.export could not capture this model with torch {torch.__version__}: "
                               f"{type(err).__name__}: {' '.join(str(err).split())[:400]}; use format=onnx or "
                               "format=torchscript", key="format") from None
    buffer = io.BytesIO()           # a buffer: torch.export.save wants a .pt2 name, write_atomic writes a .tmp
    torch.export.save(program, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def run_exported(fmt: str, path: Path, x: torch.Tensor) -> np.ndarray | None:
    """Outputs of the exported file on x (None when onnxruntime is not installed)."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["output"], {"input": x.numpy()})[0]
    if fmt == "torch_export":
        program = torch.export.load(str(path)).module()
        with torch.no_grad():
            return program(x).numpy()
    loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()
    with torch.no_grad():
        return loaded(x).numpy()


def _sidecar(bundle: Bundle, fmt: str, path: Path, module: ExportModule, opset: int | None) -> dict:
    from netkiln.version import __version__

    task = bundle.task
    from netkiln.artifacts.predictions import class_labels
    if task.kind == "multiclass":
        output = ("class probabilities (softmax applied)" if module.probabilities
                  else "logits, one a class: apply softmax for probabilities; argmax is the predicted class")
    elif task.kind == "binary":
        output = ("probability of the positive class (sigmoid applied)" if module.probabilities
                  else "one logit: apply sigmoid for the positive class's probability; > 0 predicts it")
    else:
        output = "predicted values, one a target (in the target's original units)"
    return {
        "format": fmt,
        "file": path.name,
        "opset": opset,
        "netkiln": __version__,
        "torch": torch.__version__,
        "run": str(bundle.run_dir),
        "input": {"name": "input", "shape": ["batch", *bundle.input_shape], "dtype": bundle.preparer.export_dtype,
                  "layout": bundle.layout, "feature_names": bundle.feature_names,
                  "prepared": not module.standardize},
        "preparation": bundle.preparation,
        "preparation_note": bundle.preparer.export_note(module.standardize),
        "output": {"name": "output", "shape": ["batch", *_output_shape(bundle)], "meaning": output,
                   "task": task.to_dict(),
                   "labels": [str(v) for v in class_labels(bundle)] if task.is_classification else None},
    }


def sidecar_path(path: Path) -> Path:
    """model.onnx -> model.onnx.json: the two formats' sidecars never overwrite each other."""
    return path.with_name(path.name + ".json")


def vocabulary_path(path: Path) -> Path:
    """model.onnx -> model.vocab.json: a text model's {token: id}."""
    return path.with_name(path.stem + ".vocab.json")


def _output_shape(bundle: Bundle) -> list:
    return [int(s) for s in getattr(bundle.network, "output_shape", ())]


def _refuse_packed_rnn(network: nn.Module, fmt: str) -> None:
    """An RNN after a mask_zero embedding reads packed sequences (each row up to its last real token), which the
    ONNX exporter and torch.export cannot capture: say so before they fail with an internal error."""
    from netkiln.compiler.modules import RNN

    if fmt != "torchscript" and getattr(network, "masked", False) and any(isinstance(m, RNN)
                                                                         for m in network.modules()):
        raise NetkilnError(f"format={fmt} cannot capture an RNN that skips padding (an embedding with mask_zero "
                           "before it reads packed sequences); use format=torchscript for this model", key="format")


def export_bundle(bundle: Bundle, fmt: str = "onnx", output: Any = None, *, opset: int = 17,
                  embed_preparation: bool = False, probabilities: bool = False, check: bool = True) -> dict:
    """Write the exported model and its sidecar JSON; return the sidecar (with the check's max abs diff)."""
    if fmt not in FORMATS:
        raise NetkilnError(f"unknown export format {fmt!r}.{did_you_mean(str(fmt), FORMATS)} Choose one of: "
                           f"{', '.join(FORMATS)}.", key="format")
    path = Path(str(output)) if output else bundle.run_dir / "export" / f"model{FORMATS[fmt]}"
    if path.suffix.lower() != FORMATS[fmt]:
        path = path.with_suffix(path.suffix + FORMATS[fmt]) if path.suffix else path.with_suffix(FORMATS[fmt])
    from netkiln.artifacts.bundle import refuse_output_in_bundle
    refuse_output_in_bundle(path, bundle, "output")
    _refuse_packed_rnn(bundle.network, fmt)
    preparer = bundle.preparer
    module = ExportModule(bundle.network, bundle.task.kind,
                          preparer.embeddable_standardize() if embed_preparation else None,
                          probabilities, bundle.input_shape, bundle.preparation.get("target_scale"))
    module.eval()
    example = example_inputs(bundle, 2, raw=module.standardize)
    if fmt == "onnx":
        _write_onnx(module, example, path, opset)
    elif fmt == "torch_export":
        _write_torch_export(module, example, path)
    else:
        _write_torchscript(module, example, path)
    info = _sidecar(bundle, fmt, path, module, opset if fmt == "onnx" else None)
    if check:
        x = example_inputs(bundle, 64, seed=1, raw=module.standardize)
        with torch.no_grad():
            expected = module(x).numpy()
        got = run_exported(fmt, path, x)
        if got is None:
            info["check"] = {"skipped": "onnxruntime is not installed (pip install onnxruntime)"}
        else:
            diff = float(np.max(np.abs(got.reshape(expected.shape) - expected))) if got.shape == expected.shape \
                else float("inf")
            # Values in a target's units (thousands, say) carry float32 rounding in proportion: a relative tolerance.
            tolerance = TOLERANCE * max(1.0, float(np.abs(expected).max())) if module.unscale else TOLERANCE
            info["check"] = {"rows": len(x), "max_abs_diff": diff, "tolerance": tolerance, "ok": diff <= tolerance}
            if diff > tolerance:
                log.warning("the exported model's outputs differ from PyTorch's by up to %.3g (tolerance %g)",
                            diff, tolerance)
    vocabulary = preparer.vocabulary_json()
    if vocabulary is not None:          # text: the token ids the graph takes, by token
        info["vocabulary_file"] = vocabulary_path(path).name
        write_json_atomic(vocabulary_path(path), vocabulary)
    write_json_atomic(sidecar_path(path), info)
    info["path"] = str(path)
    info["sidecar"] = str(sidecar_path(path))
    return info
