"""Reference models (Keras counts), composition, RNN final-state semantics, spec forms, freezing."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from netkiln.compiler import compile_model, count_params
from netkiln.task import Task

TEN = Task("multiclass", 10)


def conv1d(kernel):
    return {"conv1d": {"filters": 25, "kernel_size": kernel, "strides": 2, "padding": 1, "activation": "relu"}}


def test_keras_mnist_convnet_has_34826_params():
    spec = {"layers": [
        {"conv2d": {"filters": 32, "kernel_size": [3, 3], "activation": "relu"}},
        {"maxpool2d": {"pool_size": [2, 2]}},
        {"conv2d": {"filters": 64, "kernel_size": [3, 3], "activation": "relu"}},
        {"maxpool2d": {"pool_size": [2, 2]}},
        "flatten",
        {"dropout": 0.5},
    ]}
    net = compile_model(spec, (1, 28, 28), TEN)
    assert [r.params for r in net.rows] == [320, 0, 18496, 0, 0, 0, 16010]
    assert [r.output_shape for r in net.rows] == [(32, 26, 26), (32, 13, 13), (64, 11, 11), (64, 5, 5),
                                                  (1600,), (1600,), (10,)]
    assert count_params(net) == {"total": 34826, "trainable": 34826, "non_trainable": 0}
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_on_mnist_has_55050_params():
    net = compile_model({"layers": [{"dense": {"units": 64, "activation": "relu"}},
                                    {"dense": {"units": 64, "activation": "relu"}}]}, (784,), TEN)
    assert count_params(net)["total"] == 55050
    assert net.layer_names == ["dense", "dense_1", "dense_2"]


def test_mnist1d_cnn():
    net = compile_model({"layers": [conv1d(5), conv1d(3), conv1d(3), "flatten"]}, (40, 1), TEN)
    assert [r.output_shape for r in net.rows] == [(19, 25), (10, 25), (5, 25), (125,), (10,)]
    expect = [1 * 5 * 25 + 25, 25 * 3 * 25 + 25, 25 * 3 * 25 + 25, 0, 125 * 10 + 10]
    assert [r.params for r in net.rows] == expect
    assert count_params(net)["total"] == sum(expect) == 5210
    assert net.layer_names == ["conv1d", "conv1d_1", "conv1d_2", "flatten", "dense"]
    assert net(torch.randn(4, 40, 1)).shape == (4, 10)


def test_mnist1d_mlp_with_residual():
    spec = {"layers": ["flatten", {"dense": {"units": 100, "activation": "relu"}},
                       {"residual": [{"dense": {"units": 100, "activation": "relu"}}]}]}
    net = compile_model(spec, (40, 1), TEN)
    assert count_params(net)["total"] == 15210
    assert net(torch.randn(3, 40, 1)).shape == (3, 10)


def test_mnist1d_bidirectional_gru():
    spec = {"layers": [{"gru": {"units": 6, "bidirectional": True, "return_sequences": True}}, "flatten"]}
    net = compile_model(spec, (40, 1), TEN)
    assert [r.output_shape for r in net.rows] == [(40, 12), (480,), (10,)]
    assert [r.params for r in net.rows] == [2 * 3 * (6 + 36 + 12), 0, 4810]
    assert net(torch.randn(2, 40, 1)).shape == (2, 10)


@pytest.mark.parametrize("kind", ["simplernn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_final_state_is_keras_semantics(kind, num_layers):
    net = compile_model({"layers": [{kind: {"units": 5, "bidirectional": True, "num_layers": num_layers}}],
                         "head": "none"}, (7, 3), None)
    rnn = net.layers[0].rnn
    x = torch.randn(4, 7, 3)
    out, _ = rnn(x)
    expect = torch.cat([out[:, -1, :5], out[:, 0, 5:]], dim=-1)  # backward dir ends at t=0
    y = net(x)
    assert y.shape == (4, 10)
    assert torch.allclose(y, expect, atol=1e-6)
    assert not torch.allclose(y, out[:, -1])


def test_unidirectional_final_state_is_last_step():
    net = compile_model({"layers": [{"lstm": 4}], "head": "none"}, (6, 2), None)
    x = torch.randn(3, 6, 2)
    out, _ = net.layers[0].rnn(x)
    assert torch.allclose(net(x), out[:, -1], atol=1e-6)


def test_residual_adds_input():
    net = compile_model({"layers": [{"residual": [{"dense": 4}, "tanh"]}], "head": "none"}, (4,), None)
    x = torch.randn(2, 4)
    body = net.layers[0].body
    assert torch.allclose(net(x), x + body(x))
    assert [r.name for r in net.rows] == ["residual", "dense", "tanh"]
    assert [r.depth for r in net.rows] == [0, 1, 1]


def test_repeat_gives_each_copy_its_own_weights():
    spec = {"layers": [{"repeat": {"times": 3, "layers": [{"dense": 8}, "relu"]}}], "head": "none"}
    net = compile_model(spec, (8,), None)
    block = net.layers[0]
    assert len(block) == 6
    assert count_params(net)["total"] == 3 * 72
    assert len({id(block[i].linear.weight) for i in (0, 2, 4)}) == 3
    assert not torch.equal(block[0].linear.weight, block[2].linear.weight)
    assert net(torch.randn(2, 8)).shape == (2, 8)
    assert [r.name for r in net.rows][:3] == ["repeat", "dense", "relu"]


def test_repeat_changes_shapes_in_chain_and_nests():
    spec = {"layers": [{"repeat": {"times": 2, "layers": [
        {"conv1d": {"filters": 8, "kernel_size": 3, "padding": "same"}},
        {"residual": [{"conv1d": {"filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"}}]},
        "maxpool1d"]}}, "globalavgpool1d"]}
    net = compile_model(spec, (32, 2), TEN)
    assert net.rows[0].output_shape == (8, 8)
    assert net(torch.randn(2, 32, 2)).shape == (2, 10)


def test_target_identity_and_linear():
    spec = {"layers": ["flatten", {"_target_": "torch.nn.Identity"},
                       {"_target_": "torch.nn.Linear", "in_features": 40, "out_features": 7}]}
    net = compile_model(spec, (40, 1), TEN)
    assert [r.output_shape for r in net.rows] == [(40,), (40,), (7,), (10,)]
    assert [r.type for r in net.rows[1:3]] == ["Identity", "Linear"]
    assert net.rows[2].params == 287
    assert isinstance(net.layers[2], nn.Linear)
    assert net(torch.randn(2, 40, 1)).shape == (2, 10)


def test_target_dry_run_leaves_training_state_alone():
    net = compile_model({"layers": [{"_target_": "torch.nn.BatchNorm1d", "num_features": 4}],
                         "head": "none"}, (4,), None)
    bn = net.layers[0]
    assert bn.training and int(bn.num_batches_tracked) == 0
    assert count_params(net) == {"total": 16, "trainable": 8, "non_trainable": 8}


def test_omegaconf_spec_with_interpolation():
    cfg = OmegaConf.create({"width": 32, "model": {"name": "mlp", "description": "x",
                                                   "layers": [{"dense": "${width}"}, "relu"], "head": "auto"}})
    net = compile_model(cfg.model, (5,), TEN)
    assert net.rows[0].output_shape == (32,)
    assert net.model_name == "mlp"


def test_entry_forms():
    spec = {"layers": [{"flatten": None}, {"dense": {"units": 6}}, {"activation": "relu"}, {"relu": {}}]}
    net = compile_model(spec, (2, 3), TEN)
    assert net.layer_names == ["flatten", "dense", "activation", "relu", "dense_1"]


def test_head_variants():
    binary = compile_model({"layers": ["flatten"]}, (5,), Task("binary", 1))
    assert binary.output_shape == (1,)
    none = compile_model({"layers": [{"dense": 3}], "head": "none"}, (5,), Task("regression", 3))
    assert none.output_shape == (3,) and none.layer_names == ["dense"]
    null = compile_model({"layers": [{"dense": 3}], "head": None}, (5,), Task("regression", 3))
    assert len(null.layers) == 1


def test_layer_lookup_and_freezing_moves_params_to_non_trainable():
    net = compile_model({"layers": [conv1d(5), "flatten"]}, (40, 1), TEN)
    assert net.layer("conv1d") is net.layers[0]
    for p in net.layer(0).parameters():
        p.requires_grad_(False)
    assert count_params(net) == {"total": 150 + 4760, "trainable": 4760, "non_trainable": 150}


def test_compiler_does_not_import_heavy_packages():
    import subprocess
    import sys
    code = ("import sys, netkiln.compiler; bad = [m for m in ('pytorch_lightning', 'lightning', 'torchmetrics', "
            "'hydra', 'sklearn') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_dict_holding_omegaconf_list():
    layers = OmegaConf.create(["flatten", {"dense": 5}])
    net = compile_model({"layers": layers}, (4, 2), TEN)
    assert net.output_shape == (10,)


def test_deepcopy_keeps_rows_pointing_at_copied_layers():
    import copy
    net = compile_model({"layers": ["flatten", {"dense": 5}]}, (4, 2), TEN)
    clone = copy.deepcopy(net)
    assert clone.rows[1].module is clone.layers[1]
