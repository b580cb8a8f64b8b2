"""Settings Lightning's Trainer refuses are bad input: exit 2, one paragraph naming the key, no traceback."""
import importlib.util

import pytest
import torch

from netkiln.cli import main
from conftest import TINY


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_trainer_gpu_without_a_gpu_names_the_accelerator(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", *TINY, "trainer.accelerator=gpu", "trainer.devices=1", f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "trainer: the Trainer rejected the settings" in err and "trainer.accelerator=gpu" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (run / "model").exists() and not (run / "checkpoints").exists()


def test_an_accelerator_whose_package_is_missing_names_the_key(tmp_path, capsys):
    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed here")
    rc = main(["train", *TINY, "trainer.accelerator=tpu", f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "trainer: the Trainer rejected the settings" in err and "torch_xla" in err and "Traceback" not in err
