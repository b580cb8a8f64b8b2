"""An Optuna `range(a, b, step)` search space holds the values Hydra's range gives: b itself is left out."""
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from netkiln.sweep.optuna_search import _distribution


@pytest.mark.parametrize("text", ["range(16, 65, 16)", "range(16, 64, 16)", "range(1, 4)", "range(0, 10, 3)",
                                  "range(0.1, 0.5, 0.1)"])
def test_a_range_search_space_holds_hydras_range(text):
    override = OverridesParser.create().parse_overrides([f"x={text}"])[0]
    dist = _distribution(override)
    count = round((dist.high - dist.low) / dist.step) + 1
    values = [dist.low + i * dist.step for i in range(count)]
    assert values == pytest.approx(list(override.sweep_iterator()))
