"""The torch modules the layer builders emit. Sequences are (B, T, F); images are (B, C, H, W)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation


def _torch_pad(pads: tuple) -> list[int]:
    """Per-axis (left, right) pads -> F.pad's order, which starts from the last axis."""
    out: list[int] = []
    for left, right in reversed(pads):
        out += [left, right]
    return out


class Dense(nn.Module):
    """Linear on the last axis, then an optional activation."""

    def __init__(self, in_features: int, units: int, use_bias: bool = True, activation: str | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, units, bias=use_bias)
        self.act = make_activation(activation)
        self.has_act = not isinstance(self.act, nn.Identity)   # skip a no-op module call on the hot path

    def forward(self, x):
        y = self.linear(x)
        return self.act(y) if self.has_act else y


class Conv(nn.Module):
    """Conv1d over a (B, T, F) sequence (F = channels) or Conv2d over (B, C, H, W) images.

    `pads` holds (left, right) per spatial axis; unequal pads (Keras 'same' with strides) go
    through F.pad because torch convs only pad symmetrically.
    """

    def __init__(self, ndim, in_channels, filters, kernel_size, strides, dilation, pads,
                 use_bias=True, activation=None):
        super().__init__()
        symmetric = all(left == right for left, right in pads)
        conv_cls = nn.Conv1d if ndim == 1 else nn.Conv2d
        self.conv = conv_cls(in_channels, filters, kernel_size, stride=strides, dilation=dilation,
                             padding=tuple(p[0] for p in pads) if symmetric else 0, bias=use_bias)
        self.act = make_activation(activation)
        self.has_act = not isinstance(self.act, nn.Identity)
        self.pad = None if symmetric else _torch_pad(pads)
        self.channels_last = ndim == 1  # sequences are (B, T, F); torch wants (B, F, T)

    def forward(self, x):
        if self.channels_last:
            x = x.transpose(1, 2)
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        if self.has_act:
            x = self.act(x)
        return x.transpose(1, 2) if self.channels_last else x


class Pool(nn.Module):
    """Max/avg pooling with Keras padding: padded cells never win a max nor count in an average."""

    def __init__(self, ndim: int, kind: str, pool_size, strides, pads):
        super().__init__()
        self.ndim, self.kind = ndim, kind
        self.pool_size, self.strides = tuple(pool_size), tuple(strides)
        self.pad = _torch_pad(pads) if any(any(p) for p in pads) else None

    def forward(self, x):
        channels_last = self.ndim == 1
        if channels_last:
            x = x.transpose(1, 2)
        if self.kind == "max":
            pool = F.max_pool1d if self.ndim == 1 else F.max_pool2d
            if self.pad is not None:
                x = F.pad(x, self.pad, value=float("-inf"))
            y = pool(x, self.pool_size, self.strides)
        else:
            pool = F.avg_pool1d if self.ndim == 1 else F.avg_pool2d
            if self.pad is None:
                y = pool(x, self.pool_size, self.strides)
            else:  # divide by the share of real cells in each window
                ones = x.new_ones((1, 1) + tuple(x.shape[2:]))
                y = (pool(F.pad(x, self.pad), self.pool_size, self.strides)
                     / pool(F.pad(ones, self.pad), self.pool_size, self.strides))
        return y.transpose(1, 2) if channels_last else y

    def extra_repr(self):
        return f"{self.kind}, pool_size={self.pool_size}, strides={self.strides}, pad={self.pad}"


class GlobalPool(nn.Module):
    """Reduce the time axis of (B, T, F) or the spatial axes of (B, C, H, W)."""

    def __init__(self, ndim: int, kind: str):
        super().__init__()
        self.dims = (1,) if ndim == 1 else (2, 3)
        self.kind = kind

    def forward(self, x):
        return x.mean(dim=self.dims) if self.kind == "avg" else x.amax(dim=self.dims)

    def extra_repr(self):
        return f"{self.kind}, dims={self.dims}"


class Reshape(nn.Module):
    def __init__(self, target_shape):
        super().__init__()
        self.target_shape = tuple(target_shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.target_shape)

    def extra_repr(self):
        return f"target_shape={self.target_shape}"


class BatchNorm(nn.Module):
    """Batch norm over the channel axis: features (flat), F (sequences), C (images)."""

    def __init__(self, rank: int, channels: int, momentum: float, epsilon: float):
        super().__init__()
        # Keras keeps `momentum` of the old average; torch's momentum is the weight of the new batch.
        cls = nn.BatchNorm2d if rank == 3 else nn.BatchNorm1d
        self.bn = cls(channels, eps=epsilon, momentum=1.0 - momentum)
        self.channels_last = rank == 2

    def forward(self, x):
        if self.channels_last:
            return self.bn(x.transpose(1, 2)).transpose(1, 2)
        return self.bn(x)


class Embedding(nn.Module):
    """Integer ids (B, T) or (B, T, 1), possibly stored as floats, -> (B, T, output_dim)."""

    def __init__(self, input_dim: int, output_dim: int, squeeze: bool):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, output_dim)
        self.squeeze = squeeze

    def forward(self, x):
        if self.squeeze:
            x = x.squeeze(-1)
        return self.embedding(x.long())


class ImageRows(nn.Module):
    """(B, C, H, W) images -> (B, H, C·W) sequences: row h is time step h, its features are the
    row's values channel by channel (row-major, as Keras's MNIST RNN example reads 28x28 digits)."""

    def forward(self, x):
        return x.transpose(1, 2).flatten(2)


class RNN(nn.Module):
    """simplernn/lstm/gru over (B, T, F), or over the rows of (B, C, H, W) images (`image_rows`).

    Without return_sequences the result is the last layer's final hidden state per direction,
    concatenated [forward, backward] (Keras Bidirectional semantics): the backward direction's
    final state is the one it reaches at t=0, which output[:, -1] would miss.
    """

    def __init__(self, kind: str, input_size: int, units: int, num_layers: int = 1,
                 bidirectional: bool = False, return_sequences: bool = False, dropout: float = 0.0,
                 image_rows: bool = False):
        super().__init__()
        cls = {"simplernn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.image_rows = ImageRows() if image_rows else None
        self.rnn = cls(input_size, units, num_layers=num_layers, bidirectional=bidirectional,
                       dropout=dropout, batch_first=True)
        self.directions = 2 if bidirectional else 1
        self.return_sequences = return_sequences

    def forward(self, x):
        if self.image_rows is not None:
            x = self.image_rows(x)
        out, h = self.rnn(x)
        if self.return_sequences:
            return out
        if isinstance(h, tuple):  # lstm: (h_n, c_n)
            h = h[0]
        # h: (num_layers * directions, B, units), layer-major: the last `directions` rows are the top layer
        return torch.cat(list(h[-self.directions:]), dim=-1)


class Residual(nn.Module):
    """y = x + f(x)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
