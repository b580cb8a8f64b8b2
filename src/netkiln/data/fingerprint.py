"""Which data files a run was trained on: absolute paths and content fingerprints, checked again at evaluate.

A relative `data.path` means "relative to the working folder", which is another folder when the run is evaluated
later; the bundle therefore records the absolute path, with the file's size and SHA-256 (of the first and last
MiB for files over 64 MiB, to keep big files cheap), so a file changed or gone since training is reported.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

PATH_KEYS = ("path", "test_path")         # the data config keys that name files or folders
_FULL_HASH_LIMIT = 64 << 20
_EDGE = 1 << 20


def fingerprint(path: Path) -> dict:
    """Size and SHA-256 of a file (first and last MiB of a big one); of a folder, its files' names and sizes."""
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\n".encode())
        return {"files": len(files), "size": sum(f.stat().st_size for f in files),
                "sha256": digest.hexdigest(), "hashed": "file names and sizes"}
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(_EDGE), b""):
                digest.update(block)
            hashed = "all"
        else:
            digest.update(fh.read(_EDGE))
            fh.seek(size - _EDGE)
            digest.update(fh.read(_EDGE))
            hashed = "first and last MiB"
    return {"size": size, "sha256": digest.hexdigest(), "hashed": hashed}


def pin_data_files(data: Any) -> dict:
    """Make the data config's file paths absolute (in place) and return {key: {"path", "size", "sha256", ...}}.

    Called before the data is read, so the fingerprints describe the files training reads. Paths that do not
    exist are left as they are: loading the data reports them."""
    from omegaconf.errors import OmegaConfBaseException

    records = {}
    for key in PATH_KEYS:
        try:
            value = data.get(key) if hasattr(data, "get") else None
        except OmegaConfBaseException:
            continue            # a broken interpolation: loading the data reports it
        if not isinstance(value, str) or not value.strip():
            continue
        path = Path(os.path.abspath(Path(value).expanduser()))
        if not path.exists():
            continue
        data[key] = str(path)
        try:
            records[key] = {"path": str(path), **fingerprint(path)}
        except OSError:
            continue            # unreadable: loading the data reports it with the file and the reason
    return records


def check_data_files(records: dict | None) -> None:
    """Before evaluating on the run's own data: an error when a recorded file is gone, a warning when it changed."""
    for key, record in (records if isinstance(records, dict) else {}).items():
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            continue                                # not a record this netkiln wrote: nothing to compare
        path = Path(record["path"])
        if not path.exists():
            raise NetkilnError("the run's data is gone: it was trained on this path. Put the data back there, or "
                               "evaluate on other data with data=... (and data.path=...).", key=f"data.{key}",
                               file=str(path))
        now = fingerprint(path)
        if now.get("size") != record.get("size") or now.get("sha256") != record.get("sha256"):
            log.warning("%s (data.%s) changed since the run was trained on it (size %s then, %s now; contents "
                        "differ): the metrics are of the data as it is now", path, key, record.get("size"),
                        now.get("size"))
