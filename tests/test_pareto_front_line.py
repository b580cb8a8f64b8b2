"""The sweeper's 'Pareto front:' log line: repeated parameters counted once, 'trial' or 'trials' as the count says."""
from types import SimpleNamespace

from netkiln.sweep.optuna_search import front_line


def trial(number, width):
    return SimpleNamespace(number=number, params={"model.vars.width": width})


def test_one_trial_on_the_front_with_repeats():
    assert front_line([trial(4, 8), trial(0, 8), trial(1, 8)]) == \
        "Pareto front: trial 0 (2 later trials ran the same parameters)"


def test_several_trials_on_the_front():
    assert front_line([trial(2, 32), trial(0, 8), trial(5, 8)]) == \
        "Pareto front: trials 0, 2 (1 later trial ran the same parameters)"
    assert front_line([trial(3, 64), trial(1, 8)]) == "Pareto front: trials 1, 3"
