"""Fine-tuning: start from a bundle's weights (`init_from=RUN`) and freeze layers (`freeze=[0, dense_1]`)."""
from __future__ import annotations

import logging
import types
from typing import Any

from torch import nn

from netkiln.errors import NetkilnError, did_you_mean

log = logging.getLogger("netkiln")


def _plain_list(value: Any) -> list:
    if value is None:
        return []
    from omegaconf import OmegaConf
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def layer_indices(network, refs: Any, key: str = "freeze") -> list[int]:
    """Top-level layer indices for a list of indices (negative counts from the end) or layer names."""
    names = list(network.layer_names)
    n = len(names)
    out: list[int] = []
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
        if idx not in out:
            out.append(idx)
    return out


def _train_stays_eval(self, mode: bool = True):
    # A frozen layer runs in inference mode, as in Keras: BatchNorm keeps its running statistics.
    return nn.Module.train(self, False)


def freeze_layers(network, refs: Any, key: str = "freeze") -> list[str]:
    """Stop gradients to the named top-level layers; returns their names."""
    frozen = []
    for idx in layer_indices(network, refs, key):
        layer = network.layers[idx]
        for p in layer.parameters():
            p.requires_grad_(False)
        for m in layer.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
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
