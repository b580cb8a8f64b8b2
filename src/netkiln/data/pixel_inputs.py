"""Pixel arrays given to a model trained on uint8 pixels scaled by 1 / `scale` (data=images: 255).

A Keras user hands such a model the pixels as they loaded them: uint8, any integer type (an int64 array from a
list, a .npy saved without a dtype), or floats already in [0, 1]. Integers in 0..255 are scaled as training scaled
its uint8 pixels; integers outside that range, or floats above 1.5 (0..255 values saved as floats), would reach the
network unscaled and give confident, wrong predictions, so they are refused instead.
"""
from __future__ import annotations

import logging

import numpy as np

from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

FLOAT_MAX = 1.5         # floats in [0, 1] with some slack (a resize's overshoot); 0..255 values are far above


def _range(x: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value of a non-empty `x`; a float array's finite ones (NaN and infinities are left
    to the later finite check, which names their row)."""
    if x.dtype.kind != "f":
        return float(x.min()), float(x.max())
    finite = np.isfinite(x)
    return float(np.min(x, where=finite, initial=np.inf)), float(np.max(x, where=finite, initial=-np.inf))


def scale_pixels(x: np.ndarray, scale: float, told: list | None = None) -> np.ndarray:
    """`x` (N, C, H, W) as the float32 inputs training's pixels became: uint8 and integers in 0..255 divided by
    `scale`, floats in [0, 1] kept. Integers outside 0..255 and floats above FLOAT_MAX raise. `told`: a list that
    remembers whether the integer scaling was logged already (once per input, not per chunk)."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / float(scale)
    if x.dtype.kind in "iu":
        lo, hi = _range(x) if x.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise NetkilnError(f"the array holds integers from {lo:g} to {hi:g}, but this model was trained on "
                               f"pixels 0..255 scaled by 1/{scale:g}: give pixels in 0..255 (uint8 or integers) or "
                               "floats in [0, 1]")
        if told is None or not told:
            log.info("the input array holds %s integers in 0..255: taken as pixels and scaled by 1/%g, as training "
                     "scaled its uint8 pixels", x.dtype, scale)
            if told is not None:
                told.append(True)
        return x.astype(np.float32) / float(scale)
    if x.dtype.kind == "f" and x.size:
        hi = _range(x)[1]
        if hi > FLOAT_MAX:
            raise NetkilnError(f"the array holds floats up to {hi:g}, but this model was trained on pixels scaled to "
                               f"[0, 1] (uint8 / {scale:g}): give uint8 pixels (0..255) or divide the floats by "
                               f"{scale:g}")
    return x
