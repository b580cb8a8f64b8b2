"""Reading a prediction input in chunks: CSV/TSV and Parquet as DataFrames, NPZ/NPY as arrays, a text file of
lines (a text model's input, one text a line) as lists of strings, image files (an image model's input: one
image, a folder of them, or a .txt list of their paths) as lists of paths, decoded by the preparation a chunk at a time.

Nothing here holds the whole file: CSV is parsed `chunk_rows` rows at a time, Parquet is read by record batches,
an NPZ member is decoded straight from its (possibly compressed) zip stream and an NPY file is memory-mapped.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from netkiln.errors import NetkilnError

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
ARRAY_SUFFIXES = {".npz": "npz", ".npy": "npy"}
FORMATS = ("csv", "tsv", "parquet", "npz", "npy", "lines", "images")


@dataclass
class Chunk:
    start: int          # 0-based index of the chunk's first data row
    data: Any           # a pandas DataFrame (tables) or a numpy array (arrays)
    names: list | None = None   # image files: each row's path, as the output's `file` column shows it


@dataclass
class InputFile:
    path: Path
    format: str         # csv | tsv | parquet | npz | npy | lines | images
    key: str = "input"
    npz_key: str | None = None

    @property
    def is_table(self) -> bool:
        return self.format in ("csv", "tsv", "parquet")

    @property
    def holds(self) -> str:
        """What its chunks hold, as a preparation's `file_refusal` asks: "table", "arrays", "lines" or "images"."""
        return "table" if self.is_table else self.format if self.format in ("lines", "images") else "arrays"

    def rows(self) -> int | None:
        """The number of data rows, when cheap to know (for the progress bar)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq
            return pq.ParquetFile(self.path).metadata.num_rows
        if self.format in ("npz", "npy"):
            shape = self._array_header()[0]
            return int(shape[0]) if shape else 0
        if self.format == "images":
            return len(self.images)
        return _count_lines(self.path) - (self.format != "lines")        # a table's header line

    def chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        reader = {"csv": self._text_chunks, "tsv": self._text_chunks, "parquet": self._parquet_chunks,
                  "npz": self._npz_chunks, "npy": self._npy_chunks, "lines": self._line_chunks,
                  "images": self._image_chunks}[self.format]
        yield from reader(chunk_rows)

    # ------------------------------------------------------------------------------------------------ tables
    def _text_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        import pandas as pd

        sep = "\t" if self.format == "tsv" else ","
        try:
            reader = pd.read_csv(self.path, sep=sep, chunksize=chunk_rows, skipinitialspace=True)
            start = 0
            for frame in reader:
                frame.columns = [str(c).strip() for c in frame.columns]
                frame.index = range(start, start + len(frame))
                yield Chunk(start, frame)
                start += len(frame)
        except pd.errors.EmptyDataError:
            raise NetkilnError("the file is empty (no header line)", key=self.key, file=str(self.path)) from None
        except pd.errors.ParserError as err:
            msg = " ".join(str(err).split())
            raise NetkilnError(f"cannot parse the file: {msg}", key=self.key, file=str(self.path)) from None
        except UnicodeDecodeError as err:
            raise NetkilnError(f"the file is not UTF-8 text ({err.reason} at byte {err.start})", key=self.key,
                               file=str(self.path)) from None

    def _parquet_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise NetkilnError(f"not a readable Parquet file ({type(err).__name__}: {err})", key=self.key,
                               file=str(self.path)) from None
        start = 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            frame.columns = [str(c).strip() for c in frame.columns]
            frame.index = range(start, start + len(frame))
            yield Chunk(start, frame)
            start += len(frame)

    def _line_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        """One text a line, UTF-8. A blank line is refused with its number: skipping it would shift every later
        prediction against the input's lines. Blank lines at the end (as editors often save a file) are ignored."""
        start, batch, blank = 0, [], None         # blank: the first empty line since the last text
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    text = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise NetkilnError(f"the line is not UTF-8 text ({err.reason}: {raw[err.start:err.end]!r})",
                                       key=self.key, file=str(self.path), line=number) from None
                if not text.strip():
                    blank = blank or number
                    continue
                if blank:                       # a text after it: the empty line is in the middle
                    raise NetkilnError("the line is empty; give one text a line (every line gets a prediction, "
                                       "in order)", key=self.key, file=str(self.path), line=blank)
                batch.append(text)
                if len(batch) == chunk_rows:
                    yield Chunk(start, batch)
                    start, batch = start + len(batch), []
        if blank == 1:
            raise NetkilnError("the file has only empty lines; give one text a line", key=self.key,
                               file=str(self.path))
        if batch:
            yield Chunk(start, batch)

    # ------------------------------------------------------------------------------------------------ images
    @cached_property
    def images(self) -> list[tuple[Path, str]]:
        return image_files(self.path, self.key)

    def _image_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        """The files' paths, `chunk_rows` at a time: the preparation decodes each chunk (nothing more in memory)."""
        for start in range(0, len(self.images), chunk_rows):
            part = self.images[start:start + chunk_rows]
            yield Chunk(start, [f for f, _ in part], [name for _, name in part])

    # ------------------------------------------------------------------------------------------------ arrays
    def _npz_member(self) -> str:
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        except (zipfile.BadZipFile, OSError) as err:
            raise NetkilnError(f"not a readable .npz file ({err})", key=self.key, file=str(self.path)) from None
        if self.npz_key:
            if self.npz_key not in names:
                raise NetkilnError(f"the file has no array {self.npz_key!r}; arrays: {', '.join(names) or 'none'}",
                                   key="npz_key", file=str(self.path))
            return self.npz_key
        if "x" in names:
            return "x"
        if len(names) == 1:
            return names[0]
        raise NetkilnError(f"the file holds several arrays ({', '.join(names)}) and none is named 'x'; choose one "
                           "with npz_key=NAME", key="npz_key", file=str(self.path))

    def _array_header(self):
        """(shape, fortran_order, dtype) of the array to predict on, read without loading it."""
        if self.format == "npy":
            with open(self.path, "rb") as fh:
                return _read_header(fh, self.path, self.key)
        member = self._npz_member()
        with zipfile.ZipFile(self.path) as zf, zf.open(member + ".npy") as fh:
            return _read_header(fh, self.path, self.key)

    def _npy_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        shape, _, dtype = self._array_header()
        _check_dtype(dtype, self.path, self.key)
        arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        if arr.ndim == 0:
            raise NetkilnError("expected an array of rows, got a scalar", key=self.key, file=str(self.path))
        for start in range(0, len(arr), chunk_rows):
            yield Chunk(start, np.array(arr[start:start + chunk_rows]))

    def _npz_chunks(self, chunk_rows: int) -> Iterator[Chunk]:
        member = self._npz_member()
        with zipfile.ZipFile(self.path) as zf, zf.open(member + ".npy") as fh:
            shape, fortran, dtype = _read_header(fh, self.path, self.key)
            _check_dtype(dtype, self.path, self.key)
            if not shape:
                raise NetkilnError(f"array {member!r} is a scalar, not rows", key=self.key, file=str(self.path))
            if fortran and len(shape) > 1:
                # Column-major data cannot be streamed by rows: read it whole (rare: numpy writes C order).
                arr = np.load(self.path, allow_pickle=False)[member]
                for start in range(0, len(arr), chunk_rows):
                    yield Chunk(start, np.ascontiguousarray(arr[start:start + chunk_rows]))
                return
            row_items = int(np.prod(shape[1:], dtype=np.int64))
            row_bytes = row_items * dtype.itemsize
            n = shape[0]
            for start in range(0, n, chunk_rows):
                rows = min(chunk_rows, n - start)
                buf = _read_exact(fh, rows * row_bytes, self.path, self.key)
                yield Chunk(start, np.frombuffer(buf, dtype=dtype).reshape((rows, *shape[1:])))


def _read_header(fh, path: Path, key: str):
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
        else:
            shape, fortran, dtype = npformat._read_array_header(fh, version)  # noqa: SLF001 - format 3.0
    except ValueError as err:
        raise NetkilnError(f"not a readable .npy array ({err})", key=key, file=str(path)) from None
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _check_dtype(dtype: np.dtype, path: Path, key: str) -> None:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise NetkilnError(f"expected a numeric array, got dtype {dtype} (object arrays would need pickle, which "
                           "netkiln never loads)", key=key, file=str(path))


def _read_exact(fh, n: int, path: Path, key: str) -> bytes:
    parts, got = [], 0
    while got < n:
        block = fh.read(n - got)
        if not block:
            raise NetkilnError("the array data ends early (truncated file)", key=key, file=str(path))
        parts.append(block)
        got += len(block)
    return b"".join(parts) if len(parts) > 1 else parts[0]


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                break
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def image_files(path: Path, key: str = "input") -> list[tuple[Path, str]]:
    """(file to read, name for the output) of each image an input names, in order: one image file; a folder's images
    (.png, .jpg, ...), its sub-folders' too, sorted by path, hidden files and folders skipped; or a .txt file of
    paths, one a line (blank lines skipped), relative to the .txt's folder and named as written."""
    from netkiln.data.images import IMAGE_SUFFIXES

    if path.is_dir():
        found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(path).parts))
        if not found:
            raise NetkilnError(f"the folder holds no images ({', '.join(IMAGE_SUFFIXES)}), in it or its "
                               "sub-folders", key=key, file=str(path))
        return [(f, str(f)) for f in found]
    if path.suffix.lower() != ".txt":
        return [(path, str(path))]
    out = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            name = line.strip()
            if name:
                f = path.parent / Path(name).expanduser()
                if not f.is_file():
                    raise NetkilnError(f"image file not found: {name} (a path in the list is relative to the list's "
                                       "folder)", key=key, file=str(path), line=number)
                out.append((f, name))
    if not out:
        raise NetkilnError("the list names no image files (one path a line)", key=key, file=str(path))
    return out


def open_input(path: Any, *, key: str = "input", format: str | None = None, npz_key: str | None = None) -> InputFile:
    """Check the input path and tell its format from `format` or the extension."""
    if path is None or (isinstance(path, str) and not path.strip()):
        raise NetkilnError("no input file given; set input=<file.csv|.parquet|.npz>", key=key)
    p = Path(str(path)).expanduser()
    if not p.exists():
        from netkiln.errors import did_you_mean
        hint = ""
        if p.parent.is_dir():
            hint = did_you_mean(p.name, [c.name for c in p.parent.iterdir()])
        raise NetkilnError(f"file not found.{hint}", key=key, file=str(p))
    from netkiln.data.images import IMAGE_SUFFIXES

    known = {**TABLE_SUFFIXES, **ARRAY_SUFFIXES, **dict.fromkeys(IMAGE_SUFFIXES, "images")}
    fmt = format if format not in (None, "", "auto") else "images" if p.is_dir() else known.get(p.suffix.lower())
    if fmt not in FORMATS:
        raise NetkilnError(f"cannot tell the input format from '{p.suffix}'; use a .csv, .tsv, .parquet, .npz, .npy "
                           "or (text models) .txt file, (image models) an image, a folder of them or a .txt list of "
                           "their paths, or set input_format=csv|tsv|parquet|npz|npy|lines|images", key=key,
                           file=str(p))
    if p.is_dir() and fmt != "images":
        raise NetkilnError("expected a file, but this is a folder", key=key, file=str(p))
    if not p.is_dir() and p.stat().st_size == 0:
        raise NetkilnError("the file is empty", key=key, file=str(p))
    return InputFile(p, fmt, key, npz_key)


def for_model(file: InputFile, reads_lines: bool, explicit_format: str | None = None) -> InputFile:
    """A .txt file holds one input a line (a text) for a model whose preparation reads lines, unless the user named
    its format; for other models it stays CSV, as before."""
    if reads_lines and file.format == "csv" and file.path.suffix.lower() == ".txt" \
            and explicit_format in (None, "", "auto"):
        return InputFile(file.path, "lines", file.key, file.npz_key)
    return file


def for_images(file: InputFile, reads_images: bool, explicit_format: str | None = None) -> InputFile:
    """A .txt file lists image paths, one a line, for a model trained on images, unless the user named its format."""
    if reads_images and file.path.suffix.lower() == ".txt" and explicit_format in (None, "", "auto"):
        return InputFile(file.path, "images", file.key)
    return file
