"""model=auto (the default) picks the model from the data's shape; the hparams presets pick their sweeper."""
import csv

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from netkiln.cli import main
from netkiln.commands.hydra_app import CONF_DIR

QUIET = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
FLAT = ["data=synthetic", "data.n_samples=120", "data.n_features=6"]
SEQUENCE = [*FLAT, "data.layout=sequence", "data.shape=[20,2]"]
IMAGE = [*FLAT, "data.layout=image", "data.shape=[1,8,8]"]


def composed(*overrides, config="train"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config, overrides=list(overrides))


def shipped_model(name):
    return OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/model/{name}.yaml"))


def saved_model(run_dir):
    """The model of the run's saved config (.hydra/config.yaml), interpolations left as written."""
    return yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["model"]


@pytest.mark.parametrize("data, name, layout", [(FLAT, "mlp", "flat features (6,)"),
                                                (SEQUENCE, "cnn", "sequences (20, 2)"),
                                                (IMAGE, "cnn2d", "images (1, 8, 8)")])
def test_the_model_is_picked_from_the_data_shape_and_recorded(tmp_path, data, name, layout):
    run = tmp_path / "run"
    assert main(["train", *data, *QUIET, f"hydra.run.dir={run}"]) == 0
    model = saved_model(run)
    shipped = shipped_model(name)
    assert model["layers"] == shipped["layers"] and model["head"] == shipped["head"]
    assert model["name"] == name and model["description"] == f"picked by model=auto for {layout}"
    assert "auto" not in model
    bundle = yaml.safe_load((run / "model" / "config.yaml").read_text())["model"]
    assert bundle["name"] == name and len(bundle["layers"]) == len(shipped["layers"])
    assert f"model=auto: {name} for {layout}" in (run / "train.log").read_text()


def test_the_default_run_gets_the_same_cnn_as_before():
    """MNIST-1D is a sequence: `netkiln train` compiles exactly what model=cnn compiles (same layers and weights)."""
    import torch

    from netkiln.auto_model import resolve_auto_model
    from netkiln.compiler import compile_model
    from netkiln.task import Task

    auto, cnn = composed(), composed("model=cnn")
    assert OmegaConf.to_container(auto.model) == {"auto": True, "vars": {"width": None, "dropout": None,
                                                                     "embed_dim": None}}
    assert resolve_auto_model(auto, "sequence", (40, 1)) == "cnn"
    assert resolve_auto_model(cnn, "sequence", (40, 1)) is None           # an explicit model is never replaced
    resolved = OmegaConf.to_container(auto.model, resolve=True)
    assert resolved.pop("name") == "cnn" and resolved.pop("description").startswith("picked by model=auto")
    assert resolved == OmegaConf.to_container(cnn.model, resolve=True)
    nets = []
    for cfg in (auto, cnn):
        torch.manual_seed(0)
        nets.append(compile_model(cfg.model, (40, 1), Task("multiclass", 10)))
    for (name, a), (_, b) in zip(nets[0].state_dict().items(), nets[1].state_dict().items()):
        assert torch.equal(a, b), name


def test_an_explicit_model_is_never_second_guessed(capsys):
    assert main(["summary", *IMAGE, "model=mlp"]) == 0
    out = capsys.readouterr().out
    assert "model=auto" not in out and "flatten (Flatten)" in out and "conv2d" not in out


def test_summary_shows_the_picked_model(capsys):
    assert main(["summary", *IMAGE]) == 0
    out = capsys.readouterr().out
    assert "model=auto: cnn2d for images (1, 8, 8)" in out and 'Model: "cnn2d"' in out and "conv2d (Conv2D)" in out


def test_vars_overrides_reach_the_picked_model(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *FLAT, *QUIET, "model.vars.width=7", f"hydra.run.dir={run}"]) == 0
    assert saved_model(run)["vars"] == {"width": 7, "dropout": 0.1}
    assert "dense (Dense)                 (None, 7)" in (run / "summary.txt").read_text()


def test_a_var_the_picked_model_lacks_is_an_error_naming_it(capsys):
    assert main(["summary", *IMAGE, "model.vars.width=16"]) == 2
    err = capsys.readouterr().err
    assert "error: model.vars.width: model=auto picked cnn2d for images (1, 8, 8), and cnn2d has no var 'width'" in err
    assert main(["summary", *FLAT, "+model.vars.depth=3"]) == 2
    assert "model.vars.depth: model=auto picked mlp" in capsys.readouterr().err


def test_a_compile_error_in_the_picked_model_says_it_was_picked(capsys):
    assert main(["summary", *FLAT, "data.layout=sequence", "data.shape=[2,2]"]) == 2
    err = capsys.readouterr().err
    assert "model.layers[0] (conv1d): kernel_size 5 is larger than the input length 2" in err
    assert "(model=auto picked cnn for this data;" in err


def test_experiments_choose_their_model():
    from netkiln.auto_model import resolve_auto_model

    cfg = composed("experiment=mnist1d_paper_gru")
    assert resolve_auto_model(cfg, "sequence", (40, 1)) is None
    assert cfg.model.layers[0].gru.units == 6


def test_layers_written_over_model_auto_are_the_model(tmp_path, monkeypatch):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "tiny.yaml").write_text(
        "# @package _global_\nmodel:\n  layers:\n    - dense: 3\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", *FLAT, *QUIET, "experiment=tiny", "hydra.run.dir=run"]) == 0
    assert "dense (Dense)                 (None, 3)" in (tmp_path / "run" / "summary.txt").read_text()
    assert "model=auto" not in (tmp_path / "run" / "train.log").read_text()


def test_a_sweep_picks_in_every_trial(tmp_path):
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", *FLAT, *QUIET, "optimizer.lr=0.01,0.02", f"hydra.sweep.dir={sweep}"]) == 0
    assert [saved_model(sweep / str(i))["name"] for i in (0, 1)] == ["mlp", "mlp"]


@pytest.mark.parametrize("preset", ["grid", "cnn_search", "mlp_search", "model_family"])
def test_each_hparams_preset_composes_with_its_sweeper(preset):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams={preset}"], return_hydra_config=True)
    expected = "NetkilnBasicSweeper" if preset == "grid" else "OptunaSweeper"
    assert cfg.hydra.sweeper._target_.endswith(expected)
    if preset == "model_family":     # a grid over the families, as its comment says
        assert cfg.hydra.sweeper.sampler == "grid"
        assert cfg.hydra.sweeper.params.model == "choice(mlp, cnn, gru)"


def test_an_experiment_can_choose_the_sweeper(tmp_path, monkeypatch):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "search.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/sweeper: optuna\n")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=search", f"hydra.searchpath=[file://{tmp_path}/conf]"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")


MNIST1D_TINY = ["data.generator.num_samples=600", "trainer=debug", *QUIET]


@pytest.mark.parametrize("preset, data", [("cnn_search", MNIST1D_TINY), ("mlp_search", FLAT),
                                          ("model_family", MNIST1D_TINY)])
def test_each_hparams_preset_runs_two_trials(tmp_path, preset, data):
    sweep = tmp_path / "sweep"
    rc = main(["train", "-m", f"hparams={preset}", "hydra.sweeper.n_trials=2", *data, f"hydra.sweep.dir={sweep}"])
    assert rc == 0
    rows = list(csv.DictReader(open(sweep / "leaderboard.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert (sweep / "optuna.db").is_file()
    if preset == "model_family":     # the grid's outer axis is the learning rate: the first trials try each family
        assert sorted(r["overrides"].split("model=")[1].split()[0] for r in rows) == ["cnn", "mlp"]
