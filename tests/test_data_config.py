"""Config validation: errors name the config key and suggest the closest valid name."""
import pytest

from netkiln.data import load_dataset
from netkiln.errors import NetkilnError


def err(cfg, seed=0) -> NetkilnError:
    with pytest.raises(NetkilnError) as e:
        load_dataset(cfg, seed=seed)
    return e.value


def test_unknown_dataset_lists_known():
    e = err({"name": "irsi"})
    assert e.key == "data.name" and "Did you mean 'iris'" in str(e)
    for n in ("mnist1d", "digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic"):
        assert n in str(e)
    assert err({}).key == "data.name"


def test_unknown_key_did_you_mean():
    e = err({"name": "iris", "standardise": True})
    assert e.key == "data.standardise" and "Did you mean 'standardize'" in str(e)
    e = err({"name": "iris", "split": {"vall": 0.1}})
    assert e.key == "data.split.vall" and "Did you mean 'val'" in str(e)
    e = err({"name": "synthetic", "n_clases": 4})
    assert e.key == "data.n_clases" and "n_classes" in str(e)
    e = err({"name": "mnist1d", "generator": {"num_sample": 10}})
    assert e.key == "data.generator.num_sample" and "num_samples" in str(e)


@pytest.mark.parametrize("split, key", [
    ({"val": 0.5, "test": 0.5}, "data.split.val"),
    ({"val": 0.7, "test": 0.4}, "data.split.val"),
    ({"val": 0.0}, "data.split.val"),
    ({"val": 1.2}, "data.split.val"),
    ({"val": 0.001}, "data.split.val"),           # 0 of 150 rows
    ({"test": 0.001}, "data.split.test"),
    ({"test": -0.1}, "data.split.test"),
    ({"val": "a lot"}, "data.split.val"),
    ({"stratify": "yes"}, "data.split.stratify"),
    ({"seed": 1.5}, "data.split.seed"),
])
def test_bad_split(split, key):
    assert err({"name": "iris", "split": split}).key == key


def test_source_with_own_test_set_rejects_split_test():
    assert err({"name": "mnist1d", "split": {"test": 0.2}}).key == "data.split.test"


@pytest.mark.parametrize("cfg, key", [
    ({"task": "multi"}, "data.task"),
    ({"layout": "sequence"}, "data.shape"),
    ({"layout": "image", "shape": [8, 8]}, "data.shape"),
    ({"n_samples": 3}, "data.n_samples"),
    ({"standardize": "no"}, "data.standardize"),
])
def test_bad_synthetic(cfg, key):
    assert err({"name": "synthetic", **cfg}).key == key
