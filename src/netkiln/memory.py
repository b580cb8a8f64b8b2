"""Memory estimates checked before allocating: a config or bundle asking for more than the machine has is refused
with the estimate and the key, instead of ending in a MemoryError traceback (or the OOM killer) half-way.

The limit is the memory available now (MemAvailable from /proc/meminfo; physical memory where that file is
missing). Estimates are deliberately simple (bytes of the arrays the step allocates), so the refusal only catches
requests that cannot fit, never ones that merely might not.
"""
from __future__ import annotations

import os

from netkiln.errors import NetkilnError


def available_bytes() -> int | None:
    """Memory the process can still allocate without swapping; None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    for unit in units:
        if n < 1024 or unit == units[-1]:
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def shortfall(nbytes: float) -> str | None:
    """'about 29.8 GiB of memory, more than the 22.1 GiB available on this machine', or None when it fits."""
    limit = available_bytes()
    if limit is None or nbytes <= limit:
        return None
    return f"about {human_bytes(nbytes)} of memory, more than the {human_bytes(limit)} available on this machine"


def check_fits(nbytes: float, what: str, *, key: str | None = None, file: str | None = None,
               advice: str = "") -> None:
    """Refuse when `what` (e.g. "10^9 rows of 8 features") needs more than the available memory."""
    short = shortfall(nbytes)
    if short is not None:
        raise NetkilnError(f"{what} would need {short}{'; ' + advice if advice else ''}.", key=key, file=file)
