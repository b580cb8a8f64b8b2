"""`tabular.fit_columns`, fitted in one pass over chunks of the training rows instead of one DataFrame.

Same rules, same JSON: counts and means are merged in float64 with Chan's parallel algorithm (mean and sum of squared
deviations per chunk, combined exactly), so the means and standard deviations agree with the in-memory fit to
rounding (~1e-15 relative). Categories are the union of per-chunk counts. A median or a numeric most-frequent value
needs every value of its column: those columns (only those) keep their training values, one float64 a row.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from netkiln.errors import NetkilnError

from .tabular import TablePlan, _cat_keys, _to_numeric, refuse_too_many_categories


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


class _Column:
    def __init__(self, name: str, kind: str, strategy: str, keep_values: bool):
        self.name, self.kind, self.strategy = name, kind, strategy
        self.dtype: str | None = None
        self.missing = 0
        self.moments = Moments()                # numeric: the present values
        self.kept: list[np.ndarray] = [] if keep_values else None
        self.counts: Counter = Counter()        # categorical: rows per category

    def add(self, series, tf, key) -> None:
        self.dtype = merge_dtype(self.dtype, str(series.dtype))
        if self.kind == "numeric":
            v = _to_numeric(series, self.name, tf, key)
            present = v[~np.isnan(v)]
            self.missing += len(v) - len(present)
            self.moments.add(present)
            if self.kept is not None:
                self.kept.append(present)
        else:
            keys = _cat_keys(series)
            self.missing += int(keys.isna().sum())
            self.counts.update(keys.dropna().value_counts().to_dict())


class StreamingFit:
    """Feed chunks of training rows with `add`, then `specs()` gives what `fit_columns` gives on all of them."""

    def __init__(self, plan: TablePlan, tf=None, path: str = "data"):
        self.plan, self.tf, self.path = plan, tf, path
        self.columns = []
        for col in plan.features:
            strategy = plan.strategy(col)
            kind = plan.kinds[col]
            self.columns.append(_Column(col, kind, strategy, kind == "numeric"
                                        and strategy in ("median", "most_frequent")))

    def add(self, frame) -> None:
        for column in self.columns:
            column.add(frame[column.name], self.tf, None)

    def _no_values(self, col: str, extra: str) -> NetkilnError:
        return NetkilnError(f"column '{col}' has no values in the training rows{extra}; drop it "
                            f"({self.path}.drop=[{col}])", key=f"{self.path}.missing", column=col,
                            file=str(self.tf.path) if self.tf else None)

    def specs(self) -> list[dict]:
        return [self._numeric(c) if c.kind == "numeric" else self._categorical(c) for c in self.columns]

    def _numeric(self, c: _Column) -> dict:
        spec = {"name": c.name, "kind": "numeric", "dtype": c.dtype}
        scaled = c.moments
        if c.strategy in ("mean", "median", "most_frequent"):
            if c.moments.n == 0:
                raise self._no_values(c.name, ", so there is nothing to impute from")
            if c.strategy == "mean":
                fill = c.moments.mean
            else:
                values = np.concatenate(c.kept)
                if c.strategy == "median":
                    fill = float(np.median(values))
                else:
                    uniq, counts = np.unique(values, return_counts=True)
                    fill = float(uniq[np.argmax(counts)])
            spec["impute"] = {"strategy": c.strategy, "value": fill}
            scaled = _copy(c.moments)
            scaled.add_repeated(fill, c.missing)        # the imputed values join the scaling statistics
        else:
            spec["impute"] = {"strategy": c.strategy}
        spec["scale"] = scaled.scale(self.plan.scale)
        spec["outputs"] = [c.name]
        return spec

    def _categorical(self, c: _Column) -> dict:
        plan = self.plan
        spec = {"name": c.name, "kind": "categorical", "dtype": c.dtype}
        categories = sorted(c.counts)
        encoding = plan.encodings.get(c.name, plan.encoding)
        counts = Counter(c.counts)
        if c.strategy == "most_frequent":
            if not c.counts:
                raise self._no_values(c.name, "")
            top = max(c.counts.values())
            fill = sorted(k for k, n in c.counts.items() if n == top)[0]
            spec["impute"] = {"strategy": c.strategy, "value": fill}
            counts[fill] += c.missing
        else:
            spec["impute"] = {"strategy": c.strategy}
        if encoding == "onehot":
            refuse_too_many_categories(c.name, len(categories), plan, self.path, self.tf)
        spec["encoding"] = encoding
        spec["categories"] = categories
        if encoding == "onehot":
            spec["outputs"] = [f"{c.name}={k}" for k in categories]
        else:
            codes = Moments()                   # the ordinal codes' statistics, from the counts per category
            for code, k in enumerate(categories):
                codes.add_repeated(float(code), counts[k])
            spec["scale"] = codes.scale(plan.scale)
            spec["outputs"] = [c.name]
        return spec


def _copy(m: Moments) -> Moments:
    out = Moments()
    out.n, out.mean, out.m2, out.min, out.max = m.n, m.mean, m.m2, m.min, m.max
    return out
