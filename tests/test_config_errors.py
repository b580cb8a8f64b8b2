"""Hydra composition errors come back as one paragraph with a did-you-mean, exit code 2."""
import pytest

from netkiln.cli import main


@pytest.mark.parametrize("override, expected", [
    ("optimizer.lrr=0.1", "Did you mean 'optimizer.lr'?"),
    ("data.split.vall=0.1", "Did you mean 'data.split.val'?"),
    ("trainer.max_epoch=3", "Did you mean 'trainer.max_epochs'?"),
    ("model.vars.widht=3", "Did you mean 'model.vars.width'?"),
    ("seeed=3", "Did you mean 'seed'?"),
    ("model=gruu", "Did you mean 'gru'?"),
    ("optimizer=adamm", "Did you mean 'adam'?"),
    ("hydra/launcher=jobib", "Did you mean 'joblib'?"),
    ("model=[a", 'cannot parse the override "model=[a"'),
])
def test_composition_errors(tmp_path, capsys, override, expected):
    rc = main(["train", override, f"hydra.run.dir={tmp_path}/run"])
    assert rc == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err and err.count("\n") == 1       # one paragraph
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, expected", [
    ("hydra.sweeper.objective=[val/acc:max]", "hydra.sweeper.objective: unknown config key. Did you mean "
                                              "'hydra.sweeper.objectives'?"),
    ("hydra.sweeper.max_params=abc", "hydra.sweeper.max_params: must be a whole number, not 'abc'."),
    ("hydra.sweeper.max_latency_ms=fast", "hydra.sweeper.max_latency_ms: must be a number, not 'fast'."),
    ("hydra.sweeper.objectives=params:min", "hydra.sweeper.objectives: must be a list in square brackets, e.g. "
                                            "'hydra.sweeper.objectives=[params:min]', not 'params:min'."),
])
def test_sweeper_keys_get_a_did_you_mean_and_a_plain_type_error(tmp_path, capsys, override, expected):
    rc = main(["train", "-m", "hydra/sweeper=optuna", "optimizer.lr=0.1,0.01", override,
               f"hydra.sweep.dir={tmp_path}/sweep"])
    assert rc == 2
    err = capsys.readouterr().err
    assert expected in err and "object_type" not in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "sweep").exists()


def test_evaluate_with_data_path_but_no_source_says_to_name_the_source(tmp_path, capsys):
    rc = main(["evaluate", f"run={tmp_path}/run", f"data.path={tmp_path}/new.csv"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.path: other data to evaluate on starts with its source, e.g." in err
    assert "data=csv data.path=" in err and "+data=" not in err and err.count("\n") == 1


def test_full_error_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    rc = main(["train", "optimizer.lrr=0.1", f"hydra.run.dir={tmp_path}/run"])
    assert rc == 2
    assert "Traceback" in capsys.readouterr().err
