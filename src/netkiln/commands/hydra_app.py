"""Run a task function as a Hydra app and turn user errors into one paragraph and exit code 2."""
from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from netkiln.errors import UserErrorAbort

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Exit codes: 0 ok, 1 internal error (a bug: full traceback), 2 bad input, 130 interrupted.
EXIT_BAD_INPUT = 2
_FILE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.EISDIR,
                errno.ENOTDIR}


def _user_error_message(err: BaseException) -> str | None:
    """The one-paragraph message for an error caused by the user's input, else None."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from netkiln.errors import NetkilnError

    if isinstance(err, NetkilnError):
        return str(err)
    import yaml
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        # A config file of the user's (conf/, --config-dir) that is not valid YAML.
        mark = err.problem_mark
        started = err.context_mark
        context = f"{err.context} (line {started.line + 1}, column {started.column + 1})" \
            if err.context and started is not None and started.line != mark.line else err.context
        what = " ".join(str(part) for part in (context, err.problem) if part)
        return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}."
    if isinstance(err, OSError) and err.filename and err.errno in _FILE_ERRNOS:
        # The system refused a file (no permission, disk full, read-only): the user's to fix, not a bug.
        return f"{err.filename}: cannot access the file: {err.strerror or err}."
    if isinstance(err, (HydraException, OmegaConfBaseException)):
        parts = [str(err).strip()]
        cause = err.__cause__
        if isinstance(cause, OmegaConfBaseException) and str(cause).strip() not in parts[0]:
            parts.append(str(cause).strip())
        return " ".join(" ".join(p.split()) for p in parts)
    return None


def _user_conf_override(argv: list[str]) -> list[str]:
    """A `conf/` folder in the working directory adds the user's own datasets, models and experiments."""
    user_conf = Path.cwd() / "conf"
    if not user_conf.is_dir() or any(arg.startswith(("hydra.searchpath", "+hydra.searchpath")) for arg in argv):
        return []
    return [f"hydra.searchpath=[file://{user_conf}]"]


def _with_overrides(argv: list[str], extra: list[str]) -> list[str]:
    """argv with `extra` overrides placed beside the user's own: Hydra's argument parser takes the overrides as one
    run of positional arguments, so `model=gru --cfg job hydra.searchpath=...` would be refused."""
    first = next((i for i, arg in enumerate(argv) if not arg.startswith("-") and ("=" in arg or arg.startswith("~"))),
                 len(argv))
    return [*argv[:first], *extra, *argv[first:]]


def _keep_error(task: Callable, failed: list, command: str) -> Callable:
    """Wrap a single run's task so its exception reaches run_hydra untouched: Hydra's job runner would
    first write "Error executing job with overrides: [...]" to stderr, a second paragraph. In a sweep
    the exception goes to Hydra as before (the launcher decides what a failed trial means)."""
    import functools

    from netkiln.commands.unknown_keys import check_unknown_keys

    @functools.wraps(task)
    def job(cfg):
        try:
            check_unknown_keys(cfg, command)
            return task(cfg)
        except Exception as err:  # noqa: BLE001 - re-raised by run_hydra once Hydra has returned
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            failed.append(err)
            return None

    return job


def run_hydra(command: str, argv: list[str], task: Callable) -> int:
    """Compose `conf/<command>.yaml` with the overrides in argv and call task(cfg)."""
    import hydra

    user_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let exceptions reach us instead of Hydra's own printer, which exits 1 with a partial traceback.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from netkiln.commands.help import help_overrides
    sys.argv = [f"netkiln {command}", *_with_overrides(argv, [*_user_conf_override(argv),
                                                               *help_overrides(command, argv)])]
    failed: list[BaseException] = []
    app = hydra.main(version_base="1.3", config_path=CONF_DIR,
                     config_name=command)(_keep_error(task, failed, command))
    try:
        app()
        if failed:      # raised here, not inside Hydra's job runner (which prints an extra line first)
            raise failed[0]
    except KeyboardInterrupt:
        sys.stderr.write(f"netkiln {command}: interrupted.\n")
        return 130
    except UserErrorAbort as abort:
        if user_full_error:
            traceback.print_exc()
        sys.stderr.write(f"netkiln {command}: error: {abort.error}\n")
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs below
        from netkiln.commands.config_errors import explain
        message = _user_error_message(err)
        if message is not None and not user_full_error:
            message = explain(err, conf_dir=CONF_DIR, command=command, argv=argv) or message
        if user_full_error or message is None:
            traceback.print_exc()
            return EXIT_BAD_INPUT if message is not None else 1
        sys.stderr.write(f"netkiln {command}: error: {' '.join(message.split())}\n")    # one paragraph, one line
        return EXIT_BAD_INPUT
    finally:
        if not user_full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0
