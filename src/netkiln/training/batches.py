"""In-memory batching: tensors stay on the training device and batches are index slices.

No DataLoader, no per-sample collate. One item of `TrainChunks` holds up to
`steps_per_execution` batches; the LightningModule splits it and takes one optimizer step
per batch, so Lightning's per-step overhead is paid once per chunk.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def _first_epoch() -> int:
    return 0


class TrainChunks:
    """Shuffled chunks of `batches_per_chunk` batches; the shuffle is seeded by (seed, epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, batches_per_chunk: int,
                 seed: int, epoch: Callable[[], int] | None = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.chunk_rows = batch_size * batches_per_chunk
        self.seed = seed
        # Reads the trainer's current epoch, so a resumed run reshuffles alike; the LightningModule
        # sets it to one of its bound methods (picklable, unlike a lambda, for ddp_spawn).
        self.epoch = epoch or _first_epoch

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.chunk_rows)

    def to(self, device: torch.device) -> "TrainChunks":
        if self.x.device != device:
            self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())
        order = torch.randperm(len(self.x), generator=gen).to(self.x.device)
        for start in range(0, len(order), self.chunk_rows):
            idx = order[start:start + self.chunk_rows]
            yield self.x[idx], self.y[idx]


class EvalBatches:
    """Fixed-order batches for validation and test; large, since no gradients are kept."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y = x, y
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def to(self, device: torch.device) -> "EvalBatches":
        if self.x.device != device:
            self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __iter__(self):
        for start in range(0, len(self.x), self.batch_size):
            yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
