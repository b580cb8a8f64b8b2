"""Scaling of regression targets (`data.target_scale`), fitted on the training rows only.

A target in the thousands (a body mass of ~4,200 g) trains slowly and badly against a network whose head starts
near 0 with unit-sized weights: the loss is huge and the optimizer spends its steps moving the output scale. The
network is therefore trained on the scaled target, and every prediction and metric is turned back into the
target's own units. One offset and factor per target column, saved as plain JSON in the preparation:

    {"method": "standard", "mean": [4201.8], "std": [801.9]}        scaled = (y - mean) / std
    {"method": "minmax", "min": [2700.0], "max": [6300.0]}          scaled = (y - min) / (max - min)
"""
from __future__ import annotations

import numpy as np

TARGET_SCALES = ("standard", "minmax", "none")


def fit_target_scale(y_train: np.ndarray, method: str) -> dict | None:
    """The statistics of `method` over the training targets (N, k), one per column; None for `none`."""
    if method == "none":
        return None
    y = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    if method == "standard":
        std = y.std(axis=0)
        return {"method": "standard", "mean": y.mean(axis=0).tolist(),
                "std": np.where(std > 1e-12, std, 1.0).tolist()}          # a constant target: centre only
    return {"method": "minmax", "min": y.min(axis=0).tolist(), "max": y.max(axis=0).tolist()}


class TargetScale:
    """Applies saved statistics to torch tensors shaped (N,) or (N, k): `scale` for the loss, `unscale` back."""

    def __init__(self, stats: dict):
        self.stats = stats
        if stats["method"] == "standard":
            self.offset, self.factor = list(stats["mean"]), list(stats["std"])
        else:
            span = np.asarray(stats["max"], dtype=np.float64) - np.asarray(stats["min"], dtype=np.float64)
            self.offset, self.factor = list(stats["min"]), np.where(span > 1e-12, span, 1.0).tolist()
        self._on: dict = {}          # (device, dtype) -> (offset, factor) tensors, built once per device

    @classmethod
    def of(cls, preparation: dict | None) -> "TargetScale | None":
        """The target scaling saved in a preparation (`Dataset.preprocessing`, a bundle's), or None."""
        stats = (preparation or {}).get("target_scale")
        return cls(stats) if stats else None

    def _params(self, ref):
        import torch

        key = (ref.device, ref.dtype)
        if key not in self._on:
            self._on[key] = tuple(torch.tensor(v, dtype=ref.dtype, device=ref.device)
                                  for v in (self.offset, self.factor))
        offset, factor = self._on[key]
        if ref.dim() == 1:                        # (N,): a single target
            return offset.reshape(()), factor.reshape(())
        return offset, factor

    def scale(self, y):
        offset, factor = self._params(y)
        return (y - offset) / factor

    def unscale(self, out):
        offset, factor = self._params(out)
        return out * factor + offset

    def __getstate__(self):                       # ddp_spawn pickles the module: no device tensors
        return {**self.__dict__, "_on": {}}
