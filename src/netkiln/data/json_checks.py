"""Value checks of saved JSON (a bundle's preprocessing.json, meta.json, config.yaml): each returns the value or
raises `BadEntry` naming the entry, what netkiln wrote there and what the file holds instead.

They sit in the data layer because each preparation kind checks its own saved JSON (`Preparation.check_json`);
`artifacts.bundle_schema` turns a `BadEntry` into the user's error with the file.
"""
from __future__ import annotations

import math
from typing import Any

from netkiln.config_values import is_int

SCALES = ("none", "standard", "minmax")


class BadEntry(Exception):
    """An entry of the file that does not hold what netkiln wrote there."""

    def __init__(self, where: str, expected: str, value: Any):
        import json

        shown = json.dumps(value, default=str)          # as the file spells it: true, "8", [1, 2]
        super().__init__(f"{where}: expected {expected}, got {shown[:80]}{'...' if len(shown) > 80 else ''}")


def integer(v: Any, where: str, minimum: int = 0) -> int:
    if not is_int(v) or v < minimum:
        raise BadEntry(where, f"an integer of at least {minimum}", v)
    return v


def number(v: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise BadEntry(where, "a positive finite number" if positive else "a finite number", v)
    return float(v)


def numbers(v: Any, where: str, length: int, what: str, *, positive: bool = False) -> None:
    if not isinstance(v, list) or len(v) != length:
        raise BadEntry(where, f"a list of {length} numbers ({what})", v)
    for i, item in enumerate(v):
        number(item, f"{where}[{i}]", positive=positive)


def shape(v: Any, where: str) -> tuple:
    if not isinstance(v, list) or not 1 <= len(v) <= 3 or not all(is_int(d) and d >= 1 for d in v):
        raise BadEntry(where, "a list of 1 to 3 positive integers", v)
    return tuple(v)


def strings(v: Any, where: str, length: int | None = None) -> list:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v) or (length is not None and len(v) != length):
        raise BadEntry(where, "a list of " + (f"{length} " if length is not None else "") + "strings", v)
    return v


def choice(v: Any, where: str, choices: tuple) -> Any:
    if v not in choices:
        raise BadEntry(where, " or ".join(repr(c) for c in choices), v)
    return v


def mapping(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise BadEntry(where, "a mapping", v)
    return v


def scale(s: dict, where: str) -> None:
    """A column's scaling: standard (mean, std) or minmax (min, max)."""
    method = choice(s.get("method"), f"{where}.method", SCALES)
    if method == "standard":
        number(s.get("mean"), f"{where}.mean")
        number(s.get("std"), f"{where}.std", positive=True)
    elif method == "minmax":
        number(s.get("min"), f"{where}.min")
        number(s.get("max"), f"{where}.max")
