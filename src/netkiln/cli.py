"""`netkiln <command> [hydra overrides]`: dispatch to the command's Hydra app.

Kept import-light (no torch, no Lightning) so `netkiln --help` answers at once; each command
imports what it needs when it runs.
"""
from __future__ import annotations

import importlib
import os
import sys

from netkiln.commands import COMMANDS

USAGE = """usage: netkiln <command> [key=value ...] [hydra flags]

A declarative deep-learning model compiler: describe data, layers, loss and optimizer in
Hydra configs; netkiln compiles them into a PyTorch Lightning model and trains it.

commands:
{commands}

Every command takes Hydra overrides and flags, e.g.
  netkiln train data=digits model=cnn2d trainer.max_epochs=20
  netkiln train --cfg job          print the composed config
  netkiln train -m model=mlp,cnn,gru   run a sweep
  netkiln <command> --help         the command's config groups and options
"""


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def _calm_openmp() -> None:
    """Let idle OpenMP threads spin only briefly before they sleep (before torch loads libgomp).

    With the default long spin, torch's threads burn their time slices whenever another process
    wants the same cores: the MNIST-1D CNN took 105 s for 5 epochs beside one busy process on 2
    cores. Measured on 10-20 CNN epochs here: a short spin (10,000) was as fast as the default on a
    quiet machine (1.6 s vs 1.8 s) and stayed usable beside two busy processes (2.9 s), where
    OMP_WAIT_POLICY=PASSIVE was 2x slower on a quiet machine (3.7 s). Values the user set are kept.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        from netkiln import launch
        launch.ARGV = list(sys.argv)
    argv = sys.argv[1:] if argv is None else argv
    _calm_openmp()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from netkiln.version import __version__
        print(f"netkiln {__version__}")
        return 0
    command = argv[0]
    if command not in COMMANDS:
        from netkiln.errors import did_you_mean
        sys.stderr.write(f"netkiln: unknown command '{command}'.{did_you_mean(command, COMMANDS)} "
                         f"Commands: {', '.join(COMMANDS)}.\n")
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.run(command, argv[1:])


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
