"""Data for netkiln: built-in and generated sources, seeded splits, standardisation fitted on train only.

    from netkiln.data import load_dataset, Dataset
    ds = load_dataset(cfg.data, seed=cfg.seed)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from netkiln.errors import NetkilnError, did_you_mean

from .config import COMMON_KEYS, check_keys, get_bool, parse_split, to_plain
from .dataset import LAYOUTS, Dataset
from .preprocess import apply_standardize, fit_standardize
from .sources import SOURCES, RawSource, SourceSpec, register_source
from .split import make_split

__all__ = ["Dataset", "load_dataset", "known_datasets", "register_source", "SourceSpec", "RawSource", "LAYOUTS"]


def known_datasets() -> list[str]:
    return sorted(SOURCES)


def load_dataset(data_cfg: Any, seed: int = 0) -> Dataset:
    """Load, split and prepare the dataset described by the composed `data` config node.

    `seed` is used for the split unless the node gives `split.seed` (``${seed}`` in the shipped configs resolves
    to the run's top-level seed; on a node detached from its root config the `seed` argument is used instead).
    """
    node = to_plain(data_cfg)
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise NetkilnError(f"no dataset name given; known datasets: {', '.join(known_datasets())}",
                           key="data.name")
    spec = SOURCES.get(name)
    if spec is None:
        raise NetkilnError(f"unknown dataset '{name}'.{did_you_mean(name, SOURCES)} "
                           f"Known datasets: {', '.join(known_datasets())}.", key="data.name")
    check_keys(node, COMMON_KEYS + spec.extra_keys, "data")
    standardize = get_bool(node, "standardize", spec.standardize, "data")

    raw = spec.load(node, "data")
    has_own_test = raw.x_test is not None
    split = parse_split(node.get("split"), seed=seed, has_own_test=has_own_test,
                        default_val=spec.split_val, default_test=spec.split_test)
    stratify = split.stratify and raw.task.is_classification
    idx = make_split(len(raw.x), val=split.val, test=split.test, seed=split.seed,
                     stratify_labels=raw.y if stratify else None)

    x_tr, y_tr = raw.x[idx["train"]], raw.y[idx["train"]]
    x_va, y_va = raw.x[idx["val"]], raw.y[idx["val"]]
    if has_own_test:
        x_te, y_te = raw.x_test, raw.y_test
        test_idx = list(range(len(raw.x_test)))
    else:
        x_te, y_te = raw.x[idx["test"]], raw.y[idx["test"]]
        test_idx = idx["test"].tolist()

    preprocessing: dict[str, Any] = {}
    if standardize:
        stats = fit_standardize(x_tr, raw.layout)
        preprocessing["standardize"] = stats
        x_tr, x_va, x_te = (apply_standardize(a, stats) for a in (x_tr, x_va, x_te))

    info = dict(raw.info)
    info.update({"split": {"val": split.val, "test": split.test, "stratify": stratify, "seed": split.seed,
                           "own_test_set": has_own_test}})
    if has_own_test:
        info["split_indices_note"] = ("train/val index the source's training rows; test indexes the source's "
                                      "own test set")

    def xt(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def yt(a: np.ndarray) -> torch.Tensor:
        if raw.task.is_classification:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64).reshape(-1))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), -1))

    return Dataset(
        name=name,
        x_train=xt(x_tr), y_train=yt(y_tr), x_val=xt(x_va), y_val=yt(y_va), x_test=xt(x_te), y_test=yt(y_te),
        task=raw.task, input_shape=tuple(int(s) for s in raw.x.shape[1:]), layout=raw.layout,
        feature_names=raw.feature_names,
        split_indices={"train": idx["train"].tolist(), "val": idx["val"].tolist(), "test": test_idx},
        source_info=info, preprocessing=preprocessing,
    )
