"""Seeded, optionally stratified train/val/test splits.

Written with numpy's PCG64 generator (not sklearn's RandomState helpers) so the same seed gives the same split
on every machine and every library version: the stream of `Generator(PCG64(seed))` is fixed by numpy's
stability policy.
"""
from __future__ import annotations

import numpy as np

from netkiln.errors import NetkilnError


def fraction_to_count(frac: float, n: int) -> int:
    """Round half up (so 0.15 of 150 rows is 23, the same on every platform)."""
    return int(np.floor(frac * n + 0.5))


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Share `total` among groups proportionally to `counts` (largest remainder, ties to the lower group)."""
    n = counts.sum()
    if total == 0 or n == 0:
        return np.zeros_like(counts)
    quota = counts * total / n
    base = np.floor(quota).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        frac = quota - base
        order = np.lexsort((np.arange(len(counts)), -frac))   # largest fraction first, then group order
        base[order[:rest]] += 1
    return base


def split_indices(n: int, *, n_val: int, n_test: int, seed: int,
                  stratify_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Return {"train", "val", "test"} index arrays (a partition of range(n), each in a seeded random order)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    if stratify_labels is None:
        perm = rng.permutation(n)
        return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}

    labels = np.asarray(stratify_labels).reshape(n)
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    t_c = _allocate(counts, n_test)
    v_c = _allocate(counts - t_c, n_val)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in range(len(classes)):
        idx = np.flatnonzero(inverse == c)
        idx = idx[rng.permutation(len(idx))]
        parts["test"].append(idx[:t_c[c]])
        parts["val"].append(idx[t_c[c]:t_c[c] + v_c[c]])
        parts["train"].append(idx[t_c[c] + v_c[c]:])
    # Mix the classes so that consumers that do not shuffle still see every class early.
    return {k: (lambda a: a[rng.permutation(len(a))])(np.concatenate(v).astype(np.int64)) for k, v in parts.items()}


def make_split(n: int, *, val: float, test: float | None, seed: int,
               stratify_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Fractions → counts → indices, with errors that name the config key. `test=None`: no test rows."""
    n_val = fraction_to_count(val, n)
    n_test = 0 if test is None else fraction_to_count(test, n)
    if n_val < 1:
        raise NetkilnError(f"a validation fraction of {val} of {n} rows leaves the validation split empty; "
                           "use a larger fraction", key="data.split.val")
    if test is not None and n_test < 1:
        raise NetkilnError(f"a test fraction of {test} of {n} rows leaves the test split empty; "
                           "use a larger fraction", key="data.split.test")
    if n - n_val - n_test < 1:
        raise NetkilnError(f"val ({val}) and test ({test or 0}) leave no training rows out of {n}",
                           key="data.split.val")
    return split_indices(n, n_val=n_val, n_test=n_test, seed=seed, stratify_labels=stratify_labels)
