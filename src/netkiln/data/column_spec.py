"""One table column's fitted preparation (its entry in preprocessing.json) from its training-row statistics.

Both table fits feed this one builder: `tabular.fit_columns` with whole-column statistics (numpy over the column's
values in memory), `streaming_stats.StreamingFit` with statistics merged over chunks. The rules (which imputation,
which scaling, one-hot or ordinal, the refusals) live here only; each kind of statistics computes its numbers its own
way, so each path's saved JSON is what it was when both had their own copy of the rules.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from netkiln.errors import NetkilnError

IMPUTING = ("mean", "median", "most_frequent")     # strategies that fill a missing value (drop / none do not)


class NumericStats(Protocol):
    present: int                # values present in the column's training rows

    def fill(self, strategy: str) -> float:
        """The imputation value: the mean, median or most frequent of the present values."""

    def scale(self, method: str, fill: float | None) -> dict:
        """The scaling statistics of the column once its missing values are `fill` (None: left out)."""


class CategoricalStats(Protocol):
    counts: Mapping[str, int]   # training rows per category (canonical text), missing values left out

    def code_scale(self, method: str, categories: list[str], fill: str | None) -> dict:
        """The scaling statistics of the ordinal codes (positions in `categories`) once missing values are
        `fill` (None: left out)."""


def values_fill(strategy: str, present: np.ndarray) -> float:
    """The median or most frequent (the smallest of a tie) of the present values, which only every value gives."""
    if strategy == "median":
        return float(np.median(present))
    values, counts = np.unique(present, return_counts=True)
    return float(values[np.argmax(counts)])


def most_frequent_category(counts: Mapping[str, int]) -> str:
    """The category of most rows; of a tie, the first in sorted order."""
    top = max(counts.values())
    return sorted(k for k, n in counts.items() if n == top)[0]


def column_spec(col: str, dtype: str, stats, plan, path: str = "data", tf=None) -> dict:
    """The spec of feature `col` (its kind and settings from `plan`, a tabular.TablePlan) from its `stats`
    (NumericStats or CategoricalStats); `dtype` is the column's pandas dtype over all the training rows."""
    kind = plan.kinds[col]
    spec: dict[str, Any] = {"name": col, "kind": kind, "dtype": dtype}
    if kind == "numeric":
        return _numeric(spec, plan.strategy(col), stats, plan, path, tf)
    return _categorical(spec, plan.strategy(col), stats, plan, path, tf)


def _numeric(spec: dict, strategy: str, stats: NumericStats, plan, path: str, tf) -> dict:
    col = spec["name"]
    fill = None
    if strategy in IMPUTING:
        if stats.present == 0:
            raise no_values(col, ", so there is nothing to impute from", path, tf)
        fill = stats.fill(strategy)
        spec["impute"] = {"strategy": strategy, "value": fill}
    else:
        spec["impute"] = {"strategy": strategy}
    spec["scale"] = stats.scale(plan.scale, fill)       # the imputed values join the scaling statistics
    spec["outputs"] = [col]
    return spec


def _categorical(spec: dict, strategy: str, stats: CategoricalStats, plan, path: str, tf) -> dict:
    col = spec["name"]
    categories = sorted(stats.counts)
    encoding = plan.encodings.get(col, plan.encoding)
    fill = None
    if strategy == "most_frequent":
        if not stats.counts:
            raise no_values(col, "", path, tf)
        fill = most_frequent_category(stats.counts)
        spec["impute"] = {"strategy": strategy, "value": fill}
    else:
        spec["impute"] = {"strategy": strategy}
    if encoding == "onehot":
        refuse_too_many_categories(col, len(categories), plan, path, tf)
    spec["encoding"] = encoding
    spec["categories"] = categories
    if encoding == "onehot":
        spec["outputs"] = [f"{col}={c}" for c in categories]
    else:
        spec["scale"] = stats.code_scale(plan.scale, categories, fill)
        spec["outputs"] = [col]
    return spec


def no_values(col: str, extra: str, path: str, tf) -> NetkilnError:
    return NetkilnError(f"column '{col}' has no values in the training rows{extra}; drop it ({path}.drop=[{col}])",
                        key=f"{path}.missing", column=col, file=str(tf.path) if tf else None)


def refuse_too_many_categories(col: str, count: int, plan, path: str, tf) -> None:
    """One-hot encoding of a column with more distinct training values than data.max_categories is refused."""
    if count > plan.max_categories:
        raise NetkilnError(
            f"column '{col}' has {count} distinct values in the training rows (more than "
            f"data.max_categories={plan.max_categories}); it looks like an identifier or free text. Drop "
            f"it ({path}.drop=[{col}]), encode it as integers ({path}.encodings.{col}=ordinal) or raise "
            f"{path}.max_categories", key=f"{path}.max_categories", column=col,
            file=str(tf.path) if tf else None)
