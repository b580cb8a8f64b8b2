"""What users expect: netkiln.load() in Python, `--help` per command, the shipped recipes, the summary's labels."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netkiln.cli import main


# ------------------------------------------------------------------------------------------------ summary
def test_summary_says_a_recurrent_layer_is_bidirectional(capsys):
    assert main(["summary", "model=birnn", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU, bidirectional)" in out
    assert main(["summary", "model=gru", "data=mnist1d"]) == 0
    out = capsys.readouterr().out
    assert "gru (GRU)" in out and "bidirectional" not in out


# ------------------------------------------------------------------------------------------------ --help
def command_help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as done:        # Hydra ends a --help run with sys.exit(0)
        main(list(argv))
    assert done.value.code in (0, None)
    return capsys.readouterr().out


def group_line(text: str, group: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.split()[:1] == [group])
    return line.split(None, 1)[1].split(", ")


def test_train_help_lists_groups_with_options_and_keys_with_their_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text("layers:\n  - dense: {units: 8}\n")
    monkeypatch.chdir(tmp_path)
    out = command_help(capsys, "train", "--help")
    assert "mine" in group_line(out, "model") and "auto*" in group_line(out, "model")   # the user's conf/ too
    assert {"adam*", "sgd"} <= set(group_line(out, "optimizer"))
    assert "mnist1d*" in group_line(out, "data") and "ddp" in group_line(out, "trainer")
    assert "batch_size=100" in out and "Rows per batch; one optimizer step per batch." in out
    assert "steps_per_execution=64" in out and "(Keras's steps_per_execution)." in " ".join(out.split())
    assert "== Config ==" not in out and "optimizer:\n  _target_" not in out    # not the whole composed config


def test_help_of_predict_export_evaluate_shows_their_own_keys(capsys):
    predict = command_help(capsys, "predict", "--help")
    assert "Config groups" not in predict and "optimizer" not in predict
    assert "chunk_rows=10000" in predict and "rows read, prepared and predicted at a time" in predict
    assert "batch_size" not in predict and "seed" not in predict
    export = command_help(capsys, "export", "-h")
    assert "format=onnx" in export and "Config groups" not in export and "chunk_rows" not in export
    evaluate = command_help(capsys, "evaluate", "--help")
    groups = evaluate.split("Config groups", 1)[1].split("Keys", 1)[0]
    assert "data " in groups and "model " not in groups and "optimizer" not in groups
    assert "split=auto" in evaluate and "plots=true" in evaluate


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "summary", "analyze"])
def test_every_key_of_a_command_has_its_help_line(command):
    from netkiln.commands.hydra_app import CONF_DIR
    from netkiln.commands.help import key_descriptions

    written = yaml.safe_load((Path(CONF_DIR) / f"{command}.yaml").read_text())
    keys = key_descriptions(command)
    assert set(keys) == set(written) - {"defaults", "hydra"}
    assert all(text for _, text in keys.values()), [k for k, (_, text) in keys.items() if not text]


def test_train_help_imports_no_torch(tmp_path):
    code = ("import sys\nfrom netkiln.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
