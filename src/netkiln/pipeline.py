"""The one pipeline every command shares: composed config → dataset → compiled network."""
from __future__ import annotations


def build_data_and_model(cfg):
    from netkiln.compiler import compile_model
    from netkiln.data import load_dataset

    dataset = load_dataset(cfg.data, seed=int(cfg.seed))
    network = compile_model(cfg.model, dataset.input_shape, dataset.task)
    return dataset, network
