"""Recurrent layers read images (C, H, W) as sequences of their rows: T = H, F = C·W (Keras's MNIST RNN)."""
import logging

import pytest
import torch

from netkiln.cli import main
from netkiln.compiler import compile_model, summary_table
from netkiln.task import Task

TEN = Task("multiclass", 10)


def test_gru_on_an_image_reads_its_rows():
    with torch.no_grad():
        net = compile_model({"layers": [{"gru": {"units": 5, "return_sequences": True}}], "head": "none"},
                            (1, 8, 8), None)
        assert net.output_shape == (8, 5)
        assert [(r.name, r.type, r.output_shape) for r in net.rows] == [("image_rows", "Reshape", (8, 8)),
                                                                       ("gru", "GRU", (8, 5))]
        x = torch.randn(3, 1, 8, 8)
        rows = net.layers[0].image_rows(x)
        assert rows.shape == (3, 8, 8)
        assert torch.equal(rows[:, 2], x[:, 0, 2, :])           # time step t is image row t
        expect, _ = net.layers[0].rnn(x[:, 0])                   # a (T, F) sequence of the same rows
        assert torch.allclose(net(x), expect, atol=1e-6)


def test_channels_of_a_row_are_its_features_channel_by_channel():
    net = compile_model({"layers": [{"lstm": {"units": 4, "bidirectional": True}}]}, (3, 5, 7), TEN)
    assert [r.output_shape for r in net.rows] == [(5, 21), (8,), (10,)]
    assert net.layers[0].rnn.input_size == 21
    x = torch.arange(3 * 5 * 7, dtype=torch.float32).reshape(1, 3, 5, 7)
    rows = net.layers[0].image_rows(x)
    assert torch.equal(rows[0, 4], torch.cat([x[0, 0, 4], x[0, 1, 4], x[0, 2, 4]]))
    assert net(x).shape == (1, 10)


def test_conv2d_feature_maps_are_read_row_by_row_too():
    net = compile_model({"layers": [{"conv2d": {"filters": 4, "kernel_size": 3}}, {"simplernn": 6}]}, (1, 8, 8), TEN)
    assert [r.output_shape for r in net.rows] == [(4, 6, 6), (6, 24), (6,), (10,)]
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_flattened_images_still_need_a_sequence():
    from netkiln.compiler import ModelSpecError

    with pytest.raises(ModelSpecError, match=r"model.layers\[1\] \(gru\): needs a sequence .*reshape: \[64, 1\]"):
        compile_model({"layers": ["flatten", {"gru": 4}]}, (1, 8, 8), TEN)


def test_the_reading_is_logged_once_and_shown_in_the_summary(caplog):
    with caplog.at_level(logging.INFO, logger="netkiln"):
        net = compile_model({"layers": [{"gru": 32}]}, (1, 8, 8), TEN)
    said = [r.getMessage() for r in caplog.records if "rows" in r.getMessage()]
    assert said == ["model.layers[0] (gru) reads the images (None, 1, 8, 8) as sequences of their 8 rows of 8 "
                    "values (T = H, F = C·W)"]
    table = summary_table(net)
    assert "image_rows (Reshape)" in table and "(None, 8, 8)" in table
    assert "Total params: 4,362" in table          # the reshape adds no weights: 3 * (32 * (8 + 32) + 2 * 32) + 330


def test_the_readme_gru_on_digits_example_trains(tmp_path, capsys):
    rc = main(["train", "model=gru", "data=digits", "optimizer=sgd", "optimizer.lr=0.05", "trainer.max_epochs=2",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"])
    assert rc == 0
    assert "image_rows (Reshape)" in (tmp_path / "summary.txt").read_text()
    assert "reads the images (None, 1, 8, 8)" in (tmp_path / "train.log").read_text()
