"""Refuse a top-level key that `+key=value` added and no netkiln code reads (`+batchsize=32` did nothing).

The struct config refuses a misspelled key, but `+` (and `++`) bypass struct. The keys netkiln knows are those of
the config composed without these additions (the shipped defaults plus the chosen groups, experiments and presets),
so no hand-kept list can fall behind. Keys inside a group (`+optimizer.amsgrad=true`) are left to the group's own
check: each group refuses the arguments its class or netkiln does not take. `vars` is free: `+vars.width=32`, read
as `${vars.width}` anywhere (like `model.vars` inside a model).
"""
from __future__ import annotations

FREE_NAMESPACES = ("vars",)


def _added_keys(overrides: list[str], group_choices) -> list[str]:
    """The overrides that add a key (`+key=v`, `++key=v`), not a config group option (`+experiment=x`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    added = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if (override.is_add() or override.is_force_add()) and override.key_or_group not in group_choices \
                and not override.key_or_group.startswith("hydra."):
            added.append(override.input_line)
    return added


def check_unknown_keys(cfg, command: str) -> None:
    """A NetkilnError naming the first top-level key of `cfg` that only a `+` override put there."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from netkiln.errors import NetkilnError, did_you_mean

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    added = _added_keys(overrides, set(hydra_cfg.runtime.choices))
    if not added:                       # the common case: no second composition
        return
    # The user's conf/ folder reaches the search path as a hydra.searchpath override: keep it for this composition.
    searchpath = [o for o in hydra_cfg.overrides.hydra if o.lstrip("+").startswith("hydra.searchpath=")]
    known = set(compose(config_name=command,
                        overrides=[*searchpath, *(o for o in overrides if o not in added)]).keys())
    for key in cfg.keys():
        if key not in known and key not in FREE_NAMESPACES:
            raise NetkilnError(f"unknown config key.{did_you_mean(str(key), known)} netkiln reads none of its "
                               f"values; put your own values under `vars` (+vars.{key}=...).", key=str(key))
