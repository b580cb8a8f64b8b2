"""YAML from places netkiln does not control (a bundle's config.yaml, a sweep trial's .hydra/overrides.yaml).

`yaml.safe_load` builds no Python objects, but it still follows anchors and aliases: a few hundred bytes of nested
aliases ("billion laughs") stand for millions of nodes, and every later walk over the result (to_container,
OmegaConf, the _target_ check) expands them. netkiln never writes anchors into these files, so the loader here
refuses anchors and aliases outright, and caps the file's size, its node count and its nesting depth (deep nesting
would otherwise end in a RecursionError). Refusals are `yaml.YAMLError`s, so callers' existing handlers report them.
"""
from __future__ import annotations

import os
from typing import Any

import yaml
from yaml.events import AliasEvent

MAX_BYTES = 8 << 20        # a bundle config is a few KiB; a sweep's overrides.yaml less
MAX_NODES = 500_000
MAX_DEPTH = 100


class UnsafeYAMLError(yaml.MarkedYAMLError):
    """YAML refused for its shape (aliases, size, depth), not its syntax."""


class _CappedLoader(yaml.SafeLoader):
    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def __init__(self, stream):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise UnsafeYAMLError(problem="anchors and aliases (&name, *name, <<: *name) are not allowed in this "
                                  "file; write the values out", problem_mark=event.start_mark)
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise UnsafeYAMLError(problem=f"more than {self.max_nodes} values; refusing to read further",
                                  problem_mark=event.start_mark)
        self._depth += 1
        if self._depth > self.max_depth:
            raise UnsafeYAMLError(problem=f"nested more than {self.max_depth} levels deep",
                                  problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def safe_load(text: str) -> Any:
    """Like yaml.safe_load, but refusing anchors/aliases and capping size, node count and depth."""
    if len(text) > MAX_BYTES:
        raise UnsafeYAMLError(problem=f"the YAML is larger than {MAX_BYTES >> 20} MiB")
    loader = _CappedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def safe_load_file(path: str | os.PathLike) -> Any:
    """safe_load of a UTF-8 file, read no further than the size cap. Raises OSError or yaml.YAMLError."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UnsafeYAMLError(problem=f"the file is larger than {MAX_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnsafeYAMLError(problem=f"the file is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return safe_load(text)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def safe_dump(data: Any, **kwargs) -> str:
    """yaml.safe_dump that writes a value shared by two keys out twice, never as an alias safe_load would refuse."""
    return yaml.dump(data, Dumper=_NoAliasDumper, **kwargs)
