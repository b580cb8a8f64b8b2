"""Training and validation batches of a streamed image folder (data.streaming on data=images): a torch DataLoader
decodes each batch in `data.workers` processes (data/image_stream.py), into pinned memory when training on CUDA.

The same interface as batches.TrainChunks, so the LightningModule's fast loop runs unchanged. The shuffle is
TrainChunks' own: `torch.randperm` seeded by (seed, epoch), read when the epoch starts, so a streamed run visits the
rows in the in-memory run's order and a resumed run repeats the interrupted epoch's order. A chunk pulls its batches
from the loader one by one as the module's loop asks for them: the workers decode ahead of training (the loader's
prefetch) instead of a whole chunk being gathered before its first step. Near the epoch's end (as many training
batches before it as the validation rows would fill) the validation workers start decoding the validation pass, so
its first (1024-image) batch is ready when the epoch's last steps are done instead of decoded while training
waits. The workers persist across epochs and are shut down by `close()` (after fit, or at once when an image fails
to decode).
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import torch

from netkiln.data.image_stream import ImageFileDataset, make_loader, raise_failed

log = logging.getLogger("netkiln")


def _first_epoch() -> int:
    return 0


def streamed_image_batches(dataset, train, val):
    """ImageTrainChunks and ImageEvalBatches in place of the in-memory `train` (TrainChunks: its batch size, chunk,
    seed and inputs) and `val` (EvalBatches, or None without validation)."""
    workers = dataset.source_info["streaming"]["workers"]
    log.info("training data: %d image files decoded per batch in %s", len(dataset.x_train),
             f"{workers} DataLoader worker process(es)" if workers else "the main process (data.workers=0)")
    chunks = ImageTrainChunks(dataset.x_train, train.y, train.batch_size, train.batches_per_chunk, train.seed,
                              workers, inputs=train.inputs)
    evals = ImageEvalBatches(dataset.x_val, val.y, val.batch_size, workers, inputs=val.inputs) \
        if val is not None else None
    if evals is not None and workers:
        # The validation pass decoded during the epoch's last batches: as many as its rows would fill.
        chunks.sampler.then = chunks.start_next
        chunks.sampler.then_before = max(1, math.ceil(len(dataset.x_val) / train.batch_size))
        chunks.next_up = evals
    return chunks, evals


class EpochBatches(torch.utils.data.Sampler):
    """The epoch's batches of row positions: TrainChunks' shuffle (seed, epoch), this rank's share under DDP.
    `then` (if set) is called as the loader takes the batch `then_before` batches before the epoch's end."""

    then: Callable[[], None] | None = None
    then_before = 1

    def __init__(self, rows: int, batch_size: int, seed: int, epoch: Callable[[], int]):
        self.rows, self.batch_size, self.seed, self.epoch = rows, batch_size, seed, epoch
        self.rank, self.world_size = 0, 1

    def order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.rows, generator=gen)
        if self.world_size > 1:
            per_rank = len(order) // self.world_size
            order = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        return order

    def __len__(self) -> int:
        return math.ceil((self.rows // self.world_size if self.world_size > 1 else self.rows) / self.batch_size)

    def __iter__(self):
        batches = self.order(self.epoch()).split(self.batch_size)
        for i, batch in enumerate(batches):
            if self.then is not None and i == max(0, len(batches) - self.then_before):
                self.then()
            yield batch.tolist()


class LoaderChunk:
    """Up to `batches_per_chunk` batches of the epoch, pulled from the loader in order as the module asks for them:
    `len` and slices as TrainChunks' index chunks have (each slice is the next batch)."""

    def __init__(self, source: "_Loaded", rows: int):
        self.source, self.rows = source, rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, rows: slice):
        return self.source.next_batch()


class _Loaded:
    """A DataLoader made on first use (after any DDP spawn, on the training device) and shut down by close().

    Only this object holds the loader and its iterator (never a generator's local), so dropping them in close()
    ends the worker processes at once (torch shuts them down when its iterator is freed)."""

    loader = None
    batches = None
    started_early = False           # `batches` is a pass begun by prefetch(), for the next __iter__
    workers: int

    def _start(self, dataset, sampler, device: torch.device) -> None:
        """A new pass over the loader (the persistent workers are reused)."""
        if self.loader is None:
            self.loader = make_loader(dataset, sampler, min(self.workers, len(sampler)),
                                      pin=device.type == "cuda")
        self.batches = iter(self.loader)

    def next_batch(self):
        return next(self.batches)

    def close(self) -> None:
        """Shut the worker processes down."""
        self.batches = self.loader = None
        self.started_early = False

    def __getstate__(self):         # ddp_spawn pickles the module: a loader is made in each process
        return {**self.__dict__, "loader": None, "batches": None, "started_early": False}

    def _batch(self, batch, device: torch.device):
        if batch[2] is not None:     # an image failed to decode in a worker: stop them, then raise naming it
            self.close()
            raise_failed(batch)
        x, y = batch[0], batch[1]
        if device.type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return (x if self.inputs is None else self.inputs(x)), y


class ImageTrainChunks(_Loaded):
    """Shuffled chunks of training batches decoded by DataLoader workers; the shuffle is seeded by (seed, epoch)."""

    def __init__(self, rows, y: torch.Tensor, batch_size: int, batches_per_chunk: int, seed: int, workers: int,
                 epoch: Callable[[], int] | None = None, inputs: Callable | None = None):
        self.rows, self.y = rows, y
        self.batch_size, self.batches_per_chunk = batch_size, batches_per_chunk
        self.chunk_rows = batch_size * batches_per_chunk
        self.seed, self.workers = seed, workers
        self.epoch = epoch or _first_epoch
        self.inputs = inputs            # uint8 → float32, augmentation, standardisation (augment.training_inputs)
        self.sampler = EpochBatches(len(rows), batch_size, seed, self._epoch)
        self.device = torch.device("cpu")

    def _epoch(self) -> int:            # a bound method: picklable, and follows `self.epoch` when it is replaced
        return self.epoch()

    @property
    def num_batches(self) -> int:
        return len(self.sampler)

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.batches_per_chunk)

    def to(self, device) -> "ImageTrainChunks":
        self.device = torch.device(device)
        return self

    next_up: "ImageEvalBatches | None" = None

    def start_next(self) -> None:
        """Start the validation pass's decoding (called by the sampler near the epoch's end)."""
        if self.next_up is not None:
            self.next_up.prefetch(self.device)

    def shard(self, rank: int, world_size: int) -> None:
        self.sampler.rank, self.sampler.world_size = rank, world_size

    def __iter__(self):
        if hasattr(self.inputs, "new_epoch"):       # augmentation drawn afresh, and alike after a resume
            self.inputs.new_epoch(self.seed, self.epoch(), self.sampler.rank)
        self._start(ImageFileDataset(self.rows, self.y), self.sampler, self.device)
        rows = self.sampler.rows // self.sampler.world_size if self.sampler.world_size > 1 else self.sampler.rows
        for start in range(0, rows, self.chunk_rows):
            yield LoaderChunk(self, min(self.chunk_rows, rows - start))

    def batch(self, loaded) -> tuple[torch.Tensor, torch.Tensor]:
        return self._batch(loaded, self.device)

    def row_order(self, epoch: int) -> torch.Tensor:
        """The training rows (positions in the split) in the order epoch `epoch` visits them (for tests)."""
        return self.sampler.order(epoch)


class ImageEvalBatches(_Loaded):
    """Validation batches in order, decoded by DataLoader workers; never augmented."""

    def __init__(self, rows, y: torch.Tensor, batch_size: int, workers: int, inputs: Callable | None = None):
        self.rows, self.y, self.batch_size, self.workers, self.inputs = rows, y, batch_size, workers, inputs
        self.sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(rows))),
                                                     batch_size, drop_last=False)
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.sampler)

    def to(self, device) -> "ImageEvalBatches":
        self.device = torch.device(device)
        return self

    def prefetch(self, device) -> None:
        """Begin the next pass now: its workers decode ahead while training still runs; __iter__ then reads it."""
        if not self.started_early:
            self.device = torch.device(device)
            self._start(ImageFileDataset(self.rows, self.y), self.sampler, self.device)
            self.started_early = True

    def __iter__(self):
        if not self.started_early:
            self._start(ImageFileDataset(self.rows, self.y), self.sampler, self.device)
        self.started_early = False
        for _ in range(len(self.sampler)):
            yield self._batch(self.next_batch(), self.device)
