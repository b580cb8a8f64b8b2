"""Built-in sources: shapes, dtypes, tasks, class names, standardisation on train rows only."""
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from netkiln.data import Dataset, load_dataset
from netkiln.task import Task

CONF = Path(__file__).resolve().parents[1] / "src" / "netkiln" / "conf" / "data"


def conf(name: str, seed: int = 0, **over):
    """The shipped config node as Hydra would compose it: inside a root config that has `seed`."""
    root = OmegaConf.create({"seed": seed, "data": OmegaConf.load(CONF / f"{name}.yaml")})
    for k, v in over.items():
        OmegaConf.update(root, f"data.{k}", v, force_add=True)
    return root.data


EXPECT = {  # name: (layout, input_shape, kind, num_outputs, class_names, rows)
    "iris": ("flat", (4,), "multiclass", 3, ("setosa", "versicolor", "virginica"), 150),
    "wine": ("flat", (13,), "multiclass", 3, ("class_0", "class_1", "class_2"), 178),
    "breast_cancer": ("flat", (30,), "binary", 1, ("malignant", "benign"), 569),
    "diabetes": ("flat", (10,), "regression", 1, (), 442),
    "digits": ("image", (1, 8, 8), "multiclass", 10, tuple(str(i) for i in range(10)), 1797),
    "synthetic": ("flat", (20,), "multiclass", 3, ("0", "1", "2"), 600),
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_builtin_shapes_dtypes_task(name):
    layout, shape, kind, k, names, rows = EXPECT[name]
    ds = load_dataset(conf(name))
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.layout == layout and ds.input_shape == shape
    assert ds.task == Task(kind, k, names)
    n = 0
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert x.dtype == torch.float32 and x.device.type == "cpu"
        assert tuple(x.shape[1:]) == shape and len(x) == len(y) > 0
        if kind == "regression":
            assert y.dtype == torch.float32 and tuple(y.shape) == (len(x), k)
        else:
            assert y.dtype == torch.int64 and y.ndim == 1
            assert 0 <= int(y.min()) and int(y.max()) < max(k, 2)
        n += len(x)
    assert n == rows
    assert sorted(sum(ds.split_indices.values(), [])) == list(range(rows))
    assert ds.source_info["rows"] == rows and ds.source_info["description"]
    d = ds.describe()
    assert name in d and layout in d and "\n" not in d and f"train {len(ds.x_train)}" in d


def test_feature_names():
    assert load_dataset(conf("iris")).feature_names[0] == "sepal length (cm)"
    assert load_dataset(conf("diabetes")).feature_names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4",
                                                             "s5", "s6"]
    assert load_dataset(conf("digits")).feature_names is None


def test_iris_split_sizes():
    ds = load_dataset(conf("iris"))
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (104, 23, 23)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "diabetes"])
def test_standardisation_uses_train_rows_only(name):
    ds = load_dataset(conf(name))
    tr = ds.x_train.double()
    assert torch.allclose(tr.mean(0), torch.zeros(tr.shape[1], dtype=torch.float64), atol=1e-5)
    assert torch.allclose(tr.std(0, unbiased=False), torch.ones(tr.shape[1], dtype=torch.float64), atol=1e-4)
    # Recompute from the raw rows: the statistics are those of the training rows, applied to val/test as-is.
    raw = load_dataset(conf(name, standardize=False))
    mean, std = raw.x_train.double().mean(0), raw.x_train.double().std(0, unbiased=False)
    assert torch.allclose(ds.x_test.double(), (raw.x_test.double() - mean) / std, atol=1e-4)
    assert np.allclose(ds.preprocessing["standardize"]["mean"], mean.numpy())
    assert not torch.allclose(ds.x_test.double().mean(0), torch.zeros(tr.shape[1], dtype=torch.float64), atol=1e-5)


def test_diabetes_target_is_raw():
    ds = load_dataset(conf("diabetes"))
    y = torch.cat([ds.y_train, ds.y_val, ds.y_test])
    assert y.min() >= 25 and y.max() <= 346          # the disease-progression scale, not standardised


def test_digits_pixels_in_unit_range():
    ds = load_dataset(conf("digits"))
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1 and ds.x_train.max() > 0.9
    assert ds.preprocessing == {}


@pytest.mark.parametrize("cfg, shape, kind, k", [
    ({"task": "binary"}, (20,), "binary", 1),
    ({"task": "regression", "n_targets": 2, "n_features": 5}, (5,), "regression", 2),
    ({"layout": "sequence", "shape": [12, 3], "n_classes": 4}, (12, 3), "multiclass", 4),
    ({"layout": "image", "shape": [2, 6, 5]}, (2, 6, 5), "multiclass", 3),
])
def test_synthetic_variants(cfg, shape, kind, k):
    ds = load_dataset(conf("synthetic", **cfg))
    assert ds.input_shape == shape and ds.task.kind == kind and ds.task.num_outputs == k
    if kind == "regression":
        assert tuple(ds.y_train.shape) == (len(ds.x_train), k) and ds.y_train.dtype == torch.float32
    if ds.layout == "image":   # per-channel statistics
        assert len(ds.preprocessing["standardize"]["mean"]) == shape[0]
        assert torch.allclose(ds.x_train.mean((0, 2, 3)), torch.zeros(shape[0]), atol=1e-4)
    if ds.layout == "sequence":  # per-feature statistics pooled over time
        assert len(ds.preprocessing["standardize"]["mean"]) == shape[1]


@pytest.mark.parametrize("cfg", [{}, {"task": "binary"}, {"layout": "sequence", "shape": [16, 2]}])
def test_synthetic_is_learnable(cfg):
    """A nearest-centroid / least-squares fit on train must be clearly above chance on test."""
    ds = load_dataset(conf("synthetic", **cfg))
    xtr, xte = ds.x_train.flatten(1).double(), ds.x_test.flatten(1).double()
    k = ds.task.num_classes
    onehot = torch.nn.functional.one_hot(ds.y_train, k).double()
    a = torch.cat([xtr, torch.ones(len(xtr), 1, dtype=torch.float64)], 1)
    w = torch.linalg.lstsq(a, onehot).solution
    pred = (torch.cat([xte, torch.ones(len(xte), 1, dtype=torch.float64)], 1) @ w).argmax(1)
    acc = (pred == ds.y_test).double().mean().item()
    assert acc > 1.0 / k + 0.25, acc


def test_synthetic_data_fixed_by_generator_seed_not_split_seed():
    def rows(ds):
        x = torch.cat([ds.x_train, ds.x_val, ds.x_test])
        return x[np.argsort(sum(ds.split_indices.values(), []))]

    a = load_dataset(conf("synthetic", seed=1, standardize=False))
    b = load_dataset(conf("synthetic", seed=2, standardize=False))
    c = load_dataset(conf("synthetic", seed=1, standardize=False, generator_seed=3))
    assert a.split_indices["train"] != b.split_indices["train"]
    assert torch.equal(rows(a), rows(b))
    assert not torch.equal(rows(a), rows(c))
