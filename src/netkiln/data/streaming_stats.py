"""`tabular.fit_columns`, fitted in one pass over chunks of the training rows instead of one DataFrame.

Same rules (`column_spec.column_spec` builds both fits' specs, from each one's statistics), same JSON: counts and
means are merged in float64 with Chan's parallel algorithm (mean and sum of squared deviations per chunk, combined
exactly), so the means and standard deviations agree with the in-memory fit to rounding (~1e-15 relative).
Categories are the union of per-chunk counts. A median or a numeric most-frequent value needs every value of its
column: those columns (only those) keep their training values, one float64 a row.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .column_spec import column_spec, values_fill
from .tabular import TablePlan, _cat_keys, _to_numeric


class Moments:
    """Count, mean, sum of squared deviations, min and max of a stream of numbers (Chan et al.'s merge)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        if len(values):
            mean = float(values.mean())
            self.merge(len(values), mean, float(((values - mean) ** 2).sum()), float(values.min()),
                       float(values.max()))

    def add_repeated(self, value: float, count: int) -> None:
        if count:
            self.merge(count, float(value), 0.0, float(value), float(value))

    def merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.min, self.max = min(self.min, lo), max(self.max, hi)

    def scale(self, method: str) -> dict:
        """`tabular._fit_scale` of the values seen."""
        if method == "none" or self.n == 0:
            return {"method": "none"}
        if method == "standard":
            std = math.sqrt(max(self.m2, 0.0) / self.n)
            return {"method": "standard", "mean": self.mean, "std": std if std > 1e-12 else 1.0}
        return {"method": "minmax", "min": self.min, "max": self.max}


def merge_dtype(a: str | None, b: str) -> str:
    """The dtype pandas gives the whole column, from two chunks' dtypes (an int chunk and a float chunk: float)."""
    if a is None or a == b:
        return b
    numeric = ("int", "uint", "float")
    if a.startswith(numeric) and b.startswith(numeric):
        return "float64"
    return "object"


class _StreamedNumeric:
    """A numeric column's statistics merged over chunks (column_spec.NumericStats)."""

    def __init__(self, keep_values: bool):
        self.missing = 0
        self.moments = Moments()                            # the present values
        self.kept: list[np.ndarray] | None = [] if keep_values else None     # median / most_frequent need them

    def add(self, series, name: str, tf) -> None:
        v = _to_numeric(series, name, tf, None)
        present = v[~np.isnan(v)]
        self.missing += len(v) - len(present)
        self.moments.add(present)
        if self.kept is not None:
            self.kept.append(present)

    @property
    def present(self) -> int:
        return self.moments.n

    def fill(self, strategy: str) -> float:
        return self.moments.mean if strategy == "mean" else values_fill(strategy, np.concatenate(self.kept))

    def scale(self, method: str, fill: float | None) -> dict:
        if fill is None:
            return self.moments.scale(method)
        scaled = _copy(self.moments)
        scaled.add_repeated(fill, self.missing)
        return scaled.scale(method)


class _StreamedCategorical:
    """A categorical column's statistics merged over chunks (column_spec.CategoricalStats)."""

    def __init__(self):
        self.missing = 0
        self.counts: Counter = Counter()                    # rows per category

    def add(self, series, name: str, tf) -> None:
        keys = _cat_keys(series)
        self.missing += int(keys.isna().sum())
        self.counts.update(keys.dropna().value_counts().to_dict())

    def code_scale(self, method: str, categories: list[str], fill: str | None) -> dict:
        counts = Counter(self.counts)
        if fill is not None:
            counts[fill] += self.missing
        codes = Moments()                   # the ordinal codes' statistics, from the counts per category
        for code, k in enumerate(categories):
            codes.add_repeated(float(code), counts[k])
        return codes.scale(method)


class StreamingFit:
    """Feed chunks of training rows with `add`, then `specs()` gives what `fit_columns` gives on all of them."""

    def __init__(self, plan: TablePlan, tf=None, path: str = "data"):
        self.plan, self.tf, self.path = plan, tf, path
        self.dtypes: dict[str, str | None] = {col: None for col in plan.features}
        self.stats = {col: _StreamedNumeric(plan.strategy(col) in ("median", "most_frequent"))
                      if plan.kinds[col] == "numeric" else _StreamedCategorical() for col in plan.features}

    def add(self, frame) -> None:
        for col, stats in self.stats.items():
            self.dtypes[col] = merge_dtype(self.dtypes[col], str(frame[col].dtype))
            stats.add(frame[col], col, self.tf)

    def specs(self) -> list[dict]:
        return [column_spec(col, self.dtypes[col], stats, self.plan, self.path, self.tf)
                for col, stats in self.stats.items()]


def _copy(m: Moments) -> Moments:
    out = Moments()
    out.n, out.mean, out.m2, out.min, out.max = m.n, m.mean, m.m2, m.min, m.max
    return out
