"""Splits: sizes, reproducibility, stratification, the seed coming from the root config."""
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from netkiln.data import load_dataset
from netkiln.data.split import make_split, split_indices

CONF = Path(__file__).resolve().parents[1] / "src" / "netkiln" / "conf" / "data"


def conf(name, seed=0):
    return OmegaConf.create({"seed": seed, "data": OmegaConf.load(CONF / f"{name}.yaml")}).data


def test_same_seed_same_split_different_seed_different():
    a, b, c = (load_dataset(conf("wine", s)) for s in (3, 3, 4))
    assert a.split_indices == b.split_indices
    assert a.split_indices["train"] != c.split_indices["train"]
    assert a.split_indices["val"] != c.split_indices["val"]


def test_split_is_a_partition_and_pinned():
    idx = make_split(100, val=0.2, test=0.1, seed=0)
    assert (len(idx["train"]), len(idx["val"]), len(idx["test"])) == (70, 20, 10)
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(100))
    # PCG64's stream is fixed by numpy's stability policy: the same split on every machine.
    assert idx["test"].tolist() == np.random.Generator(np.random.PCG64(0)).permutation(100)[:10].tolist()


def test_stratified_split_keeps_class_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = split_indices(100, n_val=20, n_test=20, seed=5, stratify_labels=y)
    for part, n in (("val", 20), ("test", 20)):
        assert np.bincount(y[idx[part]], minlength=3).tolist() == [12, 6, 2]
    assert np.bincount(y[idx["train"]]).tolist() == [36, 18, 6]


def test_breast_cancer_split_is_stratified():
    ds = load_dataset(conf("breast_cancer"))
    p = [float(y.float().mean()) for y in (ds.y_train, ds.y_val, ds.y_test)]
    assert max(p) - min(p) < 0.02


def test_stratify_off_and_regression_not_stratified():
    ds = load_dataset(conf("diabetes"))
    assert ds.source_info["split"]["stratify"] is False


def test_explicit_split_seed_and_seed_argument():
    node = OmegaConf.load(CONF / "iris.yaml")            # detached: ${seed} cannot resolve
    a = load_dataset(node, seed=7)
    b = load_dataset(conf("iris", 7))
    assert a.split_indices == b.split_indices
    node.split.seed = 11
    c = load_dataset(node, seed=7)
    assert c.source_info["split"]["seed"] == 11 and c.split_indices != a.split_indices
    d = load_dataset({"name": "iris", "split": {"val": 0.2, "test": 0.2}}, seed=7)   # plain dict
    assert (len(d.x_val), len(d.x_test)) == (30, 30)


@pytest.mark.parametrize("frac, n_val", [(0.1, 10), (0.25, 25), (0.015, 2)])
def test_fraction_rounding(frac, n_val):
    assert len(make_split(100, val=frac, test=0.1, seed=0)["val"]) == n_val
