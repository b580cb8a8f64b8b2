"""The in-memory dataset handed to the compiler and the trainer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from netkiln.task import Task

LAYOUTS = ("flat", "sequence", "image", "tokens")


@dataclass
class PixelsToFloat:
    """uint8 pixels → the float32 inputs a network sees, applied to each gathered batch on its device: / 255 (as
    images were scaled when they were held as float32), `augment` (training batches only), then the fitted
    standardize statistics. The same float32 operations as numpy's, so results equal the float path's."""

    standardize: dict | None = None
    augment: Callable | None = None
    # The standardize statistics as tensors, per (device, ndim): made once, so a batch copies nothing from the host
    # (a CUDA graph cannot capture a copy from the host).
    _stats: dict = field(default_factory=dict, repr=False, compare=False)

    def new_epoch(self, seed: int, epoch: int, rank: int = 0) -> None:
        if self.augment is not None:
            self.augment.new_epoch(seed, epoch, rank)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32, copy=True).div_(255.0)      # in place: a new tensor per step costs 4x the time
        if self.augment is not None:
            x = self.augment(x)
        if self.standardize is not None:
            mean, std = self._statistics(x.device, x.ndim)
            x = ((x.to(mean.dtype) - mean) / std).to(torch.float32)
        return x

    def _statistics(self, device: torch.device, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(device), ndim)
        if key not in self._stats:
            stats = self.standardize
            # As preprocess.apply_standardize: float64 statistics (float32 where the device has no float64).
            wide = torch.float32 if device.type == "mps" else torch.float64
            shape = [1] * ndim
            shape[int(stats["feature_axis"]) + 1] = -1
            self._stats[key] = (torch.tensor(stats["mean"], dtype=wide, device=device).view(shape),
                                torch.tensor(stats["std"], dtype=wide, device=device).view(shape))
        return self._stats[key]


@dataclass
class Dataset:
    """Train/val/test tensors on the CPU plus what the rest of netkiln needs to know about them.

    x tensors are float32 with shape ``(N, *input_shape)``: flat ``(F,)``, sequence ``(T, F)`` (batch first),
    image ``(C, H, W)``, tokens ``(T,)`` (integer token ids stored as float32, exact below 2**24: 0 = padding,
    1 = out-of-vocabulary). y is int64 ``(N,)`` for classification (multiclass and binary, values 0..K-1) and
    float32 ``(N, k)`` for regression.

    Images read from files are held as uint8 pixels instead (a quarter of the memory): `pixels` turns each
    gathered batch into float32 on its device, and `floats(x)` does so for any rows read as numbers.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    input_shape: tuple
    layout: str
    feature_names: list[str] | None = None
    split_indices: dict[str, list[int]] | None = None
    source_info: dict[str, Any] = field(default_factory=dict)
    # Fitted preparation steps (statistics from the training rows only), saved with the model so that
    # predict can apply the same transform: {"standardize": {"feature_axis": int, "mean": [...], "std": [...]}}.
    preprocessing: dict[str, Any] = field(default_factory=dict)
    pixels: PixelsToFloat | None = None       # set when the x tensors hold uint8 pixels
    augment: list[dict[str, Any]] = field(default_factory=list)     # data.augment, parsed (netkiln.data.augment)

    def floats(self, x: torch.Tensor) -> torch.Tensor:
        """x (any rows of x_train/x_val/x_test) as the float32 inputs the network sees (never augmented)."""
        if self.pixels is None:
            return x
        mapped = getattr(x, "mapped", None)        # image files (data/image_stream.py): decoded when read
        return mapped(self.pixels) if mapped is not None else self.pixels(x)
    # Streamed tables (data/streaming.py): the x tensors map these read-only .npy memory maps ({"train", "val",
    # "test"}); training reads them in windows (training/streaming_batches.py). None: x is in memory.
    streamed: dict[str, Any] | None = None

    @property
    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}

    def describe(self) -> str:
        shape = "(" + ", ".join(str(s) for s in self.input_shape) + ("," if len(self.input_shape) == 1 else "") + ")"
        t = self.task
        if t.kind == "multiclass":
            task = f"multiclass, {t.num_outputs} classes"
        elif t.kind == "binary":
            task = "binary"
        else:
            task = f"regression, {t.num_outputs} target{'s' if t.num_outputs != 1 else ''}"
        s = self.split_sizes
        return (f"{self.name}: {self.layout} {shape} | {task} | "
                f"train {s['train']} / val {s['val']} / test {s['test']}")

    def __repr__(self) -> str:  # the tensors would flood a repr
        return f"Dataset({self.describe()})"
