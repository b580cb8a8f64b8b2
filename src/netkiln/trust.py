"""Which `_target_` a config may name without `allow_targets=true`: one rule for training and bundle loading.

A shared config or a bundle must not make netkiln import and call arbitrary code, so without the opt-in a
`_target_` may only name a public class of its kind's own modules. The check reads the dotted name only, so it runs
before anything is imported. Callers still check the imported class (a torch.nn name can re-export an outside class).
"""
from __future__ import annotations

# kind -> the modules whose classes a config may name. The first one is named in error messages.
TRUSTED_MODULES = {
    "model": ("torch.nn",),
    "optimizer": ("torch.optim",),
    "scheduler": ("torch.optim.lr_scheduler", "torch.optim"),
    "callback": ("pytorch_lightning.callbacks", "lightning.pytorch.callbacks"),
}


def trusted_module(module_name: str, kind: str) -> bool:
    """Is `module_name` one of `kind`'s trusted modules or inside one?"""
    return any(module_name == m or module_name.startswith(m + ".") for m in TRUSTED_MODULES[kind])


def is_trusted_target(target, kind: str) -> bool:
    """May a config name `target` (a dotted class path) as a `kind` without allow_targets=true?

    No private part: `torch.nn.Linear.__init__.__globals__` starts with torch.nn but walks out of it.
    """
    target = str(target)
    module_name = target.rpartition(".")[0]
    return not any(part.startswith("_") for part in target.split(".")) and trusted_module(module_name, kind)
