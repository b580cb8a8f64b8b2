"""`data=csv`: a table from the user's file (CSV, TSV or Parquet) and its preparation, declared in config.

Reading, column selection, the row filter, type detection, the target and row-dropping happen before the split
(they fit no statistics). Imputation values, categories and scaling statistics are fitted afterwards on the
training rows only (`fit_columns`) and saved as plain JSON in `Dataset.preprocessing`; `apply_columns` re-applies
them, to the validation and test rows now and to new rows in `prepare_features` later.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.task import Task

from . import numeric_block, unknown_categories as unknown
from .column_spec import column_spec, values_fill
from .config import get_choice, get_int
from .row_filter import RowFilter, parse_filter
from .sources import RawSource, SourceSpec, register_source
from .tables import TableFile, check_columns, read_table_source

log = logging.getLogger(__name__)

TABLE_KEYS = ("path", "format", "delimiter", "na_values", "text_encoding", "target", "features", "drop", "filter",
              "task", "missing", "impute", "categorical", "numeric", "categorical_encoding", "encodings",
              "max_categories", "scale", "split_column", "test_path", "unknown_categories", "streaming",
              "memory_budget", "chunk_rows")
MISSING = ("mean", "median", "most_frequent", "drop", "none")
SCALES = ("standard", "minmax", "none")
ENCODINGS = ("onehot", "ordinal")
TASK_CHOICES = ("auto", "classification", "multiclass", "binary", "regression")
MAX_CLASS_VALUES = 20           # integer targets with at most this many distinct values are classes
NUMERIC_SHARE = 0.8             # a text column whose values are at least this share numbers is numeric
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


# ----------------------------------------------------------------------------------------------- config
def _names(node: dict, key: str, path: str, default: Any = None) -> list[str] | None:
    v = node.get(key, default)
    if v is None:
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return [str(v)]
    if isinstance(v, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
        return [str(x) for x in v]
    raise NetkilnError(f"expected a column name or a list of column names, got {v!r}", key=f"{path}.{key}")


def _mapping(node: dict, key: str, path: str) -> dict:
    v = node.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise NetkilnError(f"expected a mapping of column name to setting, got {v!r}", key=f"{path}.{key}")
    return {str(k): val for k, val in v.items()}


def _per_column_choices(node: dict, key: str, what: str, choices, features, path: str, file) -> dict:
    """A `{column: setting}` mapping whose columns exist and whose settings are among `choices`."""
    settings = _mapping(node, key, path)
    check_columns(settings, features, f"{path}.{key}", "feature", file)
    for col, value in settings.items():
        if value not in choices:
            raise NetkilnError(f"unknown {what} {value!r}.{did_you_mean(str(value), choices)} Choose one of: "
                               f"{', '.join(choices)}.", key=f"{path}.{key}.{col}")
    return settings


@dataclass
class TablePlan:
    """What the config asks for, checked against the file's columns."""
    target: list[str]
    features: list[str]
    task: str
    missing: str
    impute: dict[str, str]
    forced_categorical: set[str]
    forced_numeric: set[str]
    encoding: str
    encodings: dict[str, str]
    max_categories: int
    scale: str
    filter: str | None
    split_column: str | None
    kinds: dict[str, str] = field(default_factory=dict)     # feature -> numeric | categorical
    row_filter: RowFilter | None = None                      # `filter`, parsed
    unknown_categories: str = "warn"                         # categories the training rows lack: warn|error|ignore

    def strategy(self, col: str) -> str:
        s = self.impute.get(col, self.missing)
        if self.kinds.get(col) == "categorical" and s in ("mean", "median"):
            return "most_frequent"
        return s


def _plan(node: dict, path: str, columns: list[str], tf: TableFile) -> TablePlan:
    file = tf.path
    target = _names(node, "target", path)
    if not target:
        raise NetkilnError(f"name the column(s) to predict, e.g. {path}.target=label", key=f"{path}.target")
    check_columns(target, columns, f"{path}.target", "target", file)
    split_column = node.get("split_column")
    if split_column is not None:
        split_column = str(split_column)
        check_columns([split_column], columns, f"{path}.split_column", "split", file)
    drop = _names(node, "drop", path) or []
    check_columns(drop, columns, f"{path}.drop", "drop", file)
    features = _names(node, "features", path)
    targets, dropped = set(target), set(drop)     # sets: membership per column must not scan a list
    if features is None:
        features = [c for c in columns if c not in targets and c not in dropped and c != split_column]
    else:
        check_columns(features, columns, f"{path}.features", "feature", file)
        both = [c for c in features if c in targets]
        if both:
            raise NetkilnError(f"column {both[0]!r} is both a feature and the target", key=f"{path}.features")
        features = [c for c in features if c not in dropped]
    if not features:
        raise NetkilnError("no feature columns are left after removing the target and the dropped columns",
                           key=f"{path}.features", file=str(file))
    if split_column in features:
        raise NetkilnError(f"the split column {split_column!r} cannot also be a feature", key=f"{path}.features")
    categorical = _names(node, "categorical", path)
    if categorical == ["auto"]:
        categorical = None
    categorical = categorical or []
    numeric = _names(node, "numeric", path) or []
    for key, cols in (("categorical", categorical), ("numeric", numeric)):
        check_columns(cols, features, f"{path}.{key}", "feature", file)
    clash = sorted(set(categorical) & set(numeric))
    if clash:
        raise NetkilnError(f"column {clash[0]!r} is listed as both categorical and numeric", key=f"{path}.numeric")
    missing = get_choice(node, "missing", "mean", MISSING, path)
    impute = _per_column_choices(node, "impute", "strategy", MISSING, features, path, file)
    encodings = _per_column_choices(node, "encodings", "encoding", ENCODINGS, features, path, file)
    flt = node.get("filter")
    row_filter = None
    if flt is not None:
        # Parsed here, before any row is filtered: a filter is a small expression language, never Python.
        row_filter = parse_filter(flt, key=f"{path}.filter")
        row_filter.check_columns(columns, str(file))
    return TablePlan(
        target=target, features=features, task=get_choice(node, "task", "auto", TASK_CHOICES, path),
        missing=missing, impute=impute, forced_categorical=set(categorical), forced_numeric=set(numeric),
        encoding=get_choice(node, "categorical_encoding", "onehot", ENCODINGS, path), encodings=encodings,
        max_categories=get_int(node, "max_categories", 50, path, minimum=2),
        scale=get_choice(node, "scale", "standard", SCALES, path), filter=flt, split_column=split_column,
        row_filter=row_filter,
        unknown_categories=get_choice(node, "unknown_categories", "warn", unknown.POLICIES, path))


# ----------------------------------------------------------------------------------------------- values
def cat_key(v: Any) -> str | None:
    """The canonical text of a categorical value: 3, 3.0 and '3' are the same category."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return None
        return str(int(f)) if f.is_integer() and abs(f) < 2 ** 53 else repr(f)
    try:
        import pandas as pd
        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(v).strip()


def _cat_keys(series):
    """The column as canonical category strings (NaN where missing)."""
    import pandas as pd

    if pd.api.types.is_string_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        return series.str.strip()
    return series.map(cat_key).astype(object).where(series.notna(), None)


def _lookup(keys, categories: list[str]) -> np.ndarray:
    """Position of each key in `categories`; -1 for a key not there or missing."""
    import pandas as pd

    return pd.Index(categories, dtype=object).get_indexer(keys.astype(object).where(keys.notna(), None))


def _is_bool_like(series) -> bool:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    if pd.api.types.is_object_dtype(series.dtype):
        nn = series.dropna()
        return len(nn) > 0 and all(isinstance(v, (bool, np.bool_)) for v in nn)
    return False


def _to_numeric(series, col: str, tf: TableFile | None, key: str | None, forced: bool = False):
    """A float64 numpy array; a value that is not a number, or is infinite, raises a NetkilnError with its line."""
    import pandas as pd

    if _is_bool_like(series):
        return series.map(lambda v: np.nan if v is None or (isinstance(v, float) and math.isnan(v))
                          else float(bool(v))).to_numpy(dtype=np.float64)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return _refuse_infinite(series.to_numpy(dtype=np.float64, na_value=np.nan), series, col, tf, key)
    text = series.astype(object).where(series.notna(), None)
    num = pd.to_numeric(text.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    bad = num.isna() & series.notna()
    if bad.any():
        row = bad.index[np.flatnonzero(bad.to_numpy())[0]]
        value = series.loc[row]
        how = ("" if forced else ", or list it in data.categorical to treat it as categories")
        msg = (f"non-numeric value {value!r} in the numeric column '{col}' "
               f"({int(bad.sum())} such value{'s' if bad.sum() != 1 else ''}). Fix or blank it, add it to "
               f"data.na_values to read it as missing{how}")
        if tf is not None:
            raise tf.error(msg, int(row), key=key, column=col)
        raise NetkilnError(f"row {row}: {msg}", key=key, column=col)
    return _refuse_infinite(num.to_numpy(dtype=np.float64, na_value=np.nan), series, col, tf, key)


def _refuse_infinite(values: np.ndarray, series, col: str, tf: TableFile | None, key: str | None) -> np.ndarray:
    """'inf' parses as a number, but no statistic or model survives it: refuse it at its own line, before
    standardisation turns the whole column into NaN (which used to blame the first row)."""
    infinite = np.isinf(values)
    if not infinite.any():
        return values
    row = series.index[np.flatnonzero(infinite)[0]]
    count = int(infinite.sum())
    msg = (f"infinite value {series.loc[row]!r} in the numeric column '{col}' ({count} such value"
           f"{'s' if count != 1 else ''}). Replace it with a finite number, or blank it to read it as missing")
    if tf is not None:
        raise tf.error(msg, int(row), key=key, column=col)
    raise NetkilnError(f"row {row}: {msg}", key=key, column=col)


def _detect_kind(series, col: str, plan: TablePlan, tf: TableFile, path: str) -> str:
    import pandas as pd

    if col in plan.forced_categorical:        # sets (see _plan)
        return "categorical"
    dt = series.dtype
    if col in plan.forced_numeric:
        _to_numeric(series, col, tf, f"{path}.numeric", forced=True)
        return "numeric"
    if _is_bool_like(series) or pd.api.types.is_numeric_dtype(dt):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
        raise NetkilnError(f"column '{col}' holds dates or times ({dt}); drop it ({path}.drop=[{col}]) or "
                           "turn it into numbers first", key=f"{path}.features", file=str(tf.path), column=col)
    if isinstance(dt, pd.CategoricalDtype):
        return "categorical"
    non_null = series.dropna()
    if len(non_null) == 0:
        return "numeric"
    num = pd.to_numeric(non_null.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v),
                        errors="coerce")
    share = float(num.notna().mean())
    if share >= NUMERIC_SHARE:
        _to_numeric(series, col, tf, None)     # raises with the first bad value's line
        return "numeric"
    return "categorical"


def _detect_kinds(frame, plan: TablePlan, tf: TableFile, path: str) -> None:
    """plan.kinds of every feature; a numpy-number column nobody forced is numeric without its Series (what
    _detect_kind says of it), which keeps a 50,000-column table from paying a pandas Series per column."""
    dtypes = list(frame.dtypes)
    positions = _positions(frame, plan.features)
    forced = plan.forced_categorical | plan.forced_numeric
    for i, col in enumerate(plan.features):
        if positions is not None and col not in forced and numeric_block.is_block_dtype(dtypes[positions[i]]):
            plan.kinds[col] = "numeric"
        else:
            plan.kinds[col] = _detect_kind(frame[col], col, plan, tf, path)


# ----------------------------------------------------------------------------------------------- target
def _encode_target(frame, plan: TablePlan, tf: TableFile, path: str):
    """y and the Task; classes are sorted (numerically for numbers), their names kept as text."""
    import pandas as pd

    key = f"{path}.target"
    if len(plan.target) > 1:
        if plan.task not in ("auto", "regression"):
            raise NetkilnError(f"several target columns ({', '.join(plan.target)}) are only supported for "
                               "regression; predict one class column at a time", key=key)
        cols = [_to_numeric(frame[c], c, tf, key, forced=True) for c in plan.target]
        y = np.stack(cols, axis=1).astype(np.float32)
        return y, Task("regression", len(plan.target)), {"columns": plan.target, "task": "regression"}

    col = plan.target[0]
    s = frame[col]
    numeric = _is_bool_like(s) or pd.api.types.is_numeric_dtype(s.dtype)
    task = plan.task
    if task == "auto":
        if not numeric:
            task = "classification"
        else:
            v = _to_numeric(s, col, tf, key)
            integral = bool(np.all(np.mod(v, 1) == 0))
            task = "classification" if (_is_bool_like(s) or (integral and len(np.unique(v)) <= MAX_CLASS_VALUES)) \
                else "regression"
    if task == "regression":
        if _is_bool_like(s):
            raise NetkilnError(f"the target column '{col}' holds true/false values; use data.task=binary",
                               key=f"{path}.task")
        y = _to_numeric(s, col, tf, key, forced=True).reshape(-1, 1).astype(np.float32)
        return y, Task("regression", 1), {"columns": plan.target, "task": "regression"}

    keys = _cat_keys(s)
    if numeric and not _is_bool_like(s):
        v = _to_numeric(s, col, tf, key)
        uniq = np.unique(v)
        classes = [cat_key(u) for u in uniq]
        values: list = [int(u) if float(u).is_integer() else float(u) for u in uniq]
    else:
        classes = sorted(set(keys.dropna()))
        values = list(classes)
    if len(classes) < 2:
        only = f" ('{classes[0]}')" if classes else ""
        raise NetkilnError(f"the target column '{col}' has a single class{only} in {len(s)} rows; a classifier "
                           "needs at least two. Check data.filter, or use data.task=regression for a numeric "
                           "target", key=key, file=str(tf.path), column=col)
    if task == "binary" and len(classes) != 2:
        raise NetkilnError(f"data.task=binary needs exactly 2 classes, but '{col}' has {len(classes)}: "
                           f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}", key=f"{path}.task")
    codes = _lookup(keys, classes).astype(np.int64)
    kind = "binary" if (task == "binary" or (task == "classification" and len(classes) == 2)) else "multiclass"
    t = Task(kind, 1 if kind == "binary" else len(classes), tuple(classes))
    return codes, t, {"columns": plan.target, "task": kind, "class_names": classes, "class_values": values}


# ----------------------------------------------------------------------------------------------- fit / apply

class _WholeNumeric:
    """A numeric column's statistics from all its training values at once (column_spec.NumericStats)."""

    def __init__(self, values: np.ndarray):
        self.values = values                            # float64, NaN where missing
        self.present = int(np.count_nonzero(~np.isnan(values)))

    def fill(self, strategy: str) -> float:
        present = self.values[~np.isnan(self.values)]
        return float(present.mean()) if strategy == "mean" else values_fill(strategy, present)

    def scale(self, method: str, fill: float | None) -> dict:
        v = self.values if fill is None else np.where(np.isnan(self.values), fill, self.values)
        return _fit_scale(v, method)


class _WholeCategorical:
    """A categorical column's statistics from all its training values at once (column_spec.CategoricalStats)."""

    def __init__(self, keys):
        self.keys = keys                                # canonical text, NaN where missing
        self.counts = keys.dropna().value_counts().to_dict()

    def code_scale(self, method: str, categories: list[str], fill: str | None) -> dict:
        impute = {} if fill is None else {"value": fill}
        codes = _codes(self.keys, {"impute": impute, "categories": categories}).astype(np.float64)
        return _fit_scale(codes[~np.isnan(codes)], method)


def fit_columns(frame, plan: TablePlan, tf: TableFile | None = None, path: str = "data") -> list[dict]:
    """Fit every column's preparation on `frame` (the training rows only). Numeric columns of a numpy dtype are
    fitted together as blocks (numeric_block, the same numbers); a table whose block holds an error (an infinite
    value, nothing to impute from) is fitted column by column, which raises the first error in column order."""
    dtypes = list(frame.dtypes)
    positions = _positions(frame, plan.features)
    if positions is None:
        return _fit_columns_one_by_one(frame, plan, tf, path)
    block = np.array([plan.kinds[c] == "numeric" and numeric_block.is_block_dtype(dtypes[p])
                      for c, p in zip(plan.features, positions)], dtype=bool)
    stats: dict[int, numeric_block.BlockStats] = {}
    block_at = np.flatnonzero(block)
    for chunk in numeric_block.column_chunks(block_at, len(frame)):
        fitted = numeric_block.fit_block(numeric_block.column_values(frame, positions[chunk]),
                                         [plan.strategy(plan.features[i]) for i in chunk], plan.scale)
        if fitted is None:
            return _fit_columns_one_by_one(frame, plan, tf, path)
        stats.update(zip(chunk.tolist(), fitted))
    names: dict = {}        # str(dtype) once a dtype, not once a column
    specs = []
    for i, col in enumerate(plan.features):
        column_stats = stats.get(i)
        if column_stats is None:
            series = frame[col]
            column_stats = (_WholeNumeric(_to_numeric(series, col, tf, None)) if plan.kinds[col] == "numeric"
                            else _WholeCategorical(_cat_keys(series)))
        dtype = dtypes[positions[i]]
        if dtype not in names:
            names[dtype] = str(dtype)
        specs.append(column_spec(col, names[dtype], column_stats, plan, path, tf))
    return specs


def _fit_columns_one_by_one(frame, plan: TablePlan, tf: TableFile | None, path: str) -> list[dict]:
    specs = []
    for col in plan.features:
        if plan.kinds[col] == "numeric":
            stats = _WholeNumeric(_to_numeric(frame[col], col, tf, None))
        else:
            stats = _WholeCategorical(_cat_keys(frame[col]))
        specs.append(column_spec(col, str(frame[col].dtype), stats, plan, path, tf))
    return specs


def _positions(frame, names: list[str]) -> np.ndarray | None:
    """Each name's column position in `frame`; None when a name is missing or the frame repeats a column name
    (the per-column paths handle those as they always did)."""
    if not frame.columns.is_unique:
        return None
    positions = frame.columns.get_indexer(names)
    return None if (positions < 0).any() else positions


def _fit_scale(v: np.ndarray, method: str) -> dict:
    v = v[~np.isnan(v)]
    if method == "none" or len(v) == 0:
        return {"method": "none"}
    if method == "standard":
        std = float(v.std())
        return {"method": "standard", "mean": float(v.mean()), "std": std if std > 1e-12 else 1.0}
    lo, hi = float(v.min()), float(v.max())
    return {"method": "minmax", "min": lo, "max": hi}


def _apply_scale(v: np.ndarray, s: dict) -> np.ndarray:
    if s.get("method") == "standard":
        return (v - s["mean"]) / s["std"]
    if s.get("method") == "minmax":
        rng = s["max"] - s["min"]
        return (v - s["min"]) / (rng if rng > 1e-12 else 1.0)
    return v


def _codes(keys, spec: dict) -> np.ndarray:
    """Category codes as floats: -1 for a category not seen in training, NaN where missing (after imputation)."""
    import pandas as pd

    imp = spec.get("impute", {})
    if "value" in imp:
        keys = keys.where(keys.notna(), imp["value"])
    missing = keys.isna().to_numpy()
    codes = _lookup(keys, spec["categories"]).astype(np.float64)
    codes[missing] = np.nan
    return codes


def apply_columns(frame, specs: list[dict], tf: TableFile | None = None, key: str | None = None,
                  unseen: list | None = None) -> np.ndarray:
    """The fitted preparation applied to `frame` → float32 (N, F) in the order of `specs`' outputs; categories the
    training rows did not have are appended to `unseen` (unknown_categories.Unseen) when it is given. Numeric
    columns of a numpy dtype are prepared together as blocks (numeric_block, the same numbers), the others column
    by column; a block holding an infinite value sends the whole frame column by column, which raises the first
    error in column order."""
    n = len(frame)
    positions = _positions(frame, [spec["name"] for spec in specs])
    if positions is None:
        return _apply_columns_one_by_one(frame, specs, tf, key, unseen)
    widths = [len(spec["categories"]) if spec["kind"] == "categorical" and spec["encoding"] == "onehot" else 1
              for spec in specs]
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    x = np.empty((n, int(starts[-1])), dtype=np.float32)
    dtypes = list(frame.dtypes)
    block = np.array([spec["kind"] == "numeric" and numeric_block.is_block_dtype(dtypes[p])
                      for spec, p in zip(specs, positions)], dtype=bool)
    for chunk in numeric_block.column_chunks(np.flatnonzero(block), n):
        values = numeric_block.apply_block(numeric_block.row_values(frame, positions[chunk]),
                                           [specs[i] for i in chunk])
        if values is None:
            return _apply_columns_one_by_one(frame, specs, tf, key, unseen)
        x[:, starts[chunk]] = values
    for i in np.flatnonzero(~block):
        x[:, starts[i]:starts[i + 1]] = _column_outputs(frame, specs[i], n, tf, key, unseen)
    return x


def _apply_columns_one_by_one(frame, specs: list[dict], tf: TableFile | None, key: str | None,
                              unseen: list | None) -> np.ndarray:
    n = len(frame)
    blocks = [_column_outputs(frame, spec, n, tf, key, unseen) for spec in specs]
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return x.astype(np.float32)


def _column_outputs(frame, spec: dict, n: int, tf: TableFile | None, key: str | None,
                    unseen: list | None) -> np.ndarray:
    """One column's prepared outputs, float64 (N, its output count)."""
    col = spec["name"]
    if spec["kind"] == "numeric":
        v = _to_numeric(frame[col], col, tf, key, forced=True)
        if "value" in spec.get("impute", {}):
            v = np.where(np.isnan(v), spec["impute"]["value"], v)
        return _apply_scale(v, spec["scale"]).reshape(n, 1)
    keys = _cat_keys(frame[col])
    codes = _codes(keys, spec)
    found = unknown.find(col, keys, codes, spec["categories"]) if unseen is not None else None
    if found is not None:
        unseen.append(found)
    if spec["encoding"] == "ordinal":
        return _apply_scale(codes, spec["scale"]).reshape(n, 1)
    k = len(spec["categories"])
    block = np.zeros((n, k), dtype=np.float64)
    ok = np.flatnonzero(codes >= 0)
    block[ok, codes[ok].astype(np.int64)] = 1.0
    block[np.isnan(codes)] = np.nan
    return block


def check_finite(x: np.ndarray, frame, specs: list[dict], tf: TableFile | None, path: str = "data") -> None:
    """'NaNs left after preparation': name the column and the line of the first one."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    r, c = (int(a[0]) for a in np.nonzero(bad))
    out = 0
    col = None
    for spec in specs:
        out += len(spec["outputs"])
        if c < out:
            col = spec
            break
    name = col["name"] if col else "?"
    row = frame.index[r]
    value = frame[name].loc[row] if col else None
    what = "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value!r}"
    strategy = col.get("impute", {}).get("strategy") if col else None
    how = (f"data.missing (or data.impute.{name}) is '{strategy}'; choose drop, mean, median or most_frequent"
           if strategy == "none" else "replace the value")
    msg = f"NaN or infinite values left after preparation: column '{name}' is {what} here; {how}"
    if tf is not None:
        raise tf.error(msg, int(row), key=f"{path}.missing", column=name)
    raise NetkilnError(f"row {row}: {msg}", key=f"{path}.missing", column=name)


# ----------------------------------------------------------------------------------------------- source
def _apply_filter(frame, row_filter: RowFilter | None, tf: TableFile):
    if row_filter is None:
        return frame
    out = frame[row_filter.mask(frame, str(tf.path))]
    if len(out) == 0:
        raise row_filter.error(f"it keeps none of the {len(frame)} rows", str(tf.path))
    return out


def filter_rows(frame, text: str | None, tf: TableFile, path: str):
    """{path}.filter on other labelled data (evaluate), applied as training applies it (`_clean`): parsed by
    row_filter, its columns checked against the file's, an error when it keeps no row."""
    if text is None:
        return frame
    from .row_filter import parse_filter

    row_filter = parse_filter(text, key=f"{path}.filter")
    row_filter.check_columns([str(c) for c in frame.columns], str(tf.path))
    kept = _apply_filter(frame, row_filter, tf)
    log.info("%s: %s keeps %d of %d rows", tf.path.name, f"{path}.filter", len(kept), len(frame))
    return kept


def _clean(frame, plan: TablePlan, tf: TableFile, path: str, info: dict, prefix: str = ""):
    """Filter, drop rows with a missing target or (for strategy 'drop') a missing feature."""
    frame = _apply_filter(frame, plan.row_filter, tf)
    info[f"{prefix}rows_after_filter"] = int(len(frame))
    no_target = frame[plan.target].isna().any(axis=1)
    if no_target.any():
        log.warning("%s: dropping %d row(s) with no target value", tf.path, int(no_target.sum()))
        frame = frame[~no_target]
    info[f"{prefix}rows_dropped_no_target"] = int(no_target.sum())
    drop_cols = [c for c in plan.features if plan.strategy(c) == "drop"]
    if drop_cols:
        gone = frame[drop_cols].isna().any(axis=1)
        frame = frame[~gone]
        info[f"{prefix}rows_dropped_missing"] = int(gone.sum())
    if len(frame) == 0:
        raise NetkilnError("no rows are left after dropping rows with missing values", key=f"{path}.missing",
                           file=str(tf.path))
    return frame


def _split_from_column(frame, col: str, tf: TableFile, path: str) -> dict[str, np.ndarray]:
    keys = _cat_keys(frame[col]).map(lambda v: v.lower() if isinstance(v, str) else v)
    names = keys.map(lambda v: SPLIT_NAMES.get(v) if isinstance(v, str) else None)
    bad = names.isna()
    if bad.any():
        row = frame.index[np.flatnonzero(bad.to_numpy())[0]]
        raise tf.error(f"the split column '{col}' holds {frame[col].loc[row]!r}; use train, val or test", int(row),
                       key=f"{path}.split_column", column=col)
    out = {}
    for part in ("train", "val", "test"):
        idx = np.flatnonzero((names == part).to_numpy())
        if len(idx) == 0:
            raise NetkilnError(f"the split column '{col}' names no {part!r} rows; every split needs at least one "
                               "row", key=f"{path}.split_column", file=str(tf.path), column=col)
        out[part] = idx.astype(np.int64)
    return out



def describe_table(tf: TableFile, plan: TablePlan) -> str:
    """The source's one-line description in the run's records."""
    categorical = sum(k == "categorical" for k in plan.kinds.values())
    return (f"{tf.path.name}: {len(plan.features)} feature columns ({categorical} categorical), "
            f"target {', '.join(plan.target)}")

def load_table(node: dict, path: str) -> RawSource:
    if node.get("standardize") is not None:
        raise NetkilnError(f"table sources scale with {path}.scale (standard, minmax or none) instead of "
                           f"{path}.standardize", key=f"{path}.standardize")
    read = dict(format=node.get("format") or "auto", delimiter=node.get("delimiter"),
                na_values=_names(node, "na_values", path), text_encoding=node.get("text_encoding") or "utf-8")
    from . import streaming     # data.streaming: a table larger than data.memory_budget is read in chunks
    source = streaming.TableChunks(node.get("path"), key=f"{path}.path",
                                   chunk_rows=streaming.chunk_rows_of(node, path), **read)
    stream, budget, why = streaming.choose(node, path, source)
    if stream:
        return streaming.load_table_streamed(node, path, source, budget, why)
    if source.files:        # a folder of Parquet files, small enough: its parts read and joined
        import pandas as pd
        frame, tf = pd.concat(list(source.chunks())), source.table_file
    else:
        frame, tf = read_table_source(node.get("path"), key=f"{path}.path", **read)
    columns = [str(c) for c in frame.columns]
    plan = _plan(node, path, columns, tf)
    info: dict[str, Any] = {"source": "file", "file": str(tf.path), "format": tf.format,
                            "rows_in_file": int(len(frame))}

    frame = _clean(frame, plan, tf, path, info)
    _detect_kinds(frame, plan, tf, path)
    y, task, target_info = _encode_target(frame, plan, tf, path)

    test_frame = test_tf = None
    y_test = None
    if node.get("test_path") is not None:
        if plan.split_column:
            raise NetkilnError("give either a split column or a separate test file, not both",
                               key=f"{path}.test_path")
        test_frame, test_tf = read_table_source(node.get("test_path"), key=f"{path}.test_path", **read)
        need = plan.target + plan.features
        check_columns(need, test_frame.columns, f"{path}.test_path", "feature or target", test_tf.path)
        test_frame = _clean(test_frame, plan, test_tf, path, info, prefix="test_")
        y_test = _encode_test_target(test_frame, plan, task, target_info, test_tf, path)

    fixed = _split_from_column(frame, plan.split_column, tf, path) if plan.split_column else None
    info.update({"rows": int(len(frame) + (len(test_frame) if test_frame is not None else 0)),
                 "description": describe_table(tf, plan),
                 "columns": dict(plan.kinds), "target": plan.target,
                 "split_indices_note": "indices are 0-based data rows of the file (header excluded)"
                                       + ("; test indexes the rows of data.test_path" if test_frame is not None
                                          else "")})
    if test_frame is not None:
        info["test_file"] = str(test_tf.path)

    def prepare(train_idx: np.ndarray):
        from .table_preparation import TablePreparation

        fitted = TablePreparation.fit(frame.iloc[train_idx], plan, target_info, task, tf, path)
        specs = fitted.columns
        unseen: list = []          # categories of val/test rows that the training rows lack
        x = apply_columns(frame, specs, tf, None, unseen)
        unknown.apply_policy(unseen, plan.unknown_categories, total=len(frame), where=f"{tf.path.name} (val/test "
                             "rows)", key=f"{path}.unknown_categories", tf=tf, index=frame.index)
        check_finite(x, frame, specs, tf, path)
        x_test = None
        if test_frame is not None:
            unseen = []
            x_test = apply_columns(test_frame, specs, test_tf, None, unseen)
            unknown.apply_policy(unseen, plan.unknown_categories, total=len(test_frame), where=test_tf.path.name,
                                 key=f"{path}.unknown_categories", tf=test_tf, index=test_frame.index)
            check_finite(x_test, test_frame, specs, test_tf, path)
        return x, x_test, fitted.to_json(), fitted.feature_names

    return RawSource(x=None, y=y, task=task, layout="flat", y_test=y_test, info=info, prepare=prepare,
                     fixed_split=fixed, row_ids=frame.index.to_numpy(dtype=np.int64),
                     test_row_ids=test_frame.index.to_numpy(dtype=np.int64) if test_frame is not None else None,
                     table={"frame": frame, "test_frame": test_frame, "plan": plan, "file": tf},
                     ignores_split_test=True)


def _encode_test_target(frame, plan: TablePlan, task: Task, target_info: dict, tf: TableFile, path: str):
    import pandas as pd

    if not task.is_classification:
        cols = [_to_numeric(frame[c], c, tf, f"{path}.target", forced=True) for c in plan.target]
        return np.stack(cols, axis=1).astype(np.float32)
    col = plan.target[0]
    keys = _cat_keys(frame[col])
    classes = target_info["class_names"]
    codes = _lookup(keys, classes)
    unknown = codes < 0
    if unknown.any():
        row = frame.index[np.flatnonzero(unknown)[0]]
        raise tf.error(f"the test file has the class {frame[col].loc[row]!r}, which the training file does not "
                       f"have (classes: {', '.join(classes[:10])})", int(row), key=f"{path}.test_path", column=col)
    return codes.astype(np.int64)


register_source(SourceSpec(
    "csv", load_table, extra_keys=TABLE_KEYS, standardize=False,
    description="your own table: CSV, TSV or Parquet (data.path, data.target)"))
