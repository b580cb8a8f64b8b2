"""A streamed table's own test file (`data.test_path` with data.streaming): read in chunks, as the training file is.

`survey` (beside the training file's pass 1) checks its columns against the training columns, cleans each chunk as
the in-memory path cleans the test frame (the row filter, rows without a target, rows missing a 'drop' feature) and
encodes its target with the training classes: one value a row is held. `prepare` (after the fit on the training
rows) applies the training rows' preparation to each chunk and appends it to a float32 .npy file in the training
rows' folder (removed at exit as they are), and keeps a seeded sample of raw rows for `netkiln analyze`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from netkiln.errors import NetkilnError

from .table_chunks import TableChunks
from .tables import check_columns
from .tabular import TablePlan, _encode_test_target

log = logging.getLogger("netkiln")


class StreamedTestFile:
    def __init__(self, node: dict, path: str, train: TableChunks, plan: TablePlan):
        if plan.split_column:
            raise NetkilnError("give either a split column or a separate test file, not both",
                               key=f"{path}.test_path")
        self.path, self.plan = path, plan
        self.source = TableChunks(node.get("test_path"), format=node.get("format") or "auto",
                                  delimiter=node.get("delimiter"), na_values=train.na_values,
                                  text_encoding=train.text_encoding, key=f"{path}.test_path",
                                  chunk_rows=train.chunk_rows)
        self.tf = self.source.table_file
        check_columns(plan.target + plan.features, self.source.columns, f"{path}.test_path", "feature or target",
                      self.tf.path)
        self.rows = 0
        self.text_columns: list[str] = []

    def survey(self, task, target_info: dict, info: dict, summaries: dict) -> tuple[np.ndarray, np.ndarray]:
        """(y_test, the kept rows' data-row numbers); the clean-up counts go to `info` under test_, each kept row's
        values to the training file's column `summaries` (analyze describes both files' rows, as in memory)."""
        import pandas as pd

        from .streaming import _KindTally, clean_chunk, kept_rows

        plan, tf = self.plan, self.tf
        counts = {"rows_after_filter": 0, "rows_dropped_no_target": 0, "rows_dropped_missing": 0}
        tallies = {c: _KindTally() for c in plan.features + plan.target}
        ids, targets, rows = [], [], 0
        for chunk in self.source.chunks():
            rows += len(chunk)
            chunk = clean_chunk(chunk, plan, tf, counts)
            ids.append(chunk.index.to_numpy(dtype=np.int64))
            targets.append(chunk[plan.target])
            for col, tally in tallies.items():
                tally.seen(chunk[col])
            for col, summary in summaries.items():
                if col in chunk.columns:
                    summary.add(chunk[col])
        kept = kept_rows(ids, plan, counts, rows, tf, self.path)
        # A column with text in some chunk is text in the whole file, as pandas reads it whole: read as text.
        self.text_columns = [c for c, t in tallies.items() if t.text]
        if any(tallies[c].numbers for c in plan.target if c in self.text_columns):
            targets = [clean_chunk(chunk, plan, tf, dict.fromkeys(counts, 0))[plan.target]
                       for chunk in self.source.chunks(text_columns=self.text_columns)]
        y_test = _encode_test_target(pd.concat(targets), plan, task, target_info, tf, self.path)
        info.update({f"test_{k}": int(v) for k, v in counts.items()
                     if k != "rows_dropped_missing" or any(plan.strategy(c) == "drop" for c in plan.features)})
        info["test_file"] = str(tf.path)
        self.rows = len(kept)
        return y_test, kept

    def prepare(self, specs: list[dict], width: int, folder: Path, sample_rows: int):
        """The test rows prepared with the training rows' `specs` into folder/own_test.npy, mapped read-only, and a
        seeded sample of up to `sample_rows` raw rows (for analyze)."""
        from .streaming import ChunkPreparer, NpyWriter, clean_chunk

        plan, tf, n = self.plan, self.tf, self.rows
        sample = np.sort(np.random.Generator(np.random.PCG64(1)).choice(n, min(n, sample_rows), replace=False))
        counts = {"rows_after_filter": 0, "rows_dropped_no_target": 0, "rows_dropped_missing": 0}
        writer = NpyWriter(folder / "own_test.npy", n, width)
        chunks, pos = ChunkPreparer(plan, specs, tf, self.path, n, sample), 0
        try:
            for chunk in self.source.chunks(text_columns=self.text_columns):
                chunk = clean_chunk(chunk, plan, tf, counts)
                if len(chunk) == 0:
                    continue
                writer.write(chunks.prepare(pos, chunk))
                pos += len(chunk)
            if pos != n:
                raise NetkilnError("the file changed while it was being read (a different number of rows in the "
                                   "second pass); do not write to it during training", key=f"{self.path}.test_path",
                                   file=str(tf.path))
            writer.close()
        except BaseException:
            writer.abandon()
            raise
        chunks.warn_unseen(tf.path.name)
        return np.load(folder / "own_test.npy", mmap_mode="c"), chunks.sampled_rows()
