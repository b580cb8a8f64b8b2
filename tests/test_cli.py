"""The command line: dispatch, help, Hydra integration and exit codes."""
import json
import sys

import pytest

from netkiln.cli import main


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.returncode == 0
    assert "train" in result.stdout and "summary" in result.stdout


def test_unknown_command_suggests(cli):
    result = cli("trian")
    assert result.returncode == 2
    assert "Did you mean 'train'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_cfg_job_prints_composed_config(capsys):
    assert main(["train", "model=gru", "optimizer.lr=0.05", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "gru:" in out and "lr: 0.05" in out and "name: mnist1d" in out


def test_unknown_group_option_is_a_user_error(cli, tmp_path):
    result = cli("train", "model=gruu", f"hydra.run.dir={tmp_path}/run")
    assert result.returncode == 2
    assert "no option 'gruu'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_override_syntax_is_a_user_error(cli):
    result = cli("train", "model=[a")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_summary_prints_keras_table_without_lightning(cli):
    code = ("import sys; from netkiln.cli import main; rc = main(['summary', 'model=cnn', 'data=mnist1d']); "
            "assert 'pytorch_lightning' not in sys.modules and 'torchmetrics' not in sys.modules; sys.exit(rc)")
    import subprocess
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Layer (type)" in out and "Output Shape" in out and "Param #" in out
    assert "(None, 19, 25)" in out and "Total params: 5,210" in out


def test_summary_on_digits_with_cnn2d(capsys):
    assert main(["summary", "model=cnn2d", "data=digits"]) == 0
    out = capsys.readouterr().out
    assert "Conv2D" in out and "Non-trainable params" in out


def test_summary_reports_compile_error_with_key(capsys):
    rc = main(["summary", "model=cnn", "data=iris"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.layers[0]" in err


def test_overrides_before_and_after_an_option_compose_with_the_user_conf(tmp_path, monkeypatch, capsys):
    """netkiln adds overrides of its own (a conf/ folder in the working directory): they must not split the
    user's overrides from Hydra's options."""
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("layers:\n  - dense: {units: 7}\nhead: auto\n")
    monkeypatch.chdir(tmp_path)
    for argv in (["train", "model=mine", "--cfg", "job"], ["train", "--cfg", "job", "model=mine"]):
        capsys.readouterr()
        assert main(argv) == 0, argv
        assert "units: 7" in capsys.readouterr().out
