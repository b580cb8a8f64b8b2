"""Parse one layer entry of the model spec into a normalised form and validate its arguments.

Entry forms: `flatten`; `{dense: {units: 64}}`; `{dense: 64}` (scalar for the first argument);
`{dense: null}`; `{residual: [...]}`; `{repeat: {times: N, layers: [...]}}`; `{parallel: [[...], [...]]}`;
`{_target_: ..., **kw}`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netkiln.config_values import is_positive_int
from netkiln.errors import did_you_mean

from .errors import ModelSpecError
from .layers import LAYER_ALIASES, REGISTRY, LayerDef

COMPOSITES = ("residual", "repeat", "parallel")
LAYER_NAMES = sorted([*REGISTRY, *LAYER_ALIASES, *COMPOSITES])


@dataclass
class Entry:
    kind: str                 # "layer" | "residual" | "repeat" | "parallel" | "target"
    name: str                 # layer name, composite name, or the _target_ path
    key: str                  # config path of the entry
    args: dict = field(default_factory=dict)      # validated args (layer) / kwargs (target)
    children: list = field(default_factory=list)  # raw child entries (composites; parallel: one list a branch)
    times: int = 1            # repeat count
    children_key: str = ""    # config path prefix of the children list


def parse_entry(raw: Any, key: str) -> Entry:
    if isinstance(raw, str):
        return _layer(raw, None, key)
    if isinstance(raw, dict):
        if "_target_" in raw:
            kwargs = {k: v for k, v in raw.items() if k != "_target_"}
            if not isinstance(raw["_target_"], str):
                raise ModelSpecError(f"_target_ must be a dotted class path, got {raw['_target_']!r}",
                                     key=f"{key}._target_")
            return Entry("target", raw["_target_"], key, args=kwargs)
        if len(raw) == 1:
            (name, value), = raw.items()
            return _layer(name, value, key)
        if not raw:
            raise ModelSpecError("empty layer entry; write a layer name such as `dense: 64`", key=key)
        names = ", ".join(map(str, raw))
        raise ModelSpecError(
            f"a layer entry must hold exactly one layer name, got keys {names}. If the arguments "
            "were meant for the first one, indent them under it: `- conv1d: {filters: 16, kernel_size: 3}`",
            key=key)
    raise ModelSpecError(f"a layer entry must be a name or a mapping like `dense: 64`, got {raw!r}", key=key)


def _layer(name: Any, value: Any, key: str) -> Entry:
    if not isinstance(name, str):
        raise ModelSpecError(f"layer names are strings, got {name!r}", key=key)
    lname = name.lower()
    lname = LAYER_ALIASES.get(lname, lname)
    if lname == "residual":
        if not isinstance(value, list) or not value:
            raise ModelSpecError("residual takes a non-empty list of layers: `residual: [dense: 64]`",
                                 key=f"{key}.residual")
        return Entry("residual", lname, key, children=value, children_key=f"{key}.residual")
    if lname == "repeat":
        return _repeat(value, key)
    if lname == "parallel":
        return _parallel(value, key)
    if lname not in REGISTRY:
        hint = did_you_mean(lname, LAYER_NAMES) or f" Known layers: {', '.join(LAYER_NAMES)}"
        raise ModelSpecError(f"unknown layer '{name}'.{hint}", key=key)
    layer = REGISTRY[lname]
    return Entry("layer", lname, key, args=bind_args(layer, value, key))


def _repeat(value: Any, key: str) -> Entry:
    rkey = f"{key}.repeat"
    if not isinstance(value, dict):
        raise ModelSpecError("repeat takes a mapping: `repeat: {times: 3, layers: [...]}`", key=rkey)
    for k in value:
        if k not in ("times", "layers"):
            raise ModelSpecError(f"repeat has no argument '{k}'." + did_you_mean(k, ["times", "layers"])
                                 + " Arguments: times, layers", key=f"{rkey}.{k}")
    for k in ("times", "layers"):
        if k not in value:
            raise ModelSpecError(f"repeat needs '{k}': `repeat: {{times: 3, layers: [...]}}`", key=rkey)
    times = value["times"]
    if not is_positive_int(times):
        raise ModelSpecError(f"must be a positive integer, got {times!r}", key=f"{rkey}.times", layer="repeat")
    layers = value["layers"]
    if not isinstance(layers, list) or not layers:
        raise ModelSpecError("must be a non-empty list of layers", key=f"{rkey}.layers", layer="repeat")
    return Entry("repeat", "repeat", key, children=layers, times=times, children_key=f"{rkey}.layers")


def _parallel(value: Any, key: str) -> Entry:
    pkey = f"{key}.parallel"
    example = "`parallel: [[conv1d: ..., globalmaxpool1d], [conv1d: ..., globalmaxpool1d]]`"
    if not isinstance(value, list) or not value:
        raise ModelSpecError(f"parallel takes a non-empty list of branches, each a list of layers: {example}",
                             key=pkey)
    for i, branch in enumerate(value):
        if not isinstance(branch, list) or not branch:
            raise ModelSpecError(f"each branch of parallel is a non-empty list of layers, got {branch!r}: {example}",
                                 key=f"{pkey}[{i}]", layer="parallel")
    return Entry("parallel", "parallel", key, children=value, children_key=pkey)


def bind_args(layer: LayerDef, value: Any, key: str) -> dict:
    """Validate raw arguments against the layer's schema; fill Keras defaults."""
    names = [a.name for a in layer.args]
    if value is None:
        given: dict = {}
    elif isinstance(value, dict):
        given = dict(value)
    elif not layer.args:
        raise ModelSpecError(f"takes no arguments, got {value!r}; write just `{layer.name}`",
                             key=key, layer=layer.name)
    else:  # scalar/list shorthand fills the first argument
        given = {names[0]: value}

    for alias, canonical in layer.aliases:
        if alias in given:
            if canonical in given:
                raise ModelSpecError(f"give either '{alias}' or '{canonical}', not both",
                                     key=f"{key}.{alias}", layer=layer.name)
            given[canonical] = given.pop(alias)

    out = {}
    for k, v in given.items():
        arg = layer.arg(k) if isinstance(k, str) else None
        if arg is None:
            known = ", ".join(names) if names else "none"
            raise ModelSpecError(f"unknown argument '{k}'." + did_you_mean(str(k), names + [a for a, _ in layer.aliases])
                                 + f" Arguments of {layer.name}: {known}", key=f"{key}.{k}", layer=layer.name)
        try:
            out[k] = arg.check(v)
        except ValueError as e:
            raise ModelSpecError(f"{k} {e}", key=f"{key}.{k}", layer=layer.name) from None
    for arg in layer.args:
        if arg.name not in out:
            if arg.required:
                raise ModelSpecError(f"missing required argument '{arg.name}' "
                                     f"(arguments: {', '.join(names)})", key=key, layer=layer.name)
            out[arg.name] = arg.check(arg.default)  # normalises e.g. strides 1 -> (1, 1)
    return out
