"""Compile errors: a NetkilnError that also names the layer, plus shape wording shared by messages."""
from __future__ import annotations

from netkiln.errors import NetkilnError

Shape = tuple  # a shape without the batch dim


class ModelSpecError(NetkilnError):
    """`model.layers[3] (conv1d): kernel_size 5 is larger than ...` — key, then the layer name."""

    def __init__(self, message: str, *, key: str | None = None, layer: str | None = None):
        self.layer = layer  # set before super().__init__, which formats the message
        super().__init__(message, key=key)

    def _format(self) -> str:
        where = self.key or ""
        if self.layer:
            where = f"{where} ({self.layer})" if where else self.layer
        return f"{where}: {self.message}" if where else self.message


class LayerError(Exception):
    """Raised inside layer builders; the compiler adds the config path and layer name.

    `arg` names the offending argument so the key becomes `model.layers[3].kernel_size`.
    """

    def __init__(self, message: str, arg: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg


def fmt_shape(shape: Shape) -> str:
    """Keras style: (None, 19, 25)."""
    return "(" + ", ".join(["None"] + [str(int(d)) for d in shape]) + ")"


def describe(shape: Shape) -> str:
    """Name the data layout a shape stands for, for error messages."""
    kind = {1: "flat features", 2: "a sequence (T, F)", 3: "images (C, H, W)"}.get(
        len(shape), f"a rank-{len(shape)} tensor")
    return f"{kind} {fmt_shape(shape)}"
