"""`netkiln predict` on an image model's own input: an image file, a folder of them, a .txt list of their paths, or
(N, C, H, W) pixels (uint8 scaled by 1 / 255 as training did, floats taken as in [0, 1])."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import netkiln
from conftest import TINY
from netkiln.cli import main
from netkiln.data.images import load_image
from netkiln.errors import NetkilnError

FAST = ["trainer=debug", "trainer.enable_progress_bar=false", "batch_size=8", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """tmp/photos/{cats,dogs}/N.png (8x8 RGB; one cat 12x10, resized as training does) and a trained cnn2d run."""
    from PIL import Image

    root = tmp_path_factory.mktemp("predimg")
    rng = np.random.default_rng(0)
    for label, colour in (("cats", (200, 80, 40)), ("dogs", (40, 80, 200))):
        (root / "photos" / label).mkdir(parents=True)
        for i in range(6):
            shape = (12, 10, 3) if (label, i) == ("cats", 0) else (8, 8, 3)
            pixels = np.clip(rng.normal(colour, 40, shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "photos" / label / f"{i}.png")
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["train", "data=images", f"data.path={root / 'photos'}", "data.image_size=[8,8]", "model=cnn2d",
                     *FAST, f"hydra.run.dir={run}"]) == 0
    return root, run


def _predict(run, input, output, *extra):
    return main(["predict", f"run={run}", f"input={input}", f"output={output}", *extra])


def _probs(frame):
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def test_folder_file_and_list_agree_with_the_float_array(photos, tmp_path):
    root, run = photos
    folder = root / "photos"
    assert _predict(run, folder, tmp_path / "folder.csv", "chunk_rows=5") == 0     # 3 chunks
    by_folder = pd.read_csv(tmp_path / "folder.csv")
    files = sorted(str(f) for f in folder.rglob("*.png"))
    assert by_folder["file"].tolist() == files and list(by_folder.columns[:2]) == ["file", "prediction"]
    assert set(by_folder["prediction"]) <= {"cats", "dogs"}

    (root / "rel.txt").write_text("photos/dogs/5.png\n\nphotos/cats/0.png\n")     # relative to the list's folder
    assert _predict(run, root / "rel.txt", tmp_path / "rel.csv") == 0
    rel = pd.read_csv(tmp_path / "rel.csv")
    assert rel["file"].tolist() == ["photos/dogs/5.png", "photos/cats/0.png"]
    expected = by_folder.set_index("file")
    np.testing.assert_allclose(_probs(rel), _probs(expected.loc[[str(folder / "dogs/5.png"),
                                                                  str(folder / "cats/0.png")]]), atol=1e-6)

    one = folder / "cats" / "0.png"
    assert _predict(run, one, tmp_path / "one.csv") == 0
    single = pd.read_csv(tmp_path / "one.csv")
    assert single["file"].tolist() == [str(one)]
    np.testing.assert_allclose(_probs(single), _probs(expected.loc[[str(one)]]), atol=1e-6)

    # the same pixels as a float array in [0, 1], decoded and resized as training did
    x = np.stack([load_image(f, (8, 8), "rgb") for f in files])
    np.save(tmp_path / "x.npy", x)
    assert _predict(run, tmp_path / "x.npy", tmp_path / "array.csv") == 0
    np.testing.assert_allclose(_probs(pd.read_csv(tmp_path / "array.csv")), _probs(by_folder), atol=1e-6)

    model = netkiln.load(run)                       # Python: a folder, a list of paths
    frame = model.predict_frame(str(folder))
    assert frame["file"].tolist() == files
    np.testing.assert_allclose(_probs(frame), _probs(by_folder), atol=1e-6)
    assert model.predict([one]).tolist() == single["prediction"].tolist()


def test_uint8_pixels_are_scaled_as_in_training(photos, tmp_path):
    _, run = photos
    pixels = np.random.default_rng(1).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    np.savez(tmp_path / "f.npz", x=pixels.astype(np.float32) / 255)
    assert _predict(run, tmp_path / "u8.npy", tmp_path / "u8.csv") == 0
    assert _predict(run, tmp_path / "f.npz", tmp_path / "f.csv") == 0
    np.testing.assert_allclose(_probs(pd.read_csv(tmp_path / "u8.csv")), _probs(pd.read_csv(tmp_path / "f.csv")),
                               atol=1e-6)
    model = netkiln.load(run)
    np.testing.assert_allclose(model.predict_proba(pixels), model.predict_proba(pixels.astype(np.float32) / 255),
                               atol=1e-6)


def test_bad_image_input_exits_2_and_writes_nothing(photos, tmp_path, capsys):
    root, run = photos
    bad = tmp_path / "bad"
    (bad / "sub").mkdir(parents=True)
    (bad / "a.png").write_bytes((root / "photos" / "cats" / "1.png").read_bytes())
    (bad / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "p.csv"
    assert _predict(run, bad, out, "chunk_rows=1") == 2
    assert "broken.png" in capsys.readouterr().err and not out.exists()
    assert not list(tmp_path.glob(".p.csv*"))
    (tmp_path / "empty").mkdir()
    assert _predict(run, tmp_path / "empty", out) == 2
    assert "holds no images" in capsys.readouterr().err and not out.exists()
    (tmp_path / "missing.txt").write_text(f"{root / 'photos' / 'cats' / '0.png'}\nnope.png\n")
    assert _predict(run, tmp_path / "missing.txt", out) == 2
    err = capsys.readouterr().err
    assert "nope.png" in err and "line 2" in err and not out.exists()


def test_an_image_for_a_table_model_is_refused(photos, tmp_path, capsys):
    root, _ = photos
    table_run = tmp_path / "table"
    assert main(["train", *TINY, f"hydra.run.dir={table_run}"]) == 0
    capsys.readouterr()
    out = tmp_path / "p.csv"
    for input in (root / "photos" / "cats" / "0.png", root / "photos"):
        assert _predict(table_run, input, out) == 2
        assert "image files need a model trained on images" in capsys.readouterr().err and not out.exists()


def test_integer_pixels_are_scaled_and_out_of_range_pixels_refused(photos, tmp_path, capsys):
    """int64/int32 arrays in 0..255 are pixels (scaled as uint8 ones, with a log line); integers outside 0..255 and
    floats above 1.5 (0..255 saved as floats) would go in unscaled: exit 2 naming the file, nothing written."""
    _, run = photos
    pixels = np.random.default_rng(2).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    assert _predict(run, _saved(tmp_path, "u8.npy", pixels), tmp_path / "u8.csv") == 0
    expected = _probs(pd.read_csv(tmp_path / "u8.csv"))
    for dtype in (np.int64, np.int32):
        out = tmp_path / f"{np.dtype(dtype).name}.csv"
        capsys.readouterr()
        assert _predict(run, _saved(tmp_path, f"{np.dtype(dtype).name}.npy", pixels.astype(dtype)), out,
                        "chunk_rows=2") == 0
        np.testing.assert_allclose(_probs(pd.read_csv(out)), expected, atol=1e-6)
        said = [line for line in capsys.readouterr().out.splitlines() if "scaled by 1/255" in line]
        assert len(said) == 1 and np.dtype(dtype).name in said[0]       # once, not once per chunk (3 chunks)
    too_big = pixels.astype(np.int64)
    too_big[3, 0, 0, 0] = 256
    negative = pixels.astype(np.int32) - 1
    for name, bad, said in (("big.npy", too_big, "integers from 0 to 256"), ("neg.npy", negative, "from -1"),
                            ("floats.npz", pixels.astype(np.float32), "floats up to 255")):
        out = tmp_path / "bad.csv"
        assert _predict(run, _saved(tmp_path, name, bad), out) == 2
        err = capsys.readouterr().err
        assert said in err and name in err and "scaled" in err, err
        assert not out.exists()
    model = netkiln.load(run)
    np.testing.assert_allclose(model.predict_proba(pixels.astype(np.int64)), model.predict_proba(pixels), atol=1e-6)
    assert len(model.predict_proba(np.full((2, 3, 8, 8), 1.5, dtype=np.float32))) == 2     # 1.5: still taken
    with pytest.raises(NetkilnError, match="floats up to 255"):
        model.predict_proba(pixels.astype(np.float64))


def _saved(folder, name, array):
    path = folder / name
    np.savez(path, x=array) if name.endswith(".npz") else np.save(path, array)
    return path
