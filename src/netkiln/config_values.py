"""Config values as plain Python: containers from OmegaConf nodes, and the integer checks every layer shares."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def to_container(node: Any) -> Any:
    """OmegaConf containers (also nested in plain dicts/lists) -> plain dicts/lists, interpolations resolved.

    The omegaconf import is lazy so plain-dict callers (the compiler behind `netkiln summary`) don't pay for it.
    """
    if type(node).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {k: to_container(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_container(v) for v in node]
    return node


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)       # YAML/JSON `true` must not pass as 1


def is_positive_int(v: Any) -> bool:
    return is_int(v) and v >= 1


def positive_int(value: Any, key: str) -> int:
    """`value` if it is an integer >= 1; otherwise a config error naming `key`."""
    if not is_positive_int(value):
        from netkiln.errors import NetkilnError
        raise NetkilnError(f"must be a positive integer, not {value!r}.", key=key)
    return value
