"""Hydra's composition errors rewritten as one paragraph with a did-you-mean.

Hydra reports a misspelled key as "Could not override 'optimizer.lrr' ... Key 'lrr' is not in
struct"; a user wants "unknown key 'optimizer.lrr'. Did you mean 'optimizer.lr'?". Finding the
suggestion needs the keys beside the bad one, so the config is composed again (only on this error
path) with the overrides that chose config-group options.
"""
from __future__ import annotations

import re

from netkiln.errors import did_you_mean

_MISSING_OPTION = re.compile(r"Could not find '(?P<group>[^']+)/(?P<name>[^'/]+)'")
_WRONG_TYPE = re.compile(r"Value '(?P<value>.*)' of type '[^']+' could not be converted to (?P<type>\w+)")
_AVAILABLE = re.compile(r"Available options in '[^']+':\s*(?P<options>.*?)(?:Config search path|$)", re.S)


def _compose(conf_dir: str, command: str, overrides: list[str], with_hydra: bool = False):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            return compose(config_name=command, overrides=overrides, return_hydra_config=with_hydra)
    finally:
        GlobalHydra.instance().clear()


def _sibling_keys(conf_dir: str, command: str, argv: list[str], full_key: str) -> list[str]:
    """Keys of the node that should have held `full_key`, from a config composed with group choices only."""
    from omegaconf import DictConfig, OmegaConf

    choices = [a for a in argv if "=" in a and not a.startswith(("-", "+", "~"))
               and "." not in a.split("=", 1)[0]]          # group choices, hydra/sweeper=optuna among them
    parent_key = full_key.rpartition(".")[0]
    for overrides in (choices, []):
        try:
            cfg = _compose(conf_dir, command, overrides, with_hydra=full_key.startswith("hydra."))
        except Exception:  # noqa: BLE001 - a best-effort suggestion only
            continue
        node = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if isinstance(node, DictConfig):
            prefix = f"{parent_key}." if parent_key else ""
            return [prefix + str(k) for k in node.keys()]
    return []


def _bad_override(argv: list[str]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except Exception:  # noqa: BLE001 - the first override that fails to parse is the culprit
            return arg
    return None


def _needs_quotes(override: str) -> bool:
    """key=value whose unquoted value has spaces or operators (a filter such as `age >= 18`): the shell ate the
    quotes the user typed, and Hydra reads operators as syntax."""
    key, eq, value = override.partition("=")
    value = value.strip()
    if not eq or not value or value[0] in "'\"[{" or key.startswith("-"):
        return False
    return key.endswith("filter") or any(c in value for c in " \t<>=!&|~`")


def _quoted(override: str) -> str:
    """The override as one POSIX shell word that reaches Hydra as key="value"."""
    key, _, value = override.partition("=")
    inner = value.strip().replace('"', '\\"')                 # Hydra reads \" inside double quotes as "
    return "'" + f'{key}="{inner}"'.replace("'", "'\\''") + "'"   # a ' inside single quotes is written '\''


def explain(err: BaseException, *, conf_dir: str, command: str, argv: list[str]) -> str | None:
    """The rewritten message, or None to fall back to Hydra's own text."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    text = str(err)
    if isinstance(err, MissingConfigException):
        match = _MISSING_OPTION.search(text)
        available = _AVAILABLE.search(text)
        if match and available:
            options = available.group("options").split()
            group, name = match.group("group"), match.group("name")
            return (f"{group}: there is no option '{name}'.{did_you_mean(name, options)} "
                    f"Available: {', '.join(options)}.")
    if isinstance(err, OverrideParseException):
        bad = _bad_override(argv)
        if bad is not None and _needs_quotes(bad):
            return (f"cannot parse the override \"{bad}\": a value with spaces or operators must reach Hydra in "
                    f"quotes, so quote it twice: {_quoted(bad)} (single quotes for the shell, double quotes "
                    "inside for Hydra).")
        reason = " ".join(text.split("\n")[0].split())
        if reason.startswith("LexerNoViableAltException"):       # the lexer's own words name nothing useful
            reason = "it holds a character Hydra's override grammar does not allow unquoted"
        if bad is not None:
            return (f"cannot parse the override \"{bad}\": {reason}. Overrides look like key=value, "
                    "group=option or +new.key=value (see Hydra's override grammar); quote values with "
                    "special characters.")
    cause = err.__cause__
    from omegaconf.errors import MissingMandatoryValue
    missing = next((e for e in (err, cause) if isinstance(e, MissingMandatoryValue) and getattr(e, "full_key", None)),
                   None)
    if missing is not None:
        key = str(missing.full_key)
        return f"{key}: a value is required here ('???'); set it on the command line, e.g. {key}=..."
    from omegaconf.errors import ValidationError
    wrong_type = _WRONG_TYPE.search(str(getattr(cause, "msg", "")))
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None) and wrong_type:
        wanted = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false"}.get(
            wrong_type.group("type"), f"of type {wrong_type.group('type')}")
        return f"{cause.full_key}: must be {wanted}, not '{wrong_type.group('value')}'."
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None) and "is not a ListConfig" in str(
            getattr(cause, "msg", "")):      # objectives=params:min where a typed list was wanted
        key = str(cause.full_key)
        given = next((a.split("=", 1)[1] for a in argv if a.lstrip("+").split("=", 1)[0] == key), None)
        example = f"'{key}=[{given}]'" if given else f"'{key}=[a, b]'"
        return f"{key}: must be a list in square brackets, e.g. {example}" + (f", not '{given}'." if given else ".")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
        full_key = str(cause.full_key)
        if command == "evaluate" and full_key == "data":      # data.path=... without the source it belongs to
            given = next((a.split("=", 1)[0] for a in argv if a.startswith("data.")), "data")
            return (f"{given}: other data to evaluate on starts with its source, e.g. netkiln evaluate run=RUN "
                    "data=csv data.path=new.csv data.target=price (or data=text, data=images, data=npz); without "
                    "data= evaluate uses the run's own test split.")
        siblings = _sibling_keys(conf_dir, command, argv, full_key)
        return (f"{full_key}: unknown config key.{did_you_mean(full_key, siblings)} "
                f"To add a new key on purpose, prefix the override with '+' (+{full_key}=...).")
    return None
