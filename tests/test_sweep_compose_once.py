"""netkiln's default grid sweeper composes each trial's config once, and still checks the grid before running."""
import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl

from netkiln.cli import main
from conftest import tiny_run

TINY = tiny_run(n_features=4)


@pytest.fixture
def compositions(monkeypatch):
    """The overrides of every trial config Hydra composes, in order."""
    calls = []
    original = ConfigLoaderImpl.load_sweep_config

    def counting(self, master_config, sweep_overrides):
        calls.append(list(sweep_overrides))
        return original(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counting)
    return calls


def test_one_composition_per_trial(tmp_path, compositions):
    rc = main(["train", "-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={tmp_path}"])
    assert rc == 0
    assert len(compositions) == 3
    assert all((tmp_path / str(i) / "metrics.json").is_file() for i in range(3))


def test_a_bad_value_in_the_grid_fails_before_any_trial(tmp_path):
    rc = main(["train", "-m", *TINY, "model=mlp,no_such_model", f"hydra.sweep.dir={tmp_path}"])
    assert rc == 2
    assert not list(tmp_path.glob("*/metrics.json"))


def test_a_configuration_listed_twice_runs_twice(tmp_path, compositions):
    """seed=0,0: each launch takes its own composed config, not the one the first launch ran (made read-only)."""
    rc = main(["train", "-m", *TINY, "seed=0,0,1", f"hydra.sweep.dir={tmp_path}"])
    assert rc == 0
    assert len(compositions) == 3
    assert all((tmp_path / str(i) / "metrics.json").is_file() for i in range(3))
    assert (tmp_path / "leaderboard.csv").read_text().count(",ok,") == 3
