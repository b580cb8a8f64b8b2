"""Keras-style summary text and its totals."""
from netkiln.compiler import compile_model, count_params, summary_table
from netkiln.task import Task


def test_summary_matches_keras_mnist_convnet():
    spec = {"name": "mnist_convnet", "layers": [
        {"conv2d": {"filters": 32, "kernel_size": 3, "activation": "relu"}}, {"maxpool2d": 2},
        {"conv2d": {"filters": 64, "kernel_size": 3, "activation": "relu"}}, {"maxpool2d": 2},
        "flatten", {"dropout": 0.5}]}
    text = summary_table(compile_model(spec, (1, 28, 28), Task("multiclass", 10)))
    assert 'Model: "mnist_convnet"' in text
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "conv2d_1 (Conv2D)" in text and "(None, 64, 11, 11)" in text and "18,496" in text
    assert "Total params: 34,826 (136.04 KB)" in text
    assert "Trainable params: 34,826 (136.04 KB)" in text
    assert "Non-trainable params: 0 (0.00 B)" in text


def test_summary_counts_batchnorm_stats_as_non_trainable():
    spec = {"layers": [{"dense": 100}, "batchnorm", {"residual": [{"dense": 100}]}]}
    net = compile_model(spec, (50,), Task("binary", 1))
    text = summary_table(net)
    counts = count_params(net)
    assert counts == {"total": 5100 + 400 + 10100 + 101, "trainable": 15501, "non_trainable": 200}
    assert "Total params: 15,701" in text and "Non-trainable params: 200 (800.00 B)" in text
    assert "  dense_1 (Dense)" in text  # nested rows are indented under residual
