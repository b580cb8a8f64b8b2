"""`netkiln analyze` on a streamed image folder (data.streaming): every image read once, a batch at a time.

The folder is never decoded whole. Class counts and the image size and channels come from the file listing and the
data config (each image is resized to data.image_size as it is decoded). One pass over the split's files, decoded
by the DataLoader workers training uses (data/image_stream.py), counts each channel's 256 pixel values and hashes
each image: the per-channel mean, std, min and max follow exactly from the counts (as the streamed standardisation
does), and the hashes are those of the in-memory analysis, so its duplicates and rows shared between splits are
exact too. Only the plots look at images themselves: the few analyze draws (a handful a class).
"""
from __future__ import annotations

import numpy as np
import torch

from .image_stream import ImageFileDataset, ImageRows, make_loader, raise_failed

BATCH_IMAGES = 256


def is_streamed_images(x) -> bool:
    return isinstance(x, ImageRows)


def pixel_pass(ds, workers: int, batch_size: int | None = None) -> tuple[np.ndarray, dict[str, list[int]]]:
    """((channels, 256) counts of each pixel value over every image of the splits, {split: one hash per image}),
    `batch_size` (default BATCH_IMAGES) images decoded at a time."""
    batch_size = batch_size or BATCH_IMAGES
    counts = np.zeros((ds.input_shape[0], 256), dtype=np.int64)
    hashes: dict[str, list[int]] = {}
    for split in ("train", "val", "test"):
        rows = getattr(ds, f"x_{split}")
        hashes[split] = []
        if len(rows) == 0:
            continue
        sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(len(rows))), batch_size,
                                                False)
        loader = make_loader(ImageFileDataset(rows, torch.zeros(len(rows), dtype=torch.long)), sampler,
                             min(workers, len(sampler)), pin=False)
        for batch in loader:
            raise_failed(batch)
            x = batch[0].numpy()
            for c in range(counts.shape[0]):
                counts[c] += np.bincount(x[:, c].reshape(-1), minlength=256)
            flat = np.ascontiguousarray(x.reshape(len(x), -1))      # as analyze._row_hashes hashes the pixels
            hashes[split] += [hash(r.tobytes()) for r in flat]
        del loader
    return counts, hashes


def channel_stats(counts: np.ndarray) -> list[dict]:
    """Each channel's mean, std, min and max of the pixels / 255 (float64, as analyze describes in-memory pixels)."""
    values = np.arange(256, dtype=np.float64) / 255.0
    out = []
    for c, row in enumerate(counts):
        n = int(row.sum())
        if n == 0:
            out.append({"name": f"channel {c} (all pixels)", "mean": None, "std": None, "min": None, "max": None})
            continue
        mean = float((row * values).sum() / n)
        std = float(np.sqrt((row * (values - mean) ** 2).sum() / n))
        seen = np.flatnonzero(row)
        out.append({"name": f"channel {c} (all pixels)", "mean": mean, "std": std, "min": float(values[seen[0]]),
                    "max": float(values[seen[-1]])})
    return out
