"""OmegaConf interpolations and the files that leave a run: a bundle holds none, and no environment value.

A bundle's config.yaml is read as plain data, but the data part of it later passes through OmegaConf (evaluate
rebuilds the run's data from it), which would resolve `${oc.env:HOME}` there: a bundle from elsewhere could read the
environment. So `refuse_in_bundle` refuses any `${` in a bundle's config, naming the key.

At train time the bundle is written with every value resolved. `refuse_env_values` refuses, before anything is
written, a value in the parts a bundle records (model, data, loss, init_from, freeze) that reads an environment
variable, directly (`${oc.env:TOKEN}`) or through `${key}` references: a secret in the environment must never end up
in a file that is meant to be handed on. Other resolvers (`${hydra:runtime.cwd}`, `${now:...}`) read no secret.
"""
from __future__ import annotations

from typing import Any

from netkiln.errors import NetkilnError

BUNDLED = ("model", "data", "loss", "init_from", "freeze")     # the train config's parts a bundle records
_ENV_RESOLVERS = ("oc.env", "env")                            # `env` is OmegaConf 2.0's name for it


def find_interpolation(node: Any, path: str = "") -> tuple[str, str] | None:
    """(config path, value) of the first string holding `${` in plain nested dicts/lists, else None."""
    if isinstance(node, dict):
        for k, v in node.items():
            found = find_interpolation(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found = find_interpolation(v, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(node, str) and "${" in node:
        return path, node
    return None


def refuse_in_bundle(config: dict, file: str) -> None:
    """A bundle's config is plain data: any `${...}` in it is refused before OmegaConf could resolve it."""
    found = find_interpolation(config)
    if found:
        key, value = found
        raise NetkilnError(f"the bundle's config holds an interpolation ({_short(value)}); netkiln writes bundles "
                           "with every value resolved and resolves nothing in one it reads (an interpolation could "
                           "read the environment). Use a bundle written by `netkiln train`.", key=key, file=file)


def refuse_env_values(cfg, parts: tuple[str, ...] = BUNDLED, written_to: str = "the run's model bundle") -> None:
    """Refuse a value under `parts` of the composed config `cfg` whose resolution reads an environment variable,
    or that resolves to text holding `${` (a bundle holding it could not be read back)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.resolvers import oc

    read: list[str] = []

    def watching_env(*args):
        read.append(str(args[0]) if args else "")
        return oc.env(*args)

    # Resolution goes through the registered resolvers, so swapping `oc.env` for a recording twin sees every read,
    # however many `${key}` references lead to it. Restored in `finally`.
    names = [n for n in _ENV_RESOLVERS if OmegaConf.has_resolver(n)]
    for name in names:
        OmegaConf.register_new_resolver(name, watching_env, replace=True)
    try:
        for part in parts:
            if part in cfg:
                _walk(cfg, part, part, read, written_to, (DictConfig, ListConfig))
    finally:
        for name in names:
            OmegaConf.register_new_resolver(name, oc.env, replace=True)


def _walk(parent, index, path: str, read: list, written_to: str, containers: tuple) -> None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = parent[index]
    except OmegaConfBaseException:
        value = None          # a missing value or a broken interpolation: reported where the value is used
    if read:
        raise NetkilnError(f"the value comes from the environment variable {read[0]!r} (oc.env); {written_to} "
                           "records this config, and netkiln does not write environment values into it. Give the "
                           f"value itself, e.g. on the command line as {path}=${read[0]}... (the shell expands it).",
                           key=path)
    if isinstance(value, containers[0]):
        for k in value.keys():
            _walk(value, k, f"{path}.{k}", read, written_to, containers)
    elif isinstance(value, containers[1]):
        for i in range(len(value)):
            _walk(value, i, f"{path}[{i}]", read, written_to, containers)
    elif isinstance(value, str) and "${" in value:
        raise NetkilnError(f"the value {_short(value)} holds '${{', which {written_to} cannot hold (bundles are "
                           "read without interpolation); write the text without it.", key=path)


def _short(value: str, most: int = 60) -> str:
    return repr(value if len(value) <= most else value[:most - 3] + "...")
