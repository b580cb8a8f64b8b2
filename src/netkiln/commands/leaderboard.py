"""`netkiln leaderboard DIR`: rebuild and print the leaderboard of a sweep directory."""
from __future__ import annotations

import argparse
import sys


def run(command: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"netkiln {command}",
                                     description="Rebuild leaderboard.csv/.md, best.json and best/ of a sweep "
                                                 "directory (also one that was interrupted) and print it.")
    parser.add_argument("sweep_dir", help="the sweep directory, e.g. outputs/multirun/2026-11-26/13-10-00")
    args = parser.parse_args(argv)

    from netkiln.errors import NetkilnError
    from netkiln.sweep.leaderboard import print_leaderboard, write_leaderboard

    try:
        board = write_leaderboard(args.sweep_dir)
    except NetkilnError as err:
        sys.stderr.write(f"netkiln {command}: error: {err}\n")
        return 2
    print_leaderboard(board)
    return 0
