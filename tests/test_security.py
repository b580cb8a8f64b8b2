"""Untrusted files: checkpoints never unpickle, configs name torch classes only unless the user opts in, and names
read from a bundle never become paths. (Bundles load without pickle and refuse `_target_`: test_lifecycle.py.)"""
import ast
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from netkiln.cli import main
from conftest import TINY

SRC = Path(__file__).resolve().parent.parent / "src"


def test_every_torch_load_in_the_source_is_weights_only():
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                weights_only = {k.arg: k.value for k in node.keywords}.get("weights_only")
                calls.append(f"{path.relative_to(SRC)}:{node.lineno}")
                assert isinstance(weights_only, ast.Constant) and weights_only.value is True, calls[-1]
    assert calls, "the checkpoint loader was found"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("security") / "run"
    assert main(["train", *TINY, f"hydra.run.dir={run}"]) == 0
    return run


def _copy(run, dest):
    import shutil
    shutil.copytree(run, dest)
    return dest


def test_resume_never_unpickles_a_checkpoint(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path / "run")
    marker = tmp_path / "pwned"
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "extra": _Payload(marker)}, last)
    capsys.readouterr()
    assert main(["train", *TINY, f"hydra.run.dir={run}", "resume=true", "trainer.max_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "will not unpickle" in err and "Traceback" not in err
    assert not marker.exists(), "the pickled payload ran"

    last.write_bytes(last.read_bytes()[:200])                      # torn
    assert main(["train", *TINY, f"hydra.run.dir={run}", "resume=true", "trainer.max_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "truncated or corrupt" in err and "Traceback" not in err


def test_config_targets_outside_torch_need_allow_targets(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "my_classes.py").write_text(
        "import pathlib, torch\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "class MyAdam(torch.optim.Adam):\n    pass\n"
        "class MyLayer(torch.nn.Identity):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for override in ("optimizer._target_=my_classes.MyAdam", "model.layers=[flatten,{_target_: my_classes.MyLayer}]"):
        capsys.readouterr()
        assert main(["train", *TINY, override, f"hydra.run.dir={tmp_path}/refused"]) == 2
        assert "allow_targets=true" in capsys.readouterr().err
        assert not marker.exists(), "refused before importing the module"
    for i, override in enumerate(("optimizer._target_=my_classes.MyAdam",
                                  "model.layers=[flatten,{_target_: my_classes.MyLayer}]")):
        assert main(["train", *TINY, override, "allow_targets=true", f"hydra.run.dir={tmp_path}/trusted{i}"]) == 0
    assert marker.exists()
    # torch's own classes need no opt-in.
    assert main(["train", *TINY, "optimizer._target_=torch.optim.NAdam",
                 "model.layers=[flatten,{_target_: torch.nn.Identity}]", f"hydra.run.dir={tmp_path}/torch"]) == 0


@pytest.mark.parametrize("target", ["torch.nn.Linear.__init__.__globals__", "torch.nn.modules.module.torch.jit.ScriptModule",
                                    "torch.nn.modules.module.torch.Tensor"])
def test_a_torch_nn_prefix_cannot_walk_out_of_torch_nn(tmp_path, capsys, target):
    capsys.readouterr()
    assert main(["train", *TINY, f"model.layers=[flatten,{{_target_: {target}}}]", f"hydra.run.dir={tmp_path}/run"]) == 2
    err = capsys.readouterr().err
    assert "_target_" in err and "Traceback" not in err and ("allow_targets" in err or "private" in err), err


def test_names_from_a_bundle_never_become_paths(trained, tmp_path):
    """Every file netkiln writes has a fixed name inside the folder the user chose: names read from a bundle (class
    names, model name) are data, so `..` in them goes nowhere."""
    run = _copy(trained, tmp_path / "runs" / "run")
    model = run / "model"
    prep = json.loads((model / "preprocessing.json").read_text())
    prep["class_names"] = prep["task"]["class_names"] = ["../../../escaped_a", "/tmp/escaped_b", "c"]
    (model / "preprocessing.json").write_text(json.dumps(prep))
    config = yaml.safe_load((model / "config.yaml").read_text())
    config["task"]["class_names"] = prep["class_names"]
    config["model"]["name"] = "../../../escaped_model"
    (model / "config.yaml").write_text(yaml.safe_dump(config))
    import numpy as np
    np.save(tmp_path / "in.npy", np.zeros((3, 8), dtype=np.float32))
    before = {p for p in tmp_path.rglob("*")}
    assert main(["evaluate", f"run={run}"]) == 0
    assert main(["export", f"run={run}", "format=torchscript"]) == 0
    assert main(["predict", f"run={run}", f"input={tmp_path}/in.npy", f"output={tmp_path}/out/p.csv"]) == 0
    new = {p for p in tmp_path.rglob("*")} - before
    allowed = (run / "evaluation", run / "export", tmp_path / "out")
    assert new and all(any(p == a or a in p.parents for a in allowed) for p in new), sorted(map(str, new))
    assert not list(Path("/tmp").glob("escaped*")) and not list(tmp_path.rglob("escaped*"))
