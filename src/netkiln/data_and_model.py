"""What every command builds first: composed config → dataset → compiled network (the training pipeline that
continues from here is netkiln.training.run)."""
from __future__ import annotations


def seed_of(cfg) -> int:
    """The top-level `seed` as an int; a NetkilnError naming `seed` otherwise."""
    from netkiln.config_values import is_int
    from netkiln.errors import NetkilnError

    seed = cfg.get("seed", 0)
    if not is_int(seed):
        raise NetkilnError(f"must be an integer, not {seed!r}.", key="seed")
    return seed


def build_data_and_model(cfg, *, training: bool = False):
    from netkiln.auto_model import explain_picked_model, resolve_auto_model
    from netkiln.compiler import compile_model
    from netkiln.data import load_dataset

    dataset = load_dataset(cfg.data, seed=seed_of(cfg))
    picked = resolve_auto_model(cfg, dataset.layout, dataset.input_shape)    # model=auto: cfg.model is now the pick
    # A config names torch.nn modules only (netkiln.trust), unless the user trusts it with allow_targets=true.
    trusted = bool(cfg.get("allow_targets", False))
    # Training holds the weights, their gradients and (Adam) two moments: 4 copies must fit in memory.
    with explain_picked_model(picked):
        network = compile_model(cfg.model, dataset.input_shape, dataset.task,
                                only_trusted=not trusted,
                                memory_copies=4 if training else 1,
                                vocab_size=dataset.preprocessing.get("vocab_size"))   # text: embeddings' input_dim
    task = dataset.task.for_output_units(network.output_shape)
    if task != dataset.task:
        import logging
        logging.getLogger("netkiln").info("the model ends in %d units on a binary task: it trains as a 2-class "
                                          "softmax classifier (cross_entropy, a probability per class)",
                                          task.num_outputs)
        dataset.task = task
    return dataset, network
