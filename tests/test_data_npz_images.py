"""data=npz and data=images: layouts, task inference, own test sets, prepare_features and bad input."""
import json

import numpy as np
import pytest
import torch

from netkiln.data import load_dataset, prepare_features
from netkiln.errors import NetkilnError


def err(node) -> NetkilnError:
    with pytest.raises(NetkilnError) as e:
        load_dataset(node)
    return e.value


def npz(tmp_path, name="d.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------- npz
@pytest.mark.parametrize("shape, layout, input_shape", [
    ((60, 5), "flat", (5,)),
    ((60, 12, 3), "sequence", (12, 3)),
    ((60, 1, 6, 6), "image", (1, 6, 6)),
    ((60, 6, 6, 3), "image", (3, 6, 6)),          # channels last
])
def test_npz_layouts(tmp_path, shape, layout, input_shape):
    x = RNG.normal(size=shape).astype(np.float32)
    p = npz(tmp_path, x=x, y=np.arange(60) % 3)
    ds = load_dataset({"name": "npz", "path": str(p)})
    assert ds.layout == layout and ds.input_shape == input_shape
    assert ds.task.kind == "multiclass" and ds.task.class_names == ("0", "1", "2")
    # prepare_features accepts the file's own row shape and gives training's layout and scaling
    prep = json.loads(json.dumps(ds.preprocessing))
    again = prepare_features(x, prep)
    assert again.shape == (60, *input_shape)
    assert torch.allclose(again[ds.split_indices["val"]], ds.x_val, atol=1e-5)


def test_npz_rank_needs_layout(tmp_path):
    seq = npz(tmp_path, x=RNG.normal(size=(40, 20)), y=np.arange(40) % 2)
    assert load_dataset({"name": "npz", "path": str(seq)}).input_shape == (20,)
    ds = load_dataset({"name": "npz", "path": str(seq), "layout": "sequence"})
    assert ds.layout == "sequence" and ds.input_shape == (20, 1)
    img = npz(tmp_path, "i.npz", x=RNG.normal(size=(40, 8, 8)), y=np.arange(40) % 2)
    ds = load_dataset({"name": "npz", "path": str(img), "layout": "image"})
    assert ds.input_shape == (1, 8, 8) and ds.task.kind == "binary"
    assert err({"name": "npz", "path": str(img), "layout": "flat"}).key == "data.path"


def test_npz_targets_and_own_test_set(tmp_path):
    x = RNG.normal(size=(50, 4)).astype(np.float32)
    p = npz(tmp_path, x=x, y=np.array(["cat", "dog"] * 25), x_test=x[:10], y_test=np.array(["dog"] * 10))
    ds = load_dataset({"name": "npz", "path": str(p), "split": {"val": 0.2, "test": 0.15}})
    assert ds.task.class_names == ("cat", "dog") and ds.split_sizes == {"train": 40, "val": 10, "test": 10}
    assert ds.y_test.tolist() == [1] * 10 and ds.split_indices["test"] == list(range(10))
    reg = npz(tmp_path, "r.npz", x=x, y=RNG.normal(size=(50, 2)))
    ds = load_dataset({"name": "npz", "path": str(reg)})
    assert ds.task.kind == "regression" and ds.task.num_outputs == 2
    ints_as_floats = npz(tmp_path, "f.npz", x=x, y=(np.arange(50) % 2).astype(np.float32))
    assert load_dataset({"name": "npz", "path": str(ints_as_floats)}).task.kind == "regression"
    assert load_dataset({"name": "npz", "path": str(ints_as_floats), "task": "classification"}).task.kind == "binary"
    renamed = npz(tmp_path, "k.npz", features=x, labels=np.arange(50) % 2)
    ds = load_dataset({"name": "npz", "path": str(renamed), "keys": {"x": "features", "y": "labels"}})
    assert ds.input_shape == (4,)


def test_npz_standardize_uses_training_rows(tmp_path):
    x = RNG.normal(size=(100, 3)).astype(np.float32)
    p = npz(tmp_path, x=x, y=np.arange(100) % 2)
    ds = load_dataset({"name": "npz", "path": str(p)})
    mean = x[ds.split_indices["train"]].mean(axis=0)
    assert np.allclose(ds.preprocessing["standardize"]["mean"], mean, atol=1e-6)
    assert "standardize" not in load_dataset({"name": "npz", "path": str(p), "standardize": False}).preprocessing


def test_npz_bad_input(tmp_path):
    x = RNG.normal(size=(30, 4))
    e = err({"name": "npz", "path": str(npz(tmp_path, X=x, y=np.arange(30) % 2))})
    assert "no array named 'x'" in str(e) and "Did you mean 'X'" in str(e) and e.file.endswith("d.npz")
    e = err({"name": "npz", "path": str(npz(tmp_path, "a.npz", x=np.arange(30.0), y=np.arange(30) % 2))})
    assert "shape (30,)" in str(e)
    e = err({"name": "npz", "path": str(npz(tmp_path, "b.npz", x=RNG.normal(size=(30, 2, 2, 2, 2)),
                                            y=np.arange(30) % 2))})
    assert "shape (30, 2, 2, 2, 2)" in str(e)
    e = err({"name": "npz", "path": str(npz(tmp_path, "c.npz", x=x, y=np.arange(29) % 2))})
    assert "'y' has shape (29,)" in str(e)
    e = err({"name": "npz", "path": str(npz(tmp_path, "s.npz", x=x, y=np.zeros(30, dtype=int)))})
    assert "single class" in str(e)
    bad = x.copy()
    bad[7, 1] = np.nan
    e = err({"name": "npz", "path": str(npz(tmp_path, "n.npz", x=bad, y=np.arange(30) % 2))})
    assert "NaN" in str(e) and "row 7" in str(e)
    e = err({"name": "npz", "path": str(npz(tmp_path, "t.npz", x=x, y=np.arange(30) % 2, x_test=x))})
    assert "no 'y_test'" in str(e)
    np.save(tmp_path / "plain.npy", x)
    assert ".npy" in str(err({"name": "npz", "path": str(tmp_path / "plain.npy")}))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable" in str(err({"name": "npz", "path": str(tmp_path / "junk.npz")}))
    assert err({"name": "npz", "path": str(tmp_path / "missing.npz")}).key == "data.path"
    assert err({"name": "npz", "path": str(npz(tmp_path, "v.npz", x=x, y=np.arange(30) % 2)),
                "split": {"val": 0.01}}).key == "data.split.val"
    with pytest.raises(NetkilnError, match="expected rows of shape"):
        prepare_features(np.zeros((2, 5)), load_dataset({"name": "npz", "path": str(tmp_path / "v.npz")})
                         .preprocessing)


# ----------------------------------------------------------------------------------------------- images
def make_images(root, classes=("circle", "square"), per_class=12, size=(10, 14), rgb=True):
    from PIL import Image, ImageDraw

    for ci, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("RGB" if rgb else "L", size[::-1], color=(20, 20, 20) if rgb else 20)
            d = ImageDraw.Draw(img)
            box = [2 + i % 3, 2, size[1] - 3, size[0] - 3]
            (d.ellipse if ci == 0 else d.rectangle)(box, fill=(200, 50 + 10 * i, 30) if rgb else 200)
            img.save(root / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


def test_image_folder(tmp_path):
    root = make_images(tmp_path / "shapes")
    (root / "circle" / "notes.txt").write_text("ignored")
    ds = load_dataset({"name": "images", "path": str(root), "image_size": [8, 8], "color": "rgb"})
    assert ds.layout == "image" and ds.input_shape == (3, 8, 8)
    assert ds.task.kind == "binary" and ds.task.class_names == ("circle", "square")
    assert ds.x_train.dtype == torch.uint8                       # pixels, scaled per batch on the device
    assert 0.0 <= float(ds.floats(ds.x_train).min()) and float(ds.floats(ds.x_train).max()) <= 1.0
    assert sum(ds.split_sizes.values()) == 24 and len(ds.source_info["files"]) == 24
    gray = load_dataset({"name": "images", "path": str(root), "image_size": 6, "color": "grayscale",
                         "standardize": True})
    assert gray.input_shape == (1, 6, 6) and len(gray.preprocessing["standardize"]["mean"]) == 1
    # predict: image files through the saved preparation give the training tensors
    files = [root / f for f in gray.source_info["files"]]
    x = prepare_features([files[i] for i in gray.split_indices["test"]], gray.preprocessing)
    assert torch.allclose(x, gray.floats(gray.x_test), atol=1e-5)


def test_image_test_folder(tmp_path):
    root = make_images(tmp_path / "train", classes=("a", "b", "c"), per_class=8)
    test = make_images(tmp_path / "test", classes=("a", "c"), per_class=3)
    ds = load_dataset({"name": "images", "path": str(root), "test_path": str(test), "image_size": [8, 8]})
    assert ds.task.kind == "multiclass" and ds.split_sizes["test"] == 6
    assert sorted(set(ds.y_test.tolist())) == [0, 2]
    other = make_images(tmp_path / "other", classes=("a", "zebra"), per_class=2)
    e = err({"name": "images", "path": str(root), "test_path": str(other), "image_size": [8, 8]})
    assert "'zebra'" in str(e)


def test_image_bad_input(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    make_images(tmp_path / "tmp", classes=("x",), per_class=2)
    for f in (tmp_path / "tmp" / "x").iterdir():
        f.rename(flat / f.name)
    e = err({"name": "images", "path": str(flat)})
    assert "no class sub-folders" in str(e) and "2 image file(s)" in str(e)
    one = make_images(tmp_path / "one", classes=("only",), per_class=3)
    assert "only one class" in str(err({"name": "images", "path": str(one)}))
    root = make_images(tmp_path / "shapes", per_class=3)
    (root / "square" / "broken.png").write_bytes(b"\x89PNG not really")
    e = err({"name": "images", "path": str(root), "image_size": 8})
    assert e.file.endswith("broken.png") and "cannot read this image" in str(e)
    (root / "square" / "broken.png").unlink()
    (root / "empty").mkdir()
    assert "'empty' has no images" in str(err({"name": "images", "path": str(root)}))
    assert err({"name": "images", "path": str(tmp_path / "nothing")}).key == "data.path"
    assert err({"name": "images", "path": str(root), "image_size": [8]}).key == "data.image_size"
    assert err({"name": "images", "path": str(root), "color": "grey"}).key == "data.color"


def test_train_on_an_image_folder(tmp_path):
    from netkiln.cli import main

    root = make_images(tmp_path / "shapes", per_class=10)
    run = tmp_path / "run"
    rc = main(["train", "data=images", f"data.path={root}", "data.image_size=[8,8]", "model=mlp",
               "trainer.max_epochs=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"])
    assert rc == 0 and (run / "metrics.json").exists()
    # evaluate on another labelled folder: every image counts, through the run's saved preparation (size, scaling)
    other = make_images(tmp_path / "new", per_class=4, size=(20, 20))
    out = tmp_path / "eval"
    assert main(["evaluate", f"run={run}", "data=images", f"data.path={other}", f"out={out}"]) == 0
    report = json.loads(next(out.glob("*.json")).read_text())
    assert report["rows"] == 8, report


def test_npz_object_arrays_are_refused(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x=np.array([[1, "a"], [2, None]], dtype=object), y=np.array([0, 1]))
    assert "Python objects" in str(err({"name": "npz", "path": str(p)}))


# ----------------------------------------------------------------------------------------------- uint8 image arrays
def test_uint8_image_arrays_are_held_as_pixels(tmp_path):
    """An .npz of uint8 images is held as uint8 (a quarter of float32's bytes) and seen / 255 as an image folder's:
    the inputs equal those of the same pixels saved as float32 / 255, and, standardised, those of the 0..255 floats
    it was read as before. Other arrays stay float32."""
    pixels = RNG.integers(0, 256, (60, 6, 6, 3), dtype=np.uint8)          # channels last
    y = np.arange(60) % 3
    u8 = load_dataset({"name": "npz", "path": str(npz(tmp_path, "u8.npz", x=pixels, y=y))})
    scaled = load_dataset({"name": "npz", "path": str(npz(tmp_path, "f.npz", x=pixels.astype(np.float32) / 255,
                                                          y=y))})
    before = load_dataset({"name": "npz", "path": str(npz(tmp_path, "b.npz", x=pixels.astype(np.float32), y=y))})
    assert u8.x_train.dtype == torch.uint8 and u8.input_shape == (3, 6, 6) == scaled.input_shape
    assert u8.x_train.nbytes * 4 == scaled.x_train.nbytes
    assert u8.preprocessing["pixel_scale"] == 255.0 and "pixel_scale" not in scaled.preprocessing
    assert u8.preprocessing["standardize"] == scaled.preprocessing["standardize"]
    for split in ("train", "val", "test"):
        seen = u8.floats(getattr(u8, f"x_{split}"))
        assert torch.equal(seen, getattr(scaled, f"x_{split}"))
        assert torch.allclose(seen, getattr(before, f"x_{split}"), atol=1e-5)     # standardised, as before
    raw = load_dataset({"name": "npz", "path": str(tmp_path / "u8.npz"), "standardize": False})
    assert torch.equal(raw.floats(raw.x_val), torch.from_numpy(pixels[raw.split_indices["val"]].transpose(0, 3, 1, 2)
                                                                .astype(np.float32) / 255))
    # not images, or not uint8: float32 as before
    flat = load_dataset({"name": "npz", "path": str(npz(tmp_path, "flat.npz", x=pixels.reshape(60, -1), y=y))})
    ints = load_dataset({"name": "npz", "path": str(npz(tmp_path, "i.npz", x=pixels.astype(np.int64), y=y))})
    assert flat.x_train.dtype == ints.x_train.dtype == torch.float32 and flat.pixels is None is ints.pixels
    mixed = load_dataset({"name": "npz", "path": str(npz(tmp_path, "m.npz", x=pixels, y=y, x_test=pixels[:5] / 255,
                                                         y_test=y[:5]))})
    assert mixed.x_test.dtype == torch.float32 and mixed.pixels is None


@pytest.mark.slow
def test_training_on_uint8_image_arrays_matches_the_float_path(tmp_path, capsys):
    """Trained on an .npz (folder of .npy) of uint8 images: the same weights as on the float32 pixels / 255; predict
    and evaluate scale a uint8 (or integer) array alike and refuse unscaled floats."""
    from safetensors.numpy import load_file

    from netkiln.cli import main

    pixels = RNG.integers(0, 256, (80, 1, 8, 8), dtype=np.uint8)
    y = (pixels.reshape(80, -1).mean(axis=1) > 127).astype(np.int64)
    folder = tmp_path / "u8"
    folder.mkdir()
    np.save(folder / "x.npy", pixels)           # memory-mapped, read as uint8
    np.save(folder / "y.npy", y)
    npz(tmp_path, "f.npz", x=pixels.astype(np.float32) / 255, y=y)
    fast = ["model=mlp", "trainer=debug", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "batch_size=16"]
    for name, path in (("u8", folder), ("f", tmp_path / "f.npz")):
        assert main(["train", "data=npz", f"data.path={path}", *fast, f"hydra.run.dir={tmp_path / name}"]) == 0
    weights = [load_file(tmp_path / name / "model" / "weights.safetensors") for name in ("u8", "f")]
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k])
    assert "in memory as tensors (images as uint8 pixels)" in capsys.readouterr().out

    def predicted(name, array):
        out = tmp_path / f"{name}.csv"
        np.save(tmp_path / f"{name}.npy", array)
        assert main(["predict", f"run={tmp_path / 'u8'}", f"input={tmp_path / name}.npy", f"output={out}"]) == 0
        return np.loadtxt(out, delimiter=",", skiprows=1, usecols=(1, 2))

    expected = predicted("in_u8", pixels)
    np.testing.assert_allclose(predicted("in_f", pixels.astype(np.float32) / 255), expected, atol=1e-6)
    np.testing.assert_allclose(predicted("in_i", pixels.astype(np.int64)), expected, atol=1e-6)
    np.save(tmp_path / "unscaled.npy", pixels.astype(np.float32))
    capsys.readouterr()
    assert main(["predict", f"run={tmp_path / 'u8'}", f"input={tmp_path / 'unscaled.npy'}",
                 f"output={tmp_path / 'no.csv'}"]) == 2
    assert "unscaled.npy" in capsys.readouterr().err and not (tmp_path / "no.csv").exists()
    # evaluate on another uint8 array: scaled as training's
    npz(tmp_path, "other.npz", x=pixels[:40], y=y[:40])
    npz(tmp_path, "other_f.npz", x=pixels[:40].astype(np.float32) / 255, y=y[:40])
    reports = []
    for name in ("other", "other_f"):
        out = tmp_path / f"eval_{name}"
        assert main(["evaluate", f"run={tmp_path / 'u8'}", "data=npz", f"data.path={tmp_path / name}.npz",
                     f"out={out}"]) == 0
        reports.append(json.loads(next(out.glob("*.json")).read_text()))
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[0]["rows"] == 40


def test_a_model_trained_on_0_to_255_floats_evaluates_uint8_arrays_unscaled(tmp_path):
    """A bundle without pixel_scale (trained on 0..255 floats, as every uint8 array was read before uint8 arrays
    were held as pixels) is evaluated on a uint8 array as on the same values in float32: the bundle's preparation
    decides the scaling, not the way the other data happens to be stored."""
    from netkiln.cli import main

    pixels = RNG.integers(0, 256, (90, 1, 6, 6), dtype=np.uint8)
    y = (pixels.reshape(90, -1).mean(axis=1) > 127).astype(np.int64)
    npz(tmp_path, "train.npz", x=pixels.astype(np.float32), y=y)
    run = tmp_path / "run"
    assert main(["train", "data=npz", f"data.path={tmp_path / 'train.npz'}", "model=mlp", "trainer=debug",
                 "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]) == 0
    assert "pixel_scale" not in json.loads((run / "model" / "preprocessing.json").read_text())["preparation"]
    npz(tmp_path, "other_u8.npz", x=pixels[:40], y=y[:40])
    npz(tmp_path, "other_f.npz", x=pixels[:40].astype(np.float32), y=y[:40])
    reports = []
    for name in ("other_u8", "other_f"):
        out = tmp_path / f"eval_{name}"
        assert main(["evaluate", f"run={run}", "data=npz", f"data.path={tmp_path / name}.npz", f"out={out}",
                     "plots=false"]) == 0
        reports.append(json.loads((out / "evaluation.json").read_text()))
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[0]["rows"] == 40
