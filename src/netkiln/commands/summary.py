"""`netkiln summary`: compile the model for the configured data and print its layer table."""
from __future__ import annotations

from netkiln.commands.hydra_app import run_hydra


def _task(cfg) -> None:
    from netkiln.compiler import summary_table
    from netkiln.data_and_model import build_data_and_model

    dataset, network = build_data_and_model(cfg)
    print(f"Model on {dataset.describe()}")
    print(summary_table(network))


def run(command: str, argv: list[str]) -> int:
    return run_hydra(command, argv, _task)
