"""Fine-tuning: start from a bundle's weights (`init_from=RUN`) and freeze layers (`freeze=[0, dense_1]`)."""
from __future__ import annotations

import logging
import types
from typing import Any

from torch import nn

from netkiln.config_values import to_container
from netkiln.errors import NetkilnError, did_you_mean

log = logging.getLogger("netkiln")


def _plain_list(value: Any) -> list:
    if value is None:
        return []
    value = to_container(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def layer_indices(network, refs: Any, key: str = "freeze") -> list[int]:
    """Top-level layer indices for a list of indices (negative counts from the end) or layer names."""
    return [idx for _, idx in _layer_refs(network, refs, key)]


def _layer_refs(network, refs: Any, key: str) -> list[tuple[str, int]]:
    """(config key, top-level layer index) of each layer `refs` names, each layer once."""
    names = list(network.layer_names)
    n = len(names)
    out: list[tuple[str, int]] = []
    for i, ref in enumerate(_plain_list(refs)):
        where = f"{key}[{i}]"
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise NetkilnError(f"expected a layer index or name, got {ref!r}", key=where)
        if isinstance(ref, str) and ref.lstrip("-").isdigit():
            ref = int(ref)
        if isinstance(ref, int):
            if not -n <= ref < n:
                raise NetkilnError(f"layer index {ref} is out of range: the model has {n} layers "
                                   f"(0..{n - 1}: {', '.join(names)}).", key=where)
            idx = ref % n
        else:
            if ref not in names:
                raise NetkilnError(f"no layer named {ref!r}.{did_you_mean(ref, names)} "
                                   f"Layers: {', '.join(names)}.", key=where)
            idx = names.index(ref)
        if idx not in [seen for _, seen in out]:
            out.append((where, idx))
    return out


def _train_stays_eval(self, mode: bool = True):
    # A frozen layer runs in inference mode, as in Keras: BatchNorm keeps its running statistics.
    return nn.Module.train(self, False)


def freeze_layers(network, refs: Any, key: str = "freeze") -> list[str]:
    """Stop gradients to the named top-level layers; returns their names."""
    frozen = []
    for where, idx in _layer_refs(network, refs, key):
        layer = network.layers[idx]
        if not any(True for _ in layer.parameters()):
            weighted = [f"{i} {name}" for i, (name, other) in enumerate(zip(network.layer_names, network.layers))
                        if any(True for _ in other.parameters())]
            raise NetkilnError(f"layer {idx} ({network.layer_names[idx]}) has no weights to freeze; the layers "
                               f"with weights: {', '.join(weighted)}.", key=where)
        for p in layer.parameters():
            p.requires_grad_(False)
        for m in layer.modules():
            if getattr(m, "running_mean", None) is not None:     # normalization with running statistics
                m.train = types.MethodType(_train_stays_eval, m)
                m.eval()
        frozen.append(network.layer_names[idx])
    return frozen


def init_from_bundle(network, run: Any, *, frozen: list[str] = (), allow_targets: bool = False,
                     key: str = "init_from") -> dict:
    """Copy a bundle's weights into `network` wherever the tensor name and shape match.

    Tensors that do not match (a new head for another number of classes, an added layer) keep their fresh
    initialisation and are logged; a frozen layer must be fully initialised from the bundle.
    """
    from netkiln.artifacts.bundle import read_bundle, read_weights

    bundle = read_bundle(run, allow_targets=allow_targets, key=key)
    state = read_weights(bundle, key)
    own = network.state_dict()
    loaded, skipped = {}, []
    for name, tensor in own.items():
        src = state.get(name)
        if src is not None and tuple(src.shape) == tuple(tensor.shape):
            loaded[name] = src
        else:
            skipped.append(name)
    if not loaded:
        raise NetkilnError("none of the bundle's weights fit this model (different layers or shapes); "
                           "init_from needs the same architecture, at least for the first layers.",
                           key=key, file=str(bundle.path))
    # Top-level layer index of each state entry: "layers.3.weight" -> 3.
    def layer_of(name: str) -> str | None:
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
            return network.layer_names[int(parts[1])]
        return None

    bad = sorted({layer_of(n) for n in skipped if layer_of(n) in set(frozen)})
    if bad:
        raise NetkilnError(f"frozen layer{'s' if len(bad) > 1 else ''} {', '.join(bad)} would keep random weights: "
                           "the bundle has no matching tensors for them.", key="freeze")
    network.load_state_dict(loaded, strict=False)
    if skipped:
        layers = sorted({layer_of(n) or n for n in skipped})
        log.warning("init_from: %d tensors kept their fresh initialisation (no match in the bundle): layers %s",
                    len(skipped), ", ".join(layers))
    log.info("init_from: loaded %d of %d tensors from %s", len(loaded), len(own), bundle.path)
    return {"run": str(bundle.run_dir), "loaded": len(loaded), "skipped": skipped}


def use_bundle_config(cfg) -> list[str]:
    """init_from=RUN: train the bundle's model, unless the config names one (model=auto, the default, names none),
    on the bundle's data, unless the command line says data=...; its model.* / data.* overrides apply on top.
    Returns the parts taken from the bundle."""
    init_from = cfg.get("init_from")
    if init_from in (None, ""):
        return []
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from netkiln.artifacts.bundle import read_bundle
    from netkiln.auto_model import is_auto

    given = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    overrides = OverridesParser.create().parse_overrides(given)
    taken = [part for part, take in (("model", is_auto(cfg.model) and cfg.model.get("layers") is None),
                                     ("data", all(o.key_or_group != "data" for o in overrides))) if take]
    if not taken:
        return []
    bundle = read_bundle(init_from, allow_targets=bool(cfg.get("allow_targets", False)), key="init_from")
    with open_dict(cfg):
        for part in taken:
            cfg[part] = OmegaConf.create(bundle.config[part])
        for o in overrides:         # the command line's changes to what was taken, on top of the bundle's
            key = o.key_or_group
            if key.split(".")[0] not in taken or "." not in key:
                continue
            if key.startswith("model.vars."):
                raise NetkilnError("init_from trains the bundle's model, whose layers are already written out: its "
                                   "vars change nothing. Name a model (e.g. model=mlp) to set vars.", key=key)
            if o.is_delete():
                parent, _, leaf = key.rpartition(".")
                OmegaConf.select(cfg, parent).pop(leaf, None)
            else:
                OmegaConf.update(cfg, key, o.value(), force_add=True)
    log.info("init_from: the %s of %s", " and ".join(taken), bundle.path)
    return taken


def apply_finetune(cfg, network) -> dict:
    """Apply the train config's `freeze` and `init_from` keys (both null by default) to a fresh network."""
    freeze = cfg.get("freeze")
    init_from = cfg.get("init_from")
    frozen = freeze_layers(network, freeze) if freeze not in (None, "", []) else []
    result: dict = {"frozen": frozen}
    if init_from not in (None, ""):
        result["init_from"] = init_from_bundle(network, init_from, frozen=frozen,
                                               allow_targets=bool(cfg.get("allow_targets", False)))
    if frozen:
        from netkiln.compiler import count_params
        counts = count_params(network)
        log.info("frozen layers: %s (%s trainable / %s non-trainable params)", ", ".join(frozen),
                 f"{counts['trainable']:,}", f"{counts['non_trainable']:,}")
    return result
