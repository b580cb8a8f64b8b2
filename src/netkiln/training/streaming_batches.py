"""Training batches read from a streamed table's prepared file (data/streaming.py), within a memory budget.

The same interface as batches.TrainChunks, so the LightningModule's fast loop runs unchanged: each item is a chunk
of up to `steps_per_execution` batches, here carrying its rows (a copy), since the next window may replace the
buffer they came from while Lightning prefetches.

The shuffle, seeded by (seed, epoch) so a resumed run repeats an epoch's order: the training rows (in file order)
are cut into blocks of `block_rows`; each epoch permutes the blocks, reads them a window of `window_blocks` blocks
at a time (plain file reads into one reused buffer: the page cache, not the process, holds the file), and permutes
the rows of the whole window together. A batch mixes rows from `window_blocks` blocks drawn at random from the whole
file; when the window holds every training row (the data fits half the budget) each epoch is a true permutation.
Rows left over at a window's end start the next window's first chunk, so every batch but the epoch's last is full
and each epoch visits every row exactly once.

The prepared data needs no decoding per epoch (it is float32 already), so no DataLoader workers are used: reading a
window is one memcpy from the page cache.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch

from netkiln.errors import NetkilnError
from netkiln.memory import human_bytes

log = logging.getLogger("netkiln")

WINDOW_SHARE = 0.5          # of the memory budget, for the window of training rows
BLOCK_BYTES = 1 << 20       # about 1 MiB of rows per block: a sequential read, and many blocks per window
WINDOW_BLOCKS = 16


def _first_epoch() -> int:
    return 0


def row_bytes(dataset) -> int:
    """Bytes of one prepared training row: its float32 features and its target."""
    y = dataset.y_train
    return 4 * int(np.prod(dataset.input_shape)) + y.element_size() * (int(np.prod(y.shape[1:])) if y.ndim > 1 else 1)


def streamed_batches(dataset, train, val):
    """DiskTrainChunks and DiskEvalBatches in place of the in-memory `train` (TrainChunks: its y, which may be the
    scaled target, batch size and seed) and `val` (EvalBatches, or None without validation)."""
    budget = dataset.source_info["streaming"]["budget_bytes"]
    files = dataset.streamed
    return (DiskTrainChunks(files["train"], train.y, train.batch_size, train.batches_per_chunk, train.seed, budget),
            DiskEvalBatches(files["val"], val.y, val.batch_size) if val is not None else None)


class RowChunk:
    """The rows of one chunk: `len` and slices as TrainChunks' index chunks have, for the module's loop."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, rows: slice) -> "RowChunk":
        return RowChunk(self.x[rows], self.y[rows])


def check_batch_fits(budget: int, batch_size: int, row_bytes: int, key: str = "data.memory_budget") -> None:
    """A budget smaller than one batch cannot train: refuse before anything is written."""
    need = batch_size * row_bytes
    if budget < need:
        raise NetkilnError(f"{human_bytes(budget)} is smaller than one batch ({batch_size} rows of "
                           f"{row_bytes} bytes = {human_bytes(need)}); raise it or lower batch_size", key=key)


class DiskTrainChunks:
    """Shuffled chunks of training rows read from the .npy memory map `x` (its file); y is in memory."""

    def __init__(self, x: np.memmap, y: torch.Tensor, batch_size: int, batches_per_chunk: int, seed: int,
                 budget: int, epoch: Callable[[], int] | None = None, to_device=None):
        self.file, self.offset = str(x.filename), int(x.offset)
        self.rows, self.width = int(x.shape[0]), int(x.shape[1])
        self.y = y
        self.batch_size, self.seed = batch_size, seed
        self.epoch = epoch or _first_epoch
        row_bytes = 4 * self.width + y.element_size() * (int(np.prod(y.shape[1:])) if y.ndim > 1 else 1)
        check_batch_fits(budget, batch_size, row_bytes)
        window_rows = max(batch_size, int(budget * WINDOW_SHARE) // row_bytes)
        # A chunk is copied out of the window: keep it within the window too.
        self.batches_per_chunk = max(1, min(batches_per_chunk, window_rows // batch_size))
        self.chunk_rows = batch_size * self.batches_per_chunk
        # Blocks of at most ~1 MiB, and at least WINDOW_BLOCKS of them a window, so a window mixes many places.
        self.block_rows = max(1, min(window_rows // WINDOW_BLOCKS, BLOCK_BYTES // (4 * self.width), self.rows))
        self.blocks = math.ceil(self.rows / self.block_rows)
        self.window_blocks = max(1, min(self.blocks, window_rows // self.block_rows))
        self.device = torch.device("cpu")
        log.info("training data: %d rows streamed from %s in windows of %d blocks of %d rows (%s of the "
                 "memory budget's %s)%s", self.rows, self.file, self.window_blocks, self.block_rows,
                 human_bytes(self.window_blocks * self.block_rows * row_bytes), human_bytes(budget),
                 "; the window holds every row: each epoch is a full permutation"
                 if self.window_blocks >= self.blocks else "")

    @property
    def num_batches(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.rows / self.chunk_rows)

    def to(self, device) -> "DiskTrainChunks":
        self.device = torch.device(device)
        return self

    def shard(self, rank: int, world_size: int) -> None:
        if world_size > 1:
            raise NetkilnError("a streamed table trains in one process; set data.streaming=false (if it fits in "
                               "memory) or train on one device", key="data.streaming")

    def epoch_order(self, epoch: int):
        """The epoch's rows, window by window: for each window, (its blocks, the permutation of its rows)."""
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
        blocks = rng.permutation(self.blocks)
        for start in range(0, self.blocks, self.window_blocks):
            window = blocks[start:start + self.window_blocks]
            rows = sum(min(self.block_rows, self.rows - b * self.block_rows) for b in window)
            yield window, rng.permutation(rows)

    def row_order(self, epoch: int) -> np.ndarray:
        """Every training row's position in the file, in the order epoch `epoch` visits them (for tests)."""
        out = []
        for window, perm in self.epoch_order(epoch):
            ids = np.concatenate([np.arange(b * self.block_rows, min((b + 1) * self.block_rows, self.rows))
                                  for b in window])
            out.append(ids[perm])
        return np.concatenate(out)

    def __iter__(self):
        buffer = np.empty((self.window_blocks * self.block_rows, self.width), dtype=np.float32)
        row_bytes = 4 * self.width
        carry_x = carry_y = None
        with open(self.file, "rb", buffering=0) as fh:
            for window, perm in self.epoch_order(self.epoch()):
                filled, ys = 0, []
                for b in window:
                    lo, hi = b * self.block_rows, min((b + 1) * self.block_rows, self.rows)
                    fh.seek(self.offset + lo * row_bytes)
                    view = memoryview(buffer[filled:filled + hi - lo]).cast("B")
                    if fh.readinto(view) != len(view):
                        raise NetkilnError(f"the prepared data file {self.file} is shorter than expected (was it "
                                           "removed while training?)")
                    ys.append(self.y[lo:hi])
                    filled += hi - lo
                window_x = torch.from_numpy(buffer[:filled])
                window_y = torch.cat(ys)
                order = torch.from_numpy(perm)
                # Chunk by chunk: each gathers its rows from the window (a copy of one chunk, never of the window).
                start = 0
                if carry_x is not None:            # the previous window's last rows start this window's first chunk
                    take = order[:self.chunk_rows - len(carry_x)]
                    carry_x, carry_y = torch.cat([carry_x, window_x[take]]), torch.cat([carry_y, window_y[take]])
                    start = len(take)
                    if len(carry_x) < self.chunk_rows:
                        continue
                    yield self._chunk(carry_x, carry_y)
                    carry_x = carry_y = None
                while start + self.chunk_rows <= len(order):
                    take = order[start:start + self.chunk_rows]
                    yield self._chunk(window_x[take], window_y[take])
                    start += self.chunk_rows
                if start < len(order):
                    carry_x, carry_y = window_x[order[start:]], window_y[order[start:]]
        if carry_x is not None:
            yield self._chunk(carry_x, carry_y)

    def _chunk(self, x: torch.Tensor, y: torch.Tensor) -> RowChunk:
        if self.device.type != "cpu":
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return RowChunk(x, y)

    def batch(self, rows: RowChunk) -> tuple[torch.Tensor, torch.Tensor]:
        return rows.x, rows.y


class DiskEvalBatches:
    """Validation batches read in order from the split's .npy file (not through its memory map, whose pages would
    stay counted in the process's memory)."""

    def __init__(self, x: np.memmap, y: torch.Tensor, batch_size: int):
        self.file, self.offset = str(x.filename), int(x.offset)
        self.rows, self.width = int(x.shape[0]), int(x.shape[1])
        self.y, self.batch_size = y, batch_size
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def to(self, device) -> "DiskEvalBatches":
        self.device = torch.device(device)
        return self

    def __iter__(self):
        with open(self.file, "rb", buffering=0) as fh:
            fh.seek(self.offset)
            for start in range(0, self.rows, self.batch_size):
                n = min(self.batch_size, self.rows - start)
                x = np.empty((n, self.width), dtype=np.float32)
                fh.readinto(memoryview(x).cast("B"))
                yield (torch.from_numpy(x).to(self.device),
                       self.y[start:start + n].to(self.device))
