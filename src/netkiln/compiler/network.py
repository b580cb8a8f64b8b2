"""The compiled model: an ordered stack of layer modules plus the shapes and summary rows."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .modules import run_masked


@dataclass
class Row:
    """One summary line. Params are counted from `module` on demand, so freezing shows up."""
    name: str
    type: str
    output_shape: tuple
    module: nn.Module
    depth: int = 0          # > 0 for layers inside residual/repeat
    key: str = ""           # config path, e.g. model.layers[2]

    @property
    def params(self) -> int:
        from .summary import count_params
        return count_params(self.module)["total"]


class Network(nn.Module):
    """`layers[i]` is `model.layers[i]` of the config; with `head: auto` the head is the last item."""

    def __init__(self, layers: list[nn.Module], layer_names: list[str], rows: list[Row],
                 input_shape: tuple, output_shape: tuple, name: str = "model", notes: list[str] = (),
                 masked: bool = False):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.layer_names = list(layer_names)
        self.rows = rows
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.model_name = name
        self.notes = list(notes)    # decisions worth telling the user (an RNN reading images row by row)
        self.masked = masked        # an embedding has mask_zero: layers are told which steps are padding

    def forward(self, x):
        if self.masked:
            return run_masked(self.layers, x, None)[0]
        return self.layers(x)

    def layer(self, ref: int | str) -> nn.Module:
        """A top-level layer by index or by name (`conv1d_1`)."""
        if isinstance(ref, str):
            if ref not in self.layer_names:
                raise KeyError(f"no layer named {ref!r}; layers: {', '.join(self.layer_names)}")
            ref = self.layer_names.index(ref)
        return self.layers[ref]
