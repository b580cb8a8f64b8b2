"""Tables larger than memory: `data.streaming` (auto | true | false) and `data.memory_budget`.

In memory (the fast path), a table is read whole, prepared into float32 arrays and split by copying rows. Streamed,
the file is read in chunks (Parquet record batches, CSV chunks; `table_chunks.TableChunks`) three times, each pass
holding one chunk:

1. survey: the row filter and the row drops of `tabular._clean`, column kinds (tallied over all rows exactly as
   `_detect_kind` decides on the whole column), and the target (and split) column(s), which are small: one value
   a row. The split is then the in-memory path's split (same function, same rows, same seed).
2. fit: the preparation statistics over the training rows only (`streaming_stats.StreamingFit`: the numbers of
   `fit_columns`).
3. prepare: each chunk prepared with `apply_columns` and appended to its split's float32 `.npy` file in a folder of
   the cache directory (deleted when the process ends). The Dataset's x tensors map those files; training reads
   them in windows (`training/streaming_batches.py`), so the process holds at most a window, not the table.

Held in memory per row: the target, the row number and the split assignment (about 17 bytes a row for one
target). `auto` streams when the in-memory path would need more than the budget.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError
from netkiln.io.lock import process_alive
from netkiln.memory import human_bytes, parse_budget

from . import cache
from . import unknown_categories as unknown
from .config import get_int
from .sources import RawSource
from .streaming_stats import Moments, StreamingFit
from .table_chunks import CHUNK_ROWS, TableChunks
from .table_preparation import TablePreparation
from .tabular import (TablePlan, _detect_kind, _encode_target, _is_bool_like,
                      _plan, _split_from_column, _to_numeric, apply_columns, check_finite, describe_table)

log = logging.getLogger("netkiln")

STREAMING_KEYS = ("streaming", "memory_budget", "chunk_rows")
MODES = ("auto", "true", "false")
# The in-memory path holds the DataFrame, its cleaned copy and the float32 arrays with their split copies: about
# three times the table's raw size (Parquet: uncompressed bytes; CSV: file size). Measured on numeric tables.
IN_MEMORY_FACTOR = 3
SAMPLE_ROWS = 10_000        # rows kept for analyze's plots, unique counts and duplicate search


def streaming_mode(node: dict, path: str) -> str:
    value = node.get("streaming", "auto")
    value = "auto" if value is None else value
    value = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else str(value).lower()
    if value not in MODES:
        raise NetkilnError(f"expected auto, true or false, got {node.get('streaming')!r}", key=f"{path}.streaming")
    return value


def choose(node: dict, path: str, source: TableChunks) -> tuple[bool, int, str]:
    """(stream?, the budget in bytes, why) for `data.streaming` on this file; the choice is logged."""
    raw = source.raw_bytes()
    return decide(node, path, IN_MEMORY_FACTOR * raw, "the table",
                  f"{IN_MEMORY_FACTOR} x its {human_bytes(raw)} raw size")


def decide(node: dict, path: str, need: int, what: str, how: str = "") -> tuple[bool, int, str]:
    """(stream?, the budget in bytes, why) for `data.streaming` when the in-memory path would hold `need` bytes of
    `what` (`how`: how that was counted, shown when it is over the budget); the choice is logged."""
    mode = streaming_mode(node, path)
    budget = parse_budget(node.get("memory_budget"), key=f"{path}.memory_budget")
    if mode == "true":
        why = f"{path}.streaming=true"
    elif mode == "false":
        why = f"{path}.streaming=false"
    elif need > budget:
        why = (f"{path}.streaming=auto: in memory {what} would take about {human_bytes(need)}"
               f"{f' ({how})' if how else ''}, more than {path}.memory_budget={human_bytes(budget)}")
    else:
        why = (f"{path}.streaming=auto: in memory {what} takes about {human_bytes(need)}, within "
               f"{path}.memory_budget={human_bytes(budget)}")
    stream = mode == "true" or (mode == "auto" and need > budget)
    log.info("data: %s, %s", "streamed from disk" if stream else "in memory", why)
    return stream, budget, why


# ----------------------------------------------------------------------------------------------- pass 1: survey
def clean_chunk(frame, plan: TablePlan, tf, counts: dict):
    """`tabular._clean` on one chunk: the filter, rows without a target, rows missing a 'drop' feature; the rows
    removed are added to `counts` (an empty chunk is fine here, an empty table is refused at the end)."""
    if plan.row_filter is not None:
        frame = frame[plan.row_filter.mask(frame, str(tf.path))]
    counts["rows_after_filter"] += len(frame)
    no_target = frame[plan.target].isna().any(axis=1)
    frame = frame[~no_target.to_numpy()]
    counts["rows_dropped_no_target"] += int(no_target.sum())
    drop_cols = [c for c in plan.features if plan.strategy(c) == "drop"]
    if drop_cols:
        gone = frame[drop_cols].isna().any(axis=1)
        frame = frame[~gone.to_numpy()]
        counts["rows_dropped_missing"] += int(gone.sum())
    return frame


def kept_rows(ids: list, plan: TablePlan, counts: dict, rows: int, tf, path: str) -> np.ndarray:
    """The ids of the rows a file keeps after clean_chunk's passes; an error when none is left, as in memory."""
    if plan.row_filter is not None and counts["rows_after_filter"] == 0:
        raise plan.row_filter.error(f"it keeps none of the {rows} rows", str(tf.path))
    kept = np.concatenate(ids)
    if len(kept) == 0:
        raise NetkilnError("no rows are left after dropping rows with missing values", key=f"{path}.missing",
                           file=str(tf.path))
    if counts["rows_dropped_no_target"]:
        log.warning("%s: dropping %d row(s) with no target value", tf.path, counts["rows_dropped_no_target"])
    return kept


class _KindTally:
    """`_detect_kind` on the whole column, from its chunks: the numeric share counted over every chunk, and the
    first non-number and infinite value, refused (at their line, as in memory) if the column turns out numeric."""

    def __init__(self):
        self.all_bool = self.all_numeric_dtype = True
        self.categorical_dtype = False
        self.non_null = self.numeric = 0
        self.bad = self.infinite = None         # [first row, its value, count]
        self.text = self.numbers = False        # came as text / as numbers in some chunk

    def seen(self, series) -> None:
        import pandas as pd

        self.text = self.text or is_text(series)
        self.numbers = self.numbers or pd.api.types.is_numeric_dtype(series.dtype)

    def _note(self, which: str, rows, values) -> None:
        if len(rows):
            seen = getattr(self, which)
            if seen is None:
                setattr(self, which, [int(rows[0]), values[0], len(rows)])
            else:
                seen[2] += len(rows)

    def add(self, series, col, plan, tf, path) -> None:
        import pandas as pd

        self.seen(series)
        if _is_bool_like(series) or pd.api.types.is_numeric_dtype(series.dtype):
            n = int(series.notna().sum())
            self.non_null += n
            self.numeric += n
            self.all_bool = self.all_bool and _is_bool_like(series)
            if not _is_bool_like(series):
                inf = np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan))
                self._note("infinite", series.index[inf], series.to_numpy()[inf])
            return
        self.all_bool = self.all_numeric_dtype = False
        if isinstance(series.dtype, pd.CategoricalDtype):
            self.categorical_dtype = True
            return
        if pd.api.types.is_datetime64_any_dtype(series.dtype) or pd.api.types.is_timedelta64_dtype(series.dtype):
            _detect_kind(series, col, plan, tf, path)        # raises its message about dates
        text = series.astype(object).where(series.notna(), None)
        num = pd.to_numeric(text.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
        bad = (num.isna() & series.notna()).to_numpy()
        self.non_null += int(series.notna().sum())
        self.numeric += int(num.notna().sum())
        self._note("bad", series.index[bad], series.to_numpy()[bad])
        inf = np.isinf(num.to_numpy(dtype=np.float64, na_value=np.nan))
        self._note("infinite", series.index[inf], series.to_numpy()[inf])

    def kind(self, col: str, tf) -> str:
        if self.all_bool or self.all_numeric_dtype:
            kind = "numeric"
        elif self.categorical_dtype:
            kind = "categorical"
        elif self.non_null == 0:
            kind = "numeric"
        else:
            from .tabular import NUMERIC_SHARE
            kind = "numeric" if self.numeric / self.non_null >= NUMERIC_SHARE else "categorical"
        if kind == "numeric" and not self.all_bool:
            import pandas as pd
            for found in (self.bad, self.infinite):      # the in-memory check's message, at the same line
                if found is not None:
                    row, value, count = found
                    _to_numeric(pd.Series([value] * count, index=[row] * count, dtype=object), col, tf, None)
        return kind


def is_text(series) -> bool:
    import pandas as pd

    return (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)) \
        and not _is_bool_like(series)


def _survey(source: TableChunks, plan: TablePlan, path: str, info: dict):
    """Pass 1: the kept rows' numbers, target and split columns, and the kinds of the feature columns."""
    import pandas as pd

    tf = source.table_file
    counts = {"rows_after_filter": 0, "rows_dropped_no_target": 0, "rows_dropped_missing": 0}
    tallies = {c: _KindTally() for c in [*plan.features, *plan.target, *([plan.split_column] or [])]
               if c is not None and c not in plan.forced_categorical}
    summaries = {c: ColumnSummary() for c in source.columns}
    ids, targets, splits, rows = [], [], [], 0
    for chunk in source.chunks():
        rows += len(chunk)
        chunk = clean_chunk(chunk, plan, tf, counts)
        ids.append(chunk.index.to_numpy(dtype=np.int64))
        for col, summary in summaries.items():
            summary.add(chunk[col])
        targets.append(chunk[plan.target])
        if plan.split_column:
            splits.append(chunk[[plan.split_column]])
        for col, tally in tallies.items():
            if col not in plan.features:
                tally.seen(chunk[col])
            elif col in plan.forced_numeric:
                _to_numeric(chunk[col], col, tf, f"{path}.numeric", forced=True)
            else:
                tally.add(chunk[col], col, plan, tf, path)
    info.update(rows_in_file=rows, **counts)
    kept = kept_rows(ids, plan, counts, rows, tf, path)
    for col in plan.features:
        plan.kinds[col] = ("categorical" if col in plan.forced_categorical else
                           "numeric" if col in plan.forced_numeric else tallies[col].kind(col, tf))
    # Columns that came as text in some chunk: text in every chunk of the later passes, as in the whole file.
    text_columns = [c for c, t in tallies.items() if t.text]
    mixed = [c for c, t in tallies.items() if t.text and t.numbers]
    target_frame = pd.concat(targets)
    split_frame = pd.concat(splits) if splits else None
    again = [c for c in [*plan.target, plan.split_column] if c in mixed]
    if again:       # numbers in some chunks, text in others: read those columns again, as text throughout
        targets, splits = [], []
        for chunk in source.chunks(text_columns=text_columns):
            chunk = clean_chunk(chunk, plan, tf, dict.fromkeys(counts, 0))
            targets.append(chunk[plan.target])
            if plan.split_column:
                splits.append(chunk[[plan.split_column]])
        target_frame = pd.concat(targets)
        split_frame = pd.concat(splits) if splits else None
    return kept, target_frame, split_frame, text_columns, summaries


# ----------------------------------------------------------------------------------------------- the source
def load_table_streamed(node: dict, path: str, source: TableChunks, budget: int, why: str) -> RawSource:
    tf = source.table_file
    plan = _plan(node, path, source.columns, tf)
    test_file = None
    if node.get("test_path") is not None:       # read in chunks too (data/streamed_test_file.py)
        from .streamed_test_file import StreamedTestFile
        test_file = StreamedTestFile(node, path, source, plan)
    info: dict[str, Any] = {"source": "file", "file": str(tf.path), "format": tf.format}
    kept, target_frame, split_frame, text_columns, summaries = _survey(source, plan, path, info)
    y, task, target_info = _encode_target_compactly(target_frame, plan, tf, path)
    del target_frame
    y_test = test_kept = None
    if test_file is not None:
        y_test, test_kept = test_file.survey(task, target_info, info, summaries)
    fixed = _split_from_column(split_frame, plan.split_column, tf, path) if plan.split_column else None
    info.update({
        "rows": int(len(kept) + (len(test_kept) if test_kept is not None else 0)),
        "description": describe_table(tf, plan),
        "columns": dict(plan.kinds), "target": plan.target,
        "split_indices_note": "indices are 0-based data rows of the file (header excluded)"
                              + ("; test indexes the rows of data.test_path" if test_file is not None else ""),
        "streaming": {"budget_bytes": budget, "reason": why, "chunk_rows": source.chunk_rows}})

    # For `netkiln analyze`: exact per-column counts and moments over every kept row (pass 1), and a seeded sample
    # of rows (collected in pass 3) for what needs the rows themselves (unique values, plots, duplicates).
    sample = np.sort(np.random.Generator(np.random.PCG64(0)).choice(len(kept), min(len(kept), SAMPLE_ROWS),
                                                                    replace=False))
    table = {"frame": None, "test_frame": None, "plan": plan, "file": tf, "sampled_rows": int(len(sample)),
             "column_stats": {c: s.stats() for c, s in summaries.items()}}

    def streamed(idx: dict[str, np.ndarray]):
        specs = _fit(source, plan, path, idx, len(kept), text_columns)
        fitted = TablePreparation.from_columns(specs, plan, target_info, task)     # saved as the in-memory fit's
        parts, table["frame"] = _prepare(source, plan, path, idx, len(kept), specs, len(fitted.feature_names),
                                         text_columns, sample)
        x_test = None
        if test_file is not None:       # prepared beside the training rows, with their preparation
            x_test, table["test_frame"] = test_file.prepare(specs, len(fitted.feature_names),
                                                            Path(parts["train"].filename).parent, SAMPLE_ROWS)
        return parts, x_test, fitted.to_json(), fitted.feature_names

    return RawSource(x=None, y=y, task=task, layout="flat", y_test=y_test, info=info, fixed_split=fixed,
                     row_ids=kept, test_row_ids=test_kept, streamed=streamed, ignores_split_test=True, table=table)


def _encode_target_compactly(frame, plan: TablePlan, tf, path: str):
    """`_encode_target` on each distinct target value once (its first row), then spread to every row: the same
    classes and codes without a text key per row (2,000,000 rows: ~80 MB less). Regression needs no keys."""
    if len(plan.target) > 1:
        return _encode_target(frame, plan, tf, path)
    import pandas as pd

    column = frame[plan.target[0]]
    codes, _ = pd.factorize(column)
    first = frame[~column.duplicated().to_numpy()]          # one row per distinct value, in factorize's order
    y, task, info = _encode_target(first, plan, tf, path)
    if not task.is_classification:
        return _encode_target(frame, plan, tf, path)
    return y[codes], task, info


def _split_of(idx: dict[str, np.ndarray], n: int) -> np.ndarray:
    """0 train, 1 val, 2 test for each kept row."""
    part = np.full(n, -1, dtype=np.int8)
    for i, name in enumerate(("train", "val", "test")):
        part[idx[name]] = i
    return part


def _kept_chunks(source: TableChunks, plan: TablePlan, n: int, text_columns):
    """(position of the chunk's first kept row, the chunk's kept rows): the survey's rows, in the same order."""
    counts = {"rows_after_filter": 0, "rows_dropped_no_target": 0, "rows_dropped_missing": 0}
    pos = 0
    for chunk in source.chunks(text_columns=text_columns):
        chunk = clean_chunk(chunk, plan, source.table_file, counts)
        yield pos, chunk
        pos += len(chunk)
    if pos != n:
        raise NetkilnError("the file changed while it was being read (a different number of rows in the second "
                           "pass); do not write to it during training", key=source.key, file=str(source.path))


def _fit(source: TableChunks, plan: TablePlan, path: str, idx: dict, n: int, text_columns) -> list[dict]:
    """Pass 2: the preparation fitted on the training rows."""
    part = _split_of(idx, n)
    fit = StreamingFit(plan, source.table_file, path)
    for pos, chunk in _kept_chunks(source, plan, n, text_columns):
        train = part[pos:pos + len(chunk)] == 0
        if train.any():
            fit.add(chunk[train])
    return fit.specs()


def _prepare(source: TableChunks, plan: TablePlan, path: str, idx: dict, n: int, specs: list[dict],
             width: int, text_columns, sample: np.ndarray):
    """Pass 3: every kept row prepared and appended to its split's .npy file; the files mapped read-only, and the
    raw rows at the kept positions `sample`."""
    tf = source.table_file
    part = _split_of(idx, n)
    folder = prepared_folder()
    names = ("train", "val", "test")
    writers = {name: NpyWriter(folder / f"{name}.npy", len(idx[name]), width) for name in names}
    chunks = ChunkPreparer(plan, specs, tf, path, n, sample)
    try:
        for pos, chunk in _kept_chunks(source, plan, n, text_columns):
            if len(chunk) == 0:
                continue
            x = chunks.prepare(pos, chunk)
            which = part[pos:pos + len(chunk)]
            for i, name in enumerate(names):
                writers[name].write(x[which == i])
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            w.abandon()
        raise
    chunks.warn_unseen(f"{tf.path.name} (val/test rows)")
    parts = {name: np.load(folder / f"{name}.npy", mmap_mode="c") for name in names}
    return parts, chunks.sampled_rows()


class ChunkPreparer:
    """Pass 3's work on each kept chunk, for the training file and a test file alike: the chunk prepared with the
    fitted `specs` (values checked finite, unseen categories refused or gathered for one warning at the end), and the
    raw rows at the kept positions `sample` set aside (for analyze)."""

    def __init__(self, plan: TablePlan, specs: list[dict], tf, path: str, n: int, sample: np.ndarray):
        self.plan, self.specs, self.tf, self.path, self.n, self.sample = plan, specs, tf, path, n, sample
        self.found, self.offsets, self.sampled = [], [], []

    def prepare(self, pos: int, chunk) -> np.ndarray:
        """The chunk's rows (kept rows pos, pos + 1, ...) as the network's float32 inputs."""
        lo, hi = np.searchsorted(self.sample, [pos, pos + len(chunk)])
        if hi > lo:
            self.sampled.append(chunk.iloc[self.sample[lo:hi] - pos])
        unseen: list = []
        x = apply_columns(chunk, self.specs, self.tf, None, unseen)
        check_finite(x, chunk, self.specs, self.tf, self.path)
        if unseen and self.plan.unknown_categories == "error":
            unknown.apply_policy(unseen, "error", total=self.n, where="", key=f"{self.path}.unknown_categories",
                                 tf=self.tf, index=chunk.index)
        self.found += unseen
        self.offsets += [pos] * len(unseen)
        return x

    def warn_unseen(self, where: str) -> None:
        if self.found and self.plan.unknown_categories == "warn":
            unknown.warn(self.found, unknown.row_count(self.found, self.offsets), self.n, where)

    def sampled_rows(self):
        import pandas as pd

        return pd.concat(self.sampled)


class ColumnSummary:
    """Missing values of a column and, for numbers, their exact moments, over every kept row (for analyze)."""

    def __init__(self):
        self.rows = self.missing = 0
        self.moments = Moments()
        self.numeric = True

    def add(self, series) -> None:
        import pandas as pd

        self.rows += len(series)
        self.missing += int(series.isna().sum())
        self.numeric = self.numeric and (pd.api.types.is_numeric_dtype(series.dtype) or _is_bool_like(series))
        if self.numeric:
            v = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            self.moments.add(v[np.isfinite(v)])

    def stats(self) -> dict:
        out = {"rows": self.rows, "missing": self.missing}
        m = self.moments
        if self.numeric and m.n:
            out.update(mean=m.mean, std=math.sqrt(max(m.m2, 0.0) / m.n), min=m.min, max=m.max)
        return out


# ----------------------------------------------------------------------------------------------- the files
class NpyWriter:
    """A float32 (rows, width) .npy file written front to back (no memory map: dirty pages would count as the
    process's memory)."""

    def __init__(self, file: Path, rows: int, width: int):
        self.file, self.rows, self.written = file, rows, 0
        self.fh = open(file, "wb")
        np.lib.format.write_array_header_1_0(self.fh, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (rows, width)})

    def write(self, x: np.ndarray) -> None:
        if len(x):
            self.fh.write(np.ascontiguousarray(x, dtype="<f4").tobytes())
            self.written += len(x)

    def close(self) -> None:
        self.fh.close()
        if self.written != self.rows:
            raise RuntimeError(f"{self.file}: wrote {self.written} rows, expected {self.rows}")

    def abandon(self) -> None:
        self.fh.close()
        self.file.unlink(missing_ok=True)


def prepared_folder() -> Path:
    """A new folder for this process's prepared arrays, under the cache directory (not /tmp, which may be memory),
    removed at exit; folders left by processes that no longer run (killed) are removed first."""
    root = cache.cache_dir() / "streaming"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("pid*-*"):
        try:
            pid = int(old.name[3:].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not process_alive(pid):
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"pid{os.getpid()}-", dir=root))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def chunk_rows_of(node: dict, path: str) -> int:
    return get_int(node, "chunk_rows", CHUNK_ROWS, path, minimum=1)
