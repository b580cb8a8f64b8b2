"""Layer registry: for each Keras-named layer, its arguments and a builder that infers the
output shape from the input shape and returns the torch module.

A builder gets validated args and the input shape (no batch dim) and returns (module, shape);
it raises LayerError for anything the shapes rule out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from . import args as A
from .activations import make_activation
from .args import Arg
from .errors import LayerError, describe, fmt_shape
from .modules import RNN, BatchNorm, Conv, Dense, Embedding, GlobalPool, Pool, Reshape

Shape = tuple
Builder = Callable[[dict, Shape], "tuple[nn.Module, Shape]"]


@dataclass(frozen=True)
class LayerDef:
    name: str
    keras_type: str          # shown in the summary's "(type)" column
    args: tuple[Arg, ...]    # the first one takes the scalar shorthand (`dense: 64`)
    build: Builder
    aliases: tuple[tuple[str, str], ...] = ()   # alternative argument names -> canonical

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


REGISTRY: dict[str, LayerDef] = {}


def _register(name, keras_type, args, build, aliases=()):
    REGISTRY[name] = LayerDef(name, keras_type, tuple(args), build, tuple(aliases))


# --- shape helpers -------------------------------------------------------------------------

def _need_rank(shape: Shape, rank: int, hint: str = "") -> None:
    if len(shape) == rank:
        return
    want = {1: "flat features (F,)", 2: "a sequence (T, F)", 3: "images (C, H, W)"}[rank]
    raise LayerError(f"needs {want} but got {describe(shape)}{hint}")


def _seq_hint(shape: Shape) -> str:
    if len(shape) == 1:
        return (f"; add `reshape: [{shape[0]}, 1]` before it to read the features as a sequence "
                f"of {shape[0]} steps")
    return ""


def _window(length: int, k: int, s: int, d: int, pad, axis: str, what: str, shape: Shape):
    """Output length and (left, right) padding of one sliding-window axis, Keras rules.

    pad is 'same' (output ceil(L/s), extra padding on the right like TF), 'valid', or an int.
    """
    eff = d * (k - 1) + 1
    if pad == "same":
        out = -(-length // s)
        total = max((out - 1) * s + eff - length, 0)
        return out, (total // 2, total - total // 2)
    p = 0 if pad == "valid" else pad
    if eff > length + 2 * p:
        size = f"{k}" + (f" (dilated to {eff})" if d > 1 else "")
        padded = f" plus padding {p} on each side" if p else ""
        raise LayerError(f"{what} {size} is larger than the input {axis} {length}{padded} "
                         f"(input shape {fmt_shape(shape)}); use a smaller {what}, "
                         f"padding: same, or fewer downsampling layers before it")
    return (length + 2 * p - eff) // s + 1, (p, p)


def _windows(spatial, kernel, strides, dilation, padding, what, shape):
    axes = ["length"] if len(spatial) == 1 else ["height", "width"]
    outs, pads = [], []
    for i, length in enumerate(spatial):
        pad = padding if isinstance(padding, str) else padding[i]
        o, p = _window(length, kernel[i], strides[i], dilation[i], pad, axes[i], what, shape)
        outs.append(o)
        pads.append(p)
    return tuple(outs), tuple(pads)


def _split(shape: Shape, ndim: int):
    """(spatial dims, channels) for (T, F) sequences and (C, H, W) images."""
    return (shape[:1], shape[1]) if ndim == 1 else (shape[1:], shape[0])


def _join(spatial, channels, ndim) -> Shape:
    return (*spatial, channels) if ndim == 1 else (channels, *spatial)


def _need_layout(shape: Shape, ndim: int, name: str) -> None:
    if ndim == 1:
        other = "; use conv2d/2-D pooling for images" if len(shape) == 3 else _seq_hint(shape)
        _need_rank(shape, 2, other)
    else:
        hint = f"; use {name.replace('2d', '1d')} for sequences" if len(shape) == 2 else ""
        _need_rank(shape, 3, hint)


# --- builders ------------------------------------------------------------------------------

def _dense(a, shape):
    return Dense(shape[-1], a["units"], a["use_bias"], a["activation"]), (*shape[:-1], a["units"])


def _conv(ndim):
    def build(a, shape):
        name = f"conv{ndim}d"
        _need_layout(shape, ndim, name)
        spatial, channels = _split(shape, ndim)
        out, pads = _windows(spatial, a["kernel_size"], a["strides"], a["dilation_rate"],
                             a["padding"], "kernel_size", shape)
        k = a["kernel_size"][0] if ndim == 1 else a["kernel_size"]
        s = a["strides"][0] if ndim == 1 else a["strides"]
        d = a["dilation_rate"][0] if ndim == 1 else a["dilation_rate"]
        mod = Conv(ndim, channels, a["filters"], k, s, d, pads, a["use_bias"], a["activation"])
        return mod, _join(out, a["filters"], ndim)
    return build


def _conv_args(ndim):
    return [Arg("filters", A.positive_int), Arg("kernel_size", A.tuple_of(A.positive_int, ndim)),
            Arg("strides", A.tuple_of(A.positive_int, ndim), 1), Arg("padding", A.padding(ndim), "valid"),
            Arg("dilation_rate", A.tuple_of(A.positive_int, ndim), 1),
            Arg("activation", A.activation, None), Arg("use_bias", A.boolean, True)]


def _pool(ndim, kind):
    def build(a, shape):
        _need_layout(shape, ndim, f"{kind}pool{ndim}d")
        spatial, channels = _split(shape, ndim)
        size = a["pool_size"]
        strides = a["strides"] if a["strides"] is not None else size
        pad = a["padding"]
        if not isinstance(pad, str) and any(p > k // 2 for p, k in zip(pad, size)):
            raise LayerError(f"padding {pad if ndim == 2 else pad[0]} must be at most half the "
                             f"pool_size {size if ndim == 2 else size[0]}", arg="padding")
        out, pads = _windows(spatial, size, strides, (1,) * ndim, pad, "pool_size", shape)
        return Pool(ndim, kind, size, strides, pads), _join(out, channels, ndim)
    return build


def _pool_args(ndim):
    ints = A.tuple_of(A.positive_int, ndim)
    return [Arg("pool_size", ints, 2),
            Arg("strides", lambda v: None if v is None else ints(v), None),
            Arg("padding", A.padding(ndim), "valid")]


def _global_pool(ndim, kind):
    def build(a, shape):
        _need_layout(shape, ndim, f"global{kind}pool{ndim}d")
        _, channels = _split(shape, ndim)
        return GlobalPool(ndim, kind), (channels,)
    return build


def _flatten(a, shape):
    return nn.Flatten(), (math.prod(shape),)


def _reshape(a, shape):
    target = a["target_shape"]
    size = math.prod(shape)
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if size % known:
            raise LayerError(f"cannot reshape {fmt_shape(shape)} ({size} values) to "
                             f"{list(target)}: {size} is not divisible by {known}", arg="target_shape")
        target = tuple(size // known if d == -1 else d for d in target)
    elif known != size:
        raise LayerError(f"target_shape {list(target)} holds {known} values but the input "
                         f"{fmt_shape(shape)} has {size}", arg="target_shape")
    return Reshape(target), target


def _dropout(a, shape):
    return nn.Dropout(a["rate"]), shape


def _batchnorm(a, shape):
    if len(shape) > 3:
        raise LayerError(f"needs flat features, a sequence or images, got {describe(shape)}")
    channels = shape[0] if len(shape) != 2 else shape[1]
    return BatchNorm(len(shape), channels, a["momentum"], a["epsilon"]), shape


def _layernorm(a, shape):
    return nn.LayerNorm(shape[-1], eps=a["epsilon"]), shape


def _embedding(a, shape):
    """`input_dim` is filled in by the compiler from the data's vocabulary when the config leaves it out."""
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise LayerError(f"needs integer ids of shape (T,) or (T, 1) but got {describe(shape)}")
    module = Embedding(a["input_dim"], a["output_dim"], len(shape) == 2, a["mask_zero"])
    return module, (shape[0], a["output_dim"])


def image_rows_shape(shape: Shape) -> Shape:
    """The sequence an RNN reads from images (C, H, W): its H rows, C·W values each."""
    channels, height, width = shape
    return (height, channels * width)


def _rnn(kind):
    def build(a, shape):
        image_rows = len(shape) == 3   # images: a sequence of their rows (modules.ImageRows)
        if image_rows:
            shape = image_rows_shape(shape)
        _need_rank(shape, 2, _seq_hint(shape))
        if a["dropout"] and a["num_layers"] == 1:
            raise LayerError("dropout applies between stacked layers and needs num_layers > 1; "
                             "for dropout on the inputs add a `dropout` layer before it", arg="dropout")
        mod = RNN(kind, shape[1], a["units"], a["num_layers"], a["bidirectional"],
                  a["return_sequences"], a["dropout"], image_rows=image_rows)
        width = a["units"] * (2 if a["bidirectional"] else 1)
        return mod, ((shape[0], width) if a["return_sequences"] else (width,))
    return build


def _act_layer(factory):
    def build(a, shape):
        return factory(**a), shape
    return build


def _activation(a, shape):
    return make_activation(a["activation"]), shape


def _softmax(a, shape):
    if not (1 <= a["axis"] <= len(shape) or -len(shape) <= a["axis"] <= -1):
        raise LayerError(f"axis {a['axis']} is not a feature axis of {fmt_shape(shape)} "
                         "(axis 0 is the batch)", arg="axis")
    return nn.Softmax(dim=a["axis"]), shape


# --- the vocabulary ------------------------------------------------------------------------

_register("dense", "Dense", [Arg("units", A.positive_int), Arg("activation", A.activation, None),
                             Arg("use_bias", A.boolean, True)], _dense)
for _n in (1, 2):
    _register(f"conv{_n}d", f"Conv{_n}D", _conv_args(_n), _conv(_n))
    _register(f"maxpool{_n}d", f"MaxPooling{_n}D", _pool_args(_n), _pool(_n, "max"))
    _register(f"avgpool{_n}d", f"AveragePooling{_n}D", _pool_args(_n), _pool(_n, "avg"))
    _register(f"globalavgpool{_n}d", f"GlobalAveragePooling{_n}D", [], _global_pool(_n, "avg"))
    _register(f"globalmaxpool{_n}d", f"GlobalMaxPooling{_n}D", [], _global_pool(_n, "max"))
_register("flatten", "Flatten", [], _flatten)
_register("reshape", "Reshape", [Arg("target_shape", A.target_shape)], _reshape)
_register("dropout", "Dropout", [Arg("rate", A.rate)], _dropout)
_register("batchnorm", "BatchNormalization", [Arg("momentum", A.rate, 0.99),
                                              Arg("epsilon", A.positive_float, 1e-3)], _batchnorm)
_register("layernorm", "LayerNormalization", [Arg("epsilon", A.positive_float, 1e-3)], _layernorm)
# output_dim first (`embedding: 64`): input_dim, the vocabulary size, usually comes from the data.
_register("embedding", "Embedding", [Arg("output_dim", A.positive_int),
                                     Arg("input_dim", lambda v: None if v is None else A.positive_int(v), None),
                                     Arg("mask_zero", A.boolean, False)], _embedding)
for _kind, _type in (("simplernn", "SimpleRNN"), ("lstm", "LSTM"), ("gru", "GRU")):
    _register(_kind, _type, [Arg("units", A.positive_int), Arg("bidirectional", A.boolean, False),
                             Arg("num_layers", A.positive_int, 1),
                             Arg("return_sequences", A.boolean, False), Arg("dropout", A.rate, 0.0)],
              _rnn(_kind))

_register("activation", "Activation", [Arg("activation", A.activation)], _activation)
_register("relu", "ReLU", [], _act_layer(nn.ReLU))
_register("gelu", "GELU", [], _act_layer(nn.GELU))
_register("tanh", "Tanh", [], _act_layer(nn.Tanh))
_register("sigmoid", "Sigmoid", [], _act_layer(nn.Sigmoid))
_register("softmax", "Softmax", [Arg("axis", A.integer, -1)], _softmax)
_register("leakyrelu", "LeakyReLU", [Arg("negative_slope", A.nonneg_float, 0.3)],
          _act_layer(nn.LeakyReLU), aliases=(("alpha", "negative_slope"),))
_register("elu", "ELU", [Arg("alpha", A.positive_float, 1.0)], _act_layer(nn.ELU))
_register("selu", "SELU", [], _act_layer(nn.SELU))
_register("silu", "SiLU", [], _act_layer(nn.SiLU))
_register("softplus", "Softplus", [], _act_layer(nn.Softplus))
_register("mish", "Mish", [], _act_layer(nn.Mish))

# Other spellings users bring from Keras/torch.
LAYER_ALIASES = {"swish": "silu", "leaky_relu": "leakyrelu", "batchnormalization": "batchnorm",
                 "layernormalization": "layernorm"}
