"""The one user-facing error type: a one-paragraph message, exit code 2, no traceback."""
from __future__ import annotations

import difflib
import re
from typing import Iterable

# NumPy 2 reprs scalars as `np.float64(inf)`; messages quote values with !r, so show them as plain numbers.
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|complex|str|bytes)_?\d*\(([^()]*)\)|\bnp\.(True|False)_")


class NetkilnError(Exception):
    """An error caused by the user's input (config, data file, run directory).

    `key` is the config path (``model.layers[3].kernel_size``), `file`/`line`/`column` locate a
    problem in a data file. The CLI prints `str(err)` and exits with code 2.
    """

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None,
                 line: int | None = None, column: str | None = None):
        self.message = message
        self.key = key
        self.file = file
        self.line = line
        self.column = column
        super().__init__(_NUMPY_SCALAR.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), self._format()))

    def _format(self) -> str:
        where = []
        if self.key:
            where.append(self.key)
        if self.file:
            loc = str(self.file)
            if self.line is not None:
                loc += f", line {self.line}"
            if self.column is not None:
                loc += f", column '{self.column}'"
            where.append(loc)
        prefix = f"{' / '.join(where)}: " if where else ""
        return prefix + self.message


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when nothing is close.

    The same name in other case wins; then ties (conv1d vs conv2d for 'convd1') go to the fewest edits, so swapped
    letters find the intended name."""
    name = str(name)
    pool = sorted(set(map(str, choices)))
    same = [c for c in pool if c.lower() == name.lower()]
    if same:
        return f" Did you mean '{same[0]}'?"
    close = difflib.get_close_matches(name, pool, n=6, cutoff=0.6)
    close += [c for c in pool if c not in close and _osa(name, c) <= max(1, len(name) // 4)]
    if not close:
        return ""
    best = min(close, key=lambda c: (_osa(name, c), -difflib.SequenceMatcher(None, name, c).ratio()))
    return f" Did you mean '{best}'?"


def _osa(a: str, b: str) -> int:
    """Edit distance counting an adjacent swap as one edit (convd1 -> conv1d is 1)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


class UserErrorAbort(BaseException):
    """Carries a NetkilnError through code that swallows `Exception` (Hydra's callback runner warns
    and continues on any Exception, but a refused sweep must stop)."""

    def __init__(self, error: NetkilnError):
        self.error = error
        super().__init__(str(error))
