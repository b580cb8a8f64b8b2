"""Keras-style parameter counts and summary table (plain text, no rich)."""
from __future__ import annotations

from torch import nn

from .errors import fmt_shape


def _state_tensors(module: nn.Module):
    """(tensor, trainable) for each parameter and each persistent float buffer, once each.

    Persistent float buffers (BatchNorm running mean/var) are Keras's non-trainable weights;
    counters such as num_batches_tracked are integer and left out.
    """
    seen: set[int] = set()
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p, p.requires_grad
    for m in module.modules():
        skip = getattr(m, "_non_persistent_buffers_set", set())
        for name, b in m._buffers.items():
            if b is not None and name not in skip and b.is_floating_point() and id(b) not in seen:
                seen.add(id(b))
                yield b, False


def count_params(net: nn.Module) -> dict:
    counts = {"total": 0, "trainable": 0, "non_trainable": 0}
    for t, trainable in _state_tensors(net):
        counts["total"] += t.numel()
        counts["trainable" if trainable else "non_trainable"] += t.numel()
    return counts


def _bytes(net: nn.Module) -> dict:
    out = {"total": 0, "trainable": 0, "non_trainable": 0}
    for t, trainable in _state_tensors(net):
        size = t.numel() * t.element_size()
        out["total"] += size
        out["trainable" if trainable else "non_trainable"] += size
    return out


def _human(n: int) -> str:
    """Keras's readable memory size: 136.04 KB (base 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TB"  # pragma: no cover


def _type_label(row) -> str:
    """The row's layer type, saying when a recurrent layer reads both directions: `GRU, bidirectional`."""
    rnn = getattr(row.module, "rnn", row.module)      # netkiln's RNN wraps torch's; a _target_ may be torch's own
    if isinstance(rnn, nn.RNNBase) and rnn.bidirectional:
        return f"{row.type}, bidirectional"
    return row.type


def summary_table(net) -> str:
    """Layer (type) | Output Shape | Param #, then total / trainable / non-trainable params."""
    head = ("Layer (type)", "Output Shape", "Param #")
    body = [("  " * r.depth + f"{r.name} ({_type_label(r)})", fmt_shape(r.output_shape), f"{r.params:,}")
            for r in net.rows]
    w = [max(len(row[i]) for row in [head, *body]) for i in range(3)]
    w = [max(w[0], 28), max(w[1], 20), max(w[2], 10)]
    width = sum(w) + 4

    def line(cells):
        return f"{cells[0]:<{w[0]}}  {cells[1]:<{w[1]}}  {cells[2]:>{w[2]}}"

    counts, sizes = count_params(net), _bytes(net)
    lines = [f'Model: "{getattr(net, "model_name", "model")}"']
    if getattr(net, "input_shape", None) is not None:
        lines.append(f"Input shape: {fmt_shape(net.input_shape)}")
    lines += ["_" * width, line(head), "=" * width, *map(line, body), "=" * width]
    for label, k in (("Total", "total"), ("Trainable", "trainable"), ("Non-trainable", "non_trainable")):
        lines.append(f"{label} params: {counts[k]:,} ({_human(sizes[k])})")
    lines.append("_" * width)
    return "\n".join(lines)
