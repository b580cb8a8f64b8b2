"""The shipped text models (model=textcnn, model=textrnn) and model=auto's pick for token ids."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from netkiln.auto_model import resolve_auto_model
from netkiln.commands.hydra_app import CONF_DIR
from netkiln.compiler import ModelSpecError, compile_model, count_params
from netkiln.task import Task

V, T = 500, 30
BINARY = Task("binary", 1)


def composed(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def token_ids(n=6, steps=T, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (n, steps), generator=g)
    lengths = torch.randint(1, steps + 1, (n,), generator=g)
    ids[torch.arange(steps)[None] >= lengths[:, None]] = 0
    return ids.float()


@pytest.mark.parametrize("name", ["textcnn", "textrnn"])
def test_shipped_text_models_ignore_padding(name):
    cfg = composed(f"model={name}")
    net = compile_model(cfg.model, (T,), BINARY, vocab_size=V).eval()
    assert net.masked and net.layers[0].embedding.weight.shape == (V, 64)
    x = token_ids()
    with torch.no_grad():
        assert torch.allclose(net(torch.cat([x, torch.zeros(len(x), 50)], 1)), net(x), atol=1e-5)


def test_textcnn_is_kims_layout_with_keras_counts():
    net = compile_model(composed("model=textcnn").model, (T,), BINARY, vocab_size=V)
    conv = [64 * k * 100 + 100 for k in (3, 4, 5)]
    assert [r.output_shape for r in net.rows if r.depth == 0] == [(T, 64), (300,), (300,), (1,)]
    assert count_params(net)["total"] == V * 64 + sum(conv) + 300 + 1
    assert net.layer_names == ["embedding", "parallel", "dropout", "dense"]


def test_textrnn_vars_resize_it():
    cfg = composed("model=textrnn", "model.vars.width=8", "model.vars.embed_dim=16")
    net = compile_model(cfg.model, (T,), Task("multiclass", 4), vocab_size=V)
    assert [r.output_shape for r in net.rows] == [(T, 16), (16,), (16,), (4,)]
    assert net.rows[1].params == 2 * 3 * (8 * (16 + 8) + 2 * 8)


def test_auto_picks_textcnn_for_token_ids():
    cfg = composed()
    assert resolve_auto_model(cfg, "tokens", (T,)) == "textcnn"
    assert cfg.model.name == "textcnn" and cfg.model.description == f"picked by model=auto for token ids ({T},)"
    auto = composed("model.vars.width=16")
    resolve_auto_model(auto, "tokens", (T,))
    net = compile_model(auto.model, (T,), BINARY, vocab_size=V)
    assert net.rows[1].output_shape == (48,)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gru"])
def test_models_without_an_embedding_are_refused_on_token_ids(name):
    with pytest.raises(ModelSpecError, match=r"^model.layers\[0\] .*start the layers with `- embedding"):
        compile_model(composed(f"model={name}").model, (T,), BINARY, vocab_size=V)


# --- end to end, on a tiny CSV of texts -----------------------------------------------------------------------
POSITIVE, NEGATIVE = "good great fine superb lovely fun".split(), "bad awful dull poor boring weak".split()
FILLER = [f"w{i}" for i in range(80)]       # enough distinct words that max_tokens 50 and 100 differ


def texts_csv(path, rows=60, seed=0):
    import csv
    import random

    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["review", "label"])
        for i in range(rows):
            words = rng.sample(FILLER, rng.randint(2, 12)) + [rng.choice(POSITIVE if i % 2 else NEGATIVE)]
            rng.shuffle(words)
            out.writerow([" ".join(words), "pos" if i % 2 else "neg"])
    return path


def text_data(path):
    return ["data=text", f"data.path={path}", "data.text=review", "data.target=label", "trainer=debug",
            "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "batch_size=16",
            "model.vars.width=4", "model.vars.embed_dim=8"]


@pytest.mark.slow
def test_a_text_sweep_over_models_and_vocabulary_sizes_works(tmp_path):
    import csv

    from netkiln.cli import main

    sweep_dir = tmp_path / "sweep"
    data = texts_csv(tmp_path / "reviews.csv")
    assert main(["train", "-m", *text_data(data), "model=textcnn,textrnn", "data.max_tokens=50,100",
                 f"hydra.sweep.dir={sweep_dir}"]) == 0
    rows = list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))
    assert [r["status"] for r in rows] == ["ok"] * 4
    by_trial = {r["overrides"]: r for r in rows}
    assert set(by_trial) == {f"model={m} data.max_tokens={n}" for m in ("textcnn", "textrnn") for n in (50, 100)}
    # a larger vocabulary, a larger embedding: each trial compiled against its own data
    for model in ("textcnn", "textrnn"):
        small, large = (int(by_trial[f"model={model} data.max_tokens={n}"]["params"]) for n in (50, 100))
        assert large > small


@pytest.mark.slow
def test_a_saved_text_model_gets_its_vocabulary_back(tmp_path):
    from netkiln.artifacts.bundle import load_bundle
    from netkiln.cli import main

    run = tmp_path / "run"
    data = texts_csv(tmp_path / "reviews.csv")
    assert main(["train", *text_data(data), "model=textrnn", "data.max_tokens=50", f"hydra.run.dir={run}"]) == 0
    bundle = load_bundle(run)
    assert bundle.preparation["vocab_size"] == 50
    assert bundle.network.masked and bundle.network.layers[0].embedding.weight.shape == (50, 8)
