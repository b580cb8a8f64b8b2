"""`netkiln <command> --help`: the command's config groups with their options, and its own keys, one line each.

One source of truth: a key's line is its comment in `conf/<command>.yaml` (the comment on its line, else the first
line of the comment block just above it), and the groups are those of the command's defaults list. The text goes
through Hydra's stock `hydra.help.template`: `run_hydra` sets it to `${netkiln_help:<command>}` for a --help run,
and this resolver lists each group's options with Hydra's config loader, so the options of a `conf/` folder in the
working directory (or `--config-dir`) show up too. Nothing here imports torch.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

RESOLVER = "netkiln_help"
_KEY_LINE = re.compile(r"^([A-Za-z_]\w*):(.*)$")
WIDTH = 100


def _command_yaml(command: str) -> Path:
    from netkiln.commands.hydra_app import CONF_DIR
    return Path(CONF_DIR) / f"{command}.yaml"


def key_descriptions(command: str) -> dict[str, tuple[str, str]]:
    """{key: (default as written, one-line description)} for the top-level keys of conf/<command>.yaml."""
    keys: dict[str, tuple[str, str]] = {}
    block: list[str] = []           # the comment lines just above the current line
    for line in _command_yaml(command).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            block.append(line.lstrip("#").strip())
            continue
        match = _KEY_LINE.match(line)
        if match and match.group(1) not in ("defaults", "hydra"):
            rest = match.group(2)
            comment = re.search(r"\s#", rest)
            value = (rest[:comment.start()] if comment else rest).strip()
            text = rest[comment.end():].strip() if comment else (block[0] if block else "")
            keys[match.group(1)] = (value, text)
        block = []
    return keys


def default_groups(command: str) -> dict[str, str | None]:
    """{group: default option or None} from the defaults list of conf/<command>.yaml (Hydra's own groups left out)."""
    from netkiln.safe_yaml import safe_load_file

    groups: dict[str, str | None] = {}
    for entry in (safe_load_file(_command_yaml(command)) or {}).get("defaults") or []:
        if isinstance(entry, dict):
            for name, option in entry.items():
                if not str(name).startswith(("override ", "hydra/", "hydra")):
                    groups[str(name)] = None if option is None else str(option)
    return groups


def _options(command: str, group: str) -> list[str]:
    """The group's options on this run's search path: the package's conf/, --config-dir, and hydra.searchpath (the
    user's conf/ folder). Hydra's own $APP_CONFIG_GROUPS leaves the last out."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from omegaconf import OmegaConf

    # Unresolved: the list holds this help's own override, `${netkiln_help:...}`.
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.hydra, resolve=False)
    searchpath = [o for o in overrides if o.lstrip("+").startswith("hydra.searchpath=")]
    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options(group, config_name=command, overrides=searchpath))


def render(command: str) -> str:
    """The whole --help text of one command (Hydra's template: a literal $ is written $$)."""
    from netkiln.commands import COMMANDS

    groups = default_groups(command)
    usage = f"netkiln {command}{' [group=option ...]' if groups else ''} [key=value ...] [hydra flags]"
    lines = [f"usage: {usage}", COMMANDS[command][1], ""]
    if groups:
        lines.append("Config groups (group=option; * marks the default):")
        width = max(map(len, groups)) + 2
        for group, default in sorted(groups.items()):
            options = ", ".join(o + ("*" if o == default else "") for o in _options(command, group)) or "(none found)"
            lines += textwrap.wrap(options, WIDTH, initial_indent=f"  {group.ljust(width)}",
                                   subsequent_indent=" " * (width + 2))
        lines.append("")
    keys = key_descriptions(command)
    if keys:
        lines.append("Keys (key=value; shown with their defaults, ??? = required):")
        labels = {key: f"{key}={value}" if value else key for key, (value, _) in keys.items()}
        width = min(max(map(len, labels.values())) + 2, 32)
        for key, (_, text) in keys.items():
            label = labels[key]
            head = f"  {label.ljust(width)}" if len(label) < width else f"  {label}  "
            lines += textwrap.wrap(text, WIDTH, initial_indent=head, subsequent_indent=" " * (width + 2)) or [head]
        lines.append("")
    if groups:
        lines.append(f"Any key of the composed config can be set too, e.g. {_example(groups)}; "
                     f"`netkiln {command} --cfg job` prints them all.")
        lines.append("A conf/ folder in the working directory (or --config-dir DIR) adds your own options to these "
                     "groups.")
    lines.append("Hydra's own flags: --cfg job|hydra, -m (a sweep), --config-dir DIR, --hydra-help.")
    return "\n".join(lines).replace("$", "$$")


def _example(groups: dict) -> str:
    return "trainer.max_epochs=30" if "trainer" in groups else f"{next(iter(groups))}.<key>=<value>"


def register() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(RESOLVER, render, replace=True)


def help_overrides(command: str, argv: list[str]) -> list[str]:
    """For `--help` / `-h`: the override that makes Hydra print `render(command)`."""
    if not {"--help", "-h"} & set(argv):
        return []
    register()
    return [f"hydra.help.template=${{{RESOLVER}:{command}}}"]
