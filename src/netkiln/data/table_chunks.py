"""Reading a table (CSV, TSV, Parquet) in chunks of rows, for data that does not fit in memory.

Parquet is read by record batches, CSV/TSV by pandas' chunked reader, with the same settings as `tables.read_table`.
Each chunk is a DataFrame whose index is the 0-based data-row number in the file, so errors name the same line as
when the whole file is read. pandas and pyarrow are imported inside the functions.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

from netkiln.errors import NetkilnError

from .tables import TableFile, _header_names, check_file, table_format

CHUNK_ROWS = 65536


class TableChunks:
    """One table file read chunk by chunk, as often as needed (each pass reads it again)."""

    def __init__(self, path, *, format: str | None = "auto", delimiter: str | None = None,
                 na_values: list | None = None, text_encoding: str = "utf-8", key: str = "data.path",
                 chunk_rows: int = CHUNK_ROWS):
        self.key = key
        self.files = None               # a folder of Parquet files (a dataset written in parts): its files, in order
        p = Path(path).expanduser() if isinstance(path, (str, Path)) and str(path).strip() else None
        if p is not None and p.is_dir():
            self.path = p
            self.files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".parquet", ".pq") and f.is_file())
            if not self.files:
                raise NetkilnError("the folder holds no .parquet files", key=key, file=str(p))
            if (format or "auto") not in ("auto", "parquet"):
                raise NetkilnError(f"a folder is read as Parquet files, not {format}", key=key.rsplit(".", 1)[0]
                                   + ".format")
            self.format = "parquet"
        else:
            self.path = p = check_file(path, key)
            self.format = table_format(p, format, key.rsplit(".", 1)[0] + ".format" if "." in key else "format")
            if p.stat().st_size == 0:
                raise NetkilnError("the file is empty", key=key, file=str(p))
        self.na_values = na_values or None
        self.text_encoding = text_encoding
        self.chunk_rows = int(chunk_rows)
        self.sep = None if self.format == "parquet" else (delimiter or ("\t" if self.format == "tsv" else ","))
        self.table_file = TableFile(p, self.format, self.sep, text_encoding)
        self._raw_names: dict[str, str] = {}
        try:
            self.columns = self._columns()
        except OSError as err:          # e.g. permission denied: named like the in-memory read names it
            raise NetkilnError(f"cannot read the file: {err.strerror or err}", key=key, file=str(p)) from None

    # --- what the file holds, without reading its rows ------------------------------------------------------
    def _columns(self) -> list[str]:
        if self.format == "parquet":
            schema = self._parquet().schema_arrow
            names = [str(n).strip() for n in schema.names if not str(n).startswith("__index_level_")]
        else:
            names = _header_names(self.path, self.sep, self.text_encoding) if len(self.sep) == 1 else None
            if names is None:
                names = [str(c) for c in next(iter(self._csv_reader(nrows=1))).columns]
            self._raw_names = {str(n).strip(): n for n in names}
            names = [str(n).strip() for n in names]
        dupes = sorted(c for c, n in Counter(names).items() if n > 1)
        if dupes:
            raise NetkilnError(f"the header names {', '.join(repr(d) for d in dupes)} more than once", key=self.key,
                               file=str(self.path), line=1 if self.format != "parquet" else None)
        if not names or names == [""]:
            raise NetkilnError("the file has no columns", key=self.key, file=str(self.path))
        return names

    def _parquet(self, file: Path | None = None):
        import pyarrow.parquet as pq

        file = file or (self.files[0] if self.files else self.path)
        try:
            # No pre-buffering: it reads a whole row group's column chunks at once (~2x the memory of a chunk).
            return pq.ParquetFile(file, pre_buffer=False)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise NetkilnError(f"not a readable Parquet file ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})", key=self.key,
                               file=str(file)) from None

    def _parquet_files(self):
        """Each Parquet file with its reader; a file whose columns differ from the first file's is refused."""
        first = self._parquet()
        for file in self.files or [self.path]:
            pf = self._parquet(file) if self.files else first
            if not pf.schema_arrow.equals(first.schema_arrow):
                raise NetkilnError(f"its columns differ from those of {self.files[0].name} "
                                   f"({_schema_change(first, pf)}); every file of a Parquet folder needs the same "
                                   "columns and types", key=self.key, file=str(file))
            yield pf

    def raw_bytes(self) -> int:
        """About what pandas holds when the whole file is read: Parquet's uncompressed size, a text file's size."""
        if self.format == "parquet":
            total = 0
            for file in self.files or [self.path]:
                meta = self._parquet(file).metadata
                total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            return int(total)
        return int(self.path.stat().st_size)

    # --- the rows -----------------------------------------------------------------------------------------
    def chunks(self, columns: list[str] | None = None, text_columns=()) -> Iterator:
        """DataFrames of up to `chunk_rows` rows (only `columns` when given), indexed by data-row number.

        `text_columns` (CSV): read as text in every chunk. pandas types each chunk on its own, so a column with words
        late in the file comes as numbers in early chunks; read whole, it is text throughout ('3.0', not 3.0)."""
        start = 0
        for frame in (self._parquet_chunks(columns) if self.format == "parquet"
                      else self._csv_chunks(columns, text_columns)):
            frame.columns = [str(c).strip() for c in frame.columns]
            frame.index = range(start, start + len(frame))
            start += len(frame)
            yield frame
        if start == 0:
            raise NetkilnError("the file has a header but no data rows", key=self.key, file=str(self.path))

    def _parquet_chunks(self, columns):
        try:
            for pf in self._parquet_files():
                for batch in pf.iter_batches(batch_size=self.chunk_rows, columns=columns, use_threads=False):
                    yield batch.to_pandas()
            import pyarrow as pa
            pa.default_memory_pool().release_unused()       # hand the pass's buffers back to the system
        except NetkilnError:
            raise
        except Exception as err:  # noqa: BLE001 - a corrupt page or row group surfaces while reading
            raise NetkilnError(f"not a readable Parquet file ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})", key=self.key,
                               file=str(self.path)) from None

    def _csv_reader(self, **kwargs):
        import pandas as pd

        return pd.read_csv(self.path, sep=self.sep, na_values=self.na_values, encoding=self.text_encoding,
                           skipinitialspace=True, chunksize=kwargs.pop("chunksize", self.chunk_rows), **kwargs)

    def _csv_chunks(self, columns, text_columns=()):
        import pandas as pd

        try:
            # usecols by name keeps each pass that needs a few columns (the target) cheap in memory.
            reader = self._csv_reader(usecols=(lambda c: str(c).strip() in set(columns)) if columns else None,
                                      dtype={self._raw_names.get(c, c): str for c in text_columns} or None)
            with reader:
                yield from reader
        except pd.errors.EmptyDataError:
            raise NetkilnError("the file is empty (no header line)", key=self.key, file=str(self.path)) from None
        except pd.errors.ParserError as err:
            import re
            msg = str(err).strip()
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
            if m:
                raise NetkilnError(f"expected {m.group(1)} fields (as in the header) but found {m.group(3)}; "
                                   f"check the delimiter and the quoting", key=self.key, file=str(self.path),
                                   line=int(m.group(2))) from None
            raise NetkilnError(f"cannot parse the file: {msg.splitlines()[0] if msg else 'unknown error'}",
                               key=self.key, file=str(self.path)) from None
        except UnicodeDecodeError as err:
            raise NetkilnError(f"the file is not {self.text_encoding} text ({err.reason} at byte {err.start}); "
                               "set data.text_encoding, e.g. data.text_encoding=latin-1", key=self.key,
                               file=str(self.path)) from None
        except LookupError:
            raise NetkilnError(f"unknown text encoding {self.text_encoding!r}", key="data.text_encoding") from None
        except OSError as err:
            raise NetkilnError(f"cannot read the file: {err.strerror or err}", key=self.key,
                               file=str(self.path)) from None


def _schema_change(first, other) -> str:
    """'column 'price' is string here, double there' for the first column that differs."""
    a, b = first.schema_arrow, other.schema_arrow
    for name in a.names:
        if name not in b.names:
            return f"no column {name!r}"
        if not a.field(name).type.equals(b.field(name).type):
            return f"column {name!r} is {b.field(name).type} here, {a.field(name).type} there"
    extra = [n for n in b.names if n not in a.names]
    return f"an extra column {extra[0]!r}" if extra else "the columns are in another order"
