"""Data for netkiln: built-in, generated and file sources (csv, npz, images), seeded splits, preparation
fitted on the training rows only.

    from netkiln.data import load_dataset, Dataset
    ds = load_dataset(cfg.data, seed=cfg.seed)
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.memory import human_bytes

from .config import COMMON_KEYS, check_keys, get_bool, get_choice, parse_split, to_plain
from .augment import parse_augment
from .dataset import LAYOUTS, Dataset, PixelsToFloat
from .image_stream import ImageRows, fit_standardize_streamed
from .preparations import preparation_class
from .sources import SOURCES, RawSource, SourceSpec, register_source
from .split import make_split
from .target_scale import TARGET_SCALES, fit_target_scale
from .tables import read_table
from . import arrays as _arrays, images as _images, tabular as _tabular  # noqa: F401 - register csv, npz, images
from . import table_preparation as _table_preparation  # noqa: F401 - registers the table kind
from . import text_preparation as _text_preparation  # noqa: F401 - registers the text kind
from . import text as _text, reviews as _reviews  # noqa: F401 - register text, reviews
from .prepare import prepare_features

log = logging.getLogger(__name__)

__all__ = ["Dataset", "load_dataset", "known_datasets", "register_source", "SourceSpec", "RawSource", "LAYOUTS",
           "read_table", "prepare_features"]


def known_datasets() -> list[str]:
    return sorted(SOURCES)


def load_dataset(data_cfg: Any, seed: int = 0) -> Dataset:
    """Load, split and prepare the dataset described by the composed `data` config node.

    `seed` is used for the split unless the node gives `split.seed` (``${seed}`` in the shipped configs resolves
    to the run's top-level seed; on a node detached from its root config the `seed` argument is used instead).
    Every check runs here, before a command writes anything.
    """
    return load_dataset_and_source(data_cfg, seed)[0]


def load_dataset_and_source(data_cfg: Any, seed: int = 0) -> tuple[Dataset, RawSource]:
    """`load_dataset`, also returning the source's raw rows (for `netkiln analyze`)."""
    node = to_plain(data_cfg)
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise NetkilnError(f"no dataset name given; known datasets: {', '.join(known_datasets())}",
                           key="data.name")
    spec = SOURCES.get(name)
    if spec is None:
        raise NetkilnError(f"unknown dataset '{name}'.{did_you_mean(name, SOURCES)} "
                           f"Known datasets: {', '.join(known_datasets())}.", key="data.name")
    check_keys(node, COMMON_KEYS + ("augment",) + spec.extra_keys, "data")
    standardize = get_bool(node, "standardize", spec.standardize, "data")
    target_scale = get_choice(node, "target_scale", "standard", TARGET_SCALES, "data")
    augment = parse_augment(node.get("augment"), "data.augment")

    raw = spec.load(node, "data")
    if augment and raw.layout != "image":
        raise NetkilnError(f"augmentation applies to images, but this dataset's rows are {raw.layout} "
                           f"(shape {tuple(raw.x.shape[1:]) if raw.x is not None else '?'})", key="data.augment")
    # Images read from files stay uint8 pixels until a batch is gathered (a quarter of float32's memory).
    # A streamed image folder (data/image_stream.py): x is ImageRows, the files decoded batch by batch.
    image_files = isinstance(raw.x, ImageRows)
    pixels = raw.layout == "image" and raw.x is not None and (image_files or raw.x.dtype == np.uint8)
    has_own_test = raw.y_test is not None
    split_node = node.get("split")
    if has_own_test and raw.ignores_split_test and isinstance(split_node, dict):
        split_node = {k: v for k, v in split_node.items() if k != "test"}
    split = parse_split(split_node, seed=seed, has_own_test=has_own_test,
                        default_val=spec.split_val, default_test=spec.split_test)
    stratify = split.stratify and raw.task.is_classification and raw.fixed_split is None
    if raw.fixed_split is not None:
        idx = {k: np.asarray(v, dtype=np.int64) for k, v in raw.fixed_split.items()}
    else:
        idx = make_split(len(raw.y), val=split.val, test=split.test, seed=split.seed,
                         stratify_labels=raw.y if stratify else None)
    if split.fold is not None:      # cross-validation: one fold of train + val validates, the test rows stay
        from .folds import apply_fold
        fold_labels = raw.y if split.stratify and raw.task.is_classification else None
        idx = apply_fold(idx, split.fold, fold_labels, raw.task.class_names)

    preprocessing: dict[str, Any] = dict(raw.preprocessing)
    feature_names = raw.feature_names
    parts = None
    if raw.streamed is not None:
        # Streamed (data/streaming.py): each split prepared into its own file, rows in file order.
        idx = {k: np.sort(v) for k, v in idx.items()}
        parts, x_own_test, fitted, feature_names = raw.streamed(idx)
        preprocessing.update(fitted)
        x_all = parts["train"]
    elif raw.prepare is not None:
        x_all, x_own_test, fitted, feature_names = raw.prepare(idx["train"])
        preprocessing.update(fitted)
    else:
        x_all, x_own_test = raw.x, raw.x_test

    def rows(split: str):
        if image_files:
            return x_all.subset(idx[split])
        return parts[split] if parts is not None else x_all[idx[split]]

    x_tr, y_tr = rows("train"), raw.y[idx["train"]]
    x_va, y_va = rows("val"), raw.y[idx["val"]]
    if has_own_test:
        x_te, y_te = x_own_test, raw.y_test
        test_pos = np.arange(len(raw.y_test))
    else:
        x_te, y_te = rows("test"), raw.y[idx["test"]]
        test_pos = idx["test"]

    if image_files:
        # Streamed image files: data.standardize fitted in one pass over the training files (the in-memory numbers).
        if standardize:
            preprocessing["standardize"] = fit_standardize_streamed(x_tr, raw.info["streaming"]["workers"])
    elif raw.prepare is None and raw.streamed is None:
        # The source's kind fits its steps (a standardisation, when asked) on the training rows only; a source that
        # prepares its rows itself (prepare, streamed) has fitted its kind already.
        fitted = preparation_class(preprocessing).fit(x_tr, preprocessing, layout=raw.layout,
                                                      standardize=standardize)
        preprocessing = fitted.to_json()
        x_tr, x_va, x_te = (fitted.apply_to_split(a) for a in (x_tr, x_va, x_te))
    if not raw.task.is_classification and target_scale != "none":
        # The dataset keeps the target in its own units; the loss sees it scaled (netkiln.data.target_scale).
        preprocessing["target_scale"] = fit_target_scale(y_tr, target_scale)

    info = dict(raw.info)
    if raw.fixed_split is not None:
        info["split"] = {"column": node.get("split_column"), "own_test_set": has_own_test}
    else:
        info["split"] = {"val": split.val, "test": split.test, "stratify": stratify, "seed": split.seed,
                         "own_test_set": has_own_test}
    if split.fold is not None:
        info["split"]["fold"] = "refit" if split.fold.index is None else vars(split.fold)
    if has_own_test and "split_indices_note" not in info:
        info["split_indices_note"] = ("train/val index the source's training rows; test indexes the source's "
                                      "own test set")

    def ids(pos: np.ndarray, row_ids: np.ndarray | None) -> list[int]:
        found = (row_ids[pos] if row_ids is not None else np.asarray(pos)).astype(np.int64)
        return found if parts is not None else found.tolist()     # streamed: an array (a list is 36 bytes a row)

    def xt(a: np.ndarray) -> torch.Tensor:
        if image_files:
            return a
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8 if pixels else np.float32))

    def yt(a: np.ndarray) -> torch.Tensor:
        if raw.task.is_classification:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64).reshape(-1))
        targets = int(np.prod(raw.y.shape[1:]))         # not -1: an empty split (cv.refit's val) has 0 rows
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32).reshape(len(a), targets))

    dataset = Dataset(
        name=name,
        x_train=xt(x_tr), y_train=yt(y_tr), x_val=xt(x_va), y_val=yt(y_va), x_test=xt(x_te), y_test=yt(y_te),
        task=raw.task, input_shape=tuple(int(s) for s in x_all.shape[1:]), layout=raw.layout,
        feature_names=feature_names,
        split_indices={"train": ids(idx["train"], raw.row_ids), "val": ids(idx["val"], raw.row_ids),
                       "test": ids(test_pos, raw.test_row_ids if has_own_test else raw.row_ids)},
        source_info=info, preprocessing=preprocessing, streamed=parts, augment=augment,
        pixels=PixelsToFloat(preprocessing.get("standardize")) if pixels else None,
    )
    nbytes = sum(t.element_size() * t.nelement() for t in (dataset.x_train, dataset.y_train, dataset.x_val,
                                                              dataset.y_val, dataset.x_test, dataset.y_test)
                 if isinstance(t, torch.Tensor))
    info["tensor_bytes"] = int(nbytes)
    rows = sum(dataset.split_sizes.values())
    if image_files:     # only the labels are tensors: their size is not the images'
        log.info("data %s: %d rows, image files decoded per batch (streamed; %s of labels in memory)", name, rows,
                 human_bytes(nbytes))
    else:
        log.info("data %s: %d rows, %s %s", name, rows, human_bytes(nbytes),
                 "prepared on disk, memory-mapped" if parts is not None
                 else "in memory as tensors (images as uint8 pixels)" if pixels else "in memory as tensors")
    return dataset, raw
