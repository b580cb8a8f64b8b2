"""data.augment: Keras-named random transforms on training batches only, seeded, with config errors that name
data.augment[i] (issue #17)."""
import json

import pytest
import torch

from netkiln.cli import main
from netkiln.data.augment import Augmenter, parse_augment, training_inputs
from netkiln.errors import NetkilnError

from test_data_npz_images import make_images

GEOMETRY = ["random_rotation", "random_zoom", "random_translation"]
EVERY = [{"random_flip": {"mode": "horizontal_and_vertical"}}, {"random_rotation": {"factor": 0.2}},
         {"random_zoom": {"height_factor": 0.3, "width_factor": [-0.2, 0.1]}},
         {"random_translation": {"height_factor": 0.2, "width_factor": 0.2}}, {"random_contrast": {"factor": 0.5}}]


def batch(n=16, c=3, h=12, w=10, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def augmenter(steps, seed=0, epoch=0, clip=(0.0, 1.0)):
    a = Augmenter(parse_augment(steps), seed, clip=clip)
    a.new_epoch(seed, epoch)
    return a


@pytest.mark.parametrize("step", EVERY, ids=lambda s: next(iter(s)))
def test_each_augmentation_keeps_shape_dtype_range_and_is_seeded(step):
    x = batch()
    out = augmenter([step])(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    assert torch.equal(augmenter([step])(x), out)                       # same seed and epoch: same batch
    assert not torch.equal(augmenter([step], seed=1)(x), out)           # another seed
    assert not torch.equal(augmenter([step], epoch=1)(x), out)          # another epoch
    a = augmenter([step])
    assert not torch.equal(a(x), a(x))                                  # the next batch draws afresh
    per_image = [torch.equal(o, i) for o, i in zip(out, x)]
    assert not all(per_image)                                           # one setting per image, not per batch


@pytest.mark.parametrize("step", [{"random_rotation": {"factor": 0}}, {"random_zoom": {"height_factor": 0}},
                                  {"random_translation": {"height_factor": 0, "width_factor": 0}},
                                  {"random_contrast": {"factor": 0}}], ids=lambda s: next(iter(s)))
def test_factor_zero_is_the_identity(step):
    x = batch()
    assert torch.allclose(augmenter([step])(x), x, atol=1e-6)


def test_keras_directions():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 1, 5] = 1.0                                                 # a dot, upper right
    exact = {"fill_mode": "constant", "interpolation": "nearest"}
    quarter = augmenter([{"random_rotation": {"factor": [0.25, 0.25], **exact}}])(x)
    assert torch.equal(quarter, torch.rot90(x, 1, [2, 3]))               # positive: counter-clockwise
    moved = augmenter([{"random_translation": {"height_factor": [0.25, 0.25], "width_factor": [-0.25, -0.25],
                                               **exact}}])(x)
    assert moved[0, 0].nonzero().tolist() == [[3, 3]]                   # 2 rows down, 2 columns left
    flipped = augmenter([{"random_flip": {"mode": "horizontal"}}])(x.repeat(32, 1, 1, 1))
    assert {tuple(f[0].nonzero()[0].tolist()) for f in flipped} == {(1, 5), (1, 2)}
    zoomed_out = augmenter([{"random_zoom": {"height_factor": [1.0, 1.0], **exact}}])(torch.ones(1, 1, 8, 8))
    assert float(zoomed_out.mean()) == pytest.approx(0.25)              # +100%: the picture is half as tall/wide
    flat = augmenter([{"random_contrast": {"factor": [1.0, -1.0]}}])(batch())    # factor 0: each channel its mean
    turn_then_move = [{"random_rotation": {"factor": [0.25, 0.25], **exact}},
                      {"random_translation": {"height_factor": [0.25, 0.25], "width_factor": 0, **exact}}]
    assert augmenter(turn_then_move)(x)[0, 0].nonzero().tolist() == [[4, 1]]    # one resampling, in step order
    turn_then_move[1]["random_translation"]["fill_mode"] = "nearest"            # other fill: resampled apart
    assert augmenter(turn_then_move)(x)[0, 0].nonzero().tolist() == [[4, 1]]
    assert torch.allclose(flat, flat.mean(dim=(2, 3), keepdim=True).expand_as(flat), atol=1e-6)


def test_fill_modes_and_clipping():
    x = batch()
    for mode in ("reflect", "wrap", "constant", "nearest"):
        out = augmenter([{"random_rotation": {"factor": 0.3, "fill_mode": mode, "fill_value": 0.5}}])(x)
        assert out.shape == x.shape and torch.isfinite(out).all()
    corner = augmenter([{"random_translation": {"height_factor": [0.5, 0.5], "width_factor": 0,
                                                "fill_mode": "constant", "fill_value": 0.25}}])(x)
    assert torch.allclose(corner[:, :, :5], torch.full_like(corner[:, :, :5], 0.25))
    loud = augmenter([{"random_contrast": {"factor": [-3.0, 3.0]}}], clip=None)(x)
    assert float(loud.max()) > 1.0                                      # float arrays of unknown range: no clip


def test_bare_names_take_defaults_and_a_single_mapping_is_a_list():
    steps = parse_augment(["random_flip", "random_rotation", "random_contrast"])
    assert [s["name"] for s in steps] == ["random_flip", "random_rotation", "random_contrast"]
    assert steps[0]["mode"] == "horizontal_and_vertical" and steps[1]["factor"] == [-0.1, 0.1]
    assert steps[2]["factor"] == [0.8, 1.2] and steps[1]["fill_mode"] == "reflect"
    assert parse_augment({"random_zoom": {"height_factor": [0.1, 0.3]}})[0]["height_factor"] == [0.1, 0.3]
    assert parse_augment(None) == [] and parse_augment([]) == []


@pytest.mark.parametrize("value, key, words", [
    (["random_fip"], "data.augment[0]", "Did you mean 'random_flip'?"),
    ([{"random_flip": {"mode": "sideways"}}], "data.augment[0].random_flip.mode", "horizontal_and_vertical"),
    (["random_flip", {"random_rotation": {"factr": 0.1}}], "data.augment[1].random_rotation.factr",
     "Did you mean 'factor'?"),
    ([{"random_rotation": {"fill_mode": "nearest"}}], "data.augment[0].random_rotation.factor", "needs 'factor'"),
    ([{"random_rotation": {"factor": "lots"}}], "data.augment[0].random_rotation.factor", "a number or"),
    ([{"random_zoom": {"height_factor": [0.3, 0.1]}}], "data.augment[0].random_zoom.height_factor", "lower <="),
    ([{"random_zoom": {"height_factor": -1}}], "data.augment[0].random_zoom.height_factor", "above -1"),
    ([{"random_contrast": {"factor": 1.5}}], "data.augment[0].random_contrast.factor", "at most 1"),
    ([{"random_flip": {}, "random_zoom": {}}], "data.augment[0]", "expected a name"),
    (3, "data.augment", "expected a list"),
])
def test_config_errors_name_the_step(value, key, words):
    with pytest.raises(NetkilnError) as info:
        parse_augment(value)
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_bad_augment_config_exits_2_before_anything_is_written(tmp_path, capsys):
    root = make_images(tmp_path / "shapes", per_class=4)
    run = tmp_path / "run"
    rc = main(["train", "data=images", f"data.path={root}", "data.image_size=[8,8]", "model=mlp",
               "data.augment=[{random_flip: {mode: sideways}}]", f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.augment[0].random_flip.mode" in err and "Traceback" not in err
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed" and not (run / "model").exists()
    rc = main(["train", "data=synthetic", "data.n_samples=40", "+data.augment=[random_flip]",
               f"hydra.run.dir={tmp_path / 'flat'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "data.augment" in err and "applies to images" in err


def test_only_training_batches_are_augmented(tmp_path):
    from netkiln.data import load_dataset
    from netkiln.training.batches import EvalBatches, TrainChunks

    root = make_images(tmp_path / "shapes", per_class=6)
    ds = load_dataset({"name": "images", "path": str(root), "image_size": [8, 8],
                       "augment": ["random_flip", "random_rotation"]}, seed=3)
    chunks = TrainChunks(ds.x_train, ds.y_train, 4, 2, seed=3, inputs=training_inputs(ds, 3))
    idx = next(iter(chunks))[:4]
    xb, yb = chunks.batch(idx)
    assert xb.dtype == torch.float32 and torch.equal(yb, ds.y_train[idx])
    assert not torch.equal(xb, ds.floats(ds.x_train[idx]))
    again = TrainChunks(ds.x_train, ds.y_train, 4, 2, seed=3, inputs=training_inputs(ds, 3))
    assert torch.equal(again.batch(next(iter(again))[:4])[0], xb)        # same seed: same augmented batch
    val = next(iter(EvalBatches(ds.x_val, ds.y_val, 64, inputs=ds.pixels)))[0]
    assert torch.equal(val, ds.floats(ds.x_val))                         # validation: scaled, never augmented


def test_train_with_augmentation_then_evaluate_and_analyze(tmp_path, capsys):
    root = make_images(tmp_path / "shapes", per_class=8)
    run = tmp_path / "run"
    augment = "data.augment=[random_flip,{random_rotation: {factor: 0.1}},{random_contrast: {factor: 0.2}}]"
    common = ["data=images", f"data.path={root}", "data.image_size=[8,8]", augment]
    assert main(["train", *common, "model=mlp", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                 f"hydra.run.dir={run}"]) == 0
    import netkiln

    assert "augment" not in json.dumps(netkiln.load(run).bundle.preparation)   # predict's preparation: none
    # evaluate rebuilds the run's own data (uint8 pixels) and scores it as training did, never augmented
    assert main(["evaluate", f"run={run}", "split=val", f"out={tmp_path / 'eval'}", "plots=false"]) == 0
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    for key, value in metrics["val"].items():
        assert report["metrics"][key] == pytest.approx(value, abs=1e-6), key
    out = tmp_path / "report"
    assert main(["analyze", *common, f"hydra.run.dir={out}"]) == 0
    assert (out / "augment_samples.png").stat().st_size > 1000
    assert "augment_samples.png" in capsys.readouterr().out


def test_a_resumed_run_draws_the_augmentations_the_uninterrupted_run_drew(tmp_path):
    """The generator is reseeded from (seed, epoch) each epoch, so resume=true from last.ckpt continues alike."""
    from safetensors.torch import load_file

    root = make_images(tmp_path / "shapes", per_class=8)
    common = ["train", "data=images", f"data.path={root}", "data.image_size=[8,8]", "model=mlp", "callbacks=none",
              "trainer.enable_progress_bar=false", "data.augment=[random_flip,random_rotation,random_contrast]"]
    assert main([*common, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'straight'}"]) == 0
    assert main([*common, "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'resumed'}"]) == 0
    assert main([*common, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'resumed'}", "resume=true"]) == 0
    straight, resumed = (load_file(str(tmp_path / run / "model" / "weights.safetensors"))
                         for run in ("straight", "resumed"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_the_training_inputs_survive_pickling_for_ddp_spawn():
    import pickle

    a = augmenter(EVERY, seed=5, epoch=2)
    first = a(batch())
    b = pickle.loads(pickle.dumps(a))                  # the generator is rebuilt from (seed, epoch) on arrival
    b.new_epoch(5, 2)
    assert torch.equal(b(batch()), first)


def test_image_arrays_from_an_npz_are_augmented_without_clipping(tmp_path):
    import numpy as np

    from netkiln.data import load_dataset

    y = np.arange(40) % 2
    x = np.random.default_rng(0).normal(0, 1, (40, 1, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "img.npz", x=x, y=y)
    ds = load_dataset({"name": "npz", "path": str(tmp_path / "img.npz"), "augment": ["random_contrast"]}, seed=0)
    inputs = training_inputs(ds, 0)
    assert ds.pixels is None and isinstance(inputs, Augmenter) and inputs.clip is None   # range unknown: no clip
    inputs.new_epoch(0, 0)
    assert not torch.equal(inputs(ds.x_train), ds.x_train)


def test_the_images_config_says_what_each_bare_name_does():
    """A bare random_flip flips both ways (Keras's default); conf/data/images.yaml says so, with the other defaults."""
    from pathlib import Path

    import netkiln
    from netkiln.data.augment import BARE_DEFAULTS, STEPS

    text = (Path(netkiln.__file__).parent / "conf" / "data" / "images.yaml").read_text()
    said = " ".join(text.split("a bare name takes", 1)[1].split("For example", 1)[0].replace("#", " ").split())
    assert STEPS["random_flip"]["mode"] in said and "{random_flip: {mode: horizontal}}" in said
    for name, args in BARE_DEFAULTS.items():
        assert name in said and all(str(v) in said for v in args.values()), name
