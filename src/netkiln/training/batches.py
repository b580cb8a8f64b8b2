"""In-memory batching: tensors stay on the training device and batches are index slices.

No DataLoader, no per-sample collate. One item of `TrainChunks` holds the shuffled row indices of up
to `steps_per_execution` batches; the LightningModule gathers each batch (`TrainChunks.batch`) and
takes one optimizer step per batch, so Lightning's per-step overhead is paid once per chunk. Only
indices travel through Lightning: a chunk costs no memory however many batches it holds.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import torch

from netkiln.memory import human_bytes

log = logging.getLogger("netkiln")

# Training data up to this share of the accelerator's free memory is made resident there; larger
# data stays in (pinned) host memory and each chunk is copied over as it is used.
DEVICE_SHARE = 0.5


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free


def _first_epoch() -> int:
    return 0


class TrainChunks:
    """Shuffled chunks of `batches_per_chunk` batches; the shuffle is seeded by (seed, epoch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, batches_per_chunk: int,
                 seed: int, epoch: Callable[[], int] | None = None, inputs: Callable | None = None):
        self.x, self.y = x, y
        # Applied to each gathered batch on its device: uint8 pixels → float32, augmentation (data.augment).
        self.inputs = inputs
        self.batch_size, self.batches_per_chunk = batch_size, batches_per_chunk
        self.chunk_rows = batch_size * batches_per_chunk
        self.seed = seed
        # Reads the trainer's current epoch, so a resumed run reshuffles alike; the LightningModule
        # sets it to one of its bound methods (picklable, unlike a lambda, for ddp_spawn).
        self.epoch = epoch or _first_epoch
        self.stream_to: torch.device | None = None      # set when the data stays in host memory
        self.rank, self.world_size = 0, 1

    @property
    def rows_per_epoch(self) -> int:
        return len(self.x) // self.world_size if self.world_size > 1 else len(self.x)

    @property
    def num_batches(self) -> int:
        return math.ceil(self.rows_per_epoch / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.rows_per_epoch / self.chunk_rows)

    def to(self, device: torch.device) -> "TrainChunks":
        device = torch.device(device)
        if self.x.device == device or self.stream_to == device:
            return self
        nbytes = self.x.nbytes + self.y.nbytes
        if _fits_on(device, nbytes):
            self.x, self.y = self.x.to(device), self.y.to(device)
            log.info("training data: %s resident on %s, batched by index slicing", human_bytes(nbytes), device)
        else:
            self.x, self.y = self.x.pin_memory(), self.y.pin_memory()
            self.stream_to = device
            log.info("training data: %s is too large for %s; kept in pinned host memory and copied "
                     "over chunk by chunk", human_bytes(nbytes), device)
        return self

    def shard(self, rank: int, world_size: int) -> None:
        """Under DDP each process trains on its own 1/world_size of every epoch's shuffle (the same
        number of batches on every rank, so their optimizer steps stay in lockstep)."""
        self.rank, self.world_size = rank, world_size

    def __iter__(self):
        epoch = self.epoch()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if hasattr(self.inputs, "new_epoch"):       # augmentation drawn afresh, and alike after a resume
            self.inputs.new_epoch(self.seed, epoch, self.rank)
        order = torch.randperm(len(self.x), generator=gen)
        if self.world_size > 1:
            per_rank = len(order) // self.world_size
            order = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        order = order.to(self.x.device)
        for start in range(0, len(order), self.chunk_rows):
            yield order[start:start + self.chunk_rows]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows `idx` of the training data, on the training device."""
        if self.stream_to is None:
            x, y = self.x[idx], self.y[idx]
        else:
            x, y = (self.x[idx].to(self.stream_to, non_blocking=True),
                    self.y[idx].to(self.stream_to, non_blocking=True))
        return (x if self.inputs is None else self.inputs(x)), y


class EvalBatches:
    """Fixed-order batches for validation and test; large, since no gradients are kept."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, inputs: Callable | None = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.inputs = inputs            # uint8 pixels → float32 (Dataset.pixels); never augmentation

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def to(self, device: torch.device) -> "EvalBatches":
        if self.x.device != device:
            self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __iter__(self):
        for start in range(0, len(self.x), self.batch_size):
            x = self.x[start:start + self.batch_size]
            yield (x if self.inputs is None else self.inputs(x)), self.y[start:start + self.batch_size]
