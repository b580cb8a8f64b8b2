"""Categories that a table's training rows did not have, met where the saved preparation meets other rows: the
validation and test rows at training, `evaluate` on another table, `predict`.

Such a value has no one-hot column (it is encoded as all zeros, or -1 when ordinal), so the model sees "none of the
known categories". That is never silent: `data.unknown_categories` says what happens, `warn` (the default: one
warning naming the columns, the values and the row count), `error` (refuse, naming column, value and file) or
`ignore`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

POLICIES = ("warn", "error", "ignore")
SHOWN = 5           # values named per column in a message
# How a Python caller (netkiln.load(RUN).predict(rows, unknown_categories=...)) picks a policy; messages name it
# instead of a config key, which means nothing there. A setting with {} is a template for the value.
PYTHON_KEYWORD = "unknown_categories='{}'"


def set_to(setting: str, value: str) -> str:
    """`data.unknown_categories=warn` for a config key; the template filled for a Python keyword argument."""
    return setting.format(value) if "{}" in setting else f"{setting}={value}"


def key_of(setting: str) -> str:
    """The key an error names: the config key, or the keyword argument's name."""
    return setting.split("=")[0] if "{}" in setting else setting


def _how_to(setting: str) -> str:
    return "pass" if "{}" in setting else "set"


@dataclass
class Unseen:
    """The rows of one categorical column whose value the training rows did not have."""
    column: str
    positions: np.ndarray       # 0-based positions in the prepared frame
    values: np.ndarray          # the unseen value of each of those rows (canonical text)
    known: list[str]            # the training rows' categories

    def counts(self) -> dict[str, int]:
        values, counts = np.unique(self.values.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(values[i]): int(counts[i]) for i in order}


def find(column: str, keys, codes: np.ndarray, known: list[str]) -> Unseen | None:
    """The rows whose category code is -1 (present but not a training category); None when there are none."""
    positions = np.flatnonzero(codes == -1)
    if len(positions) == 0:
        return None
    return Unseen(column, positions, keys.to_numpy(dtype=object)[positions], list(known))


def policy_of(preparation: dict, override: str | None = None, key: str = "data.unknown_categories") -> str:
    """The policy to apply: `override` when given, else the one the model was trained with (warn by default)."""
    policy = override if override is not None else preparation.get("unknown_categories", "warn")
    if policy not in POLICIES:
        from netkiln.errors import did_you_mean
        raise NetkilnError(f"unknown value {policy!r}.{did_you_mean(str(policy), POLICIES)} Choose one of: "
                           f"{', '.join(POLICIES)}.", key=key)
    return policy


def describe(found: list[Unseen]) -> str:
    """"column 'island': 'Atlantis' (2 rows), 'Biscoe2' (1 row); column 'sex': ..." merged over chunks."""
    merged: dict[str, dict[str, int]] = {}
    for u in found:
        counts = merged.setdefault(u.column, {})
        for value, n in u.counts().items():
            counts[value] = counts.get(value, 0) + n
    parts = []
    for column, counts in merged.items():
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{v!r} ({n} row{'s' if n != 1 else ''})" for v, n in ranked[:SHOWN])
        more = f" and {len(ranked) - SHOWN} more values" if len(ranked) > SHOWN else ""
        parts.append(f"column {column!r}: {shown}{more}")
    return "; ".join(parts)


def row_count(found: list[Unseen], offsets: list[int] | None = None) -> int:
    """Rows holding at least one unseen value (a row can hold them in several columns)."""
    offsets = offsets or [0] * len(found)
    rows = [u.positions + off for u, off in zip(found, offsets)]
    return int(len(np.unique(np.concatenate(rows)))) if rows else 0


def refuse(u: Unseen, *, key: str, file: str | None = None, row_label: str = "",
           setting: str = "data.unknown_categories") -> NetkilnError:
    """The error for `data.unknown_categories=error`: the column, the first row's unseen value, its row count."""
    value = str(u.values[0])
    n = u.counts()[value]
    known = ", ".join(u.known[:10]) + (" ..." if len(u.known) > 10 else "")
    others = len(u.positions) - n
    also = f"; {others} more row{'s hold' if others != 1 else ' holds'} other unseen values" if others else ""
    where = "" if file else f" in column {u.column!r}"      # with a file, the error's prefix names the column
    return NetkilnError(f"{row_label}{value!r} ({n} row{'s' if n != 1 else ''}{also}){where} is a category the "
                        f"training rows did not have (they had: {known}). Fix the value, or {_how_to(setting)} "
                        f"{set_to(setting, 'warn')} to encode it as no category", key=key, file=file,
                        column=u.column)


def warn(found: list[Unseen], rows: int, total: int, where: str, setting: str = "data.unknown_categories") -> None:
    log.warning("%s: %d of %d rows hold categories the training rows did not have, encoded as no category (one-hot "
                "all zeros); %s. %s refuses such rows, %s silences this", where, rows, total, describe(found),
                set_to(setting, "error"), set_to(setting, "ignore"))


def row_flags(found: list[Unseen], n: int) -> list[str]:
    """For each of n rows: the columns holding an unseen value, joined by ';' ('' when none)."""
    flags: list[list[str]] = [[] for _ in range(n)]
    for u in found:
        for pos in u.positions:
            flags[int(pos)].append(u.column)
    return [";".join(f) for f in flags]


def apply_policy(found: list[Unseen], policy: str, *, total: int, where: str, key: str, file: str | None = None,
                 tf=None, index=None, setting: str = "data.unknown_categories") -> None:
    """Warn about, refuse or ignore what `find` found; `tf` and the frame's `index` put the error at its line (the
    `index` alone names the row's label); messages say how `setting` picks another policy."""
    if not found or policy == "ignore":
        return
    if policy == "error":
        first = found[0]
        if tf is not None and index is not None:
            err = refuse(first, key=key, file=file, setting=setting)
            raise tf.error(err.message, int(index[first.positions[0]]), key=key, column=first.column)
        label = f"row {index[first.positions[0]]!r}: " if index is not None else ""
        raise refuse(first, key=key, file=file, row_label=label, setting=setting)
    warn(found, row_count(found), total, where, setting)
