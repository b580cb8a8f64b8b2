"""Reading and validating a `data` config node."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from netkiln.errors import NetkilnError, did_you_mean

SPLIT_KEYS = ("val", "test", "stratify", "seed", "fold")
COMMON_KEYS = ("name", "split", "standardize", "target_scale")


def to_plain(cfg: Any, seed: int | None = None, path: str = "data") -> dict:
    """Turn a DictConfig (or dict) into plain Python containers, resolving interpolations.

    A `split.seed` that cannot be resolved (``${seed}`` on a node loaded without its root config) is
    replaced by None, so that the caller's `seed` argument is used instead.
    """
    if cfg is None:
        raise NetkilnError("no data config given", key=path)
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if not isinstance(cfg, (DictConfig, ListConfig)):
        if not isinstance(cfg, Mapping):
            raise NetkilnError(f"expected a mapping, got {type(cfg).__name__}", key=path)
        cfg = OmegaConf.create(dict(cfg))
    return _walk(cfg, path)


def _walk(node: Any, path: str) -> Any:
    from omegaconf import DictConfig, ListConfig
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    if isinstance(node, DictConfig):
        out = {}
        for k in node.keys():
            sub = f"{path}.{k}"
            try:
                v = node[k]
            except InterpolationResolutionError as e:
                if sub == "data.split.seed":
                    out[k] = None
                    continue
                raise NetkilnError(f"cannot resolve interpolation: {e.__class__.__name__}: "
                                   f"{str(e).splitlines()[0]}", key=sub) from None
            except MissingMandatoryValue:
                raise NetkilnError("a value is required here ('???')", key=sub) from None
            out[str(k)] = _walk(v, sub)
        return out
    if isinstance(node, ListConfig):
        return [_walk(node[i], f"{path}[{i}]") for i in range(len(node))]
    return node


def check_keys(node: Mapping, allowed: Iterable[str], path: str) -> None:
    allowed = list(allowed)
    for k in node:
        if k not in allowed:
            raise NetkilnError(f"unknown key '{k}'.{did_you_mean(k, allowed)} "
                               f"Valid keys: {', '.join(allowed)}.", key=f"{path}.{k}")


def get_bool(node: Mapping, key: str, default: bool, path: str) -> bool:
    v = node.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise NetkilnError(f"expected true or false, got {v!r}", key=f"{path}.{key}")
    return v


def get_int(node: Mapping, key: str, default: int | None, path: str, minimum: int | None = None) -> int | None:
    v = node.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise NetkilnError(f"expected an integer, got {v!r}", key=f"{path}.{key}")
    if minimum is not None and v < minimum:
        raise NetkilnError(f"must be at least {minimum}, got {v}", key=f"{path}.{key}")
    return v


def get_float(node: Mapping, key: str, default: float | None, path: str) -> float | None:
    v = node.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise NetkilnError(f"expected a number, got {v!r}", key=f"{path}.{key}")
    return float(v)


def get_choice(node: Mapping, key: str, default: str, choices: Iterable[str], path: str) -> str:
    choices = list(choices)
    v = node.get(key, default)
    if v is None:
        v = default
    if v not in choices:
        raise NetkilnError(f"unknown value {v!r}.{did_you_mean(str(v), choices)} "
                           f"Choose one of: {', '.join(choices)}.", key=f"{path}.{key}")
    return v


@dataclass(frozen=True)
class SplitConfig:
    val: float
    test: float | None      # None: the source's own test set is used
    stratify: bool
    seed: int
    fold: Any = None        # netkiln.data.folds.Fold: cross-validation's fold of train + val (cv.folds)


def parse_split(node: Any, *, seed: int, has_own_test: bool, default_val: float = 0.15,
                default_test: float = 0.15, path: str = "data.split") -> SplitConfig:
    node = {} if node is None else node
    if not isinstance(node, Mapping):
        raise NetkilnError(f"expected a mapping with keys {', '.join(SPLIT_KEYS)}, got {node!r}", key=path)
    check_keys(node, SPLIT_KEYS, path)
    val = get_float(node, "val", default_val, path)
    if not 0.0 < val < 1.0:
        raise NetkilnError(f"the validation fraction must be between 0 and 1 (exclusive), got {val}",
                           key=f"{path}.val")
    test = None
    if has_own_test:
        if node.get("test") is not None:
            raise NetkilnError("this dataset has its own test set, which is always used; remove "
                               "'split.test' (only the validation split is carved from the training rows)",
                               key=f"{path}.test")
    else:
        test = get_float(node, "test", default_test, path)
        if not 0.0 < test < 1.0:
            raise NetkilnError(f"the test fraction must be between 0 and 1 (exclusive), got {test}",
                               key=f"{path}.test")
        if val + test >= 1.0:
            raise NetkilnError(f"val ({val}) + test ({test}) = {val + test:g} leaves no training rows; "
                               "the fractions must sum to less than 1", key=f"{path}.val")
    stratify = get_bool(node, "stratify", True, path)
    s = get_int(node, "seed", None, path)
    if s is None:
        s = int(seed)
    from .folds import parse_fold
    return SplitConfig(val=val, test=test, stratify=stratify, seed=s, fold=parse_fold(node.get("fold"), f"{path}.fold"))
