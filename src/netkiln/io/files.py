"""Atomic file writes: a killed process never leaves a half-written file under a final name."""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def write_error(path: str | os.PathLike, err: OSError):
    """A NetkilnError (exit code 2, no traceback) for a write that the system refused: disk full, no permission."""
    from netkiln.errors import NetkilnError

    detail = err.strerror or str(err)
    reason = _WRITE_HINTS.get(err.errno, detail)
    if reason.lower() != detail.lower():
        reason = f"{reason} ({detail})"
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        # mkdir of a folder on the way that is a file says "File exists": name that file instead.
        blocker = next((d for d in Path(path).parents if d.exists() and not d.is_dir()), None)
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
    advice = " Free some space (or write elsewhere) and run again; files written before this one are intact" \
        if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return NetkilnError(f"cannot write the file: {reason}.{advice}".rstrip(), file=str(path))


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, fsync it, then rename it over `path`.

    A failure leaves `path` as it was (the previous version, or nothing) and removes the temporary file; an
    OSError from the system (disk full, permission denied) becomes a NetkilnError naming `path`.
    """
    path = Path(path)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]   # removed again on failure
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        _remove_empty(created)
        raise write_error(path, err) from err
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)     # mkstemp makes 0600 (and some writers recreate the file)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        _remove_empty(created)
        if isinstance(err, OSError) and err.errno in _WRITE_HINTS:
            raise write_error(path, err) from err
        raise
    return path


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this write created (innermost first) if nothing else was put in them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy/torch scalars as numbers, NaN and infinities as null. (Python's json would write
    them as NaN/Infinity, which no JSON parser but Python's reads.)"""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    return json_safe(_json_default(value))


def _json_default(value: Any) -> Any:
    # numpy / torch scalars end up in metrics; store them as plain numbers.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path` to write a set of files into. When the block ends without an error,
    the folder replaces `path` whole (renamed into place), so `path` holds the old set of files or the new one,
    never a mix; on an error it is removed and `path` stays as it was."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()           # a link to the folder: replace the folder it names, keep the link
    _tidy_stages(path)
    stage = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        if path.exists():
            os.replace(path, old)
        os.replace(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _tidy_stages(path: Path) -> None:
    """Remove the stages of writers that were killed (SIGKILL, power loss); a previous version that a killed
    swap left renamed aside (between its two renames) is put back."""
    from netkiln.io.lock import process_alive

    for stale in sorted(path.parent.glob(f".{glob.escape(path.name)}.*-*")):
        kind, _, pid = stale.name[len(path.name) + 2:].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or not stale.is_dir():
            continue
        if int(pid) == os.getpid() or process_alive(int(pid)):
            continue                                # a writer that is still running
        if kind == "old" and not path.exists():
            os.replace(stale, path)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def csv_text(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as CSV text, quoted by the csv module (a value holding a comma, quote or newline stays one cell)."""
    import csv
    import io

    if columns is None:
        columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
