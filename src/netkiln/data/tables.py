"""Reading the user's tables (CSV, TSV, Parquet) with errors that name the file, the line and the column.

pandas and pyarrow are imported inside the functions: importing netkiln.data stays cheap.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from netkiln.errors import NetkilnError, did_you_mean

TABLE_FORMATS = ("auto", "csv", "tsv", "parquet")
WIDE_TABLE = 1000           # columns from which a frame read is copied into few blocks (`few_blocks`) ...
COPY_CELLS = 32_000_000     # ... when it has at most this many cells (256 MB of float64: the copy's extra memory)
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                  ".txt": "csv"}


def check_file(path: Any, key: str, *, kind: str = "file", suffixes: Iterable[str] = ()) -> Path:
    """The path as a Path that exists and is a file (or a folder for kind='folder'), else a NetkilnError."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise NetkilnError(f"no {kind} given; set {key}=<path>", key=key)
    if not isinstance(path, (str, Path)):
        raise NetkilnError(f"expected a {kind} path, got {path!r}", key=key)
    p = Path(path).expanduser()
    if not p.exists():
        hint = ""
        parent = p.parent if str(p.parent) else Path(".")
        if parent.is_dir():
            try:
                siblings = [c.name for c in parent.iterdir() if not c.name.startswith(".")]
            except OSError:
                siblings = []
            hint = did_you_mean(p.name, siblings)
        else:
            hint = f" (the folder {parent} does not exist either)"
        raise NetkilnError(f"{kind} not found.{hint}".replace("..", "."), key=key, file=str(p))
    if kind == "folder":
        if not p.is_dir():
            raise NetkilnError("expected a folder, but this is a file", key=key, file=str(p))
    elif p.is_dir():
        raise NetkilnError("expected a file, but this is a folder", key=key, file=str(p))
    return p


def table_format(p: Path, fmt: str | None, key: str) -> str:
    fmt = fmt or "auto"
    if fmt not in TABLE_FORMATS:
        raise NetkilnError(f"unknown format {fmt!r}.{did_you_mean(str(fmt), TABLE_FORMATS)} "
                           f"Choose one of: {', '.join(TABLE_FORMATS)}.", key=key)
    if fmt != "auto":
        return fmt
    found = _SUFFIX_FORMAT.get(p.suffix.lower())
    if found is None:
        raise NetkilnError(f"cannot tell the format from the extension '{p.suffix}'; name it with "
                           f"{key}=csv|tsv|parquet", key=key, file=str(p))
    return found


class TableFile:
    """Where a DataFrame came from, to turn row positions into line numbers for error messages."""

    def __init__(self, path: Path, fmt: str, delimiter: str | None, text_encoding: str):
        self.path = path
        self.format = fmt
        self.delimiter = delimiter
        self.text_encoding = text_encoding
        self._lines: list[int] | None = None

    def line_of(self, row: int) -> int | None:
        """The 1-based line where data row `row` (0-based, header excluded) starts; None for Parquet."""
        if self.format == "parquet":
            return None
        if self._lines is None:
            self._lines = _record_lines(self.path, self.delimiter or ",", self.text_encoding)
        return self._lines[row] if 0 <= row < len(self._lines) else None

    def where(self, row: int) -> dict:
        """NetkilnError location arguments for data row `row`."""
        return {"file": str(self.path), "line": self.line_of(row)}

    def error(self, message: str, row: int, *, key: str | None = None, column: str | None = None) -> NetkilnError:
        """A NetkilnError at data row `row`: its line for text files, 'data row N' for Parquet."""
        line = self.line_of(row)
        if line is None:
            message = f"data row {row} (0-based): {message}"
        return NetkilnError(message, key=key, file=str(self.path), line=line, column=column)

    def row_text(self, row: int) -> str:
        """'line 7' for text files, 'row 5' (0-based data row) for Parquet."""
        line = self.line_of(row)
        return f"line {line}" if line is not None else f"row {row}"


def _record_lines(path: Path, delimiter: str, encoding: str) -> list[int]:
    """Start line of every data record, as pandas counts records (blank lines skipped, quoted newlines kept)."""
    starts: list[int] = []
    csv.field_size_limit(2 ** 31 - 1)   # pandas reads a field of any size (a text of megabytes); so must this
    with open(path, newline="", encoding=encoding, errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        prev_end = 0
        header_seen = False
        for record in reader:
            start = prev_end + 1
            prev_end = reader.line_num
            if not record or all(not f.strip() for f in record) and len(record) <= 1:
                continue                                 # blank line: pandas skips it
            if not header_seen:
                header_seen = True
                continue
            starts.append(start)
    return starts


def read_table(path: Any, *, format: str | None = "auto", delimiter: str | None = None,
               na_values: list | None = None, text_encoding: str = "utf-8", key: str = "data.path"):
    """Read a CSV, TSV or Parquet file into a DataFrame (its index is the 0-based data-row number).

    Raises NetkilnError for a missing, empty or malformed file, naming the file and the line.
    """
    return read_table_source(path, format=format, delimiter=delimiter, na_values=na_values,
                             text_encoding=text_encoding, key=key)[0]


def read_table_source(path: Any, *, format: str | None = "auto", delimiter: str | None = None,
                      na_values: list | None = None, text_encoding: str = "utf-8", key: str = "data.path"):
    """`read_table`, also returning the `TableFile` that turns row numbers into line numbers."""
    import pandas as pd

    p = check_file(path, key)
    fmt = table_format(p, format, key.rsplit(".", 1)[0] + ".format" if "." in key else "format")
    if p.stat().st_size == 0:
        raise NetkilnError("the file is empty", key=key, file=str(p))
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(p)
        except ImportError as err:   # pragma: no cover - pyarrow is a dependency
            raise NetkilnError(f"reading Parquet needs pyarrow: {err}", key=key, file=str(p)) from None
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise NetkilnError(f"not a readable Parquet file ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})", key=key, file=str(p)) from None
        frame = frame.reset_index(drop=True)
        sep = None
    else:
        sep = delimiter or ("\t" if fmt == "tsv" else ",")
        try:
            frame = pd.read_csv(p, sep=sep, na_values=na_values or None, encoding=text_encoding,
                                low_memory=False, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise NetkilnError("the file is empty (no header line)", key=key, file=str(p)) from None
        except pd.errors.ParserError as err:
            msg = str(err).strip()
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
            if m:
                raise NetkilnError(f"expected {m.group(1)} fields (as in the header) but found {m.group(3)}; "
                                   f"check the delimiter and the quoting", key=key, file=str(p),
                                   line=int(m.group(2))) from None
            raise NetkilnError(f"cannot parse the file: {msg.splitlines()[0] if msg else 'unknown error'}",
                               key=key, file=str(p)) from None
        except UnicodeDecodeError as err:
            raise NetkilnError(f"the file is not {text_encoding} text ({err.reason} at byte {err.start}); "
                               "set data.text_encoding, e.g. data.text_encoding=latin-1", key=key,
                               file=str(p)) from None
        except LookupError:
            raise NetkilnError(f"unknown text encoding {text_encoding!r}", key="data.text_encoding") from None
        except OSError as err:
            raise NetkilnError(f"cannot read the file: {err.strerror or err}", key=key, file=str(p)) from None
    frame = few_blocks(frame)
    frame.columns = [str(c).strip() for c in frame.columns]
    header = _header_names(p, sep, text_encoding) if sep else None
    counts = Counter(str(c).strip() for c in (header or frame.columns))    # one pass, not list.count per column
    dupes = sorted(c for c, n in counts.items() if n > 1)
    if dupes:
        raise NetkilnError(f"the header names {', '.join(repr(d) for d in dupes)} more than once",
                           key=key, file=str(p), line=1 if fmt != "parquet" else None)
    if frame.shape[1] == 0:
        raise NetkilnError("the file has no columns", key=key, file=str(p))
    if len(frame) == 0:
        raise NetkilnError("the file has a header but no data rows", key=key, file=str(p))
    return frame, TableFile(p, fmt, sep, text_encoding)


def few_blocks(frame):
    """A wide frame with its columns held in one block per dtype. read_csv gives each column a block of its own,
    and pandas pays Python time per block in every frame-wide step (selecting rows or columns, renaming): on
    50,000 columns that was seconds a step, against about half a second for this one copy, which merges them.
    A frame of many rows is left as it is: its copy would cost memory, and its per-block time is small beside
    the work on its values."""
    rows, columns = frame.shape
    return frame.copy() if columns > WIDE_TABLE and rows * columns <= COPY_CELLS else frame


def _header_names(path: Path, delimiter: str, encoding: str) -> list[str] | None:
    """The header record as the file writes it: pandas renames a repeated name to 'name.1' without a word."""
    if len(delimiter) != 1:
        return None
    with open(path, newline="", encoding=encoding, errors="replace") as fh:
        for record in csv.reader(fh, delimiter=delimiter):
            if any(field.strip() for field in record):
                return record
    return None


def check_columns(names: Iterable[str], available: Iterable[str], key: str, what: str, file: Path | None) -> None:
    """Every name must be a column: else a NetkilnError with did-you-mean and the available columns."""
    available = [str(a) for a in available]
    known = set(available)                  # a set: 50,000 names checked against 50,000 columns stay linear
    for n in names:
        if n not in known:
            shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
            raise NetkilnError(f"unknown {what} column {n!r}.{did_you_mean(str(n), available)} "
                               f"Columns: {shown}.", key=key, file=str(file) if file else None, column=None)
