"""A small on-disk cache for generated arrays (never the current working directory)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """`$NETKILN_CACHE_DIR` if set, else `~/.cache/netkiln`."""
    env = os.environ.get("NETKILN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "netkiln"


def cache_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at `path`, or None when missing or unreadable (a corrupt file is regenerated)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError):
        return None
    except Exception:  # zipfile.BadZipFile and friends
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write atomically (temporary file in the same folder, then rename). False when the folder is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
