"""Every layer: inferred output shape, parameter count (by formula), and a forward pass that agrees."""
import pytest
import torch
import torch.nn.functional as F

from netkiln.compiler import LAYER_NAMES, compile_model, count_params


def build(entry, shape):
    return compile_model({"layers": [entry], "head": "none"}, shape, None)


def run(net, batch=3):
    if net.rows[0].type == "Embedding":
        x = torch.randint(0, 10, (batch, *net.input_shape)).float()
    else:
        x = torch.randn(batch, *net.input_shape)
    return net(x)


# (entry, input shape, output shape, params) — params by hand from the Keras formulas.
CASES = [
    ({"dense": 64}, (20,), (64,), 20 * 64 + 64),
    ({"dense": {"units": 8, "use_bias": False}}, (5, 20), (5, 8), 160),
    ({"dense": {"units": 7, "activation": "relu"}}, (3, 4, 5), (3, 4, 7), 5 * 7 + 7),
    ({"conv1d": {"filters": 16, "kernel_size": 3}}, (40, 4), (38, 16), 4 * 3 * 16 + 16),
    ({"conv1d": {"filters": 16, "kernel_size": 4, "strides": 2, "padding": "same"}}, (41, 4), (21, 16), 272),
    ({"conv1d": {"filters": 2, "kernel_size": 3, "dilation_rate": 2}}, (10, 2), (6, 2), 2 * 3 * 2 + 2),
    ({"conv1d": {"filters": 2, "kernel_size": 5, "padding": 2, "use_bias": False}}, (10, 2), (10, 2), 20),
    ({"conv1d": {"filters": 3, "kernel_size": 3, "padding": "same", "dilation_rate": 2}}, (9, 2), (9, 3), 21),
    ({"conv2d": {"filters": 8, "kernel_size": 3}}, (3, 32, 32), (8, 30, 30), 3 * 9 * 8 + 8),
    ({"conv2d": {"filters": 8, "kernel_size": [3, 5], "strides": 2, "padding": "same"}}, (3, 31, 30),
     (8, 16, 15), 3 * 15 * 8 + 8),
    ({"conv2d": {"filters": 8, "kernel_size": [3, 1]}}, (1, 5, 4), (8, 3, 4), 32),
    ({"conv2d": {"filters": 4, "kernel_size": 3, "padding": [1, 0]}}, (2, 6, 6), (4, 6, 4), 2 * 9 * 4 + 4),
    ("maxpool1d", (41, 3), (20, 3), 0),
    ({"maxpool1d": {"pool_size": 3, "strides": 1, "padding": "same"}}, (10, 3), (10, 3), 0),
    ({"avgpool1d": {"pool_size": 2, "padding": "same"}}, (5, 3), (3, 3), 0),
    ({"avgpool1d": {"pool_size": 3, "strides": 2, "padding": 1}}, (9, 3), (5, 3), 0),
    ({"maxpool2d": 2}, (4, 9, 8), (4, 4, 4), 0),
    ({"avgpool2d": {"pool_size": 3, "strides": 2, "padding": "same"}}, (2, 7, 7), (2, 4, 4), 0),
    ("globalavgpool1d", (10, 6), (6,), 0),
    ("globalmaxpool1d", (10, 6), (6,), 0),
    ("globalavgpool2d", (5, 4, 4), (5,), 0),
    ("globalmaxpool2d", (5, 4, 4), (5,), 0),
    ("flatten", (3, 4, 5), (60,), 0),
    ("flatten", (7,), (7,), 0),
    ({"reshape": [5, 8]}, (40,), (5, 8), 0),
    ({"reshape": {"target_shape": [-1, 2]}}, (40,), (20, 2), 0),
    ({"reshape": [1, 4, 10]}, (40,), (1, 4, 10), 0),
    ({"dropout": 0.1}, (10, 6), (10, 6), 0),
    ("batchnorm", (20,), (20,), 4 * 20),
    ({"batchnorm": {"momentum": 0.9, "epsilon": 1e-5}}, (10, 6), (10, 6), 4 * 6),
    ({"batchnorm": None}, (3, 8, 8), (3, 8, 8), 4 * 3),
    ("layernorm", (10, 6), (10, 6), 12),
    ({"embedding": {"input_dim": 100, "output_dim": 8}}, (12,), (12, 8), 800),
    ({"embedding": {"input_dim": 10, "output_dim": 4}}, (12, 1), (12, 4), 40),
    ({"simplernn": 5}, (10, 3), (5,), 5 * 3 + 5 * 5 + 2 * 5),
    ({"lstm": 5}, (10, 3), (5,), 4 * (5 * 3 + 5 * 5 + 2 * 5)),
    ({"gru": {"units": 6, "return_sequences": True}}, (40, 1), (40, 6), 3 * (6 + 36 + 12)),
    ({"gru": {"units": 6, "bidirectional": True, "return_sequences": True}}, (40, 1), (40, 12), 324),
    ({"gru": {"units": 4, "num_layers": 2, "dropout": 0.2}}, (10, 3), (4,), 3 * (12 + 16 + 8) + 3 * (16 + 16 + 8)),
    ({"lstm": {"units": 4, "num_layers": 2, "bidirectional": True}}, (10, 3), (8,),
     2 * 4 * (12 + 16 + 8) + 2 * 4 * (32 + 16 + 8)),
    ({"simplernn": {"units": 3, "bidirectional": True, "return_sequences": True}}, (6, 2), (6, 6),
     2 * (6 + 9 + 6)),
]
ACTIVATIONS = ["relu", "gelu", "tanh", "sigmoid", "softmax", "leakyrelu", {"leakyrelu": {"alpha": 0.1}},
               {"leakyrelu": {"negative_slope": 0.1}}, "elu", {"elu": 0.5}, "selu", "silu", "swish",
               "softplus", "mish", {"activation": "gelu"}, {"activation": "linear"}, {"softmax": {"axis": 1}}]
CASES += [(a, (7, 5), (7, 5), 0) for a in ACTIVATIONS]


@pytest.mark.parametrize("entry,shape,out,params", CASES, ids=lambda v: str(v)[:60])
def test_layer_shape_params_forward(entry, shape, out, params):
    net = build(entry, shape)
    assert net.output_shape == out
    assert net.rows[0].output_shape == out
    assert count_params(net)["total"] == params == net.rows[0].params
    y = run(net)
    assert tuple(y.shape) == (3, *out)
    assert torch.isfinite(y).all()


def test_every_layer_name_is_covered():
    used = set()
    for entry, *_ in CASES:
        used.add(entry if isinstance(entry, str) else next(iter(entry)))
    assert set(LAYER_NAMES) - used <= {"residual", "repeat", "parallel", "batchnormalization", "layernormalization",
                                       "leaky_relu"}


def test_batchnorm_counts_running_stats_as_non_trainable():
    assert count_params(build("batchnorm", (3, 8, 8))) == {"total": 12, "trainable": 6, "non_trainable": 6}


def test_batchnorm_normalises_feature_axis_of_sequences():
    net = build("batchnorm", (10, 6)).train()
    y = net(torch.randn(8, 10, 6) * 5 + 3)
    assert torch.allclose(y.mean(dim=(0, 1)), torch.zeros(6), atol=1e-4)
    bn = net.layers[0].bn
    assert abs(bn.momentum - 0.01) < 1e-9 and bn.eps == 1e-3  # Keras defaults 0.99 / 1e-3


def test_conv1d_runs_over_time_with_features_as_channels():
    net = build({"conv1d": {"filters": 4, "kernel_size": 3, "activation": "relu"}}, (12, 5))
    x = torch.randn(2, 12, 5)
    conv = net.layers[0].conv
    expect = F.relu(F.conv1d(x.transpose(1, 2), conv.weight, conv.bias)).transpose(1, 2)
    assert torch.allclose(net(x), expect, atol=1e-6)


def test_same_padding_with_stride_pads_like_keras():
    # L=41, k=4, s=2: Keras output 21, total pad 3 -> 1 left, 2 right.
    net = build({"conv1d": {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"}}, (41, 3))
    x = torch.randn(2, 41, 3)
    conv = net.layers[0].conv
    expect = F.conv1d(F.pad(x.transpose(1, 2), (1, 2)), conv.weight, conv.bias, stride=2).transpose(1, 2)
    assert torch.allclose(net(x), expect, atol=1e-6)


def test_same_pooling_ignores_padding():
    avg = build({"avgpool1d": {"pool_size": 2, "padding": "same"}}, (5, 1))
    assert torch.allclose(avg(torch.ones(1, 5, 1)), torch.ones(1, 3, 1))
    mx = build({"maxpool2d": {"pool_size": 3, "strides": 2, "padding": "same"}}, (1, 6, 6))
    assert torch.equal(mx(-torch.ones(1, 1, 6, 6)), -torch.ones(1, 1, 3, 3))


def test_global_pool_reduces_time_axis():
    net = build("globalmaxpool1d", (4, 2))
    x = torch.tensor([[[1.0, -1], [3, -2], [2, 0], [0, -5]]])
    assert torch.equal(net(x), torch.tensor([[3.0, 0]]))


def test_dense_activation_and_flat_layout():
    net = build({"dense": {"units": 5, "activation": "relu"}}, (4,))
    assert (net(torch.randn(16, 4)) >= 0).all()


def test_leakyrelu_defaults_like_keras():
    assert build("leakyrelu", (3,)).layers[0].negative_slope == 0.3
    assert build({"leakyrelu": {"alpha": 0.1}}, (3,)).layers[0].negative_slope == 0.1


def test_flatten_of_images_is_channel_major():
    net = build("flatten", (2, 3, 4))
    x = torch.randn(1, 2, 3, 4)
    assert torch.equal(net(x), x.reshape(1, -1))
