"""MNIST-1D: generated offline, cached atomically under $NETKILN_CACHE_DIR, nothing written to the cwd."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from netkiln.data import load_dataset
from netkiln.data.cache import cache_dir

CONF = Path(__file__).resolve().parents[1] / "src" / "netkiln" / "conf" / "data"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("netkiln-cache")


def node(seed=0):
    return OmegaConf.create({"seed": seed, "data": OmegaConf.load(CONF / "mnist1d.yaml")}).data


def test_mnist1d_cached_offline_and_cwd_untouched(tmp_path, monkeypatch, shared_cache):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("NETKILN_CACHE_DIR", str(shared_cache))
    assert cache_dir() == shared_cache
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    ds = load_dataset(node())
    assert (random.random(), np.random.rand()) == before        # global RNG states left alone
    assert list(work.iterdir()) == []
    files = list(shared_cache.glob("*"))
    assert len(files) == 1 and files[0].suffix == ".npz"        # no temporary files left behind

    assert ds.layout == "sequence" and ds.input_shape == (40, 1)
    assert ds.task.kind == "multiclass" and ds.task.num_outputs == 10
    assert ds.task.class_names == tuple(str(i) for i in range(10))
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (3600, 400, 1000)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.split_indices["test"] == list(range(1000))
    assert sorted(ds.split_indices["train"] + ds.split_indices["val"]) == list(range(4000))

    again = load_dataset(node())
    assert again.source_info["from_cache"] and torch.equal(again.x_test, ds.x_test)
    assert torch.equal(again.x_train, ds.x_train)
    assert list(work.iterdir()) == []


def test_mnist1d_matches_generator_and_own_test_set(monkeypatch, shared_cache):
    monkeypatch.setenv("NETKILN_CACHE_DIR", str(shared_cache))
    from mnist1d.data import get_dataset_args, make_dataset

    ref = make_dataset(get_dataset_args())
    ds = load_dataset(node())
    assert np.allclose(ds.x_test[:, :, 0].numpy(), ref["x_test"], atol=1e-6)
    assert ds.y_test.tolist() == ref["y_test"].tolist()
    assert np.allclose(ds.x_val[:, :, 0].numpy(), ref["x"][ds.split_indices["val"]], atol=1e-6)


def test_mnist1d_cache_keyed_by_generator_args(monkeypatch, shared_cache):
    monkeypatch.setenv("NETKILN_CACHE_DIR", str(shared_cache))
    n = node()
    n.generator.num_samples = 1000
    ds = load_dataset(n)
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test)) == (800, 200)
    assert not ds.source_info["from_cache"]
    assert len(list(shared_cache.glob("mnist1d-*.npz"))) == 2


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("NETKILN_CACHE_DIR", str(tmp_path))
    n = node()
    n.generator.num_samples = 200
    first = load_dataset(n)
    f = Path(first.source_info["cache_file"])
    f.write_bytes(b"not a zip file")
    second = load_dataset(n)
    assert not second.source_info["from_cache"] and torch.equal(first.x_test, second.x_test)
    assert load_dataset(n).source_info["from_cache"]
