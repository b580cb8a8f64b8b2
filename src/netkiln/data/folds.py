"""k-fold cross-validation splits (`cv.folds`, issue #16): one fold of train + val is the validation split.

`data.split.fold` (set by `netkiln train cv.folds=K` for each fold's run, rarely by hand) changes the normal split
after it is drawn: the train and val rows are pooled, dealt into K folds (stratified by class, seeded), and fold
`index` becomes the validation rows; the test rows are the normal split's, untouched. `data.split.fold: refit` pools
train + val as the training rows with no validation rows (the model `cv.refit=true` trains). Since the fold is part
of the data config, the preparation (standardisation, a table's encodings) is fitted on the fold's training rows
only, and a bundle trained on a fold rebuilds the same rows in evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netkiln.config_values import is_int
from netkiln.errors import NetkilnError

FOLD_KEYS = ("index", "of", "seed")
REFIT = "refit"


@dataclass(frozen=True)
class Fold:
    index: int | None       # the validation fold; None: refit (train + val all train, no validation rows)
    of: int = 0
    seed: int = 0


def parse_fold(value, path: str) -> Fold | None:
    """`data.split.fold`: null, `refit`, or {index, of, seed}."""
    if value is None:
        return None
    if value == REFIT:
        return Fold(None)
    if not isinstance(value, dict):
        raise NetkilnError(f"expected null, 'refit' or {{index, of, seed}}, got {value!r}", key=path)
    for key in value:
        if key not in FOLD_KEYS:
            from netkiln.errors import did_you_mean
            raise NetkilnError(f"unknown key '{key}'.{did_you_mean(key, FOLD_KEYS)} Valid keys: "
                               f"{', '.join(FOLD_KEYS)}.", key=f"{path}.{key}")
    of, index, seed = value.get("of"), value.get("index"), value.get("seed", 0)
    if not is_int(of) or of < 2:
        raise NetkilnError(f"the number of folds must be an integer >= 2, not {of!r}", key=f"{path}.of")
    if not is_int(index) or not 0 <= index < of:
        raise NetkilnError(f"must be an integer from 0 to {of - 1}, not {index!r}", key=f"{path}.index")
    if not is_int(seed):
        raise NetkilnError(f"must be an integer, not {seed!r}", key=f"{path}.seed")
    return Fold(index, of, seed)


def fold_numbers(n: int, folds: int, seed: int, labels: np.ndarray | None = None,
                 class_names=None) -> np.ndarray:
    """The fold (0..folds-1) of each of n rows: seeded, and with `labels` stratified (each class dealt over the
    folds in turn, so fold sizes differ by at most one and each fold holds each class's share)."""
    if folds > n:
        raise NetkilnError(f"{folds} folds need at least {folds} rows in train + val, but there are {n}; "
                           "use fewer folds.", key="cv.folds")
    rng = np.random.Generator(np.random.PCG64(seed))
    numbers = np.empty(n, dtype=np.int64)
    if labels is None:
        numbers[rng.permutation(n)] = np.arange(n) % folds
        return numbers
    classes, inverse = np.unique(np.asarray(labels).reshape(n), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    if counts.min() < folds:
        smallest = classes[int(counts.argmin())]
        name = class_names[int(smallest)] if class_names is not None and 0 <= int(smallest) < len(class_names) \
            else smallest
        raise NetkilnError(f"{folds} stratified folds need at least {folds} rows of every class in train + val, but "
                           f"class '{name}' has {int(counts.min())}; use at most {int(counts.min())} folds.",
                           key="cv.folds")
    dealt = 0           # continue the deal where the previous class ended: fold sizes stay balanced
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        members = members[rng.permutation(len(members))]
        numbers[members] = (dealt + np.arange(len(members))) % folds
        dealt += len(members)
    return numbers


def apply_fold(idx: dict[str, np.ndarray], fold: Fold, labels: np.ndarray | None = None,
               class_names=None) -> dict[str, np.ndarray]:
    """The normal split's {"train", "val", "test"} positions -> the fold's (test unchanged). `labels`: the labels
    of every position, to stratify by (None: plain k-fold, e.g. regression)."""
    pool = np.sort(np.concatenate([idx["train"], idx["val"]]).astype(np.int64))
    if fold.index is None:
        return {"train": pool, "val": pool[:0], "test": idx["test"]}
    numbers = fold_numbers(len(pool), fold.of, fold.seed, None if labels is None else np.asarray(labels)[pool],
                           class_names)
    return {"train": pool[numbers != fold.index], "val": pool[numbers == fold.index], "test": idx["test"]}
