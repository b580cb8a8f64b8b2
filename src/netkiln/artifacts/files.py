"""Atomic file writes: a killed process never leaves a half-written file under a final name."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


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

    reason = _WRITE_HINTS.get(err.errno, err.strerror or str(err))
    advice = " Free some space (or write elsewhere) and run again; files written before this one are intact" \
        if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return NetkilnError(f"cannot write the file: {reason} ({err.strerror or err}).{advice}".rstrip(),
                        file=str(path))


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
    return write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy / torch scalars end up in metrics; store them as plain numbers.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
