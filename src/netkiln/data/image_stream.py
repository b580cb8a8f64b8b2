"""Image folders larger than memory (`data=images data.streaming`): the files are listed, not decoded up front.

`ImageRows` stands in for a split's uint8 x tensor: `len()`, and `rows[i:j]` (or an index tensor) decodes those
images with the in-memory path's `images.decode_image`, so the pixels are the same. Training and validation read
batches through a torch DataLoader over `ImageFileDataset`, which decodes a batch per call in worker processes
(training/image_batches.py). An image that fails to decode in a worker comes back as a marker, raised in the main
process as the NetkilnError naming the file (a worker's own exception would reach the user as a traceback).

`decode_into` is `decode_image` with less work per file (profiled on 64x64 PNGs, where Python's share of a decode is
large): one read of the file, no copy by `convert` when the image is already in the wanted mode, the pixels written
straight into the batch array (in a worker, one already in shared memory, so sending it copies nothing). Any failure
decodes the file again with `decode_image` itself, so the pixels and the error naming the file are that function's.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from netkiln.errors import NetkilnError

from .images import decode_image

# The in-memory path holds the folder's uint8 pixels and the split's copies of them: about twice the pixel bytes.
IN_MEMORY_FACTOR = 2
MAX_AUTO_WORKERS = 4
# Batches each worker decodes ahead: slack for a worker the scheduler holds back on a busy machine, within this
# many bytes of waiting batches in all.
PREFETCH_BATCHES = 4
PREFETCH_BYTES = 256 * 2 ** 20


@dataclass(frozen=True)
class ImageRows:
    """Some images of a folder, read on demand: `files[positions]`, decoded to uint8 (C, H, W) at `size`."""

    files: tuple[str, ...]
    positions: np.ndarray
    size: tuple[int, int]
    color: str
    key: str
    inputs: Callable | None = None        # applied to decoded rows (Dataset.floats: uint8 -> float32)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), 1 if self.color == "grayscale" else 3, *self.size)

    dtype = torch.uint8

    def subset(self, idx) -> "ImageRows":
        return replace(self, positions=self.positions[np.asarray(idx, dtype=np.int64)])

    def join(self, others: list["ImageRows"]) -> "ImageRows":
        """These rows followed by `others`' (which may list other files: a separate test folder)."""
        files, positions = list(self.files), [self.positions]
        for rows in others:
            if rows.files != self.files:
                positions.append(rows.positions + len(files))
                files += rows.files
            else:
                positions.append(rows.positions)
        return replace(self, files=tuple(files), positions=np.concatenate(positions))

    def mapped(self, inputs: Callable) -> "ImageRows":
        """These rows, each decoded batch passed through `inputs` (the float32 inputs the network sees)."""
        return replace(self, inputs=inputs)

    def file(self, row: int) -> str:
        return self.files[int(self.positions[row])]

    def decode(self, rows) -> torch.Tensor:
        """The uint8 (N, C, H, W) pixels of `rows` (positions in these rows); an unreadable file raises."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        x = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            x.share_memory_()       # the batch goes to the main process: decoded where it is sent from
        decode_into(x.numpy(), [self.file(r) for r in rows], self.size, self.color, self.key)
        return x

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            rows = np.arange(len(self))[idx]
        elif isinstance(idx, torch.Tensor):
            rows = idx.cpu().numpy()
        else:
            rows = np.asarray(idx)
        x = self.decode(rows)
        return x if self.inputs is None else self.inputs(x)


def decode_into(out: np.ndarray, files: list[str], size: tuple[int, int], color: str, key: str) -> None:
    """out[i] = decode_image(files[i], size, color, key) for each file, into the uint8 (N, C, H, W) `out`."""
    from PIL import Image

    mode, wh = ("L" if color == "grayscale" else "RGB"), (size[1], size[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)      # refused, as decode_image does
        for i, f in enumerate(files):
            try:
                with open(f, "rb") as handle:
                    img = Image.open(io.BytesIO(handle.read()))
                    img.load()
                if img.mode != mode:
                    img = img.convert(mode)
                if img.size != wh:
                    img = img.resize(wh, Image.Resampling.BILINEAR)
                a = np.asarray(img, dtype=np.uint8)
            except Exception:           # noqa: BLE001 - decode_image's own handling: its error, or its pixels
                a = None
            if a is None or a.ndim != (2 if mode == "L" else 3):
                out[i] = decode_image(f, size, color, key)
            elif a.ndim == 2:
                out[i, 0] = a
            else:
                out[i] = a.transpose(2, 0, 1)


class ImageFileDataset(torch.utils.data.Dataset):
    """A map-style dataset over ImageRows and their labels, decoding a whole batch per call (`__getitems__`) into
    one array. Returns (x, y, None), or (None, None, (message, key, file)) when an image fails to decode."""

    def __init__(self, rows: ImageRows, y: torch.Tensor):
        self.rows, self.y = rows, y

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: list[int]):
        try:
            x = self.rows.decode(indices)
        except NetkilnError as err:
            return None, None, (err.message, err.key, err.file)
        return x, self.y[torch.as_tensor(indices, dtype=torch.long)], None

    def __getitem__(self, index: int):
        return self.__getitems__([index])


def as_batch(batch):
    """The DataLoader's collate_fn: `__getitems__` returns the batch already (module level: workers pickle it)."""
    return batch


def raise_failed(batch) -> None:
    """Raise the decode error a worker reported in `batch`, naming the file."""
    if batch[2] is not None:
        message, key, file = batch[2]
        raise NetkilnError(message, key=key, file=file)


def prefetch_batches(batch_bytes: int, workers: int) -> int:
    """Batches each worker decodes ahead: PREFETCH_BATCHES, fewer (at least 2, torch's default) for large batches."""
    return max(2, min(PREFETCH_BATCHES, PREFETCH_BYTES // max(1, batch_bytes * workers)))


def make_loader(dataset: ImageFileDataset, batch_sampler, workers: int, pin: bool):
    """A DataLoader decoding the batches of `batch_sampler` in `workers` processes (0: in this one), each a few
    batches ahead (prefetch_batches); the workers persist across epochs."""
    batch_bytes = int(np.prod(dataset.rows.shape[1:])) * getattr(batch_sampler, "batch_size", 1)
    # Its own generator for the workers' seeds: drawing them from the global one would change dropout's draws.
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                       collate_fn=as_batch, pin_memory=pin, persistent_workers=workers > 0,
                                       prefetch_factor=prefetch_batches(batch_bytes, workers) if workers else None,
                                       generator=torch.Generator().manual_seed(0))


def workers_of(node: dict, path: str) -> int:
    """`data.workers`: auto (min(4, CPUs - 1)) or a number of decoding processes (0: decode in the main one)."""
    value = node.get("workers", "auto")
    if value is None or value == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(0, min(MAX_AUTO_WORKERS, cpus - 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetkilnError(f"expected auto or a whole number >= 0 of decoding processes, got {value!r}",
                           key=f"{path}.workers")
    return value


def fit_standardize_streamed(rows: ImageRows, workers: int, batch_size: int = 256) -> dict[str, Any]:
    """`preprocess.fit_standardize` of the rows as float32 in [0, 1], in one pass over the files: a pixel has 256
    values, so per-channel counts of each (exact integers) give the in-memory mean and std (float64)."""
    channels = rows.shape[1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(rows))), batch_size, False)
    loader = make_loader(ImageFileDataset(rows, torch.zeros(len(rows), dtype=torch.long)), sampler,
                         min(workers, max(1, len(sampler))), pin=False)
    for batch in loader:
        raise_failed(batch)
        x = batch[0].numpy()
        for c in range(channels):
            counts[c] += np.bincount(x[:, c].reshape(-1), minlength=256)
    del loader
    values = (np.arange(256, dtype=np.float32) / np.float32(255.0)).astype(np.float64)   # as x.astype(f32) / 255
    n = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / n
    std = np.sqrt((counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n)
    std = np.where(std > 1e-12, std, 1.0)
    return {"feature_axis": 0, "mean": mean.tolist(), "std": std.tolist()}
