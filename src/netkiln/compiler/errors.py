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


def _osa(a: str, b: str) -> int:
    """Edit distance counting an adjacent swap as one edit (convd1 -> conv1d is 1)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def suggest(name, choices) -> str:
    """Like netkiln.errors.did_you_mean, but ties (conv1d vs conv2d for 'convd1') go to the
    fewest edits, so swapped letters find the intended name."""
    import difflib

    name = str(name)
    pool = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(name, pool, n=6, cutoff=0.6)
    close += [c for c in pool if c not in close and _osa(name, c) <= max(1, len(name) // 4)]
    if not close:
        return ""
    best = min(close, key=lambda c: (_osa(name, c), -difflib.SequenceMatcher(None, name, c).ratio()))
    return f" Did you mean '{best}'?"
