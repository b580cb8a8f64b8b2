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


DEFAULT_BUDGET_SHARE = 0.5      # data.memory_budget: null -> this share of the memory available now
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_budget(value, key: str = "data.memory_budget") -> int:
    """A memory budget in bytes: '256MB', '2GB', '512MiB', a number of bytes, or a fraction (0, 1] of the memory
    available now; None -> DEFAULT_BUDGET_SHARE of it."""
    import re

    if value is None or (isinstance(value, float) and 0 < value <= 1):
        share = DEFAULT_BUDGET_SHARE if value is None else float(value)
        available = available_bytes()
        if available is None:
            raise NetkilnError("this system does not say how much memory is available; give the budget in bytes, "
                               "e.g. 2GB", key=key)
        return int(available * share)
    if isinstance(value, bool):
        raise NetkilnError(f"expected a size such as 256MB or 2GB, or a fraction such as 0.5, got {value!r}", key=key)
    if isinstance(value, (int, float)):
        if value <= 0:
            raise NetkilnError(f"must be more than 0, got {value!r}", key=key)
        if value != int(value):     # 1.5 is neither a fraction of the memory nor a number of bytes
            raise NetkilnError(f"{value!r} is neither a fraction of the available memory (more than 0, at most 1) "
                               "nor a whole number of bytes; write e.g. 0.5 or 256MB", key=key)
        return int(value)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise NetkilnError(f"expected a size such as 256MB, 2GB or 512MiB, or a fraction such as 0.5, got "
                           f"{value!r}", key=key)
    return int(float(m.group(1)) * _UNITS[unit])
