"""PNG plots for a run: learning curves, confusion matrix, residuals.

matplotlib is imported inside each function and only its Agg canvas is used (no pyplot, no global backend
switch, no display needed). Every PNG is written under a temporary name and renamed.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from netkiln.io.files import write_atomic

# Above this many classes a confusion matrix is neither readable as a picture nor small (k x k cells): evaluate
# keeps the per-class table only.
CONFUSION_MAX_CLASSES = 50


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))


def _number(text: str):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def learning_curves(history_csv: Path, path: Path) -> Path | None:
    """Loss (train, val) and the other validation metrics per epoch, from a run's history.csv."""
    history_csv = Path(history_csv)
    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    columns = [c for c in rows[0] if "/" in c]
    series = {c: [_number(r.get(c)) for r in rows] for c in columns}
    series = {c: v for c, v in series.items() if any(x is not None for x in v)}
    metrics = sorted({c.split("/", 1)[1] for c in series})
    metrics = ["loss"] + [m for m in metrics if m != "loss"] if "loss" in metrics else metrics
    if not metrics:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4.2 * len(metrics), 3.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for split in ("train", "val"):
            values = series.get(f"{split}/{metric}")
            if values:
                pts = [(e, v) for e, v in zip(epochs, values) if v is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None,
                        markersize=3, label=split)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path,
                     title: str = "Confusion matrix") -> Path:
    """Rows: true class, columns: predicted class; each cell shows its count (at most CONFUSION_MAX_CLASSES)."""
    import numpy as np

    k = len(labels)
    if k > CONFUSION_MAX_CLASSES:
        raise ValueError(f"a confusion matrix plot of {k} classes (more than {CONFUSION_MAX_CLASSES}) is unreadable")
    m = np.asarray(matrix, dtype=np.int64)
    size = min(2.0 + 0.55 * k, 14.0)
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(k)
    shown = [str(lab)[:14] for lab in labels]
    ax.set_xticks(ticks, shown, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(ticks, shown)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 30:
        top = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if top and m[i, j] > top / 2 else "black")
    return _save(fig, path)


def residuals(y_true, y_pred, path: Path, names: Sequence[str] = ()) -> Path:
    """Residual (true - predicted) against predicted value, one panel a target (at most 6)."""
    import numpy as np

    t = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    k = min(t.shape[1], 6)
    fig = _figure(4.2 * k, 3.6)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for i, ax in enumerate(axes):
        r = t[:, i] - p[:, i]
        ax.scatter(p[:, i], r, s=8, alpha=0.6)
        ax.axhline(0.0, color="black", linewidth=0.8)
        name = names[i] if i < len(names) else (f"target {i}" if k > 1 else "")
        ax.set_title(f"residuals {name}".strip())
        ax.set_xlabel("predicted")
        ax.set_ylabel("true - predicted")
        ax.grid(alpha=0.3)
    return _save(fig, path)
