"""data=images holds uint8 pixels (a quarter of float32's bytes) and scales each batch on its device; what the
network sees, and what training makes of it, equals the float32 path exactly (issue #17)."""
import json

import numpy as np
import pytest
import torch

from netkiln.cli import main
from netkiln.data import load_dataset
from netkiln.data.dataset import PixelsToFloat
from netkiln.data.images import load_image
from netkiln.data.preprocess import apply_standardize, fit_standardize

from test_data_npz_images import make_images


def test_images_are_held_as_uint8_pixels(tmp_path):
    root = make_images(tmp_path / "shapes", per_class=6)
    ds = load_dataset({"name": "images", "path": str(root), "image_size": [8, 8]})
    assert all(t.dtype == torch.uint8 for t in (ds.x_train, ds.x_val, ds.x_test))
    pixels = sum(t.nelement() for t in (ds.x_train, ds.x_val, ds.x_test))
    assert ds.source_info["tensor_bytes"] == pixels + 8 * sum(ds.split_sizes.values())     # uint8 x, int64 y
    files = [root / f for f in ds.source_info["files"]]
    expected = np.stack([load_image(files[i], (8, 8), "rgb") for i in ds.split_indices["train"]])
    assert torch.equal(ds.floats(ds.x_train), torch.from_numpy(expected))     # as the float32 path read them


@pytest.mark.parametrize("standardize", [False, True])
def test_pixels_to_float_equals_numpy_float_path(standardize):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 3, 5, 7), dtype=np.uint8)
    floats = pixels.astype(np.float32) / 255.0
    stats = fit_standardize(floats, "image") if standardize else None
    expected = apply_standardize(floats, stats) if standardize else floats
    out = PixelsToFloat(stats)(torch.from_numpy(pixels))
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(expected))


@pytest.mark.parametrize("loop", ["fast", "lightning"])
def test_training_on_uint8_pixels_equals_training_on_float32_arrays(tmp_path, loop):
    """The same pictures as an image folder (uint8, scaled per batch) and as a float32 .npz: same split, same
    standardisation, same batches, so the same weights and metrics to the last bit; also through Lightning's own
    step and validation loops (a callback with per-batch hooks turns the fast path off)."""
    from safetensors.torch import load_file

    root = make_images(tmp_path / "shapes", per_class=10)
    ds = load_dataset({"name": "images", "path": str(root), "image_size": [8, 8]})
    files = [root / f for f in ds.source_info["files"]]
    x = np.stack([load_image(f, (8, 8), "rgb") for f in files])
    y = np.asarray([0 if f.startswith("circle") else 1 for f in ds.source_info["files"]])
    np.savez(tmp_path / "same.npz", x=x, y=y)
    common = ["model=cnn2d", "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "batch_size=8",
              "data.standardize=true", "callbacks=none"]
    if loop == "lightning":
        common.append("+callbacks.extra=[{_target_: pytorch_lightning.callbacks.Timer}]")
    assert main(["train", "data=images", f"data.path={root}", "data.image_size=[8,8]", *common,
                 f"hydra.run.dir={tmp_path / 'uint8'}"]) == 0
    assert main(["train", "data=npz", f"data.path={tmp_path / 'same.npz'}", *common,
                 f"hydra.run.dir={tmp_path / 'float32'}"]) == 0
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("uint8", "float32"))
    for split in ("val", "test"):
        assert a[split] == b[split], split
    wa, wb = (load_file(str(tmp_path / run / "model" / "weights.safetensors")) for run in ("uint8", "float32"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_image_that_fails_to_decode_stops_the_run_naming_the_file(tmp_path, capsys, damage):
    root = make_images(tmp_path / "shapes", per_class=4)
    good = (root / "square" / "001.png").read_bytes()
    bad = root / "square" / "zz_bad.png"
    bad.write_bytes(b"not a picture" if damage == "garbage" else good[:len(good) // 2])
    run = tmp_path / "run"
    rc = main(["train", "data=images", f"data.path={root}", "data.image_size=[8,8]", "model=mlp",
               f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "zz_bad.png" in err and "cannot read this image" in err and "Traceback" not in err
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed" and not (run / "model").exists()


def test_analyze_describes_the_pixels_as_the_network_sees_them(tmp_path):
    from netkiln.data.analyze import analyze_data

    root = make_images(tmp_path / "shapes", per_class=6)
    report, _ = analyze_data({"name": "images", "path": str(root), "image_size": [8, 8]})
    ds = load_dataset({"name": "images", "path": str(root), "image_size": [8, 8]})
    every = torch.cat([ds.floats(getattr(ds, f"x_{s}")) for s in ("train", "val", "test")]).double()
    assert [f["name"] for f in report["features"]] == [f"channel {i} (all pixels)" for i in range(3)]
    for i, feature in enumerate(report["features"]):
        assert feature["min"] >= 0 and feature["max"] <= 1
        assert feature["mean"] == pytest.approx(float(every[:, i].mean()), abs=1e-6)
