"""The one pipeline every command shares: composed config → dataset → compiled network."""
from __future__ import annotations

# The `_target_` classes a model config may name without allow_targets=true.
TORCH_MODULES = ("torch.nn.",)


def seed_of(cfg) -> int:
    """The top-level `seed` as an int; a NetkilnError naming `seed` otherwise."""
    from netkiln.errors import NetkilnError

    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise NetkilnError(f"must be an integer, not {seed!r}.", key="seed")
    return seed


def build_data_and_model(cfg):
    from netkiln.compiler import compile_model
    from netkiln.data import load_dataset

    dataset = load_dataset(cfg.data, seed=seed_of(cfg))
    # A config names torch.nn modules only, unless the user trusts it with allow_targets=true.
    trusted = bool(cfg.get("allow_targets", False))
    network = compile_model(cfg.model, dataset.input_shape, dataset.task,
                            target_prefixes=None if trusted else TORCH_MODULES)
    return dataset, network
