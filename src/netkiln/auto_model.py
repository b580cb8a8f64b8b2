"""`model=auto` (the default): the model is picked from the data's shape once the data is loaded.

conf/model/auto.yaml is a marker (`auto: true`) plus the vars a user may set on the picked model. The picked
model's config replaces it in the run's config, so the run's saved config and the bundle record the layers used.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

# The model picked for each input layout (netkiln.data.dataset.LAYOUTS).
AUTO_MODELS = {"flat": "mlp", "sequence": "cnn", "image": "cnn2d", "tokens": "textcnn"}
_LAYOUT_WORDS = {"flat": "flat features", "sequence": "sequences", "image": "images", "tokens": "token ids"}
PICKED = "picked by model=auto for"     # the start of a picked model's `description`

PACKAGE_MODELS = Path(__file__).resolve().parent / "conf" / "model"


def is_auto(model_cfg) -> bool:
    return hasattr(model_cfg, "get") and model_cfg.get("auto") is True


def _model_option(name: str):
    """conf/model/<name>.yaml as `model=<name>` finds it: the first on Hydra's search path (the user's config
    folders come after netkiln's own). Read as a plain file, not composed: composing costs ~0.2 s a run."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    path = PACKAGE_MODELS / f"{name}.yaml"
    if HydraConfig.initialized():
        found = [Path(source.path) / "model" / f"{name}.yaml" for source in HydraConfig.get().runtime.config_sources
                 if source.schema == "file"]
        path = next((p for p in found if p.is_file()), path)
    return OmegaConf.load(path)


def resolve_auto_model(cfg, layout: str, input_shape: tuple) -> str | None:
    """With model=auto, put the model picked for `layout` into `cfg.model` and return its name; else None."""
    from omegaconf import open_dict

    auto = cfg.get("model")
    if not is_auto(auto):
        return None
    if auto.get("layers") is not None:      # an experiment wrote layers on top of model=auto: they are the model
        with open_dict(cfg):
            del cfg.model["auto"]
        return None
    name = AUTO_MODELS.get(layout)
    what = f"{_LAYOUT_WORDS.get(layout, layout)} {tuple(input_shape)}"
    if name is None:
        raise NetkilnError(f"model=auto has no model for {what}; choose one, e.g. model=mlp.", key="model")
    picked = _model_option(name)
    own_vars = picked.get("vars") or {}
    for var, value in (auto.get("vars") or {}).items():
        if value is None:
            continue
        if var not in own_vars:
            have = f"its vars: {', '.join(own_vars)}" if own_vars else "it has no vars"
            raise NetkilnError(f"model=auto picked {name} for {what}, and {name} has no var '{var}' ({have}). "
                               f"Choose a model that has it (e.g. model=mlp or model=cnn) or drop the override.",
                               key=f"model.vars.{var}")
        picked.vars[var] = value
    with open_dict(picked):
        picked.name = picked.get("name") or name
        picked.description = f"{PICKED} {what}"
    with open_dict(cfg):
        cfg.model = picked
    log.info("model=auto: %s for %s", name, what)
    return name


@contextlib.contextmanager
def explain_picked_model(name: str | None):
    """A compile error in a model the user did not name says where it came from."""
    from netkiln.compiler import ModelSpecError

    try:
        yield
    except ModelSpecError as err:
        if name is None:
            raise
        raise ModelSpecError(f"{err.message} (model=auto picked {name} for this data; choose another model, "
                             "e.g. model=mlp, model=gru)", key=err.key, layer=err.layer) from None


def record_picked_model(cfg, run_dir: Path, *, changed: bool = False) -> None:
    """After model=auto (or `changed`: init_from's model and data), rewrite the run's saved config (Hydra wrote it
    before) with the model used."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from netkiln.io.files import write_text_atomic

    picked = changed or str(cfg.model.get("description") or "").startswith(PICKED)
    if not picked or not HydraConfig.initialized() or HydraConfig.get().output_subdir is None:
        return
    saved = Path(run_dir) / HydraConfig.get().output_subdir / "config.yaml"
    if saved.is_file():
        write_text_atomic(saved, OmegaConf.to_yaml(cfg))
