"""Argument schemas: each checker returns the normalised value or raises ValueError("must be ...")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from netkiln.config_values import is_int, is_positive_int
from netkiln.errors import did_you_mean

from .activations import ACTIVATION_NAMES

REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    name: str
    check: Callable[[Any], Any]
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(v: Any) -> int:
    if not is_positive_int(v):
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def nonneg_int(v: Any) -> int:
    if not is_int(v) or v < 0:
        raise ValueError(f"must be a non-negative integer, got {v!r}")
    return v


def integer(v: Any) -> int:
    if not is_int(v):
        raise ValueError(f"must be an integer, got {v!r}")
    return v


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def rate(v: Any) -> float:
    """A dropout probability: 0 <= rate < 1."""
    if not _is_number(v) or not 0 <= v < 1:
        raise ValueError(f"must be a number in [0, 1), got {v!r}")
    return float(v)


def positive_float(v: Any) -> float:
    if not _is_number(v) or v <= 0:
        raise ValueError(f"must be a positive number, got {v!r}")
    return float(v)


def nonneg_float(v: Any) -> float:
    if not _is_number(v) or v < 0:
        raise ValueError(f"must be a non-negative number, got {v!r}")
    return float(v)


def tuple_of(check: Callable[[Any], int], n: int) -> Callable[[Any], tuple]:
    """An int (used for every axis) or a list of `n` ints, as Keras accepts for kernel_size etc."""
    def _check(v: Any) -> tuple:
        if isinstance(v, (list, tuple)):
            if len(v) != n:
                raise ValueError(f"must be one integer or a list of {n}, got {list(v)!r}")
            try:
                return tuple(check(x) for x in v)
            except ValueError as e:
                raise ValueError(f"{e} (in {list(v)!r})") from None
        return (check(v),) * n
    return _check


def padding(n: int) -> Callable[[Any], Any]:
    """'same', 'valid', or explicit symmetric padding per axis (int or list of n ints)."""
    ints = tuple_of(nonneg_int, n)

    def _check(v: Any) -> Any:
        if isinstance(v, str):
            if v.lower() in ("same", "valid"):
                return v.lower()
            raise ValueError(f"must be 'same', 'valid' or an integer, got {v!r}."
                             + did_you_mean(v.lower(), ["same", "valid"]))
        try:
            return ints(v)
        except ValueError:
            raise ValueError(f"must be 'same', 'valid' or a non-negative integer, got {v!r}") from None
    return _check


def activation(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"must be an activation name, got {v!r}")
    name = v.lower()
    if name not in ACTIVATION_NAMES:
        raise ValueError(f"must be a known activation name, got {v!r}." + did_you_mean(name, ACTIVATION_NAMES)
                         + f" Known: {', '.join(ACTIVATION_NAMES)}")
    return name


def target_shape(v: Any) -> tuple:
    """Reshape target: positive ints, at most one -1 (inferred), like Keras."""
    if is_int(v):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError(f"must be a list of integers, got {v!r}")
    if not all(is_int(d) and (d > 0 or d == -1) for d in v):
        raise ValueError(f"must be a list of positive integers (one may be -1), got {list(v)!r}")
    if list(v).count(-1) > 1:
        raise ValueError(f"may contain at most one -1, got {list(v)!r}")
    return tuple(v)
