"""The model bundle a run leaves in `model/`: enough to evaluate, predict and export, with no pickle.

    model/
      config.yaml          the resolved model spec, data config, loss, seed, task and input shape
      weights.safetensors  the network's state dict (best checkpoint)
      preprocessing.json   input schema (layout, shape, feature names), fitted preparation, class names
      meta.json            bundle format, netkiln / torch / Python versions, param counts, metrics, weights checksum

Saving stages the files in a temporary folder beside `model/` (each written under a temporary name and renamed)
and then swaps the folder in, so a killed run never leaves a half-written bundle. Loading reads YAML with the safe
loader, JSON and safetensors only, and compiles the model with netkiln's registered layers; a `_target_` in the
bundle's model follows the rule training follows (netkiln.trust): public torch.nn classes load, anything else is
refused unless the caller passes `allow_targets=True`.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from netkiln.config_values import to_container
from netkiln.io.files import staged_folder, write_atomic, write_json_atomic, write_text_atomic
from netkiln.errors import NetkilnError

BUNDLE_DIR = "model"
BUNDLE_FORMAT = 1            # bump when the layout changes incompatibly; loaders refuse newer formats
FILES = ("config.yaml", "weights.safetensors", "preprocessing.json", "meta.json")


@dataclass
class Bundle:
    path: Path                          # the model/ folder
    config: dict                        # config.yaml
    preprocessing: dict                 # preprocessing.json
    meta: dict                          # meta.json
    network: Any = None                 # the compiled Network with the weights loaded, in eval mode
    task: Any = None                    # netkiln.task.Task

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def input_shape(self) -> tuple:
        return tuple(int(s) for s in self.preprocessing["input_shape"])

    @property
    def layout(self) -> str:
        return self.preprocessing["layout"]

    @property
    def feature_names(self) -> list[str] | None:
        return self.preprocessing.get("feature_names")

    @property
    def preparation(self) -> dict:
        """The fitted preparation steps, as `Dataset.preprocessing` held them (e.g. {"standardize": {...}})."""
        return self.preprocessing.get("preparation") or {}

    @cached_property
    def preparer(self):
        """The preparation's kind object (netkiln.data.preparations): what predict, evaluate and export ask (built
        once: a text model's tokenizer is not rebuilt for every chunk of a prediction)."""
        from netkiln.data.preparations import preparation_for
        return preparation_for(self.preparation, input_shape=self.input_shape, layout=self.layout,
                               feature_names=self.feature_names)

    @property
    def data_config(self) -> dict:
        return self.config.get("data") or {}

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def class_names(self) -> list[str]:
        return list(self.task.class_names) if self.task is not None else []


# --------------------------------------------------------------------------------------------------- save
def bundle_contents(cfg, dataset, network, metrics: dict | None = None, loss: dict | None = None
                    ) -> tuple[dict, dict, dict]:
    """(config, preprocessing, meta) for a trained network on `dataset` composed from the train config `cfg`;
    `loss`: the loss config as the run used it (class weights resolved), instead of cfg.loss."""
    import sys

    import torch

    from netkiln.version import __version__
    from netkiln.compiler import count_params

    task = dataset.task.to_dict()
    config = {
        "model": to_container(cfg.model),
        "data": to_container(cfg.data),
        "loss": loss if loss is not None else to_container(cfg.get("loss")),
        "seed": int(cfg.seed),
        "task": task,
        "input_shape": list(dataset.input_shape),
        "layout": dataset.layout,
    }
    preprocessing = {
        "layout": dataset.layout,
        "input_shape": list(dataset.input_shape),
        "feature_names": list(dataset.feature_names) if dataset.feature_names else None,
        "class_names": task["class_names"],
        "task": task,
        "preparation": to_container(dataset.preprocessing) or {},
    }
    metrics = metrics or {}
    meta = {
        "bundle_format": BUNDLE_FORMAT,
        "netkiln": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": sys.platform,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_name": getattr(network, "model_name", "model"),
        "layer_names": list(getattr(network, "layer_names", [])),
        "params": count_params(network),
        "data": getattr(dataset, "name", None),
        "init_from": str(cfg.get("init_from")) if cfg.get("init_from") else None,
        "freeze": to_container(cfg.get("freeze")),
        "metrics": {k: metrics[k] for k in ("monitor", "monitored", "val", "test", "epochs", "steps")
                    if k in metrics},
    }
    return config, preprocessing, meta


def write_bundle(path: str | os.PathLike, network, config: dict, preprocessing: dict, meta: dict) -> Path:
    """Write the four bundle files to `path` (a `model/` folder), replacing any bundle there."""
    from safetensors.torch import save_file

    from netkiln.safe_yaml import safe_dump

    path = Path(path)
    with staged_folder(path) as stage:       # a killed run never leaves half a bundle
        state = {k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()}
        write_atomic(stage / "weights.safetensors", lambda tmp: save_file(state, tmp, metadata={
            "format": "pt", "netkiln_bundle": str(BUNDLE_FORMAT)}))
        # Loading checks the weights against this: a truncated or modified file is refused, not half-used.
        meta = {**meta, "weights_sha256": file_sha256(stage / "weights.safetensors")}
        write_text_atomic(stage / "config.yaml", "# netkiln model bundle: the resolved config of the run\n"
                          + safe_dump(config, sort_keys=False, default_flow_style=None))
        write_json_atomic(stage / "preprocessing.json", preprocessing)
        write_json_atomic(stage / "meta.json", meta)          # last: a bundle with meta.json is complete
    return path


def refuse_output_in_bundle(output: Any, bundle: "Bundle", key: str) -> None:
    """Outputs the user names (predict output=, export output=, evaluate out=) may go anywhere but into the
    model bundle itself: its files are what every later command loads."""
    target = Path(str(output)).expanduser().resolve()
    inside = bundle.path.resolve()
    if target == inside or inside in target.parents:
        raise NetkilnError(f"{target} is inside the model bundle ({inside}); write outputs elsewhere, the bundle holds "
                           "only what evaluate, predict and export load.", key=key)


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(bundle: "Bundle", key: str = "run") -> dict:
    """The bundle's state dict from weights.safetensors (no pickle), checked against meta.json's checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = bundle.path / "weights.safetensors"
    expected = bundle.meta.get("weights_sha256")
    try:
        if expected is not None and file_sha256(weights) != expected:
            raise NetkilnError("the weights do not match the checksum recorded in meta.json: the file was truncated, "
                               "corrupted or modified after training. Use an intact copy of the run (or train it "
                               "again).", key=key, file=str(weights))
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise NetkilnError(f"cannot read the weights: {err}", key=key, file=str(weights)) from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise NetkilnError(f"the weights hold NaN or infinite values (first in {name}); the model is unusable. "
                               "Use a run whose training did not diverge, or train it again.", key=key,
                               file=str(weights))
    return state


def save_bundle(run_dir: str | os.PathLike, cfg, dataset, network, metrics: dict | None = None, *,
                data_files: dict | None = None, loss: dict | None = None) -> Path:
    """Write `run_dir/model/` for a trained network; `data_files` (data.fingerprint.pin_data_files) go into
    config.yaml, for evaluate to find the same files and notice a change."""
    config, preprocessing, meta = bundle_contents(cfg, dataset, network, metrics, loss)
    if data_files:
        config["data_files"] = data_files
    return write_bundle(Path(run_dir) / BUNDLE_DIR, network, config, preprocessing, meta)


# --------------------------------------------------------------------------------------------------- load
def find_bundle(run: Any, key: str = "run") -> Path:
    """The `model/` folder of a run directory (or the bundle folder itself); a NetkilnError otherwise."""
    if run is None or (isinstance(run, str) and not run.strip()):
        raise NetkilnError("no run directory given; set run=<the run's folder>, e.g. run=outputs/2026-11-26/13-05-12",
                           key=key)
    p = Path(str(run)).expanduser()
    if not p.exists():
        raise NetkilnError("no such directory; point run= at a training run's folder (it holds model/, "
                           "metrics.json, checkpoints/).", key=key, file=str(p))
    if not p.is_dir():
        raise NetkilnError("expected a run directory, but this is a file.", key=key, file=str(p))
    if (p / "meta.json").is_file() and (p / "weights.safetensors").is_file():
        return p
    bundle = p / BUNDLE_DIR
    if (bundle / "meta.json").is_file():
        return bundle
    if bundle.is_dir():
        missing = [f for f in FILES if not (bundle / f).is_file()]
        raise NetkilnError(f"the model bundle is incomplete (missing {', '.join(missing)}); the run was probably "
                           "interrupted: resume it with `netkiln train resume=true hydra.run.dir=<run>`.",
                           key=key, file=str(bundle))
    metrics = p / "metrics.json"
    if metrics.is_file():
        try:
            record = json.loads(metrics.read_text())
            status = record.get("status")
        except (OSError, ValueError, AttributeError):
            record, status = {}, None
        cv = record.get("cv") if status == "ok" else None
        if isinstance(cv, dict):
            raise NetkilnError(f"this run is a {cv.get('folds')}-fold cross-validation without a refit, so it holds "
                               "no model (each fold's figures are in its fold-K/ folder, the mean and spread in "
                               "metrics.json); train with cv.refit=true for a model trained on train + val.",
                               key=key, file=str(p))
        if status == "failed":
            raise NetkilnError("this trial failed (see error.txt there); it left no model.", key=key, file=str(p))
        if status == "interrupted":
            raise NetkilnError("this run was interrupted before it finished, so it has no model yet; continue it with "
                               f"`netkiln train resume=true hydra.run.dir={p}`.", key=key, file=str(p))
        raise NetkilnError("this run has no model/ bundle (it was trained before netkiln wrote bundles); "
                           "train it again.", key=key, file=str(p))
    if (p / "checkpoints" / "last.ckpt").is_file():
        raise NetkilnError("this run has checkpoints but no model/ bundle: it did not finish. Resume it with "
                           "`netkiln train resume=true hydra.run.dir=<run>`.", key=key, file=str(p))
    if (p / "multirun.yaml").is_file() or (p / "leaderboard.csv").is_file():
        raise NetkilnError("this is a sweep folder, not a run; point run= at one trial's folder (e.g. "
                           f"{p}/0) or at the sweep's best run.", key=key, file=str(p))
    raise NetkilnError("not a netkiln run directory (no model/ bundle, no metrics.json); point run= at the folder "
                       "`netkiln train` printed as its run directory.", key=key, file=str(p))


def _read_json(path: Path, key: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NetkilnError(f"cannot read the bundle file: {err}", key=key, file=str(path)) from None
    if not isinstance(data, dict):
        raise NetkilnError("the bundle file does not hold a JSON object", key=key, file=str(path))
    return data


def _version_tuple(text: str) -> tuple:
    try:
        from packaging.version import Version
        return (Version(str(text)),)
    except Exception:  # noqa: BLE001 - an unparsable version compares as oldest
        return ()


def check_meta(meta: dict, file: Path, key: str) -> None:
    """Refuse a bundle written by a newer netkiln or in a newer bundle format."""
    from netkiln.version import __version__

    fmt = meta.get("bundle_format")
    written_by = meta.get("netkiln", "unknown")
    if not isinstance(fmt, int):
        raise NetkilnError("meta.json has no bundle_format; this is not a netkiln bundle.", key=key, file=str(file))
    if fmt > BUNDLE_FORMAT:
        raise NetkilnError(f"this bundle was written by netkiln {written_by} in bundle format {fmt}, but netkiln "
                           f"{__version__} reads format {BUNDLE_FORMAT} at most; upgrade netkiln "
                           "(pip install -U netkiln).", key=key, file=str(file))
    mine, theirs = _version_tuple(__version__), _version_tuple(written_by)
    if mine and theirs and theirs > mine:
        raise NetkilnError(f"this bundle was written by a newer netkiln ({written_by}) than the one installed "
                           f"({__version__}); upgrade netkiln to load it.", key=key, file=str(file))


def find_targets(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every `_target_` entry in a nested config: [(config path, target)]."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            if k == "_target_":
                found.append((sub, v))
            else:
                found.extend(find_targets(v, sub))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.extend(find_targets(v, f"{path}[{i}]"))
    return found


def read_bundle(run: Any, *, allow_targets: bool = False, key: str = "run") -> Bundle:
    """Read and check the bundle's config, preprocessing and meta files (no weights, no model)."""
    import yaml

    from netkiln.data.row_filter import parse_filter
    from netkiln.interpolation import refuse_in_bundle
    from netkiln.safe_yaml import safe_load_file
    from netkiln.trust import is_trusted_target

    from netkiln.artifacts import bundle_schema

    path = find_bundle(run, key)
    meta = _read_json(path / "meta.json", key)
    bundle_schema.check_meta(meta, path / "meta.json", key)
    check_meta(meta, path / "meta.json", key)
    for name in FILES:
        if not (path / name).is_file():
            raise NetkilnError(f"the model bundle has no {name}", key=key, file=str(path))
    try:
        config = safe_load_file(path / "config.yaml")     # no aliases ("billion laughs"), size capped
    except (OSError, yaml.YAMLError) as err:
        raise NetkilnError(f"cannot read the bundle's config: {' '.join(str(err).split())}", key=key,
                           file=str(path / "config.yaml")) from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or "task" not in config:
        raise NetkilnError("the bundle's config has no model or task", key=key, file=str(path / "config.yaml"))
    # Plain data only: no `${...}` for OmegaConf to resolve, and a row filter in the filter language.
    refuse_in_bundle(config, str(path / "config.yaml"))
    data = config.get("data")
    if isinstance(data, dict) and data.get("filter") is not None:
        parse_filter(data["filter"], key="data.filter", file=str(path / "config.yaml"))
    # The rule training applies (netkiln.trust): public torch.nn classes load, anything else needs allow_targets.
    untrusted = [(where, t) for where, t in find_targets(config.get("model"), "model")
                 if not is_trusted_target(t, "model")]
    if untrusted and not allow_targets:
        where, target = untrusted[0]
        raise NetkilnError(f"the bundle's config names an arbitrary class to import ({where} = {target!r}); "
                           "netkiln builds only its own registered layers and public torch.nn classes from a bundle. "
                           "If you trust this bundle, pass allow_targets=true.", key=key,
                           file=str(path / "config.yaml"))
    preprocessing = _read_json(path / "preprocessing.json", key)
    for needed in ("layout", "input_shape"):
        if needed not in preprocessing:
            raise NetkilnError(f"preprocessing.json has no '{needed}'", key=key, file=str(path / "preprocessing.json"))
    bundle_schema.check_config(config, path / "config.yaml", key)
    bundle_schema.check_preprocessing(preprocessing, config, path / "preprocessing.json", key)
    return Bundle(path=path, config=config, preprocessing=preprocessing, meta=meta)


def load_bundle(run: Any, *, allow_targets: bool = False, key: str = "run") -> Bundle:
    """Read the bundle, compile its model with netkiln's layers and load the weights (eval mode, CPU)."""
    from netkiln.artifacts.bundle_schema import check_weight_shapes, safetensors_shapes
    from netkiln.compiler import compile_model
    from netkiln.compiler.builder import plan_model
    from netkiln.task import Task

    bundle = read_bundle(run, allow_targets=allow_targets, key=key)
    try:
        task = Task.from_dict(bundle.config["task"])
    except (KeyError, TypeError, ValueError) as err:
        raise NetkilnError(f"the bundle's task is malformed ({err})", key=key,
                           file=str(bundle.path / "config.yaml")) from None
    weights = bundle.path / "weights.safetensors"

    def shapes(tensors: dict) -> dict:
        return {k: tuple(t.shape) for k, t in tensors.items()}

    # The model planned on the meta device against the weights file's header: a damaged config (a huge
    # num_outputs or units) is refused before anything is allocated.
    trust = {"allow_targets": True, "only_trusted": not allow_targets,    # the rule read_bundle checked
             "vocab_size": bundle.preparation.get("vocab_size")}           # text: the embeddings' input_dim
    planned = plan_model(bundle.config["model"], bundle.input_shape, task, **trust)
    if planned is not None:
        check_weight_shapes(shapes(planned.state_dict()), safetensors_shapes(weights, key), weights, key)
    try:
        network = compile_model(bundle.config["model"], bundle.input_shape, task, **trust)
    except NetkilnError as err:
        raise NetkilnError(str(err), key=key, file=str(bundle.path / "config.yaml")) from None
    state = read_weights(bundle, key)
    check_weight_shapes(shapes(network.state_dict()), shapes(state), weights, key)
    network.load_state_dict(state)
    network.eval()
    bundle.network, bundle.task = network, task
    return bundle
