"""A table's numeric columns fitted and applied as 2-D numpy blocks instead of one pandas Series each (a 50,000-column
table spent tens of seconds in per-column pandas calls).

Every number is the one-column-at-a-time computation's, bit for bit: a statistic is taken along a row of a
C-contiguous (columns x rows) block, which numpy reduces with the same pairwise summation as the 1-D column, and
columns with different counts of present values are grouped by that count (a statistic of the present values sees
exactly those values, in file order). Imputation and scaling are elementwise, as before. `tabular.fit_columns` and
`tabular.apply_columns` use this for columns whose dtype is a numpy number; the others keep the per-column path.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .column_spec import IMPUTING

BLOCK_VALUES = 4_000_000        # float64 values of a block held at a time (32 MB): a long table goes in column chunks


def is_block_dtype(dtype) -> bool:
    """A plain numpy integer or float column (no booleans, no nullable or text dtypes): its values as float64 are
    `series.to_numpy(float64)` and it can hold no error but an infinite value."""
    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def column_chunks(positions: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """`positions` in consecutive pieces of at most BLOCK_VALUES values each."""
    step = max(1, BLOCK_VALUES // max(rows, 1))
    for start in range(0, len(positions), step):
        yield positions[start:start + step]


def row_values(frame, positions: np.ndarray) -> np.ndarray:
    """The frame's columns at `positions` as a float64 (rows, columns) block, NaN where missing."""
    return frame.iloc[:, positions].to_numpy(dtype=np.float64)


def column_values(frame, positions: np.ndarray) -> np.ndarray:
    """The same as a C-contiguous (columns, rows) block: each column's values contiguous, as a 1-D column's are."""
    return np.ascontiguousarray(row_values(frame, positions).T)


class BlockStats:
    """One column's column_spec.NumericStats, computed with its block for its strategy and the plan's scaling."""

    def __init__(self, present: int, fill: float | None, scale: dict):
        self.present = present
        self._fill = fill
        self._scale = scale

    def fill(self, strategy: str) -> float:
        return self._fill

    def scale(self, method: str, fill: float | None) -> dict:
        return self._scale


def fit_block(values: np.ndarray, strategies: list[str], method: str) -> list[BlockStats] | None:
    """Each row of `values` (a column's training values) fitted as column_spec asks: its fill when its strategy
    imputes, then its scaling statistics with the fill in place. None when a column holds an infinite value or has
    nothing to impute from: the per-column fit raises that error, at its line."""
    if np.isinf(values).any():
        return None
    present_mask = ~np.isnan(values)
    present = present_mask.sum(axis=1)
    strategy = np.asarray(strategies, dtype=object)
    imputing = np.array([s in IMPUTING for s in strategies], dtype=bool)
    if (imputing & (present == 0)).any():
        return None
    fills = np.full(len(values), np.nan)
    for name in IMPUTING:
        for rows, compact in _by_present_count(values, present_mask, np.flatnonzero(strategy == name)):
            fills[rows] = _fill(name, compact)
    # the imputed values join the scaling statistics, as column_spec says
    filled = np.where(imputing[:, None] & ~present_mask, fills[:, None], values)
    scales: list[dict] = [{"method": "none"}] * len(values)
    if method != "none":
        filled_mask = ~np.isnan(filled)
        for rows, compact in _by_present_count(filled, filled_mask, np.arange(len(values))):
            if compact.shape[1] == 0:
                continue            # no values: no scaling
            for row, scale in zip(rows, _scales(compact, method)):
                scales[row] = scale
    return [BlockStats(int(present[i]), float(fills[i]) if imputing[i] else None, scales[i])
            for i in range(len(values))]


def _by_present_count(values: np.ndarray, present: np.ndarray, rows: np.ndarray):
    """(rows, their present values packed to the left as a (len(rows), k) block), one group per count k."""
    if len(rows) == 0:
        return
    counts = present[rows].sum(axis=1)
    width = values.shape[1]
    for k in np.unique(counts):
        group = rows[counts == k]
        block = values[group]
        yield group, (block if k == width else block[present[group]].reshape(len(group), int(k)))


def _fill(strategy: str, compact: np.ndarray) -> np.ndarray:
    """The mean, median or most frequent (the smallest of a tie) of each row, as column_spec.values_fill gives it."""
    if strategy == "mean":
        return compact.mean(axis=1)
    if strategy == "median":
        return np.median(compact, axis=1)
    ordered = np.sort(compact, axis=1)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = np.cumsum(starts, axis=1) - 1                  # each value's run of equal values, per row
    rows, width = ordered.shape
    flat = (np.arange(rows)[:, None] * width + run).ravel()
    lengths = np.bincount(flat, minlength=rows * width).reshape(rows, width)
    best = np.argmax(lengths, axis=1)                     # the first longest run: the smallest value of a tie
    first = np.argmax(run == best[:, None], axis=1)
    return ordered[np.arange(rows), first]


def _scales(compact: np.ndarray, method: str) -> list[dict]:
    """tabular._fit_scale of each row."""
    if method == "standard":
        means, stds = compact.mean(axis=1), compact.std(axis=1)
        return [{"method": "standard", "mean": float(m), "std": float(s) if float(s) > 1e-12 else 1.0}
                for m, s in zip(means, stds)]
    lows, highs = compact.min(axis=1), compact.max(axis=1)
    return [{"method": "minmax", "min": float(lo), "max": float(hi)} for lo, hi in zip(lows, highs)]


def apply_block(values: np.ndarray, specs: list[dict]) -> np.ndarray | None:
    """`values` (rows, columns; float64) imputed and scaled as the columns' `specs` say, elementwise as
    tabular.apply_columns does per column; None when a value is infinite (the per-column path names it)."""
    if np.isinf(values).any():
        return None
    fills = np.array([float(s.get("impute", {}).get("value", np.nan)) for s in specs])
    has_fill = np.array(["value" in s.get("impute", {}) for s in specs])
    values = np.where(has_fill & np.isnan(values), fills, values)
    shift, divide = np.zeros(len(specs)), np.ones(len(specs))     # v - 0.0 and v / 1.0 leave every v as it is
    for i, spec in enumerate(specs):
        s = spec["scale"]
        if s.get("method") == "standard":
            shift[i], divide[i] = s["mean"], s["std"]
        elif s.get("method") == "minmax":
            rng = s["max"] - s["min"]
            shift[i], divide[i] = s["min"], (rng if rng > 1e-12 else 1.0)
    return (values - shift) / divide
