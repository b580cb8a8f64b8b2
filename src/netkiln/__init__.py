"""netkiln: a declarative, config-driven deep-learning model compiler."""

__version__ = "0.1.0"
