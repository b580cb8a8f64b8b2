"""Which of two results is better: the one rule for early stopping, the best checkpoint and the sweep's ranking.

On a small validation set accuracy ties often (40 rows allow only 41 values), and taking the first of tied epochs
restores an under-trained model. So a tie in the monitored value is broken by the validation loss (lower wins), then
by the later epoch (the best checkpoint) or the cheaper trial (the leaderboard).
"""
from __future__ import annotations

import math

TIE_BREAKER = "val/loss"


def tie_breaker_for(monitor: str) -> str | None:
    """The metric that breaks ties of `monitor`, or None when `monitor` is that metric itself."""
    return None if monitor == TIE_BREAKER else TIE_BREAKER


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def compare(value: float, best: float | None, mode: str, tie: float | None = None, best_tie: float | None = None,
            min_delta: float = 0.0) -> int:
    """+1 when `value` (with its tie-breaker `tie`) beats `best` (with `best_tie`), 0 for a full tie, -1 otherwise.

    `min_delta` is the margin a strict improvement of the monitored value needs (early stopping's); any smaller
    change that is not exactly a tie counts as no improvement. A missing or non-finite tie-breaker never wins.
    """
    value = float(value)
    if math.isnan(value):
        return -1
    if best is None or math.isnan(float(best)):
        return 1
    best = float(best)
    sign = 1.0 if mode == "max" else -1.0
    if sign * (value - best) > abs(min_delta):
        return 1
    if value != best:
        return -1
    tie, best_tie = _finite(tie), _finite(best_tie)
    if tie is None or best_tie is None:
        return 0 if tie == best_tie else (1 if best_tie is None else -1)
    return 1 if tie < best_tie else (0 if tie == best_tie else -1)
