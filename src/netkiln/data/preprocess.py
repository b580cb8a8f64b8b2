"""Preparation steps whose statistics are fitted on the training rows only."""
from __future__ import annotations

import numpy as np

# The axis of a single example that holds the features: standardisation keeps one mean/std per feature
# and pools the other axes (time steps of a sequence, pixels of an image channel).
FEATURE_AXIS = {"flat": 0, "sequence": 1, "image": 0}


def fit_standardize(x_train: np.ndarray, layout: str) -> dict:
    axis = FEATURE_AXIS[layout] + 1                      # +1: the batch axis
    reduce = tuple(a for a in range(x_train.ndim) if a != axis)
    mean = x_train.mean(axis=reduce, dtype=np.float64)
    std = x_train.std(axis=reduce, dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)                # constant features: centre only
    return {"feature_axis": FEATURE_AXIS[layout], "mean": mean.tolist(), "std": std.tolist()}


def apply_standardize(x: np.ndarray, stats: dict) -> np.ndarray:
    """Apply fitted statistics to x of shape (N, *input_shape)."""
    axis = int(stats["feature_axis"]) + 1
    shape = [1] * x.ndim
    shape[axis] = -1
    mean = np.asarray(stats["mean"], dtype=np.float64).reshape(shape)
    std = np.asarray(stats["std"], dtype=np.float64).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):     # an overflow is reported by the finite checks after
        return ((x - mean) / std).astype(np.float32)
