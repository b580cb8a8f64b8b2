"""`netkiln train resume=true hydra.run.dir=RUN`: the run is rebuilt from its own saved config.

The run directory's `.hydra/overrides.yaml` is composed first, then the command line's overrides, so the printed
resume line (which names no model or data) continues the run it came from. A new override may change only how
training runs, never the model, the data or the optimisation (the checkpoint holds those), and Hydra is told not to
write `.hydra/` again (`hydra.output_subdir=null`): the run's record of how it was made is kept as it was.
"""
from __future__ import annotations

from pathlib import Path

from netkiln.errors import NetkilnError

# Keys (and config groups) a resume may change: how training runs, not what is trained. Everything else (model,
# data, loss, optimizer, scheduler, seed, batch_size, steps_per_execution, monitor, mode, init_from, freeze, ...)
# must equal the run's saved value: the checkpoint's weights, optimizer state and batch order depend on them.
FREE_KEYS = ("trainer", "callbacks", "logger", "threads", "compile", "allow_targets", "resume", "hydra")


def _is_free(key: str) -> bool:
    return any(key == free or key.startswith((free + ".", free + "/")) for free in FREE_KEYS)


def _parse(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def _load(path: Path):
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - a damaged record is the user's to look at, not a bug
        raise NetkilnError(f"resume=true: cannot read the run's saved config: {' '.join(str(err).split())}",
                           file=str(path)) from None


def _saved_value(override, saved_cfg, choices: dict):
    """The run's saved value for what `override` sets: a group's choice, or a config value."""
    from omegaconf import OmegaConf

    key = override.key_or_group
    if key in choices:
        return choices[key]
    node = OmegaConf.select(saved_cfg, key, default=KeyError, throw_on_missing=False,
                            throw_on_resolution_failure=False)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=False)
    return node


def resume_argv(argv: list[str]) -> list[str]:
    """argv with the run's saved overrides put first, when it resumes a run that has them; else argv as given."""
    if any(arg in ("-m", "--multirun") for arg in argv):
        return argv                     # a sweep continues with hydra.sweeper.resume, not this
    overrides = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    try:
        parsed = _parse(overrides)
    except Exception:  # noqa: BLE001 - a malformed override: Hydra reports it (exit 2) when it composes argv
        return argv
    by_key = {o.key_or_group: o for o in parsed}
    if "resume" not in by_key or by_key["resume"].value() is not True or "hydra.run.dir" not in by_key:
        return argv
    run_dir = Path(str(by_key["hydra.run.dir"].value())).expanduser()
    saved_dir = run_dir / ".hydra"
    if not (saved_dir / "overrides.yaml").is_file() or not (saved_dir / "config.yaml").is_file():
        return argv                     # no record to rebuild from: train.py reports what is missing
    from omegaconf import OmegaConf

    saved = [str(o) for o in OmegaConf.to_container(_load(saved_dir / "overrides.yaml"))]
    saved_cfg = _load(saved_dir / "config.yaml")
    hydra_yaml = saved_dir / "hydra.yaml"
    choices = OmegaConf.to_container(OmegaConf.select(_load(hydra_yaml), "hydra.runtime.choices") or {}) \
        if hydra_yaml.is_file() else {}
    conflicts = []
    for override in parsed:
        if _is_free(override.key_or_group) or override.input_line in saved:
            continue
        value = _saved_value(override, saved_cfg, choices)
        if override.is_delete() or value != override.value():
            was = "saved config, which has no such key" if value is KeyError else \
                f"saved {'null' if value is None else value}"
            conflicts.append(f"{override.input_line} differs from the run's {was}")
    if conflicts:
        raise NetkilnError(f"resume=true: {', '.join(conflicts)}; resume cannot change the model or data (it may "
                           f"change only {', '.join(k + '.*' if k in ('trainer', 'callbacks') else k for k in FREE_KEYS[:5])}).")
    given = set(by_key)
    kept = [line for line, o in zip(saved, _parse(saved)) if o.key_or_group not in given]
    no_record = [] if "hydra.output_subdir" in given else ["hydra.output_subdir=null"]
    flags = [arg for arg in argv if arg not in overrides]
    return [*flags, *kept, *overrides, *no_record]
