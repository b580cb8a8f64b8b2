"""netkiln: a declarative, config-driven deep-learning model compiler."""

__version__ = "0.1.0"

# The command line this process was started with (set by netkiln.cli.main; None when main() was given an argv):
# Lightning's `ddp` strategy re-runs it for each further rank.
LAUNCH_ARGV = None
