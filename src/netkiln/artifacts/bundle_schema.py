"""The value checks of a bundle's meta.json, config.yaml and preprocessing.json, run before anything is built.

A damaged or hand-edited bundle (statistics of the wrong type or length, a string input shape, `true` for a format
number) must be refused with the file and the entry, not end in a traceback or be silently broadcast by numpy.
Only what loading, evaluate, predict and export read is checked; everything else is informational.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from netkiln.config_values import is_int
from netkiln.data.dataset import LAYOUTS
from netkiln.data.json_checks import BadEntry as _Bad
from netkiln.data.json_checks import choice as _choice
from netkiln.data.json_checks import integer as _int
from netkiln.data.json_checks import mapping as _mapping
from netkiln.data.json_checks import numbers as _numbers
from netkiln.data.json_checks import shape as _shape
from netkiln.data.json_checks import strings as _strings
from netkiln.data.preparations import PREPARATIONS
from netkiln.data.preprocess import FEATURE_AXIS
from netkiln.errors import NetkilnError
from netkiln.task import TASK_KINDS


def _refuse(bad: _Bad, file: Path, key: str) -> NetkilnError:
    return NetkilnError(f"{bad}; the bundle is damaged or was edited by hand. Use an intact copy of the run (or "
                        "train it again).", key=key, file=str(file))


# ------------------------------------------------------------------------------------------------ files
def check_meta(meta: dict, file: Path, key: str) -> None:
    """meta.json: the format number and versions that loading compares, the weights checksum."""
    try:
        if "bundle_format" in meta:
            _int(meta["bundle_format"], "bundle_format", 1)
        if "netkiln" in meta and not isinstance(meta["netkiln"], str):
            raise _Bad("netkiln", "a version string", meta["netkiln"])
        digest = meta.get("weights_sha256")
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                       and all(c in "0123456789abcdef" for c in digest)):
            raise _Bad("weights_sha256", "a SHA-256 hex digest", digest)
    except _Bad as bad:
        raise _refuse(bad, file, key) from None


def check_task(task: Any, where: str = "task") -> None:
    task = _mapping(task, where)
    kind = _choice(task.get("kind"), f"{where}.kind", TASK_KINDS)
    outputs = _int(task.get("num_outputs"), f"{where}.num_outputs", 1)
    names = task.get("class_names") or []
    _strings(names, f"{where}.class_names")
    if kind == "binary" and (outputs != 1 or len(names) not in (0, 2)):
        raise _Bad(f"{where}.num_outputs", "1 output and 2 class names for a binary task", outputs)
    if kind == "multiclass" and (outputs < 2 or len(names) not in (0, outputs)):
        raise _Bad(f"{where}.num_outputs", f"the number of class names ({len(names)}) for a multiclass task",
                   outputs)


def check_config(config: dict, file: Path, key: str) -> None:
    """config.yaml: the task, input shape and layout the model is compiled for (the model spec itself is checked
    by the compiler, layer by layer)."""
    try:
        check_task(config.get("task"))
        if "input_shape" in config:
            _shape(config["input_shape"], "input_shape")
        if "layout" in config:
            _choice(config["layout"], "layout", LAYOUTS)
        if "seed" in config and not is_int(config["seed"]):
            raise _Bad("seed", "an integer", config["seed"])
        for name in ("data", "loss"):
            if config.get(name) is not None:
                _mapping(config[name], name)
    except _Bad as bad:
        raise _refuse(bad, file, key) from None


def check_preprocessing(prep: dict, config: dict, file: Path, key: str) -> None:
    """preprocessing.json: the input schema and every fitted statistic predict and evaluate apply."""
    try:
        layout = _choice(prep.get("layout"), "layout", LAYOUTS)
        shape = _shape(prep.get("input_shape"), "input_shape")
        if config.get("input_shape") is not None and list(shape) != list(config["input_shape"]):
            raise _Bad("input_shape", f"the config's input shape {config['input_shape']}", list(shape))
        if config.get("layout") is not None and layout != config["layout"]:
            raise _Bad("layout", f"the config's layout {config['layout']!r}", layout)
        if prep.get("feature_names") is not None:
            _strings(prep["feature_names"], "feature_names", shape[0] if layout == "flat" else None)
        if prep.get("class_names") is not None:
            _strings(prep["class_names"], "class_names")
        if prep.get("task") is not None:
            check_task(prep["task"])
        _preparation(_mapping(prep.get("preparation") or {}, "preparation"), layout, shape, config)
    except _Bad as bad:
        raise _refuse(bad, file, key) from None


def _preparation(p: dict, layout: str, shape: tuple, config: dict) -> None:
    """What every kind's saved steps share (input shape, standardisation, target), then the kind's own checks."""
    task = config.get("task") or {}
    kind = p.get("kind")
    if kind is not None:
        _choice(kind, "preparation.kind", tuple(k for k in PREPARATIONS if k is not None))
    if p.get("input_shape") is not None and list(p["input_shape"]) != list(shape):
        raise _Bad("preparation.input_shape", f"the input shape {list(shape)}", p["input_shape"])
    if "standardize" in p:
        s = _mapping(p["standardize"], "preparation.standardize")
        axis = s.get("feature_axis")
        if axis != FEATURE_AXIS.get(layout) or not is_int(axis):
            raise _Bad("preparation.standardize.feature_axis", f"{FEATURE_AXIS.get(layout)} for {layout} input", axis)
        n = shape[axis]
        _numbers(s.get("mean"), "preparation.standardize.mean", n, "one per feature")
        _numbers(s.get("std"), "preparation.standardize.std", n, "one positive number per feature", positive=True)
    PREPARATIONS[kind].check_json(p, layout, shape, config)
    if p.get("target_scale") is not None:
        _target_scale(_mapping(p["target_scale"], "preparation.target_scale"), task)
    target = p.get("target")
    if target is not None:
        target = _mapping(target, "preparation.target")
        classes = {"multiclass": task.get("num_outputs"), "binary": 2}.get(task.get("kind"))
        values = target.get("class_values")
        if values is not None and (not isinstance(values, list) or (classes is not None and len(values) != classes)):
            raise _Bad("preparation.target.class_values", f"a list of {classes} class values", values)
        if target.get("columns") is not None:
            _strings(target["columns"], "preparation.target.columns")


def _target_scale(s: dict, task: dict) -> None:
    """A regression target's scaling: one offset and factor per target column (inverted on every prediction)."""
    where = "preparation.target_scale"
    if task.get("kind") != "regression":
        raise _Bad(where, "no target scaling for a classification task", s)
    n = _int(task.get("num_outputs"), "task.num_outputs", 1)
    method = _choice(s.get("method"), f"{where}.method", ("standard", "minmax"))
    if method == "standard":
        _numbers(s.get("mean"), f"{where}.mean", n, "one per target")
        _numbers(s.get("std"), f"{where}.std", n, "one positive number per target", positive=True)
    else:
        _numbers(s.get("min"), f"{where}.min", n, "one per target")
        _numbers(s.get("max"), f"{where}.max", n, "one per target")


# ------------------------------------------------------------------------------------------------ weights
MAX_HEADER_BYTES = 100 << 20        # safetensors' own limit on the JSON header


def safetensors_shapes(path: Path, key: str) -> dict[str, tuple]:
    """{tensor name: shape} from a safetensors file's header, without reading (or allocating) the tensors."""
    import json

    def bad(reason: str) -> NetkilnError:
        return NetkilnError(f"cannot read the weights: {reason}", key=key, file=str(path))

    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise bad(f"the header length {size} is not that of a safetensors file")
            header = json.loads(fh.read(size))
    except OSError as err:
        raise bad(err.strerror or str(err)) from None
    except ValueError as err:          # JSON or UTF-8 errors
        raise bad(f"the header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise bad(f"the tensor {name!r} has no valid shape")
        shapes[name] = tuple(shape)
    return shapes


def check_weight_shapes(expected: dict[str, tuple], found: dict[str, tuple], file: Path, key: str) -> None:
    """The weights file must hold exactly the model's tensors, each with the model's shape."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:5])}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:5])}")
    if wrong:
        parts.append("wrong shape for " + ", ".join(
            f"{k} {tuple(found[k])} (model has {tuple(expected[k])})" for k in wrong[:5]))
    raise NetkilnError(f"the weights do not fit the bundle's model ({'; '.join(parts)}).", key=key, file=str(file))
