"""Activation names (Keras spelling) -> torch modules."""
from __future__ import annotations

from torch import nn

# As an `activation:` argument Keras's leaky_relu uses slope 0.2; the LeakyReLU layer uses 0.3.
_FACTORIES = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softmax": lambda: nn.Softmax(dim=-1),
    "leakyrelu": lambda: nn.LeakyReLU(0.2),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "softplus": nn.Softplus,
    "mish": nn.Mish,
    "linear": nn.Identity,
}

ACTIVATION_NAMES = sorted(_FACTORIES)


def make_activation(name: str | None) -> nn.Module:
    """The module for an activation name; None/'linear' give Identity."""
    return _FACTORIES[name]() if name else nn.Identity()
