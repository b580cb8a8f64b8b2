"""Predictions from a bundle: apply the saved preparation to new raw rows, run the network, write a table.

`predict_file` streams: each chunk of the input is prepared, predicted and appended to the output (written under
a temporary name and renamed at the end), so memory stays bounded by the chunk size, not the file size.
"""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netkiln.artifacts.bundle import Bundle
from netkiln.artifacts.inputs import Chunk, InputFile
from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


# ------------------------------------------------------------------------------------------------ preparation
def _relocate(err: NetkilnError, file: InputFile, start: int) -> NetkilnError:
    """The data package's error about a chunk, re-pointed at the input file (unless it names its own: an image
    file) and the chunk's rows."""
    message = err.message.replace("or allow extra columns", "or pass allow_extra=true to ignore extra columns")
    if start and "data row" not in message and not err.file:
        message += f" (in the chunk starting at data row {start})"
    return NetkilnError(message, key=file.key, file=err.file or str(file.path), line=err.line, column=err.column)


def prepare_chunk(bundle: Bundle, chunk: Chunk, file: InputFile, *, allow_extra: bool = False,
                  unseen: list | None = None) -> torch.Tensor:
    """One chunk of raw input → the float32 tensor the network takes, via the saved preparation; a table's
    categories that the training rows did not have are appended to `unseen` (the caller applies the policy)."""
    preparer = bundle.preparer
    refusal = preparer.file_refusal(file.holds)
    if refusal:
        raise NetkilnError(refusal, key=file.key, file=str(file.path))
    try:
        prepared = preparer.apply(chunk.data, allow_extra=allow_extra, unseen=unseen, first_row=chunk.start)
    except NetkilnError as err:
        raise _relocate(err, file, chunk.start) from None
    x = torch.from_numpy(np.ascontiguousarray(prepared, dtype=np.float32))
    # Finite raw values can still overflow float32 once scaled (1e38 / a small std): such a row would come out
    # as class 0 with NaN probabilities.
    finite = torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0]) + chunk.start
        raise NetkilnError(f"data row {row} becomes infinite or NaN after the saved preparation (a value far outside "
                           "the training data's range overflows once scaled); check that row's values",
                           key=file.key, file=str(file.path))
    return x


# ------------------------------------------------------------------------------------------------ outputs
@torch.no_grad()
def forward(network, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    network.eval()
    if len(x) <= batch_size:
        return network(x[:])        # x[:]: rows held as image files (data/image_stream.py) are read now
    return torch.cat([network(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def class_labels(bundle: Bundle) -> list:
    """The labels predictions are written with: the table's original target values, else the class names."""
    target = bundle.preparation.get("target") or {}
    values = target.get("class_values")
    if values and len(values) == bundle.task.num_classes:
        return list(values)
    names = list(bundle.task.class_names)
    if len(names) == bundle.task.num_classes:
        return names
    return list(range(bundle.task.num_classes))


def target_names(bundle: Bundle) -> list[str]:
    target = bundle.preparation.get("target") or {}
    cols = target.get("columns") or []
    return [str(c) for c in cols] if len(cols) == bundle.task.num_outputs else []


def probabilities(task, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes) from the network's logits."""
    if task.kind == "binary":
        p1 = torch.sigmoid(outputs.reshape(-1))
        return torch.stack([1 - p1, p1], dim=1)
    return torch.softmax(outputs, dim=1)


def output_frame(bundle: Bundle, outputs: torch.Tensor, index=None):
    """A DataFrame with `prediction` (label or value) and, for classifiers, one `prob_<class>` column a class."""
    import pandas as pd

    task = bundle.task
    if task.is_classification:
        probs = probabilities(task, outputs).numpy()
        labels = class_labels(bundle)
        pred = np.asarray(labels, dtype=object)[probs.argmax(axis=1)]
        try:
            pred = pred.astype(type(labels[0])) if labels and isinstance(labels[0], (int, float, str)) else pred
        except (TypeError, ValueError):
            pass
        columns = {"prediction": pred}
        for i, label in enumerate(labels):
            columns[f"prob_{label}"] = probs[:, i]
        return pd.DataFrame(columns, index=index)
    from netkiln.data.target_scale import TargetScale
    target_scale = TargetScale.of(bundle.preparation)      # the network predicts the scaled target
    if target_scale is not None:
        outputs = target_scale.unscale(outputs.reshape(len(outputs), -1))
    values = outputs.reshape(len(outputs), -1).numpy()
    if values.shape[1] == 1:
        return pd.DataFrame({"prediction": values[:, 0]}, index=index)
    names = target_names(bundle) or [str(i) for i in range(values.shape[1])]
    return pd.DataFrame({f"prediction_{n}": values[:, i] for i, n in enumerate(names)}, index=index)


def raw_feature_columns(bundle: Bundle) -> set:
    """The input columns the model reads (before one-hot encoding etc.)."""
    return set(bundle.preparer.input_columns())


def predict_arrays(bundle: Bundle, x, batch_size: int = 4096):
    """Predictions for prepared or raw rows already in memory (a numpy array or tensor), as a DataFrame."""
    from netkiln.artifacts.inputs import InputFile as _In

    file = _In(Path("<array>"), "npy", key="x")
    tensor = prepare_chunk(bundle, Chunk(0, np.asarray(x)), file)
    return output_frame(bundle, forward(bundle.network, tensor, batch_size))


# ------------------------------------------------------------------------------------------------ writing
def output_format(path: Any, key: str = "output") -> str:
    if path is None or (isinstance(path, str) and not path.strip()):
        raise NetkilnError("no output file given; set output=<predictions.csv|.parquet>", key=key)
    fmt = OUTPUT_FORMATS.get(Path(str(path)).suffix.lower())
    if fmt is None:
        raise NetkilnError(f"cannot tell the output format from '{Path(str(path)).suffix}'; name the output "
                           ".csv, .tsv or .parquet", key=key)
    return fmt


class _TableWriter:
    """Appends DataFrames to a CSV/TSV (header once) or a Parquet file (one row group a chunk)."""

    def __init__(self, path: str, fmt: str):
        self.path, self.format = path, fmt
        self._fh = None
        self._pq = None

    def write(self, frame) -> None:
        if self.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, table.schema)
            self._pq.write_table(table)
            return
        header = self._fh is None
        if header:
            self._fh = open(self.path, "w", newline="", encoding="utf-8")
        frame.to_csv(self._fh, sep="\t" if self.format == "tsv" else ",", index=False, header=header)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()


def _progress(enabled: Any, total: int | None, chunk_rows: int):
    """A rich progress bar on stderr for long inputs (auto: more than one chunk and a terminal)."""
    if enabled in (None, "auto"):
        enabled = sys.stderr.isatty() and (total is None or total > chunk_rows)
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    return progress


def predict_file(bundle: Bundle, file: InputFile, output: Any, *, chunk_rows: int = 10000,
                 allow_extra: bool = False, keep_columns: list[str] | None = None, progress: Any = "auto",
                 batch_size: int = 4096, unknown_categories: str | None = None, flag_unknown: bool = False) -> dict:
    """Predict every row of `file` into `output` (CSV/TSV/Parquet), chunk by chunk. Returns a small report.

    A table's categories that the training rows did not have: `unknown_categories` (default: the policy the model
    was trained with, else warn) warns once at the end, refuses, or ignores them; `flag_unknown` adds the column
    `unknown_categories` naming, for each row, the columns holding such a value ('' for none).
    """
    import pandas as pd

    from netkiln.io.files import write_atomic
    from netkiln.data import unknown_categories as unknown

    table_model = bundle.preparer.has_categories
    policy = unknown.policy_of(bundle.preparation, unknown_categories, key="unknown_categories")
    if flag_unknown and not table_model:
        raise NetkilnError("flag_unknown marks categories a table's training rows did not have; this model was not "
                           "trained on a table", key="flag_unknown")

    fmt = output_format(output)
    out = Path(str(output)).expanduser()
    if out.resolve() == file.path.resolve():
        raise NetkilnError("the output would overwrite the input file; choose another output path", key="output")
    from netkiln.artifacts.bundle import refuse_output_in_bundle
    refuse_output_in_bundle(out, bundle, "output")
    keep = list(keep_columns or [])
    if keep and not file.is_table:
        raise NetkilnError("keep_columns needs a table input (.csv or .parquet)", key="keep_columns")
    if file.holds == "images":      # a chunk of images is decoded into float32 pixels: at most about 64 MiB
        chunk_rows = min(chunk_rows, max(1, (64 << 20) // (4 * math.prod(bundle.input_shape))))
    total = None
    bar = None
    if progress not in (False, "false"):
        try:
            total = file.rows() if progress not in (None, "auto") or sys.stderr.isatty() else None
        except Exception:  # noqa: BLE001 - the bar is optional; reading the data reports real errors
            total = None
        bar = _progress(progress, total, chunk_rows)
    stats = {"rows": 0, "chunks": 0}
    unseen_all: list = []           # (chunk start, Unseen) of every chunk, for one warning at the end

    def write(tmp: str) -> None:
        writer = _TableWriter(tmp, fmt)
        task_id = bar.add_task("predict", total=total) if bar is not None else None
        try:
            for chunk in file.chunks(chunk_rows):
                chunk_for_model = chunk
                if keep:
                    missing = [c for c in keep if c not in chunk.data.columns]
                    if missing:
                        raise NetkilnError(f"keep_columns names {', '.join(map(repr, missing))}, which the input "
                                           "does not have", key="keep_columns", file=str(file.path))
                if keep:   # pass-through columns that are not features must not count as extra columns
                    features = raw_feature_columns(bundle)
                    chunk_for_model = Chunk(chunk.start, chunk.data.drop(columns=[c for c in keep if c not in features]))
                unseen: list | None = [] if table_model and file.is_table else None
                x = prepare_chunk(bundle, chunk_for_model, file, allow_extra=allow_extra, unseen=unseen)
                if unseen and policy == "error":
                    raise unknown.refuse(unseen[0], key=file.key, file=str(file.path), setting="unknown_categories",
                                         row_label=f"data row {chunk.start + int(unseen[0].positions[0])}: ")
                unseen_all.extend((chunk.start, u) for u in unseen or [])
                frame = output_frame(bundle, forward(bundle.network, x, batch_size))
                if chunk.names is not None:
                    frame.insert(0, "file", chunk.names)
                if flag_unknown:
                    frame["unknown_categories"] = unknown.row_flags(unseen or [], len(frame))
                if keep:
                    kept = chunk.data[keep].reset_index(drop=True)
                    frame = frame.rename(columns={c: f"{c}_predicted" for c in frame.columns if c in keep})
                    frame = pd.concat([kept, frame], axis=1)
                writer.write(frame)
                stats["rows"] += len(frame)
                stats["chunks"] += 1
                if bar is not None:
                    bar.update(task_id, advance=len(frame))
            if stats["rows"] == 0:
                raise NetkilnError("the input has no data rows", key=file.key, file=str(file.path))
            if unseen_all and policy == "warn":
                found = [u for _, u in unseen_all]
                unknown.warn(found, unknown.row_count(found, [start for start, _ in unseen_all]), stats["rows"],
                             str(file.path), setting="unknown_categories")
        finally:
            writer.close()

    if bar is not None:
        with bar:
            write_atomic(out, write)
    else:
        write_atomic(out, write)
    stats["output"] = str(out)
    return stats
