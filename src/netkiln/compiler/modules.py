"""The torch modules the layer builders emit. Sequences are (B, T, F); images are (B, C, H, W).

Padding (text): after an `embedding` with mask_zero, a network runs `run_masked`, which carries each row's
number of real steps (`lengths`, (B,) int64; id 0 at the end of a row is padding) beside the tensor. Layers that
must skip padded steps have a `forward_masked(x, lengths) -> (y, lengths)`; every other layer runs as it is and
keeps the lengths while it keeps the time axis. Their outputs at padded steps stay finite (0 where they fill), so
no -inf or NaN reaches a gradient. Networks without mask_zero never take this path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation


def lengths_of(ids: torch.Tensor) -> torch.Tensor:
    """(B, T) integer ids -> (B,): the steps up to each row's last non-zero id (trailing 0s are padding)."""
    steps = torch.arange(1, ids.shape[1] + 1, device=ids.device)
    return ((ids != 0) * steps).amax(dim=1)


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T, 1) bool, true at real steps."""
    return (torch.arange(steps, device=lengths.device) < lengths[:, None])[..., None]


def keeps_steps(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether a layer kept the time axis of a (B, T, F) sequence (then its output has the same padded steps)."""
    return x.dim() == 3 and y.dim() == 3 and x.shape[1] == y.shape[1]


def run_masked(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None):
    """module(x) told which steps are padding -> (y, lengths of y; None once the time axis is gone)."""
    if isinstance(module, nn.Sequential):
        for child in module:
            x, lengths = run_masked(child, x, lengths)
        return x, lengths
    forward_masked = getattr(module, "forward_masked", None)
    if forward_masked is not None:
        return forward_masked(x, lengths)
    y = module(x)
    return y, (lengths if lengths is not None and keeps_steps(x, y) else None)


def _window_lengths(lengths: torch.Tensor, kernel: int, stride: int, dilation: int, pads: tuple) -> torch.Tensor:
    """The output steps whose windows start at a real step or in the left padding: the steps a row of `lengths`
    real steps gets with this window (the same formula as the layer's output length)."""
    left, right = pads
    span = dilation * (kernel - 1) + 1
    return (torch.div(lengths + left + right - span, stride, rounding_mode="floor") + 1).clamp(min=0)


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
        self.window = (kernel_size, strides, dilation, pads[0]) if ndim == 1 else None

    def forward_masked(self, x, lengths):
        """Padded steps read as zeros, as the layer's own padding does, so each output step that a row of its
        length has sees the same values whatever padding follows."""
        if lengths is None:
            return self(x), None
        y = self(x.masked_fill(~step_mask(lengths, x.shape[1]), 0.0))
        return y, _window_lengths(lengths, *self.window)

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
        self.window = (self.pool_size[0], self.strides[0], 1, pads[0]) if ndim == 1 else None

    def forward_masked(self, x, lengths):
        """Padded steps never win a max nor count in an average (as the layer's own padding)."""
        if lengths is None:
            return self(x), None
        real = step_mask(lengths, x.shape[1])
        if self.kind == "max":
            y = self(x.masked_fill(~real, float("-inf")))
        else:  # the average of the real cells of each window: pool(x) / pool(mask)
            share = self(real.to(x.dtype).expand_as(x))
            y = self(x.masked_fill(~real, 0.0)) / share.clamp(min=1e-12)
        out = _window_lengths(lengths, *self.window)
        return y.masked_fill(~step_mask(out, y.shape[1]), 0.0), out

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

    def forward_masked(self, x, lengths):
        """Over the real steps only; a row without any real step pools to zeros."""
        if lengths is None:
            return self(x), None
        # Reduced as (B, F, T): a conv1d's output is stored that way, so the masked copy and the gradient flowing
        # back to the conv keep its layout (reducing the (B, T, F) view made a textcnn step ~20% slower).
        padded = ~step_mask(lengths, x.shape[1]).transpose(1, 2)
        x = x.transpose(1, 2)
        if self.kind == "avg":
            y = x.masked_fill(padded, 0.0).sum(dim=2) / lengths.clamp(min=1)[:, None].to(x.dtype)
        else:
            y = x.masked_fill(padded, float("-inf")).amax(dim=2).masked_fill((lengths == 0)[:, None], 0.0)
        return y, None

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
    """Integer ids (B, T) or (B, T, 1), possibly stored as floats, -> (B, T, output_dim).

    mask_zero (Keras): id 0 is padding. Its vector is zeros and gets no gradient (padding_idx=0), and
    forward_masked tells the layers after it how many steps of each row are real.
    """

    def __init__(self, input_dim: int, output_dim: int, squeeze: bool, mask_zero: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, output_dim, padding_idx=0 if mask_zero else None)
        self.squeeze = squeeze
        self.mask_zero = mask_zero

    def forward(self, x):
        if self.squeeze:
            x = x.squeeze(-1)
        return self.embedding(x.long())

    def forward_masked(self, x, lengths):
        ids = (x.squeeze(-1) if self.squeeze else x).long()
        return self.embedding(ids), (lengths_of(ids) if self.mask_zero else lengths)


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

    def forward_masked(self, x, lengths):
        """Padded steps skipped (a packed sequence): each direction's final state is the one at the row's last
        real step (the backward direction starts there), and returned sequences are zeros at padded steps. A row
        without a real step reads its first (padding) step."""
        if lengths is None:
            return self(x), None
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        if self.return_sequences:
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            return out, lengths
        if isinstance(h, tuple):
            h = h[0]
        return torch.cat(list(h[-self.directions:]), dim=-1), None


class Residual(nn.Module):
    """y = x + f(x)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)

    def forward_masked(self, x, lengths):
        y, lengths = run_masked(self.body, x, lengths)
        return x + y, lengths


class Parallel(nn.Module):
    """Branches on the same input, their outputs concatenated on the feature axis (channels of images, the last
    axis otherwise): `parallel: [[...], [...]]`, e.g. the convolutions of several widths of a text CNN."""

    def __init__(self, branches: list[nn.Module], dim: int):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=self.dim)

    def forward_masked(self, x, lengths):
        outs = [run_masked(branch, x, lengths) for branch in self.branches]
        kept = [n for _, n in outs]
        if any(n is None for n in kept):
            lengths = None
        else:   # branches that keep the time axis agree on its size; a step is real where it is in every branch
            lengths = torch.stack(kept).amin(dim=0)
        return torch.cat([y for y, _ in outs], dim=self.dim), lengths

    def extra_repr(self):
        return f"dim={self.dim}"
