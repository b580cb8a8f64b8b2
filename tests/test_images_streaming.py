"""data=images with data.streaming: image folders larger than memory are listed, not decoded up front, and each
batch is decoded in DataLoader worker processes (issue #17). Same split, same pixels, same statistics and the same
batch order as in memory; a file that fails to decode in a worker stops the run naming it."""
import json
import logging
import multiprocessing

import numpy as np
import pytest
import torch

from netkiln.cli import main
from netkiln.data import load_dataset
from netkiln.data.image_stream import ImageRows
from netkiln.data.preprocess import fit_standardize
from netkiln.errors import NetkilnError

from test_data_npz_images import make_images

STREAM = {"streaming": "auto", "memory_budget": 1000}        # bytes: far below 30 images' pixels


def _children() -> set:
    return set(multiprocessing.active_children())


def node(root, **extra):
    return {"name": "images", "path": str(root), "image_size": [8, 8], **extra}


@pytest.fixture
def folder(tmp_path):
    return make_images(tmp_path / "shapes", per_class=15)        # 30 small PNG/JPEG files, two classes


def test_auto_streams_over_the_budget_and_keeps_memory_within_it_saying_why(folder, caplog):
    with caplog.at_level(logging.INFO, logger="netkiln"):
        streamed = load_dataset(node(folder, **STREAM))
        in_memory = load_dataset(node(folder, streaming="auto", memory_budget="1GB"))
    assert isinstance(streamed.x_train, ImageRows) and in_memory.x_train.dtype == torch.uint8
    said = caplog.text
    assert "data: streamed from disk, data.streaming=auto: in memory the images would take about" in said
    assert "more than data.memory_budget=1000 B" in said
    assert "data: in memory, data.streaming=auto: in memory the images takes about" in said or \
           "data: in memory, data.streaming=auto: in memory the images take" in said or "within" in said
    assert streamed.source_info["streaming"]["reason"].startswith("data.streaming=auto")
    assert "rows, image files decoded per batch (streamed; " in said and " of labels in memory)" in said


def test_same_split_and_same_pixels_as_in_memory(folder):
    streamed = load_dataset(node(folder, streaming=True, workers=0), seed=3)
    in_memory = load_dataset(node(folder, streaming=False), seed=3)
    assert streamed.split_indices == in_memory.split_indices
    assert streamed.input_shape == in_memory.input_shape and streamed.split_sizes == in_memory.split_sizes
    for split in ("train", "val", "test"):
        a, b = getattr(streamed, f"x_{split}"), getattr(in_memory, f"x_{split}")
        assert torch.equal(a[:], b) and torch.equal(getattr(streamed, f"y_{split}"), getattr(in_memory, f"y_{split}"))
        assert torch.equal(streamed.floats(a)[:], in_memory.floats(b))      # the float32 inputs too


def test_standardize_statistics_equal_the_in_memory_fit(folder):
    streamed = load_dataset(node(folder, streaming=True, workers=2, standardize=True))
    in_memory = load_dataset(node(folder, streaming=False, standardize=True))
    a, b = streamed.preprocessing["standardize"], in_memory.preprocessing["standardize"]
    # fit_standardize of the training pixels as float32 in [0, 1], all at once in float64.
    assert b == fit_standardize(in_memory.x_train.numpy().astype(np.float32) / 255.0, "image")
    assert a["feature_axis"] == b["feature_axis"] == 0
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12)
    np.testing.assert_allclose(a["std"], b["std"], rtol=1e-12)


def _train_batches(ds, workers=2, seed=5, batch_size=4):
    from netkiln.training.batches import TrainChunks
    from netkiln.training.image_batches import ImageTrainChunks

    chunks = ImageTrainChunks(ds.x_train, ds.y_train, batch_size, 3, seed, workers, inputs=ds.pixels)
    return chunks, TrainChunks(torch.zeros(len(ds.x_train)), ds.y_train, batch_size, 3, seed)


def _epoch(chunks):
    xs, ys = [], []
    for chunk in chunks:
        for start in range(0, len(chunk), chunks.batch_size):
            x, y = chunks.batch(chunk[start:start + chunks.batch_size])
            xs.append(x)
            ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def test_each_epoch_visits_every_training_image_once_in_a_seeded_order(folder):
    before = _children()
    ds = load_dataset(node(folder, streaming=True))
    chunks, in_memory = _train_batches(ds)
    n = len(ds.x_train)
    first, second = chunks.row_order(0), chunks.row_order(1)
    assert sorted(first.tolist()) == list(range(n)) and sorted(second.tolist()) == list(range(n))
    assert not torch.equal(first, second)                                  # reshuffled each epoch
    assert torch.equal(first, _train_batches(ds)[0].row_order(0))          # the same seed, the same order
    assert not torch.equal(first, _train_batches(ds, seed=6)[0].row_order(0))
    # The batches the workers decode: every image once, in that order, as in-memory training gathers them.
    x, y = _epoch(chunks)
    assert len(x) == n and len(chunks) == len(in_memory)
    assert torch.equal(x, ds.floats(ds.x_train)[first]) and torch.equal(y, ds.y_train[first])
    assert torch.equal(first, torch.cat(list(in_memory)))                  # the in-memory shuffle, so resume alike
    chunks.epoch = lambda: 1                                               # a resumed run repeats epoch 1's order
    assert torch.equal(_epoch(chunks)[1], ds.y_train[second])
    chunks.close()
    assert _children() <= before                         # close() ends the workers


COMMON = ["model=cnn2d", "trainer.enable_progress_bar=false", "batch_size=8", "callbacks=none",
          "data=images", "data.image_size=[8,8]"]


def test_a_streamed_run_trains_and_evaluate_and_predict_work_on_it(folder, tmp_path, capsys):
    before = _children()
    run = tmp_path / "run"
    assert main(["train", *COMMON, f"data.path={folder}", "data.streaming=true", "data.workers=2",
                 "trainer.max_epochs=1", f"hydra.run.dir={run}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and (run / "model").is_dir()
    assert _children() <= before                         # the workers ended with fit
    capsys.readouterr()
    assert main(["evaluate", f"run={run}", "plots=false"]) == 0             # the rebuilt data streams again
    assert json.loads((run / "evaluation" / "evaluation.json").read_text())["metrics"] == metrics["test"]
    assert main(["evaluate", f"run={run}", "plots=false", "split=all", f"out={tmp_path / 'all'}"]) == 0
    assert json.loads((tmp_path / "all" / "evaluation.json").read_text())["rows"] == 30
    files = tmp_path / "files.txt"
    files.write_text("\n".join(str(p) for p in sorted((folder / "circle").glob("*"))[:3]) + "\n")
    assert main(["predict", f"run={run}", f"input={files}", f"output={tmp_path / 'pred.csv'}"]) == 0
    assert len((tmp_path / "pred.csv").read_text().strip().splitlines()) == 4


@pytest.mark.slow
def test_a_streamed_run_equals_the_in_memory_run(folder, tmp_path):
    """The same pixels in the same batches in the same order (the in-memory shuffle): the same numbers."""
    for mode in ("true", "false"):
        assert main(["train", *COMMON, f"data.path={folder}", f"data.streaming={mode}", "data.workers=2",
                     "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / mode}"]) == 0
    streamed, in_memory = (json.loads((tmp_path / mode / "metrics.json").read_text()) for mode in ("true", "false"))
    assert streamed["val"] == in_memory["val"] and streamed["test"] == in_memory["test"]


def test_an_image_that_fails_to_decode_in_a_worker_stops_the_run_naming_it(folder, tmp_path, capsys):
    before = _children()
    bad = folder / "square" / "zz_bad.png"
    bad.write_bytes(b"not a picture")
    ds = load_dataset(node(folder, streaming=True, split={"val": 0.15, "test": 0.15}), seed=0)    # the run's split
    row = ds.source_info["files"].index("square/zz_bad.png")
    assert row in ds.split_indices["train"][1:]          # decoded in an epoch's batch, by a worker
    capsys.readouterr()
    run = tmp_path / "run"
    rc = main(["train", "data=images", f"data.path={folder}", "data.image_size=[8,8]", "model=mlp",
               "data.streaming=true", "data.workers=2", "trainer.enable_progress_bar=false",
               f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert rc == 2 and "zz_bad.png" in err and "cannot read this image" in err and "Traceback" not in err
    assert not (run / "model").exists()
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert _children() <= before                         # the workers exited


def test_bad_settings_name_their_key(folder):
    with pytest.raises(NetkilnError, match="data.workers"):
        load_dataset(node(folder, streaming=True, workers=-1))
    with pytest.raises(NetkilnError, match="data.streaming"):
        load_dataset(node(folder, streaming="sometimes"))
