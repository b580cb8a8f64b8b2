"""One contract with Lightning, Hydra and torch: one trust rule for `_target_`, no silently ignored config keys,
2-unit binary heads, the private APIs netkiln leans on, torch.export."""
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from netkiln.cli import main
from netkiln.trust import is_trusted_target
from conftest import TINY



# ------------------------------------------------------------------------------------ one trust rule for _target_
@pytest.mark.parametrize("target, kind, trusted", [
    ("torch.nn.Identity", "model", True),
    ("torch.nn.modules.linear.Identity", "model", True),
    ("torch.nn.Linear.__init__.__globals__", "model", False),
    ("os.system", "model", False),
    ("torch.nnx.Thing", "model", False),
    ("torch.optim.Adam", "optimizer", True),
    ("torch.optim.lr_scheduler.StepLR", "scheduler", True),
    ("torch.nn.Identity", "optimizer", False),
    ("pytorch_lightning.callbacks.Timer", "callback", True),
    ("my_module.Callback", "callback", False),
])
def test_trust_rule(target, kind, trusted):
    assert is_trusted_target(target, kind) is trusted


def test_a_bundle_loads_whatever_training_accepted(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "model.layers=[flatten,{_target_: torch.nn.Identity}]",
                 f"hydra.run.dir={run}"]) == 0
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8), dtype=np.float32))
    assert main(["evaluate", f"run={run}"]) == 0
    assert main(["predict", f"run={run}", f"input={tmp_path}/x.npz", f"output={tmp_path}/p.csv"]) == 0
    assert (tmp_path / "p.csv").is_file()
    assert main(["export", f"run={run}", "format=onnx", f"output={tmp_path}/m.onnx"]) == 0
    # The same bundle naming a class outside torch.nn is refused, as training would refuse it.
    config_file = run / "model" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["model"]["layers"][1] = {"_target_": "collections.OrderedDict"}
    config_file.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["evaluate", f"run={run}"]) == 2
    err = capsys.readouterr().err
    assert "collections.OrderedDict" in err and "allow_targets=true" in err


# ------------------------------------------------------------------------------------ unknown keys (+ overrides)
def test_keys_added_with_plus_that_netkiln_reads_are_accepted(tmp_path, capsys):
    """`vars` is the free namespace; `+`/`++` on keys netkiln knows, or inside a group that checks its own
    arguments, pass. (A top-level key netkiln never reads is refused: tests/test_bad_inputs.py, key-plus-*.)"""
    run = tmp_path / "run"
    assert main(["train", *TINY, "+vars.width=5", "model.layers=[{dense: {units: ${vars.width}}}]",
                 "+optimizer.amsgrad=true", "++batch_size=16", f"hydra.run.dir={run}"]) == 0
    assert "(None, 5)" in (run / "summary.txt").read_text()


# ------------------------------------------------------------------------------------ binary task, 2 output units
def test_two_units_on_a_binary_task_train_as_a_two_class_softmax(tmp_path):
    """Keras's FordA recipe: `Dense(2)` + sparse categorical cross-entropy on a binary task."""
    import json

    import pandas as pd

    run = tmp_path / "run"
    assert main(["train", *TINY, "data.task=binary", "model.head=none",
                 "model.layers=[{dense: {units: 8, activation: relu}}, {dense: {units: 2}}]",
                 f"hydra.run.dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["loss"] == "cross_entropy"
    assert metrics["task"]["kind"] == "multiclass" and metrics["task"]["num_outputs"] == 2
    assert main(["evaluate", f"run={run}"]) == 0
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32))
    assert main(["predict", f"run={run}", f"input={tmp_path}/x.npz", f"output={tmp_path}/p.csv"]) == 0
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["prediction", "prob_0", "prob_1"]
    assert np.allclose(pred[["prob_0", "prob_1"]].sum(axis=1), 1, atol=1e-5)
    assert (pred["prediction"] == pred[["prob_0", "prob_1"]].to_numpy().argmax(1)).all()
    assert main(["export", f"run={run}", "format=onnx", "probabilities=true", f"output={tmp_path}/m.onnx"]) == 0
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert sidecar["output"]["shape"] == ["batch", 2] and sidecar["output"]["labels"] == ["0", "1"]


def test_other_output_sizes_on_a_binary_task_are_refused():
    from netkiln.compiler import compile_model
    from netkiln.errors import NetkilnError
    from netkiln.task import Task

    binary = Task("binary", 1, ("no", "yes"))
    for units in (1, 2):
        net = compile_model({"layers": [{"dense": units}], "head": "none"}, (4,), binary)
        assert binary.for_output_units(net.output_shape).num_outputs == units
    with pytest.raises(NetkilnError, match=r"head mismatch.*or 2"):
        compile_model({"layers": [{"dense": 3}], "head": "none"}, (4,), binary)


# ------------------------------------------------------------------------------------ private APIs, version pins
SRC = Path(__file__).resolve().parent.parent / "src"
# The private names of Lightning, Hydra and Optuna netkiln uses; netkiln/compat.py says why each is needed.
PRIVATE = [
    ("pytorch_lightning.callbacks", "EarlyStopping._run_early_stopping_check"),
    ("pytorch_lightning.callbacks", "EarlyStopping._evaluate_stopping_criteria"),
    ("pytorch_lightning.strategies.launchers.multiprocessing", "_MultiProcessingLauncher"),
    ("pytorch_lightning.trainer.connectors.checkpoint_connector", "_CheckpointConnector.dump_checkpoint"),
    ("hydra._internal.core_plugins.basic_sweeper", "BasicSweeper"),
    ("optuna.storages", "BaseStorage.get_trial_id_from_study_id_trial_number"),
]


@pytest.mark.parametrize("module, name", PRIVATE)
def test_the_private_names_netkiln_uses_exist(module, name):
    obj = importlib.import_module(module)
    for part in name.split("."):
        assert hasattr(obj, part), f"{module}.{name} is gone: update netkiln/compat.py for this version"
        obj = getattr(obj, part)


def test_the_private_attributes_netkiln_reads_exist(tmp_path):
    import optuna
    import pytorch_lightning as pl
    import torch

    from netkiln.compat import dump_checkpoint, optimizer_step_progress, optuna_trial

    trainer = pl.Trainer(accelerator="cpu", strategy="ddp_spawn", devices=1, logger=False,
                         enable_checkpointing=False, default_root_dir=tmp_path)
    assert hasattr(trainer.strategy, "_launcher") and hasattr(trainer.strategy._launcher, "_start_method")
    assert hasattr(trainer, "_checkpoint_connector") and callable(dump_checkpoint)
    study = optuna.create_study()
    trial = study.ask()
    assert optuna_trial(study, trial.number)._trial_id == trial._trial_id
    assert optimizer_step_progress(trainer).total.completed == 0
    # Lightning's criteria return (should_stop, reason); NetkilnEarlyStopping returns the same shape.
    stop = pl.callbacks.EarlyStopping(monitor="val/loss", patience=1)
    should_stop, reason = stop._evaluate_stopping_criteria(torch.tensor(1.0))
    assert should_stop is False and isinstance(reason, str)


def test_private_apis_are_used_only_in_compat():
    patterns = re.compile(r"_checkpoint_connector|hydra\._internal|\._storage\b|\._study_id|_MultiProcessingLauncher|"
                          r"strategy\._launcher|\._trial_id|manual_optimization\.optim_step_progress|batchnorm\._BatchNorm")
    found = [f"{path.relative_to(SRC)}:{i}" for path in SRC.rglob("*.py") if path.name != "compat.py"
             for i, line in enumerate(path.read_text().splitlines(), 1) if patterns.search(line)]
    assert not found, f"private Lightning/Hydra/Optuna APIs outside netkiln/compat.py: {found}"


def test_the_installed_libraries_are_in_the_pinned_ranges():
    """pyproject.toml pins Lightning, Hydra and Optuna to the ranges these tests run on."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    deps = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {r.name: r for r in map(Requirement, deps)}
    for name in ("pytorch-lightning", "hydra-core", "optuna"):
        assert pins[name].specifier.contains(version(name)), (name, version(name), str(pins[name].specifier))
    assert not pins["pytorch-lightning"].specifier.contains("2.5.0"), "EarlyStoppingReason needs Lightning 2.6"


# ------------------------------------------------------------------------------------ torch.export
@pytest.mark.parametrize("model, data", [
    ("mlp", []),
    ("cnn", ["data.layout=sequence", "data.shape=[8,2]"]),
    ("gru", ["data.layout=sequence", "data.shape=[4,2]"]),
    ("lstm", ["data.layout=sequence", "data.shape=[4,2]"]),
])
def test_torch_export_writes_a_pt2_that_matches_pytorch(tmp_path, capsys, model, data):
    import json

    import torch

    run = tmp_path / "run"
    assert main(["train", *TINY, "data.n_features=16", f"model={model}", *data, f"hydra.run.dir={run}"]) == 0
    capsys.readouterr()
    assert main(["export", f"run={run}", "format=torch_export", "probabilities=true"]) == 0
    assert "max abs difference from PyTorch on 64 rows" in capsys.readouterr().out
    path = run / "export" / "model.pt2"
    sidecar = json.loads((run / "export" / "model.pt2.json").read_text())
    assert sidecar["format"] == "torch_export" and sidecar["check"]["rows"] == 64 and sidecar["check"]["ok"]
    program = torch.export.load(str(path)).module()
    x = torch.randn(3, *sidecar["input"]["shape"][1:])
    assert torch.allclose(program(x).sum(-1), torch.ones(3), atol=1e-5)     # any batch size; probabilities
