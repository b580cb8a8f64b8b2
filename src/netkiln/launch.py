"""The command line this process was started with: set by netkiln.cli.main (None when main() was given an argv).
Lightning's `ddp` strategy re-runs it for each further rank (netkiln.training.run)."""
from __future__ import annotations

ARGV: list[str] | None = None
