"""A writer thread for the run directory's files (history.csv, checkpoints).

The bytes are produced on the training thread (so they are a snapshot of that moment), and the atomic write
(temporary file, fsync, rename) runs beside training instead of stalling it: on a local disk each write waits
milliseconds for the device, as long as a small model's epoch. Writes keep their order; every pending write is
finished, and its error raised, before `fit` returns.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("netkiln")


class BackgroundWriter:
    """Runs file writes in one background thread, in submission order."""

    def __init__(self):
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, fn, *args) -> None:
        self._check(block=False)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netkiln-writer")
        self._pending.append(self._executor.submit(fn, *args))

    def _check(self, block: bool) -> None:
        """Drop finished writes; raise the first error. With block, wait for all of them."""
        pending, self._pending = self._pending, []
        error = None
        for future in pending:
            if not block and not future.done():
                self._pending.append(future)
            elif error is None and future.exception() is not None:
                error = future.exception()
        if error is not None:
            raise error

    def flush(self) -> None:
        """Wait for every pending write; raise the first error."""
        self._check(block=True)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def close_quietly(self) -> None:
        """Finish pending writes while another error is on its way (log, don't mask it)."""
        try:
            self.close()
        except Exception as err:  # noqa: BLE001
            log.error("could not write a file of the run directory: %s", err)
