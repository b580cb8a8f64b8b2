"""One netkiln process per run or sweep directory: a second one is refused, not allowed to overwrite or mix records.

The lock is a small JSON file (pid, host) created with O_EXCL in the directory. A lock whose process is gone
(killed, power loss) is stale and taken over, so a killed run can be resumed and a killed sweep continued.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from netkiln.errors import NetkilnError

# kind -> (lock file, the setting that chooses the directory, what runs in it)
KINDS = {"sweep": (".sweep.lock", "hydra.sweep.dir", "sweep"),
         "run": (".run.lock", "hydra.run.dir", "training run")}
# Locks this process holds: released at the end of the run or sweep, or by release_all() when it stopped on
# an error before Hydra's end callback ran.
_held: set[Path] = set()
# Directories acquire() made: removed again on release while still empty, so a sweep refused before it wrote
# anything (a bad hydra.sweeper setting) leaves no empty folder behind.
_made: set[Path] = set()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(directory: str | os.PathLike, kind: str = "sweep") -> Path:
    """Create the lock file atomically; take over a lock whose process is gone."""
    name, setting, activity = KINDS[kind]
    directory = Path(directory)
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / name
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
            if pid and host == socket.gethostname() and not process_alive(int(pid)):
                lock.unlink(missing_ok=True)          # stale: left by a killed process
                continue
            raise NetkilnError(f"another netkiln process (pid {pid} on {host}) is using this directory: another "
                               f"{activity} is running in it. Wait for it or choose another {setting}. If that "
                               f"process is gone, delete {lock}.", file=str(directory)) from None
        with os.fdopen(fd, "w") as fh:
            fh.write(record)
        _held.add(lock)
        if made:
            _made.add(directory)
        return lock
    raise NetkilnError(f"could not take the {kind} lock.", file=str(lock))


def release(directory: str | os.PathLike, kind: str = "sweep") -> None:
    _unlock(Path(directory) / KINDS[kind][0])


def release_all() -> None:
    for lock in list(_held):
        _unlock(lock)


def _unlock(lock: Path) -> None:
    """Remove the lock if this process holds it (never another process's)."""
    _held.discard(lock)
    try:
        if json.loads(lock.read_text()).get("pid") == os.getpid():
            lock.unlink()
    except (OSError, json.JSONDecodeError):
        pass
    if lock.parent in _made:
        _made.discard(lock.parent)
        try:
            lock.parent.rmdir()         # only succeeds while it is empty
        except OSError:
            pass
