"""Config nodes as plain Python containers."""
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
