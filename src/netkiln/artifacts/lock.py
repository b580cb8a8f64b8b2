"""One sweep per sweep directory: a second concurrent sweep is refused, not allowed to overwrite."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from netkiln.errors import NetkilnError

LOCK_NAME = ".sweep.lock"
# Locks this process holds: released at the end of the sweep, or by release_all() when the sweep
# stopped on an error before Hydra's end-of-sweep callback ran.
_held: set[Path] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(sweep_dir: str | os.PathLike) -> Path:
    """Create the lock file atomically; take over a lock whose process is gone."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = sweep_dir / LOCK_NAME
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if pid and host == socket.gethostname() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)          # stale: left by a killed sweep
                continue
            raise NetkilnError(f"another sweep (pid {pid} on {host}) is running in this directory; wait for it "
                               f"or choose another hydra.sweep.dir. If it is gone, delete {lock}.",
                               file=str(sweep_dir)) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(record)
        _held.add(lock)
        return lock
    raise NetkilnError("could not take the sweep lock.", file=str(lock))


def release(sweep_dir: str | os.PathLike) -> None:
    lock = Path(sweep_dir) / LOCK_NAME
    _held.discard(lock)
    try:
        if json.loads(lock.read_text()).get("pid") == os.getpid():
            lock.unlink()
    except (OSError, json.JSONDecodeError):
        pass


def release_all() -> None:
    for lock in list(_held):
        release(lock.parent)
